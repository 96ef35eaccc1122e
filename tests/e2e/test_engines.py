"""Engines as supervised child processes: crash isolation, restart, drain on SIGTERM, no orphans."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from ..conftest import assert_error
from ..harness import Server, inferd, library_server

QWEN_ID, GEMMA_ID = "crash-qwen", "crash-gemma"
LONG = [{"role": "user", "content": "Write a very long story about a lighthouse keeper, at least 3000 words."}]
HI = [{"role": "user", "content": "Count from 1 to 5."}]


def two_models(models_dir: Path, qwen_parallel: int = 2) -> str:
    return (f'[[models]]\nid = "{QWEN_ID}"\nfile = "{models_dir / "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf"}"\n'
            f'context_length = 4096\nparallel = {qwen_parallel}\n\n'
            f'[[models]]\nid = "{GEMMA_ID}"\nfile = "{models_dir / "gemma-3-270m.Q4_K_M.gguf"}"\n'
            'context_length = 1024\nparallel = 1\nchat_template = "{% for m in messages %}{{ m.content }}\\n{% endfor %}"\n')


def engines(srv: Server) -> dict[str, dict]:
    return httpx.get(srv.url + "/health", timeout=10).json()["engines"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]


def wait_until(predicate, timeout: float, what: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what() if callable(what) else what}")


def describe(pids: set[int]) -> dict[int, str]:
    """State, parent and command line of those of ``pids`` still alive (for a failure message)."""
    left = {}
    for pid in sorted(p for p in pids if alive(p)):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        left[pid] = f"state {state}, ppid {ppid}: {cmdline[:120]}"
    return left


def child_pids(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    parents: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = map(int, line.split())
        parents.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), ()):
            found.add(child)
            todo.append(child)
    return found


def post(srv: Server, key: str, body: dict, timeout: float = 120) -> httpx.Response:
    return httpx.post(srv.url + "/api/v1/chat/completions", json=body, timeout=timeout,
                      headers={"Authorization": f"Bearer {key}"})


def open_stream(srv: Server, key: str, model: str, max_tokens: int = 3000) -> tuple[httpx.Client, Iterator[str]]:
    """A streaming request whose first content chunk has arrived; returns its line iterator."""
    client = httpx.Client(timeout=120, headers={"Authorization": f"Bearer {key}"})
    body = {"model": model, "messages": LONG, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    response = client.send(client.build_request("POST", srv.url + "/api/v1/chat/completions", json=body), stream=True)
    assert response.status_code == 200, response.read()
    lines = (line for line in response.iter_lines() if line)
    assert next(line for line in lines if '"content":"' in line and '"role"' not in line)
    return client, lines


def usage_by_status(srv: Server) -> dict[str, int]:
    with sqlite3.connect(srv.data_dir / "inferd.sqlite3") as db:
        return dict(db.execute("SELECT status, COUNT(*) FROM usage GROUP BY status").fetchall())


def crashed_completion_tokens(srv: Server) -> list[int]:
    with sqlite3.connect(srv.data_dir / "inferd.sqlite3") as db:
        return [row[0] for row in db.execute("SELECT completion_tokens FROM usage WHERE status = 'engine_crashed'")]


@pytest.fixture()
def pair(tmp_path: Path, models_dir: Path, server: Server) -> Iterator[Server]:
    with library_server(tmp_path, models_dir, two_models(models_dir)) as srv:
        yield srv


def test_each_engine_is_a_child_process_of_its_own(pair: Server) -> None:
    cards = engines(pair)
    assert set(cards) == {QWEN_ID, GEMMA_ID}
    pids = {card["pid"] for card in cards.values()}
    assert len(pids) == 2 and pair.process.pid not in pids
    assert pids <= child_pids(pair.process.pid)  # below the API process (under their wardens)
    for card in cards.values():
        assert card["kind"] == "llamacpp" and card["state"] == "ready" and card["restarts"] == 0
        assert card["rss_bytes"] > 50 * 2**20  # a loaded model, not a stub
    out = inferd("models", "--port", str(pair.port), env={**pair.env, "INFERD_LIBRARY": str(pair.data_dir.parent /
                                                                                                "library.toml")}).stdout
    assert f"state=ready pid={cards[QWEN_ID]['pid']}" in out and "rss=" in out


def test_a_killed_engine_ends_its_streams_cleanly_and_comes_back(pair: Server) -> None:
    key = pair.create_key()
    for _ in range(3):  # completed requests whose usage must survive the crash
        assert post(pair, key, {"model": QWEN_ID, "messages": HI, "max_tokens": 4}).status_code == 200
    wait_until(lambda: usage_by_status(pair) == {"completed": 3}, 20, "three settled usage rows")
    victim = engines(pair)[QWEN_ID]["pid"]
    client, lines = open_stream(pair, key, QWEN_ID)
    with closing(client), ThreadPoolExecutor(1) as pool:
        # ignore_eos: it cannot end on its own before the kill (sampled, the model sometimes refuses at once)
        plain = pool.submit(post, pair, key, {"model": QWEN_ID, "messages": LONG, "max_tokens": 3000,
                                              "ignore_eos": True})
        time.sleep(1)  # the non-streaming request is generating too
        os.kill(victim, signal.SIGKILL)
        rest = list(lines)
        error = json.loads(rest[-2][len("data: "):])["error"]
        assert rest[-1] == "data: [DONE]"
        assert error["code"] == "engine_crashed" and "killed by signal 9" in error["message"], error
        assert_error(plain.result(timeout=60), 502, "server_error", None, "engine_crashed")
    health = httpx.get(pair.url + "/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "degraded", health.text
    assert health.json()["models"][QWEN_ID] == "restarting"
    # the API and the other model keep serving meanwhile
    assert post(pair, key, {"model": GEMMA_ID, "messages": HI, "max_tokens": 3}).status_code == 200
    response = post(pair, key, {"model": QWEN_ID, "messages": HI, "max_tokens": 3})
    if response.status_code == 503:  # not back yet: the documented answer while restarting
        assert_error(response, 503, "server_error", None, "model_loading")
        assert response.headers["retry-after"] == "5"
    pair.wait_health("ready", timeout=120)
    card = engines(pair)[QWEN_ID]
    assert card["restarts"] == 1 and card["pid"] != victim and alive(card["pid"])
    assert "killed by signal 9" in card["last_error"]
    after = post(pair, key, {"model": QWEN_ID, "messages": HI, "max_tokens": 4})
    assert after.status_code == 200 and 1 <= after.json()["usage"]["completion_tokens"] <= 4
    # nothing completed before the crash was lost, and the two cut requests count what they generated
    # completed: 3 before, gemma's, the last one (and the one sent while restarting, unless it got a 503)
    wait_until(lambda: usage_by_status(pair).get("engine_crashed") == 2 and usage_by_status(pair)["completed"] >= 5,
               20, f"usage rows by status, got {usage_by_status(pair)}")
    assert set(usage_by_status(pair)) <= {"completed", "engine_crashed", "model_loading"}
    assert max(crashed_completion_tokens(pair)) > 0  # the stream had sent tokens (the other may be in prefill)
    # the metrics saw the restart and the two generations the crash ended
    metrics = httpx.get(pair.url + "/metrics", timeout=10).text.splitlines()
    qwen = f'backend="llamacpp",model_name="{QWEN_ID}"'
    assert f"inferd_engine_restarts_total{{{qwen}}} 1.0" in metrics
    assert f"inferd_engine_ready{{{qwen}}} 1.0" in metrics
    assert f'vllm:request_success_total{{backend="llamacpp",finished_reason="error",model_name="{QWEN_ID}"}} 2.0' \
        in metrics


def test_engines_die_with_the_api_even_on_sigkill(tmp_path: Path, models_dir: Path, server: Server) -> None:
    with library_server(tmp_path, models_dir, two_models(models_dir, qwen_parallel=1)) as srv:
        below = child_pids(srv.process.pid)
        assert len(below) >= 4  # a warden and an engine per model
        srv.process.kill()
        srv.process.wait()
        # the warden's stop takes its grace (5 s) at most; 30 s leaves room for a slow CI machine, and a
        # failure says which processes were left and in what state
        wait_until(lambda: not any(alive(pid) for pid in below), 30,
                   lambda: f"every engine process of {below} gone; left: {describe(below)}")


def test_sigterm_drains_in_flight_requests_then_exits_0(tmp_path: Path, models_dir: Path, server: Server) -> None:
    with library_server(tmp_path, models_dir, two_models(models_dir), {"INFERD_DRAIN_SECONDS": "120"}) as srv:
        key = srv.create_key()
        below = child_pids(srv.process.pid)
        client, lines = open_stream(srv, key, QWEN_ID, max_tokens=60)  # seconds of work: drain waits for it
        with closing(client):
            srv.process.send_signal(signal.SIGTERM)
            wait_until(lambda: httpx.get(srv.url + "/health", timeout=5).status_code == 503, 10, "health 503")
            assert httpx.get(srv.url + "/health", timeout=5).json()["status"] == "draining"
            refused = post(srv, key, {"model": QWEN_ID, "messages": HI, "max_tokens": 2})
            assert_error(refused, 503, "server_error", None, "server_draining")
            rest = list(lines)
        finish = json.loads(rest[-2][len("data: "):])["choices"][0]["finish_reason"]
        assert finish in {"stop", "length"} and rest[-1] == "data: [DONE]"  # the stream completed
        assert not any('"error"' in line for line in rest)
        assert srv.process.wait(timeout=60) == 0
        wait_until(lambda: not any(alive(pid) for pid in below), 15, "no engine process left")


def test_a_stream_past_the_drain_window_ends_with_an_error_event(tmp_path: Path, models_dir: Path,
                                                                  server: Server) -> None:
    with library_server(tmp_path, models_dir, two_models(models_dir), {"INFERD_DRAIN_SECONDS": "1"}) as srv:
        key = srv.create_key()
        client, lines = open_stream(srv, key, QWEN_ID, max_tokens=3000)  # minutes of work on 2 cores
        with closing(client):
            srv.process.send_signal(signal.SIGTERM)
            rest = list(lines)
        error = json.loads(rest[-2][len("data: "):])["error"]
        assert error["code"] == "server_shutting_down" and error["type"] == "server_error", error
        assert rest[-1] == "data: [DONE]"
        assert srv.process.wait(timeout=60) == 0
