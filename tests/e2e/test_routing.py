"""One model id, several backends: real llama.cpp processes of the tiny random model, and loopback stub
upstreams that fail in chosen ways. One server holds three routed models:

- ``fleet``: three llama.cpp backends (load spread, a backend SIGKILLed mid-run, prefix affinity);
- ``flaky``: a llama.cpp backend beside an upstream that answers every completion with 500, and one
  whose port refuses connections (retry before the first byte, active health check);
- ``slow``: a llama.cpp backend beside an upstream that sends nothing within its first-byte timeout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from ..harness import Server, inferd, library_server
from ..tiny_vlm import write_tiny_vlm

SLOW_S = 30.0  # the slow stub's delay; its backend's first-byte timeout is 1 s


class Stub(ThreadingHTTPServer):
    """An OpenAI-compatible upstream on loopback: GET /v1/models answers; completions fail as ``mode`` says."""

    daemon_threads = True

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), StubHandler)
        self.mode = mode  # "error" (500 at once) or "slow" (nothing for SLOW_S seconds)
        self.completions = 0
        self._lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def count(self) -> None:
        with self._lock:
            self.completions += 1


class StubHandler(BaseHTTPRequestHandler):
    server: Stub

    def log_message(self, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        self._reply(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.count()
        if self.server.mode == "slow":
            time.sleep(SLOW_S)
        self._reply(500, {"error": {"message": "stub failure", "type": "server_error"}})

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the gateway gave up on it
            pass


def library(model: Path, error_url: str, slow_url: str, refused_url: str) -> str:
    llama = "[[models.backends]]\nname = \"{}\"\nparallel = 2\n"
    routing = "[models.routing]\nhealth_interval = 0.5\ncool_off = {}\nfailures_to_open = {}\npolicy = \"{}\"\n"
    stub = ("[[models.backends]]\nname = \"{}\"\nengine = \"openai\"\nparallel = 2\n[models.backends.upstream]\n"
            "url = \"{}\"\nflavour = \"llamacpp\"\nfirst_byte_timeout = 1.0\n")
    entry = f'[[models]]\nid = "{{}}"\nfile = "{model}"\ncontext_length = 2560\n'
    return "\n".join([
        entry.format("fleet"), routing.format(2.0, 3, "prefix_affinity"),
        llama.format("a"), llama.format("b"), llama.format("c"),
        entry.format("flaky"), routing.format(600.0, 3, "least_outstanding"),
        llama.format("good"), stub.format("error", error_url), stub.format("refused", refused_url),
        entry.format("slow"), routing.format(600.0, 2, "least_outstanding"),
        llama.format("fast"), stub.format("slow", slow_url),
    ])


@dataclass
class Fleet:
    server: Server
    key: str
    error_stub: Stub
    slow_stub: Stub


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("routing")
    model, _ = write_tiny_vlm(folder / "tiny")
    error_stub, slow_stub = Stub("error"), Stub("slow")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # held, never listening: connections to it are refused
    refused = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
    try:
        with library_server(folder, models_dir, library(model, error_stub.url, slow_stub.url, refused),
                            env={"INFERD_MAX_QUEUE": "4"}) as srv:
            yield Fleet(srv, srv.create_key(), error_stub, slow_stub)
    finally:
        closed.close()
        error_stub.shutdown()
        slow_stub.shutdown()


def backends(srv: Server, model: str) -> dict[str, dict]:
    card = httpx.get(srv.url + "/health", timeout=10).json()["engines"][model]
    return {b["name"]: b for b in card["backends"]}


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


@dataclass
class Result:
    kind: str  # completed | error_event | http_error
    completion_tokens: int = 0
    cached_tokens: int = 0
    detail: str = ""


def stream(fleet: Fleet, model: str, content: str, max_tokens: int = 16,
           started: threading.Semaphore | None = None) -> Result:
    """One streamed completion with usage, read to the end; what it ended as. ``started`` is released
    when its first content arrives."""
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "stream": True, "stream_options": {"include_usage": True}}
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {fleet.key}"}) as client, \
            client.stream("POST", fleet.server.url + "/api/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            error = json.loads(response.read())["error"]
            assert set(error) == {"message", "type", "param", "code"}
            return Result("http_error", detail=f"{response.status_code} {error['code']}")
        events = []
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
                if started is not None and '"content":"' in line and '"role"' not in line and len(events) == 2:
                    started.release()
    assert events[-1] == "[DONE]", events[-3:]
    chunks = [json.loads(e) for e in events[:-1]]
    if "error" in chunks[-1]:
        assert set(chunks[-1]["error"]) == {"message", "type", "param", "code"}
        return Result("error_event", detail=str(chunks[-1]["error"]["code"]))
    usage = chunks[-1]["usage"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    return Result("completed", usage["completion_tokens"], usage["prompt_tokens_details"]["cached_tokens"])


def chat(fleet: Fleet, model: str, messages: list[dict], max_tokens: int = 8) -> dict:
    response = httpx.post(fleet.server.url + "/api/v1/chat/completions", timeout=60,
                          headers={"Authorization": f"Bearer {fleet.key}"},
                          json={"model": model, "messages": messages, "max_tokens": max_tokens})
    assert response.status_code == 200, response.text
    return response.json()


def usage_rows(srv: Server, model: str) -> dict[str, tuple[int, int]]:
    """status -> (rows, completion tokens) of one model's usage records."""
    with sqlite3.connect(srv.data_dir / "inferd.sqlite3") as db:
        rows = db.execute("SELECT status, COUNT(*), SUM(completion_tokens) FROM usage WHERE model = ? "
                          "GROUP BY status", (model,)).fetchall()
    return {status: (count, tokens) for status, count, tokens in rows}


def frozen_mid_stream(srv: Server) -> tuple[str, dict]:
    """A backend stopped (SIGSTOP) while streams that have begun are in flight on it: name and card."""
    for _ in range(50):
        name, card = max(backends(srv, "fleet").items(), key=lambda item: item[1]["in_flight"])
        assert card["in_flight"] > 0, "every long stream ended before one could be caught"
        os.kill(card["pid"], signal.SIGSTOP)
        time.sleep(0.5)  # what it wrote before it stopped is read by now: a stream still open is cut mid-way
        card = backends(srv, "fleet")[name]
        if card["in_flight"] > 0:
            return name, card
        os.kill(card["pid"], signal.SIGCONT)  # its streams ended meanwhile: try another
    raise AssertionError("no backend caught with a stream in flight")


def test_load_spreads_survives_a_killed_backend_and_returns_to_it(fleet: Fleet) -> None:
    srv = fleet.server
    with ThreadPoolExecutor(6) as pool:
        warm = list(pool.map(lambda i: stream(fleet, "fleet", f"warm {i}"), range(12)))
        served = {name: b["served"] for name, b in backends(srv, "fleet").items()}
        assert all(r.kind == "completed" for r in warm) and all(served.values()), served  # spread over a, b, c

        started = threading.Semaphore(0)
        running = [pool.submit(stream, fleet, "fleet", f"long {i} {uuid.uuid4()}", 600, started) for i in range(6)]
        for _ in running:
            assert started.acquire(timeout=60)  # every stream has its first token
        name, victim = frozen_mid_stream(srv)
        os.kill(victim["pid"], signal.SIGKILL)
        results = warm + [f.result(timeout=120) for f in running]  # none hangs
    kinds = [r.kind for r in results]
    assert set(kinds) <= {"completed", "error_event"}, kinds  # a clean end either way; nothing truncated
    assert "error_event" in kinds and kinds.count("completed") >= 12 + 4, kinds  # its streams broke; others not
    assert {r.detail for r in results if r.kind == "error_event"} <= {"engine_crashed", "upstream_error"}

    def back(card: dict) -> bool:
        return card["state"] == "ready" and card["healthy"] and card["pid"] != victim["pid"]

    wait_for(lambda: back(backends(srv, "fleet")[name]), 60, f"backend {name} restarted and healthy")
    before, after = backends(srv, "fleet")[name]["served"], []
    deadline = time.monotonic() + 60
    while backends(srv, "fleet")[name]["served"] <= before and time.monotonic() < deadline:
        after.append(stream(fleet, "fleet", f"after {len(after)}"))  # past the cool-off, its probe succeeds
    card = backends(srv, "fleet")[name]
    assert card["served"] > before and card["circuit"] == "closed", card
    assert {r.kind for r in after} == {"completed"}

    results += after  # every request has exactly one usage row, and the completed ones the client's tokens
    completed = [r for r in results if r.kind == "completed"]
    wait_for(lambda: sum(n for n, _ in usage_rows(srv, "fleet").values()) >= len(results), 30, "usage rows")
    rows = usage_rows(srv, "fleet")
    assert sum(n for n, _ in rows.values()) == len(results) and "in_flight" not in rows, rows
    assert rows["completed"] == (len(completed), sum(r.completion_tokens for r in completed)), rows
    assert sum(n for status, (n, _) in rows.items() if status != "completed") == kinds.count("error_event"), rows


def test_prefix_affinity_keeps_the_conversation_cached(fleet: Fleet) -> None:
    messages = [{"role": "user", "content": f"conversation {uuid.uuid4()}: tell me about lighthouses"}]
    prompts, cached = [], []
    for turn in range(5):
        reply = chat(fleet, "fleet", messages)
        prompts.append(reply["usage"]["prompt_tokens"])
        cached.append(reply["usage"]["prompt_tokens_details"]["cached_tokens"])
        messages += [{"role": "assistant", "content": reply["choices"][0]["message"]["content"]},
                     {"role": "user", "content": f"and then, turn {turn + 2}?"}]
    # turn n+1 found turn n's whole prompt in the cache: it went to the same backend (of three)
    assert all(cached[n] >= prompts[n - 1] - 1 for n in range(1, 5)), (prompts, cached)
    rates = [b["cached_rate"] for b in backends(fleet.server, "fleet").values()]
    assert any(rate and rate > 0 for rate in rates), rates


def test_retry_before_the_first_byte_is_invisible(fleet: Fleet) -> None:
    before = fleet.error_stub.completions
    cards = backends(fleet.server, "flaky")
    assert not cards["refused"]["healthy"] and cards["refused"]["served"] == 0  # the active check took it out
    for i in range(8):
        if i % 2:
            assert stream(fleet, "flaky", f"streamed {i}").kind == "completed"
        else:
            reply = chat(fleet, "flaky", [{"role": "user", "content": f"plain {i}"}])
            assert reply["choices"][0]["finish_reason"] == "length" and reply["usage"]["completion_tokens"] == 8
    cards = backends(fleet.server, "flaky")
    # the failing upstream was tried until its circuit opened (3 failures), each time retried on "good"
    assert fleet.error_stub.completions - before == 3 and cards["error"]["circuit"] == "open", cards["error"]
    assert cards["good"]["served"] == 8 and cards["refused"]["served"] == 0
    assert usage_rows(fleet.server, "flaky") == {"completed": (8, 4 * 8 + 4 * 16)}


def test_a_slow_backend_opens_its_circuit_and_the_other_takes_the_load(fleet: Fleet) -> None:
    srv, results = fleet.server, []
    with ThreadPoolExecutor(3) as pool:
        for batch in range(10):  # until two of its first bytes are late (each then retried on "fast")
            results += pool.map(lambda i: stream(fleet, "slow", f"slow {batch} {i}"), range(3))
            if backends(srv, "slow")["slow"]["circuit"] == "open":
                break
        cards, sent = backends(srv, "slow"), fleet.slow_stub.completions
        assert cards["slow"]["circuit"] == "open" and sent >= 2, cards["slow"]  # 2 in a row (more if concurrent)
        results += pool.map(lambda i: stream(fleet, "slow", f"then {i}"), range(6))
    assert {r.kind for r in results} == {"completed"}  # the timeouts were invisible
    cards = backends(srv, "slow")
    assert fleet.slow_stub.completions == sent and cards["slow"]["circuit_opened"] == 1  # nothing more went there
    assert cards["fast"]["served"] == len(results)
    listing = inferd("models", "--library", str(srv.data_dir.parent / "library.toml"), "--host", "127.0.0.1",
                     "--port", str(srv.port), env=srv.env).stdout
    line = next(line for line in listing.splitlines() if line.strip().startswith("backend slow "))
    assert "engine=openai" in line and "circuit=open" in line and "healthy=True" in line, listing
    assert any(f"served={len(results)}" in line for line in listing.splitlines() if "backend fast " in line), listing


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in a Prometheus text scrape (None: no such series)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series.startswith(name + "{") and ",".join(sorted(series[len(name) + 1:-1].split(","))) == wanted:
            return float(value)
    return None


def test_metrics_have_a_series_per_backend(fleet: Fleet) -> None:
    text = httpx.get(fleet.server.url + "/metrics", timeout=10).text
    for name in ("a", "b", "c"):
        assert metric(text, "inferd_slots", model_name="fleet", backend=name) == 2, name
        assert metric(text, "vllm:num_requests_running", model_name="fleet", backend=name) == 0, name
    assert metric(text, "inferd_slots", model_name="slow", backend="slow") == 2
    assert metric(text, "inferd_engine_ready", model_name="slow", backend="slow") == 0  # its circuit is open
    assert metric(text, "inferd_engine_ready", model_name="slow", backend="fast") == 1
    assert metric(text, "inferd_slots", model_name="fleet", backend="routed") is None  # no model-wide series
