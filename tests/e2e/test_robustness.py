"""Odd but possible inputs: never a 5xx, always a clear answer, the server healthy after."""

from __future__ import annotations

import httpx
import pytest

from ..conftest import GEMMA, QWEN, assert_error
from ..harness import Server


@pytest.mark.parametrize("raw", [
    '{"model": "%s", "messages": [{"role": "user", "content": "a\\ud800b"}], "max_tokens": 1}' % QWEN,
    '{"model": "\\udfff", "messages": [{"role": "user", "content": "hi"}]}',
    '{"model": "%s", "messages": [{"role": "user", "content": [{"type": "text", "text": "\\ud83d"}]}]}' % QWEN,
], ids=["content", "model", "text-part"])
def test_lone_surrogates_are_a_400(http: httpx.Client, server: Server, raw: str) -> None:
    response = http.post("/api/v1/chat/completions", content=raw.encode(), headers={"Content-Type": "application/json"})
    assert_error(response, 400, "invalid_request_error", None, "invalid_json")
    assert server.is_healthy()


def test_a_valid_surrogate_pair_is_accepted(http: httpx.Client) -> None:
    raw = '{"model": "%s", "messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}], "max_tokens": 1}' % QWEN
    assert http.post("/api/v1/chat/completions", content=raw.encode()).status_code == 200


@pytest.mark.parametrize("message,param", [
    ({"role": "user", "content": "hi", "tool_calls": "garbage"}, "messages[0].tool_calls"),
    ({"role": "assistant", "content": None, "tool_calls": [{"type": "function"}]}, "messages[0].tool_calls[0]"),
    ({"role": "user", "content": "hi", "name": 3}, "messages[0].name"),
    ({"role": "tool", "content": "42", "tool_call_id": ["x"]}, "messages[0].tool_call_id"),
])
def test_bad_tool_fields_are_a_400(http: httpx.Client, server: Server, message: dict, param: str) -> None:
    response = http.post("/api/v1/chat/completions", json={"model": QWEN, "messages": [message], "max_tokens": 1})
    assert_error(response, 400, "invalid_request_error", param)
    assert server.is_healthy()


@pytest.mark.parametrize("model", [QWEN, GEMMA])
@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}, {"role": "user", "content": "x"}],
    [{"role": "user", "content": "What is 6*7?"},
     {"role": "assistant", "content": None,
      "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "calc", "arguments": "{\"q\": \"6*7\"}"}}]},
     {"role": "tool", "tool_call_id": "c1", "content": "42"}],
    [{"role": "assistant", "content": "I start."}],
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": "hi", "unknown_field": {"x": 1}}],
    [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, {"role": "user", "content": "\u0000hi"}],
], ids=["assistant-null", "tool-round-trip", "assistant-only", "empty", "unknown-field", "parts-and-nul"])
def test_unusual_conversations_get_an_answer(http: httpx.Client, model: str, messages: list) -> None:
    response = http.post("/api/v1/chat/completions", json={"model": model, "messages": messages, "max_tokens": 2})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] >= 1
