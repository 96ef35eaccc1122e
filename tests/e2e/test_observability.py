"""Metrics at /metrics, X-Request-Id, JSON logs and access lines, against a real server on the tiny model.

Metrics: scraped before and after a known set of requests (a success, a 400, a 429 from a key with
an rpm limit, a 402 from a key with a token limit, a stream); every counter must have moved by exactly those requests.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from ..edge_client import TINY, tiny_library
from ..harness import Server, inferd, library_server

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def series(name: str, **labels: str) -> str:
    """A sample's name and labels, labels sorted (as the parser below keys them)."""
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def of_tiny(name: str, **labels: str) -> str:
    return series(name, model_name=TINY, backend="llamacpp", **labels)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("observed")
    with library_server(folder, models_dir, tiny_library(folder), {"INFERD_LOG_FORMAT": "json"}) as srv:
        yield srv


def scrape(srv: Server, **headers: str) -> dict[str, float]:
    response = httpx.get(f"{srv.url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, labels, value = SAMPLE.match(line).groups()  # type: ignore[union-attr]
            samples[series(name, **dict(LABEL.findall(labels or "")))] = float(value)
    return samples


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}


def chat(srv: Server, key: str, content: str = "hi", **extra: object) -> httpx.Response:
    body = {"model": TINY, "messages": [{"role": "user", "content": content}], "max_tokens": 4, "ignore_eos": True,
            **extra}
    return httpx.post(f"{srv.url}/api/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                      timeout=120)


def test_counters_move_by_exactly_the_requests_made(observed: Server) -> None:
    key = observed.create_key()
    limited = inferd("keys", "create", "--name", f"rpm-{secrets.token_hex(3)}", "--rpm", "1",
                     env=observed.env).stdout.strip().splitlines()[-1]
    spent = inferd("keys", "create", "--name", f"quota-{secrets.token_hex(3)}", "--token-limit", "1",
                   env=observed.env).stdout.strip().splitlines()[-1]
    assert chat(observed, spent).status_code == 200  # uses up its token limit (before the first scrape)
    before = scrape(observed)
    assert chat(observed, spent).status_code == 402
    assert chat(observed, key).status_code == 200
    assert chat(observed, key, temperature=3).status_code == 400
    assert chat(observed, limited).status_code == 200
    assert chat(observed, limited).status_code == 429
    with httpx.stream("POST", f"{observed.url}/api/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                            "ignore_eos": True, "stream": True}, timeout=120) as streamed:
        assert streamed.status_code == 200
        assert list(streamed.iter_lines())[-2:] == ["data: [DONE]", ""] or "data: [DONE]" in streamed.text
    after = scrape(observed)
    delta = moved(before, after)
    assert delta[series("inferd_requests_total", model_name=TINY, status="200")] == 3
    assert delta[series("inferd_requests_total", model_name=TINY, status="400")] == 1
    assert delta[series("inferd_requests_total", model_name=TINY, status="429")] == 1
    assert delta[series("inferd_rate_limit_rejections_total", model_name=TINY, reason="requests", status="429")] == 1
    assert delta[series("inferd_requests_total", model_name=TINY, status="402")] == 1
    assert delta[series("inferd_rate_limit_rejections_total", model_name=TINY, reason="insufficient_quota",
                        status="402")] == 1
    # three generations of exactly 4 tokens each (ignore_eos), all ended by max_tokens
    assert delta[of_tiny("vllm:request_success_total", finished_reason="length")] == 3
    assert delta[of_tiny("vllm:generation_tokens_total")] == 12
    assert delta[of_tiny("vllm:prompt_tokens_total")] > 0
    assert delta[of_tiny("vllm:time_to_first_token_seconds_count")] == 3
    assert delta[of_tiny("vllm:e2e_request_latency_seconds_count")] == 3
    assert delta[of_tiny("vllm:inter_token_latency_seconds_count")] == 9  # 3 gaps between 4 tokens, 3 times
    assert delta[of_tiny("vllm:e2e_request_latency_seconds_bucket", le="+Inf")] == 3
    assert of_tiny("inferd_reasoning_tokens_total") in after  # the tiny model does not reason: 0
    chat_lines = {k: v for k, v in delta.items() if k.startswith(("inferd_requests", "inferd_rate_limit", "vllm:"))}
    assert len(chat_lines) == len([k for k in chat_lines if TINY in k]), chat_lines  # nothing under another model
    # every scrape is itself counted, under its route; the engine gauges are there and idle
    assert delta[series("inferd_http_requests_total", method="GET", route="/metrics", status="200")] == 1
    assert after[of_tiny("vllm:num_requests_running")] == 0
    assert after[of_tiny("vllm:num_requests_waiting")] == 0
    assert after[of_tiny("inferd_slots")] == 2
    assert after[of_tiny("inferd_engine_ready")] == 1
    assert after[of_tiny("inferd_engine_restarts_total")] == 0


def test_an_unknown_model_creates_no_series(observed: Server) -> None:
    name = f"no-such-model-{secrets.token_hex(4)}"
    response = httpx.post(f"{observed.url}/api/v1/chat/completions", headers={
        "Authorization": f"Bearer {observed.create_key()}"}, json={"model": name, "messages": [
            {"role": "user", "content": "hi"}]}, timeout=60)
    assert response.status_code == 404
    text = httpx.get(f"{observed.url}/metrics", timeout=30).text
    assert name not in text
    assert 'inferd_requests_total{model_name="",status="404"}' in text


def test_request_id_is_echoed_generated_and_logged(observed: Server) -> None:
    key = observed.create_key()
    mine = f"trace-{secrets.token_hex(6)}"
    response = httpx.get(
        f"{observed.url}/api/v1/models", headers={"Authorization": f"Bearer {key}", "X-Request-Id": mine}, timeout=30)
    assert response.status_code == 200 and response.headers["x-request-id"] == mine
    for bad in (b"a" * 129, b"has space", b"quote\"", b"log\x1b[31m", "ü".encode(), b""):
        got = httpx.get(f"{observed.url}/health", headers={"X-Request-Id": bad}, timeout=30).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", got), (bad, got)
    generated = httpx.get(f"{observed.url}/api/v1/models", timeout=30)  # an error: 401
    assert generated.status_code == 401 and re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    assert httpx.get(f"{observed.url}/nowhere", timeout=30).headers["x-request-id"]  # 404 of no route
    with httpx.stream("POST", f"{observed.url}/api/v1/chat/completions", json={
            "model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True},
            headers={"Authorization": f"Bearer {key}", "X-Request-Id": mine + "-sse"}, timeout=120) as streamed:
        assert streamed.headers["x-request-id"] == mine + "-sse"
        streamed.read()
    access = access_lines(observed, lambda line: line["request_id"] == mine + "-sse")  # written as the stream ends
    assert any(line["request_id"] == mine and line["path"] == "/api/v1/models" and line["status"] == 200
               for line in access)
    assert any(line["request_id"] == mine + "-sse" and line["status"] == 200 for line in access)
    assert any(line["request_id"] == generated.headers["x-request-id"] and line["status"] == 401 for line in access)


def access_lines(srv: Server, awaited: Callable[[dict], bool]) -> list[dict]:
    """The server's access lines, once one of them satisfies ``awaited`` (a response's line follows its end)."""
    deadline = time.monotonic() + 30
    while True:
        lines = [json.loads(line) for line in srv.log().splitlines() if line.startswith("{")]
        access = [line for line in lines if line["logger"] == "inferd.access"]
        if any(map(awaited, access)) or time.monotonic() > deadline:
            return access
        time.sleep(0.1)


def test_log_lines_are_json_and_never_hold_keys_or_message_text(observed: Server) -> None:
    key = observed.create_key()
    secret_text = f"unique-message-{secrets.token_hex(8)}"
    assert chat(observed, key, content=secret_text).status_code == 200
    assert chat(observed, key, content=secret_text, top_k=1000).status_code == 400
    httpx.get(f"{observed.url}/api/v1/usage?format=json&secret={secret_text}",
              headers={"Authorization": f"Bearer {key}"}, timeout=30)
    httpx.get(f"{observed.url}/api/v1/models", headers={"Authorization": f"Bearer {key}x"}, timeout=30)
    log = observed.log()
    assert key not in log and key[:12] not in log and secret_text not in log
    assert "Bearer" not in log and "authorization" not in log.lower()
    own = [line for line in log.splitlines() if line.startswith("{")]
    assert own and all(isinstance(json.loads(line), dict) for line in own)
    access = [json.loads(line) for line in own if '"inferd.access"' in line]
    chats = [line for line in access if line["path"] == "/api/v1/chat/completions"]
    assert {200, 400} <= {line["status"] for line in chats}
    assert all(set(line) >= {"method", "path", "status", "duration_ms", "request_id", "time"} for line in access)
    assert all(line["key"] is None or len(line["key"]) == 8 for line in access)
    usage = [line for line in access if line["path"].startswith("/api/v1/usage")]
    assert usage and all("?" not in line["path"] for line in usage)
    # after the CLI's start-up notices (stdout), every line (engines' output included) is one JSON object
    lines = log.splitlines()
    served = next(i for i, line in enumerate(lines) if line.startswith("inferd: serving"))
    assert [line for line in lines[served + 1:] if not line.startswith("{")] == []
    assert any('"logger": "inferd.engine.output"' in line for line in lines[served + 1:])


def test_metrics_token_is_required_when_configured(tmp_path_factory: pytest.TempPathFactory,
                                                   models_dir: Path) -> None:
    folder = tmp_path_factory.mktemp("metrics-token")
    token = secrets.token_urlsafe(24)
    with library_server(folder, models_dir, tiny_library(folder), {"INFERD_METRICS_TOKEN": token}) as srv:
        for headers in ({}, {"Authorization": f"Bearer {token}x"}, {"Authorization": token},
                        {"Authorization": f"Basic {token}"}):
            refused = httpx.get(f"{srv.url}/metrics", headers=headers, timeout=30)
            assert refused.status_code == 401, refused.text
            error = refused.json()["error"]
            assert error["code"] == "invalid_metrics_token" and error["type"] == "invalid_request_error"
            assert refused.headers["www-authenticate"] == "Bearer"
        assert "vllm:num_requests_running" in httpx.get(f"{srv.url}/metrics", timeout=30, headers={
            "Authorization": f"Bearer {token}"}).text
        assert srv.is_healthy()
        assert token not in srv.log()
