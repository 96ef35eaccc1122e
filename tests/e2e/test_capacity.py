"""Concurrency: batched streams, the queue bound, and cancellation when a client goes away."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest

from ..conftest import QWEN, assert_error
from ..harness import Server, library_server

ONE_SLOT = "qwen-one-slot"
LONG = [{"role": "user", "content": "Write a very long story about a lighthouse keeper, at least 3000 words."}]


def test_eight_concurrent_streams_all_finish(client: openai.OpenAI) -> None:
    def one(i: int) -> tuple[str, str | None]:
        text, finish = "", None
        stream = client.chat.completions.create(
            model=QWEN, messages=[{"role": "user", "content": f"Say a number above {i}."}],
            max_tokens=8, temperature=0, stream=True)
        for chunk in stream:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        return text, finish

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert all(text and finish in {"stop", "length"} for text, finish in results), results


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, server: Server) -> Iterator[Server]:
    """A server whose only model has one slot and a queue of one (the model file is already assembled)."""
    gguf = models_dir / "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf"
    toml = f'[[models]]\nid = "{ONE_SLOT}"\nfile = "{gguf}"\ncontext_length = 4096\nparallel = 1\n'
    with library_server(tmp_path_factory.mktemp("one-slot"), models_dir, toml, {"INFERD_MAX_QUEUE": "1"}) as srv:
        yield srv


def _start_stream(srv: Server, key: str) -> socket.socket:
    """Open a long stream with a raw socket and read until the first content chunk has arrived."""
    body = json.dumps({"model": ONE_SLOT, "messages": LONG, "max_tokens": 4000, "temperature": 0, "stream": True})
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=120)
    sock.sendall((f"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    seen = b""
    while seen.count(b"data: ") < 3:
        data = sock.recv(65536)
        assert data, seen
        seen += data
    assert seen.startswith(b"HTTP/1.1 200"), seen[:200]
    return sock


def test_disconnect_frees_the_slot_and_the_queue_bound_holds(one_slot: Server) -> None:
    key = one_slot.create_key()
    headers = {"Authorization": f"Bearer {key}"}
    quick = {"model": ONE_SLOT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    running = _start_stream(one_slot, key)  # holds the only slot for ~4000 tokens (minutes on 2 cores)
    with ThreadPoolExecutor(1) as pool:
        queued = pool.submit(httpx.post, one_slot.url + "/api/v1/chat/completions", json=quick, headers=headers,
                             timeout=300)
        time.sleep(1)  # ordering only: let the queued request be admitted first
        for _ in range(20):
            try:  # a request that got in instead (and waits) is abandoned after 3 s, which frees its place
                over = httpx.post(one_slot.url + "/api/v1/chat/completions", json=quick, headers=headers, timeout=3)
            except httpx.ReadTimeout:
                continue
            if over.status_code == 503:
                break
        assert_error(over, 503, "server_error", None, "server_overloaded")
        assert over.headers["retry-after"] == "1"
        assert not queued.done()
        running.close()  # the client goes away: its generation must stop and free the slot
        # Had the abandoned generation kept its slot, the queued request would wait minutes for 4000 tokens.
        assert queued.result(timeout=60).status_code == 200
    after = httpx.post(one_slot.url + "/api/v1/chat/completions", json=quick, headers=headers, timeout=60)
    assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] == 2
    assert one_slot.is_healthy()


def test_non_streaming_disconnect_also_cancels(one_slot: Server) -> None:
    key = one_slot.create_key()
    headers = {"Authorization": f"Bearer {key}"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(one_slot.url + "/api/v1/chat/completions", headers=headers, timeout=3,
                   json={"model": ONE_SLOT, "messages": LONG, "max_tokens": 4000, "temperature": 0})
    quick = {"model": ONE_SLOT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    after = httpx.post(one_slot.url + "/api/v1/chat/completions", json=quick, headers=headers, timeout=60)
    assert after.status_code == 200


def test_requests_are_batched_not_serialized(server: Server, api_key: str) -> None:
    """A short request completes while a long one is still generating on the same model."""
    headers = {"Authorization": f"Bearer {api_key}"}
    long_body = {"model": QWEN, "messages": LONG, "max_tokens": 3000, "temperature": 0, "stream": True}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:
        with http.stream("POST", "/api/v1/chat/completions", json=long_body) as long_stream:
            lines = long_stream.iter_lines()
            assert next(line for line in lines if '"content":"' in line and '"role"' not in line)
            short = http.post("/api/v1/chat/completions",
                              json={"model": QWEN, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
            assert short.status_code == 200 and short.json()["usage"]["completion_tokens"] == 2
            still_running = json.loads(next(line for line in lines if line)[len("data: "):])
            assert still_running["choices"][0]["finish_reason"] is None  # 3000 tokens take minutes here
