"""Unit tests of the chat-completions wire schema (``parse_chat_request``): no server involved."""

from __future__ import annotations

import math
from typing import Any

import pytest

from inferd.api.schemas import EFFORTS, ChatRequest, parse_chat_request
from inferd.errors import InvalidRequest

MODEL = "qwen2.5-coder-0.5b-instruct"
USER = [{"role": "user", "content": "hi"}]


def body(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": USER, **fields}


def rejected(request_body: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(request_body)
    error = caught.value
    assert error.status == 400 and error.type == "invalid_request_error"
    assert error.message
    return error


# ---------------------------------------------------------------- accepted shapes


def test_minimal_request_defaults() -> None:
    chat = parse_chat_request(body())
    assert isinstance(chat, ChatRequest)
    assert chat.model == MODEL
    assert chat.messages == USER
    assert chat.stream is False and chat.include_usage is False
    assert chat.params == {}
    assert chat.unknown == ()
    assert chat.modalities == {"text"}


def test_string_content_in_every_role() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "tool", "content": "42"},
        {"role": "user", "content": ""},
    ]
    assert parse_chat_request(body(messages=messages)).messages == messages


def test_text_part_arrays() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": ""}]}]
    chat = parse_chat_request(body(messages=messages))
    assert chat.messages == messages
    assert chat.modalities == {"text"}


def test_assistant_with_null_content_is_accepted() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None},
                {"role": "user", "content": "again"}]
    assert parse_chat_request(body(messages=messages)).messages == messages


def test_assistant_without_content_key_is_accepted() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": []}]
    assert parse_chat_request(body(messages=messages)).messages == messages


@pytest.mark.parametrize("role", ["user", "system", "tool"])
def test_null_content_only_allowed_for_assistant(role: str) -> None:
    error = rejected(body(messages=[{"role": role, "content": None}]))
    assert error.param == "messages[0].content"


def test_null_optional_params_are_treated_as_absent() -> None:
    nulls = {name: None for name in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_tokens",
                                     "reasoning_effort", "separate_reasoning", "chat_template_kwargs", "stream",
                                     "stream_options", "max_completion_tokens")}
    chat = parse_chat_request(body(**nulls))
    assert chat.params == {}
    assert chat.stream is False and chat.include_usage is False
    assert chat.unknown == ()


def test_seed_params_are_kept_with_their_values() -> None:
    given = {"temperature": 0, "top_p": 1, "top_k": 100, "min_p": 0.5, "repetition_penalty": 1.1,
             "max_tokens": 7, "reasoning_effort": "high", "separate_reasoning": True,
             "chat_template_kwargs": {"thinking": False, "other": [1]}}
    chat = parse_chat_request(body(**given))
    assert chat.params == given
    # numbers come back as floats, integers as ints
    assert isinstance(chat.params["temperature"], float) and isinstance(chat.params["top_p"], float)
    assert type(chat.params["top_k"]) is int and type(chat.params["max_tokens"]) is int
    assert chat.unknown == ()


def test_max_completion_tokens_used_when_max_tokens_absent() -> None:
    chat = parse_chat_request(body(max_completion_tokens=12))
    assert chat.params == {"max_tokens": 12}
    assert chat.unknown == ()  # part of the contract, never reported as ignored


def test_max_tokens_wins_over_max_completion_tokens() -> None:
    assert parse_chat_request(body(max_tokens=3, max_completion_tokens=12)).params == {"max_tokens": 3}


def test_max_completion_tokens_when_max_tokens_null() -> None:
    assert parse_chat_request(body(max_tokens=None, max_completion_tokens=5)).params == {"max_tokens": 5}


def test_stream_and_usage() -> None:
    chat = parse_chat_request(body(stream=True, stream_options={"include_usage": True}))
    assert chat.stream is True and chat.include_usage is True
    chat = parse_chat_request(body(stream=True, stream_options={}))
    assert chat.stream is True and chat.include_usage is False
    chat = parse_chat_request(body(stream=False, stream_options={"include_usage": None}))
    assert chat.stream is False and chat.include_usage is False


@pytest.mark.parametrize("value", EFFORTS)
def test_every_reasoning_effort(value: str) -> None:
    assert parse_chat_request(body(reasoning_effort=value)).params == {"reasoning_effort": value}


def test_chat_template_kwargs_null_thinking_is_allowed() -> None:
    assert parse_chat_request(body(chat_template_kwargs={"thinking": None})).params == {
        "chat_template_kwargs": {"thinking": None}}


# ---------------------------------------------------------------- modalities


def test_modalities_from_media_parts() -> None:
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "user", "content": [{"type": "video_url", "video_url": {"url": "https://example.invalid/v.mp4"}}]},
    ]
    assert parse_chat_request(body(messages=messages)).modalities == {"text", "image", "video"}


def test_modalities_image_only() -> None:
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,A"}}]}]
    assert parse_chat_request(body(messages=messages)).modalities == {"text", "image"}


# ---------------------------------------------------------------- unknown fields


def test_unknown_fields_listed_in_order() -> None:
    chat = parse_chat_request({"foo": 1, "model": MODEL, "messages": USER, "best_of": 2, "temperature": 1,
                               "stream": False, "logprobs": None, "metadata": {}})
    assert chat.unknown == ("foo", "best_of", "metadata")
    assert chat.params == {"temperature": 1.0}  # logprobs: null is as if absent


def test_envelope_fields_are_not_unknown() -> None:
    chat = parse_chat_request(body(stream=True, stream_options={"include_usage": True}, max_completion_tokens=4))
    assert chat.unknown == ()


# ---------------------------------------------------------------- rejections with their param path


@pytest.mark.parametrize(
    ("request_body", "param", "code"),
    [
        pytest.param([], None, "invalid_type", id="array-body"),
        pytest.param("hi", None, "invalid_type", id="string-body"),
        pytest.param(None, None, "invalid_type", id="null-body"),
        pytest.param({"messages": USER}, "model", "missing_required_parameter", id="model-missing"),
        pytest.param({"model": 1, "messages": USER}, "model", "invalid_type", id="model-int"),
        pytest.param({"model": "", "messages": USER}, "model", "invalid_type", id="model-empty"),
        pytest.param({"model": MODEL}, "messages", "missing_required_parameter", id="messages-missing"),
        pytest.param({"model": MODEL, "messages": []}, "messages", "invalid_value", id="messages-empty"),
        pytest.param({"model": MODEL, "messages": "hi"}, "messages", "invalid_type", id="messages-string"),
        pytest.param(body(messages=[1]), "messages[0]", "invalid_type", id="message-int"),
        pytest.param(body(messages=[{"role": "robot", "content": "x"}]), "messages[0].role", None, id="bad-role"),
        pytest.param(body(messages=[{"content": "x"}]), "messages[0].role", None, id="role-missing"),
        pytest.param(body(messages=[{"role": "user"}]), "messages[0].content", "invalid_type", id="content-missing"),
        pytest.param(body(messages=[{"role": "user", "content": 5}]), "messages[0].content", "invalid_type",
                     id="content-int"),
        pytest.param(body(messages=[{"role": "user", "content": {"type": "text", "text": "x"}}]),
                     "messages[0].content", "invalid_type", id="content-object"),
        pytest.param(body(messages=[{"role": "user", "content": [{"type": "audio", "audio": "x"}]}]),
                     "messages[0].content[0].type", None, id="part-type"),
        pytest.param(body(messages=[{"role": "user", "content": ["text"]}]),
                     "messages[0].content[0].type", None, id="part-string"),
        pytest.param(body(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text"}]}]),
                     "messages[0].content[1].text", "invalid_type", id="part-text-missing"),
        pytest.param(body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
                     "messages[0].content[0].image_url.url", "invalid_type", id="image-url-missing"),
        pytest.param(body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": "data:x"}]}]),
                     "messages[0].content[0].image_url.url", "invalid_type", id="image-url-string"),
        pytest.param(body(messages=[{"role": "user", "content": [{"type": "video_url", "video_url": {"url": ""}}]}]),
                     "messages[0].content[0].video_url.url", "invalid_type", id="video-url-empty"),
        pytest.param(body(messages=[{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]),
                     "messages[1].role", None, id="second-message"),
        pytest.param(body(temperature=2.01), "temperature", "invalid_value", id="temperature-high"),
        pytest.param(body(temperature=-0.1), "temperature", "invalid_value", id="temperature-low"),
        pytest.param(body(temperature="1"), "temperature", "invalid_type", id="temperature-string"),
        pytest.param(body(temperature=True), "temperature", "invalid_type", id="temperature-bool"),
        pytest.param(body(temperature=math.nan), "temperature", "invalid_type", id="temperature-nan"),
        pytest.param(body(top_p=math.inf), "top_p", "invalid_type", id="top_p-inf"),
        pytest.param(body(top_k=1.5), "top_k", "invalid_type", id="top_k-float"),
        pytest.param(body(top_k=101), "top_k", "invalid_value", id="top_k-high"),
        pytest.param(body(top_k=False), "top_k", "invalid_type", id="top_k-bool"),
        pytest.param(body(min_p=1.01), "min_p", "invalid_value", id="min_p-high"),
        pytest.param(body(repetition_penalty=0), "repetition_penalty", "invalid_value", id="rep-zero"),
        pytest.param(body(repetition_penalty=100.5), "repetition_penalty", "invalid_value", id="rep-high"),
        pytest.param(body(max_tokens=0), "max_tokens", "invalid_value", id="max_tokens-zero"),
        pytest.param(body(max_tokens=2.0), "max_tokens", "invalid_type", id="max_tokens-float"),
        pytest.param(body(max_completion_tokens=0), "max_completion_tokens", "invalid_value", id="mct-zero"),
        pytest.param(body(max_completion_tokens="3"), "max_completion_tokens", "invalid_type", id="mct-string"),
        pytest.param(body(max_tokens=3, max_completion_tokens=0), "max_completion_tokens", "invalid_value",
                     id="mct-zero-beside-max_tokens"),
        pytest.param(body(reasoning_effort="HIGH"), "reasoning_effort", "invalid_value", id="effort-case"),
        pytest.param(body(reasoning_effort=["low"]), "reasoning_effort", "invalid_value", id="effort-list"),
        pytest.param(body(separate_reasoning="yes"), "separate_reasoning", "invalid_type", id="separate-string"),
        pytest.param(body(chat_template_kwargs=[]), "chat_template_kwargs", "invalid_type", id="ctk-list"),
        pytest.param(body(chat_template_kwargs={"thinking": 1}), "chat_template_kwargs.thinking", "invalid_type",
                     id="ctk-thinking"),
        pytest.param(body(stream="true"), "stream", "invalid_type", id="stream-string"),
        pytest.param(body(stream_options=[]), "stream_options", "invalid_type", id="stream_options-list"),
        pytest.param(body(stream_options={"include_usage": 1}), "stream_options.include_usage", "invalid_type",
                     id="include_usage-int"),
    ],
)
def test_rejections_name_the_param(request_body: Any, param: str | None, code: str | None) -> None:
    error = rejected(request_body)
    assert error.param == param
    if code is not None:
        assert error.code == code
    assert error.body() == {"error": {"message": error.message, "type": "invalid_request_error",
                                      "param": param, "code": error.code}}


def test_long_values_are_shortened_in_messages() -> None:
    error = rejected(body(reasoning_effort="x" * 500))
    assert len(error.message) < 200
