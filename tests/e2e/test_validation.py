"""Request validation against the real server: every bad input is a 400/413 in the OpenAI error shape,
naming the offending ``param``; valid boundary values are accepted; the server stays healthy.

Every generation here asks for at most 2 tokens: the model runs on CPU and the whole file shares one server.
No response in this file may be a 422 or a 5xx.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import pytest

from ..conftest import QWEN, assert_error
from ..harness import Server

URL = "/api/v1/chat/completions"
HI = [{"role": "user", "content": "hi"}]
MISSING = object()  # marks a field removed from the base body
MIB = 1024 * 1024


def no_server_error(response: httpx.Response) -> httpx.Response:
    """Validation problems are the client's: never FastAPI-style 422, never a 5xx."""
    assert response.status_code != 422, response.text
    assert response.status_code < 500, response.text
    return response


def request_body(**fields: Any) -> dict[str, Any]:
    """A valid tiny request (1 token) with ``fields`` replacing, adding or (MISSING) removing keys."""
    body: dict[str, Any] = {"model": QWEN, "messages": HI, "max_tokens": 1}
    for name, value in fields.items():
        if value is MISSING:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def assert_rejected(server: Server, response: httpx.Response, param: str | None, code: str | None = None,
                    status: int = 400) -> dict:
    no_server_error(response)
    error = assert_error(response, status, "invalid_request_error", param, code)
    assert server.is_healthy()
    return error


def assert_completion(response: httpx.Response, max_tokens: int = 2) -> dict:
    no_server_error(response)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == QWEN
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert body["usage"]["completion_tokens"] <= max_tokens
    return body


def ignored(response: httpx.Response) -> set[str]:
    header = response.headers.get("X-Inferd-Ignored-Params", "")
    return {name.strip() for name in header.split(",") if name.strip()}


# ================================================================ seed parameter rules

part = {"type": "text", "text": "x"}

BAD_FIELDS = [
    # temperature: a number in [0, 2]
    pytest.param({"temperature": -0.1}, "temperature", "invalid_value", id="temperature=-0.1"),
    pytest.param({"temperature": 2.01}, "temperature", "invalid_value", id="temperature=2.01"),
    pytest.param({"temperature": "1"}, "temperature", "invalid_type", id="temperature='1'"),
    pytest.param({"temperature": True}, "temperature", "invalid_type", id="temperature=true"),
    pytest.param({"temperature": [1]}, "temperature", "invalid_type", id="temperature=[1]"),
    # top_p: a number in [0, 1]
    pytest.param({"top_p": -0.1}, "top_p", "invalid_value", id="top_p=-0.1"),
    pytest.param({"top_p": 1.1}, "top_p", "invalid_value", id="top_p=1.1"),
    pytest.param({"top_p": "0.5"}, "top_p", "invalid_type", id="top_p='0.5'"),
    # top_k: an integer in [0, 100]
    pytest.param({"top_k": -1}, "top_k", "invalid_value", id="top_k=-1"),
    pytest.param({"top_k": 101}, "top_k", "invalid_value", id="top_k=101"),
    pytest.param({"top_k": 1.5}, "top_k", "invalid_type", id="top_k=1.5"),
    pytest.param({"top_k": True}, "top_k", "invalid_type", id="top_k=true"),
    pytest.param({"top_k": "5"}, "top_k", "invalid_type", id="top_k='5'"),
    # min_p: a number in [0, 1]
    pytest.param({"min_p": -0.01}, "min_p", "invalid_value", id="min_p=-0.01"),
    pytest.param({"min_p": 1.01}, "min_p", "invalid_value", id="min_p=1.01"),
    # repetition_penalty: a number in (0, 100]
    pytest.param({"repetition_penalty": 0}, "repetition_penalty", "invalid_value", id="repetition_penalty=0"),
    pytest.param({"repetition_penalty": -1}, "repetition_penalty", "invalid_value", id="repetition_penalty=-1"),
    pytest.param({"repetition_penalty": 100.5}, "repetition_penalty", "invalid_value",
                 id="repetition_penalty=100.5"),
    pytest.param({"repetition_penalty": "1.2"}, "repetition_penalty", "invalid_type",
                 id="repetition_penalty='1.2'"),
    # max_tokens / max_completion_tokens: an integer >= 1
    pytest.param({"max_tokens": 0}, "max_tokens", "invalid_value", id="max_tokens=0"),
    pytest.param({"max_tokens": -5}, "max_tokens", "invalid_value", id="max_tokens=-5"),
    pytest.param({"max_tokens": 1.5}, "max_tokens", "invalid_type", id="max_tokens=1.5"),
    pytest.param({"max_tokens": "10"}, "max_tokens", "invalid_type", id="max_tokens='10'"),
    pytest.param({"max_tokens": True}, "max_tokens", "invalid_type", id="max_tokens=true"),
    pytest.param({"max_tokens": MISSING, "max_completion_tokens": 0}, "max_completion_tokens", "invalid_value",
                 id="max_completion_tokens=0"),
    pytest.param({"max_tokens": MISSING, "max_completion_tokens": "10"}, "max_completion_tokens", "invalid_type",
                 id="max_completion_tokens='10'"),
    # a field of the contract is checked even when another field makes it redundant
    pytest.param({"max_tokens": 1, "max_completion_tokens": 0}, "max_completion_tokens", "invalid_value",
                 id="max_completion_tokens=0-beside-max_tokens"),
    # reasoning_effort: one of none|minimal|low|medium|high|xhigh
    pytest.param({"reasoning_effort": "extreme"}, "reasoning_effort", None, id="reasoning_effort='extreme'"),
    pytest.param({"reasoning_effort": 3}, "reasoning_effort", None, id="reasoning_effort=3"),
    pytest.param({"reasoning_effort": ""}, "reasoning_effort", None, id="reasoning_effort=''"),
    pytest.param({"reasoning_effort": "HIGH"}, "reasoning_effort", None, id="reasoning_effort='HIGH'"),
    # separate_reasoning: a boolean
    pytest.param({"separate_reasoning": "yes"}, "separate_reasoning", "invalid_type", id="separate_reasoning='yes'"),
    pytest.param({"separate_reasoning": 1}, "separate_reasoning", "invalid_type", id="separate_reasoning=1"),
    # chat_template_kwargs: an object; its 'thinking' a boolean
    pytest.param({"chat_template_kwargs": "x"}, "chat_template_kwargs", "invalid_type", id="chat_template_kwargs='x'"),
    pytest.param({"chat_template_kwargs": []}, "chat_template_kwargs", "invalid_type", id="chat_template_kwargs=[]"),
    pytest.param({"chat_template_kwargs": {"thinking": "yes"}}, "chat_template_kwargs.thinking", "invalid_type",
                 id="chat_template_kwargs.thinking='yes'"),
    # stream: a boolean; stream_options: an object; include_usage: a boolean
    pytest.param({"stream": "true"}, "stream", "invalid_type", id="stream='true'"),
    pytest.param({"stream": 1}, "stream", "invalid_type", id="stream=1"),
    pytest.param({"stream_options": "x"}, "stream_options", "invalid_type", id="stream_options='x'"),
    pytest.param({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage",
                 "invalid_type", id="stream_options.include_usage='yes'"),
    # model: a non-empty string
    pytest.param({"model": MISSING}, "model", "missing_required_parameter", id="model-missing"),
    pytest.param({"model": 123}, "model", "invalid_type", id="model=123"),
    pytest.param({"model": ""}, "model", "invalid_type", id="model=''"),
    # messages: a non-empty array of messages
    pytest.param({"messages": MISSING}, "messages", "missing_required_parameter", id="messages-missing"),
    pytest.param({"messages": []}, "messages", None, id="messages=[]"),
    pytest.param({"messages": "hi"}, "messages", "invalid_type", id="messages='hi'"),
    pytest.param({"messages": [1]}, "messages[0]", "invalid_type", id="messages=[1]"),
    pytest.param({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", None, id="role=robot"),
    pytest.param({"messages": [{"content": "x"}]}, "messages[0].role", None, id="role-missing"),
    pytest.param({"messages": [{"role": "user"}]}, "messages[0].content", "invalid_type", id="content-missing"),
    pytest.param({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_type",
                 id="content=5"),
    pytest.param({"messages": [{"role": "user", "content": [{"type": "audio", "audio": "x"}]}]},
                 "messages[0].content[0].type", None, id="part-type=audio"),
    pytest.param({"messages": [{"role": "user", "content": [part, {"type": "text"}]}]},
                 "messages[0].content[1].text", "invalid_type", id="text-part-without-text"),
    pytest.param({"messages": [{"role": "user", "content": [{"type": "text"}]}]},
                 "messages[0].content[0].text", "invalid_type", id="only-part-without-text"),
    pytest.param({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
                 "messages[0].content[0].image_url.url", "invalid_type", id="image_url-without-url"),
    pytest.param({"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]},
                 "messages[1].role", None, id="second-message-bad"),
]


@pytest.mark.parametrize(("fields", "param", "code"), BAD_FIELDS)
def test_bad_field_is_rejected(server: Server, http: httpx.Client, fields: dict[str, Any], param: str,
                               code: str | None) -> None:
    response = http.post(URL, json=request_body(**fields))
    assert_rejected(server, response, param, code)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("name", ["temperature", "top_p", "min_p", "repetition_penalty", "top_k", "max_tokens"])
def test_non_finite_numbers_are_rejected(server: Server, http: httpx.Client, name: str, literal: str) -> None:
    raw = ('{"model": %s, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "%s": %s}'
           % (json.dumps(QWEN), name, literal))
    if name == "max_tokens":
        raw = raw.replace('"max_tokens": 1, ', "")
    response = http.post(URL, content=raw.encode(), headers={"Content-Type": "application/json"})
    error = assert_rejected(server, response, name, "invalid_type")
    assert literal.lstrip("-").lower()[:3] in error["message"].lower()


# ================================================================ the body itself


def _chunks(total: int, size: int = MIB) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


@pytest.mark.parametrize(
    ("content", "code"),
    [
        pytest.param(b"{nope", "invalid_json", id="not-json"),
        pytest.param(b"", "invalid_json", id="empty"),
        pytest.param(b"   ", "invalid_json", id="whitespace"),
        pytest.param(b"[]", None, id="json-array"),
        pytest.param(b'"hello"', None, id="json-string"),
        pytest.param(b"null", None, id="json-null"),
        pytest.param(b"42", None, id="json-number"),
        pytest.param(b'{"model": "x",}', "invalid_json", id="trailing-comma"),
        pytest.param(b'{"model": "\xff\xfe"}', "invalid_json", id="invalid-utf8"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "invalid_json", id="deeply-nested"),
    ],
)
def test_bad_body_is_rejected(server: Server, http: httpx.Client, content: bytes, code: str | None) -> None:
    response = http.post(URL, content=content, headers={"Content-Type": "application/json"})
    assert_rejected(server, response, None, code)


def test_body_over_20_mib_is_413(server: Server, http: httpx.Client) -> None:
    body = request_body(messages=[{"role": "user", "content": "a" * (21 * MIB)}])
    response = http.post(URL, json=body)
    assert_rejected(server, response, None, "payload_too_large", status=413)


def test_chunked_body_over_20_mib_is_413(server: Server, http: httpx.Client) -> None:
    """No Content-Length to trust: the limit holds while the body streams in."""
    response = http.post(URL, content=_chunks(21 * MIB), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_rejected(server, response, None, "payload_too_large", status=413)


# ================================================================ valid boundary values are accepted

BOUNDARIES = [
    pytest.param({"temperature": 0}, id="temperature=0"),
    pytest.param({"temperature": 2}, id="temperature=2"),
    pytest.param({"top_p": 0}, id="top_p=0"),
    pytest.param({"top_p": 1}, id="top_p=1"),
    pytest.param({"top_k": 0}, id="top_k=0"),
    pytest.param({"top_k": 100}, id="top_k=100"),
    pytest.param({"min_p": 0}, id="min_p=0"),
    pytest.param({"min_p": 1}, id="min_p=1"),
    pytest.param({"repetition_penalty": 100}, id="repetition_penalty=100"),
    pytest.param({"repetition_penalty": 0.01}, id="repetition_penalty=0.01"),
    # above 0, yet 0 in float32, in which engines sample (llama.cpp refused it as "penalty_repeat must be > 0")
    pytest.param({"repetition_penalty": 1e-50}, id="repetition_penalty=1e-50"),
    pytest.param({"max_tokens": 1}, id="max_tokens=1"),
    pytest.param({"max_tokens": MISSING, "max_completion_tokens": 1}, id="max_completion_tokens=1"),
    pytest.param({"temperature": None, "top_p": None, "top_k": None, "stream": None}, id="nulls"),
]


@pytest.mark.parametrize("fields", BOUNDARIES)
def test_boundary_values_are_accepted(server: Server, http: httpx.Client, fields: dict[str, Any]) -> None:
    response = http.post(URL, json=request_body(**fields))
    assert_completion(response, max_tokens=1)
    assert not ignored(response)  # all of these are parameters qwen supports
    assert server.is_healthy()


@pytest.mark.parametrize("effort", ["none", "minimal", "low", "medium", "high", "xhigh"])
def test_every_reasoning_effort_is_accepted(server: Server, http: httpx.Client, effort: str) -> None:
    response = http.post(URL, json=request_body(reasoning_effort=effort))
    assert_completion(response, max_tokens=1)
    assert ignored(response) == {"reasoning_effort"}  # valid, but qwen does not honour it
    assert server.is_healthy()


def test_valid_template_kwargs_and_stream_options_are_accepted(server: Server, http: httpx.Client) -> None:
    response = http.post(URL, json=request_body(chat_template_kwargs={"thinking": False}, separate_reasoning=True,
                                                stream=False, stream_options={"include_usage": True}))
    assert_completion(response, max_tokens=1)
    assert ignored(response) == {"chat_template_kwargs", "separate_reasoning"}
    assert server.is_healthy()


# ================================================================ model-dependent checks


def test_unknown_model_is_404(server: Server, http: httpx.Client) -> None:
    response = http.post(URL, json=request_body(model="no-such-model"))
    error = assert_rejected(server, response, "model", "model_not_found", status=404)
    assert QWEN in error["message"]


@pytest.mark.parametrize(
    "part",
    [
        pytest.param({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}, id="image"),
        pytest.param({"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}}, id="video"),
    ],
)
def test_media_part_to_text_only_model_is_rejected(server: Server, http: httpx.Client, part: dict) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, part]}]
    response = http.post(URL, json=request_body(messages=messages))
    assert_rejected(server, response, "messages", "unsupported_modality")


def test_unsupported_and_unknown_params_are_ignored_and_listed(server: Server, http: httpx.Client) -> None:
    response = http.post(URL, json=request_body(reasoning_effort="low", foo=1))
    assert_completion(response, max_tokens=1)
    assert ignored(response) == {"reasoning_effort", "foo"}
    assert server.is_healthy()


def test_ignored_params_listed_on_streams_too(server: Server, http: httpx.Client) -> None:
    with http.stream("POST", URL, json=request_body(stream=True, reasoning_effort="low", foo=1)) as response:
        no_server_error(response)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert ignored(response) == {"reasoning_effort", "foo"}
        text = "".join(response.iter_text())
    assert text.rstrip().endswith("data: [DONE]")
    assert server.is_healthy()


def test_huge_max_tokens_is_a_context_error_not_a_crash(server: Server, http: httpx.Client) -> None:
    response = http.post(URL, json=request_body(max_tokens=10**20))
    assert_rejected(server, response, "messages", "context_length_exceeded")


# ================================================================ routes


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/completions", "/api/v2/chat/completions", "/nope"])
def test_unknown_route_is_404(server: Server, http: httpx.Client, path: str) -> None:
    response = http.post(path, json=request_body())
    assert_rejected(server, response, None, "not_found", status=404)
    response = http.get(path)
    assert_rejected(server, response, None, "not_found", status=404)


def test_posting_to_the_console_is_405(server: Server, http: httpx.Client) -> None:
    response = http.post("/", json=request_body())  # GET / is the console
    assert_rejected(server, response, None, "method_not_allowed", status=405)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/api/v1/chat/completions", "/v1/chat/completions"])
def test_wrong_method_is_405(server: Server, http: httpx.Client, method: str, path: str) -> None:
    response = http.request(method, path)
    assert_rejected(server, response, None, "method_not_allowed", status=405)


@pytest.mark.parametrize("name", ["日本", "a\r\nX-Evil: 1", "tab\there"])
def test_odd_unknown_field_names_are_escaped_in_the_ignored_header(http: httpx.Client, name: str) -> None:
    for stream in (False, True):
        response = http.post("/api/v1/chat/completions", json={
            "model": "qwen2.5-coder-0.5b-instruct", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 1, "stream": stream, name: 1})
        assert response.status_code == 200, response.text
        header = response.headers["x-inferd-ignored-params"]
        assert header == json.dumps(name)[1:-1] and "x-evil" not in response.headers
