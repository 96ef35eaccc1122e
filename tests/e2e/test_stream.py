"""The SSE wire format, read raw with httpx."""

from __future__ import annotations

import json

import httpx

from ..conftest import QWEN

HELLO = [{"role": "user", "content": "Write hello world in C"}]


def read_events(response: httpx.Response) -> list[str]:
    events = []
    for line in response.iter_lines():
        if line:
            assert line.startswith("data: "), line
            events.append(line[len("data: "):])
    return events


def stream(http: httpx.Client, **body) -> tuple[httpx.Response, list[str]]:
    payload = {"model": QWEN, "messages": HELLO, "max_tokens": 6, "temperature": 0, "stream": True, **body}
    with http.stream("POST", "/api/v1/chat/completions", json=payload) as response:
        return response, read_events(response)


def test_stream_format_role_first_one_finish_usage_then_done(http: httpx.Client) -> None:
    response, events = stream(http, stream_options={"include_usage": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert not any("role" in c["choices"][0]["delta"] for c in chunks[1:] if c["choices"])
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["length"]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 6
    assert usage_chunk["usage"]["total_tokens"] == usage_chunk["usage"]["prompt_tokens"] + 6
    assert "usage" not in chunks[-2]


def test_stream_without_usage_option_has_no_usage_chunk(http: httpx.Client) -> None:
    _, events = stream(http)
    chunks = [json.loads(e) for e in events[:-1]]
    assert events[-1] == "[DONE]"
    assert all(c["choices"] for c in chunks)
    assert sum(1 for c in chunks if c["choices"][0]["finish_reason"]) == 1


def test_stream_content_matches_the_non_streamed_body(http: httpx.Client) -> None:
    _, events = stream(http)
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    body = http.post("/api/v1/chat/completions",
                     json={"model": QWEN, "messages": HELLO, "max_tokens": 6, "temperature": 0}).json()
    assert text == body["choices"][0]["message"]["content"]


def test_errors_before_the_stream_starts_are_plain_json(http: httpx.Client) -> None:
    response = http.post("/api/v1/chat/completions",
                         json={"model": QWEN, "messages": HELLO, "stream": True, "max_tokens": 100000})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"
