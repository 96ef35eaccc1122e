"""Memory that returns: no growth per aborted stream, threads back to idle after a burst, RSS flat over
2,000 mixed requests. Bounds are generous and nothing here is timed."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from ..edge_client import TINY, first_events, num_threads, rss_kib, tiny_library
from ..harness import Server, library_server

MIB_IN_KIB = 1024
WORKERS = 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("edge-memory")
    with library_server(folder, models_dir, tiny_library(folder, parallel=2), {"INFERD_MAX_QUEUE": "8"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def key(tiny: Server) -> str:
    return tiny.create_key()


def abort_stream(srv: Server, key: str, i: int) -> None:
    """A stream the client closes after its first content chunk."""
    first_events(srv.port, key, {"model": TINY, "max_tokens": 200,
                                 "messages": [{"role": "user", "content": f"tell me about {i}"}]}).close()


def in_parallel(work: Callable[[int], object], numbers: range) -> None:
    """``work(i)`` for every number, WORKERS at a time (no more than the model's slots and queue take)."""
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(work, numbers))


def test_aborted_streams_do_not_grow_memory(tiny: Server, key: str) -> None:
    in_parallel(lambda i: abort_stream(tiny, key, i), range(100))  # warm-up: allocator pools, caches, threads
    time.sleep(1)
    before = rss_kib(tiny.process.pid)
    in_parallel(lambda i: abort_stream(tiny, key, i), range(100, 1100))
    time.sleep(1)
    grown = rss_kib(tiny.process.pid) - before
    assert grown < 5 * MIB_IN_KIB, f"{grown} KiB more after 1,000 aborted streams"  # before the fix: ~16 MiB


def one_stream(url: str, key: str, i: int) -> int:
    body = {"model": TINY, "stream": True, "max_tokens": 50, "messages": [{"role": "user", "content": f"n {i}"}]}
    with httpx.stream("POST", url + "/api/v1/chat/completions", json=body, timeout=120,
                      headers={"Authorization": f"Bearer {key}"}) as response:
        response.read()
        return response.status_code


def test_threads_return_to_their_idle_count_after_a_burst(tiny: Server, key: str) -> None:
    for i in range(4):
        one_stream(tiny.url, key, i)
    time.sleep(1)
    idle = num_threads(tiny.process.pid)
    with ThreadPoolExecutor(40) as pool:
        statuses = set(pool.map(lambda i: one_stream(tiny.url, key, i), range(40)))
    assert statuses == {200, 503}  # the burst went past the slots and the queue
    for _ in range(60):  # up to 30 s
        if num_threads(tiny.process.pid) <= idle:
            break
        time.sleep(0.5)
    assert num_threads(tiny.process.pid) <= idle, f"{num_threads(tiny.process.pid)} threads, {idle} before the burst"


def mixed(http: httpx.Client, srv: Server, key: str, i: int) -> None:
    """Completed (plain and streamed), aborted, and refused (401, 404, 400) requests, in turn."""
    chat = {"model": TINY, "max_tokens": 8, "messages": [{"role": "user", "content": f"request {i}"}]}
    kind = i % 6
    if kind == 0:
        assert http.post("/api/v1/chat/completions", json=chat).status_code == 200
    elif kind == 1:
        assert one_stream(srv.url, key, i) == 200
    elif kind == 2:
        abort_stream(srv, key, i)
    elif kind == 3:
        assert http.post("/api/v1/chat/completions", json=chat, headers={"Authorization": "Bearer sk-no"}).status_code == 401
    elif kind == 4:
        assert http.post("/api/v1/chat/completions", json={**chat, "model": "nope"}).status_code == 404
    else:
        assert http.post("/api/v1/chat/completions", json={**chat, "max_tokens": 0}).status_code == 400


def test_rss_after_2000_mixed_requests_is_within_5_percent_of_after_200(tiny: Server, key: str) -> None:
    with httpx.Client(base_url=tiny.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        in_parallel(lambda i: mixed(http, tiny, key, i), range(200))
        time.sleep(1)
        after_200 = rss_kib(tiny.process.pid)
        in_parallel(lambda i: mixed(http, tiny, key, i), range(200, 2000))
        time.sleep(1)
    after_2000 = rss_kib(tiny.process.pid)
    assert after_2000 <= after_200 * 1.05, f"RSS {after_200} KiB after 200 requests, {after_2000} KiB after 2,000"
