"""Validation of the OpenAI extras against the real server: each bad value is a 400 naming its ``param``
(type, range, shape, unsupported schema feature), and the server stays healthy; boundary values pass.

Generations here ask for 1 token.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ..conftest import GEMMA, QWEN, assert_error
from ..harness import Server

URL = "/api/v1/chat/completions"
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": QWEN, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, **fields}


def schema_format(schema: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, **extra}}


BAD = [
    # (fields, param, code)
    ({"stop": 5}, "stop", "invalid_type"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
    ({"stop": ["a", 1]}, "stop[1]", "invalid_type"),
    ({"stop": ""}, "stop", "invalid_value"),
    ({"stop": ["ok", ""]}, "stop[1]", "invalid_value"),
    ({"seed": 1.5}, "seed", "invalid_type"),
    ({"seed": "1"}, "seed", "invalid_type"),
    ({"seed": True}, "seed", "invalid_type"),
    ({"seed": -1}, "seed", "invalid_value"),
    ({"seed": 2**32 - 1}, "seed", "invalid_value"),
    ({"n": 0}, "n", "invalid_value"),
    ({"n": 9}, "n", "invalid_value"),
    ({"n": 2.0}, "n", "invalid_type"),
    ({"logprobs": 1}, "logprobs", "invalid_type"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "invalid_value"),
    ({"logprobs": True, "top_logprobs": -1}, "top_logprobs", "invalid_value"),
    ({"logprobs": True, "top_logprobs": "5"}, "top_logprobs", "invalid_type"),
    ({"top_logprobs": 2}, "top_logprobs", "invalid_value"),
    ({"logprobs": False, "top_logprobs": 2}, "top_logprobs", "invalid_value"),
    ({"presence_penalty": 2.5}, "presence_penalty", "invalid_value"),
    ({"presence_penalty": -2.01}, "presence_penalty", "invalid_value"),
    ({"frequency_penalty": "high"}, "frequency_penalty", "invalid_type"),
    ({"frequency_penalty": 3}, "frequency_penalty", "invalid_value"),
    ({"logit_bias": [1, 2]}, "logit_bias", "invalid_type"),
    ({"logit_bias": {"abc": 1}}, "logit_bias", "invalid_value"),
    ({"logit_bias": {"-5": 1}}, "logit_bias", "invalid_value"),
    ({"logit_bias": {"15": 101}}, "logit_bias.15", "invalid_value"),
    ({"logit_bias": {"15": "1"}}, "logit_bias.15", "invalid_type"),
    ({"logit_bias": {"99999999": 5}}, "logit_bias", "invalid_value"),  # beyond the model's vocabulary
    ({"response_format": "json"}, "response_format", "invalid_type"),
    ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_value"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema", "invalid_type"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}, "response_format.json_schema.name",
     "invalid_value"),
    ({"response_format": schema_format({"type": "object"}, strict="yes")}, "response_format.json_schema.strict",
     "invalid_type"),
    ({"response_format": schema_format([1])}, "response_format.json_schema.schema", "invalid_type"),
    ({"response_format": schema_format({"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}})},
     "response_format.json_schema.schema.properties.age.minimum", "unsupported_schema"),
    ({"response_format": schema_format({"type": "string", "pattern": "^a$"})},
     "response_format.json_schema.schema.pattern", "unsupported_schema"),
    ({"response_format": schema_format({"oneOf": [{"type": "string"}]})}, "response_format.json_schema.schema.oneOf",
     "unsupported_schema"),
    ({"tools": {"type": "function"}}, "tools", "invalid_type"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0].type", "invalid_value"),
    ({"tools": [{"type": "function"}]}, "tools[0].function", "invalid_type"),
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools[0].function.name", "invalid_value"),
    ({"tools": [TOOL, TOOL]}, "tools[1].function.name", "invalid_value"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "when": {"type": "string", "format": "email"}}}}}]}, "tools[0].function.parameters.properties.when.format",
     "unsupported_schema"),
    ({"tools": [TOOL], "tool_choice": "always"}, "tool_choice", "invalid_value"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}},
     "tool_choice.function.name", "invalid_value"),
    ({"tools": [TOOL], "tool_choice": {"type": "function"}}, "tool_choice", "invalid_value"),
    ({"tool_choice": "required"}, "tool_choice", "invalid_value"),
    ({"tools": [TOOL], "parallel_tool_calls": "yes"}, "parallel_tool_calls", "invalid_type"),
    ({"tools": [TOOL], "response_format": {"type": "json_object"}}, "response_format", "invalid_value"),
    ({"ignore_eos": 1}, "ignore_eos", "invalid_type"),
    ({"user": 42}, "user", "invalid_type"),
    ({"user": "u" * 257}, "user", "invalid_value"),
]


# streamed requests take the same validation path: a few of them show it
STREAMED = [case for case in BAD if case[1].split("[")[0].split(".")[0] in ("stop", "n", "tools", "logit_bias")]


@pytest.mark.parametrize("fields,param,code", BAD, ids=[f"{p}-{i}" for i, (_, p, _) in enumerate(BAD)])
def test_bad_extras_are_400_naming_the_param(server: Server, http: httpx.Client, fields: dict, param: str,
                                             code: str) -> None:
    response = http.post(URL, json=body(**fields))
    assert_error(response, 400, "invalid_request_error", param, code)
    assert server.is_healthy()


@pytest.mark.parametrize("fields,param,code", STREAMED, ids=[f"{p}-{i}" for i, (_, p, _) in enumerate(STREAMED)])
def test_bad_extras_in_streams_are_400_before_the_stream(server: Server, http: httpx.Client, fields: dict,
                                                         param: str, code: str) -> None:
    response = http.post(URL, json=body(stream=True, **fields))
    assert_error(response, 400, "invalid_request_error", param, code)
    assert server.is_healthy()


GOOD = [{"stop": "x"}, {"stop": ["a", "b", "c", "d"]}, {"seed": 0}, {"seed": 2**32 - 2}, {"n": 1}, {"n": 8},
        {"logprobs": True, "top_logprobs": 0}, {"logprobs": True, "top_logprobs": 20}, {"logprobs": False},
        {"presence_penalty": -2}, {"frequency_penalty": 2}, {"logit_bias": {"0": -100, "151935": 100}},
        {"response_format": {"type": "text"}}, {"response_format": {"type": "json_object"}},
        {"tools": [TOOL], "tool_choice": "none"}, {"tools": [TOOL], "parallel_tool_calls": False},
        {"ignore_eos": True}, {"user": "alice"}, {"stop": None, "seed": None, "n": None}]


@pytest.mark.parametrize("fields", GOOD, ids=[",".join(g) for g in GOOD])
def test_boundary_values_are_honoured(http: httpx.Client, fields: dict) -> None:
    response = http.post(URL, json=body(**fields))
    assert response.status_code == 200, response.text
    assert "x-inferd-ignored-params" not in response.headers
    assert len(response.json()["choices"]) == (fields.get("n") or 1)


def test_every_extra_is_listed_per_model(http: httpx.Client) -> None:
    for model in (QWEN, GEMMA):
        listed = set(http.get(f"/api/v1/models/{model}").json()["supported_parameters"])
        assert {"stop", "seed", "n", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty",
                "logit_bias", "response_format", "tools", "tool_choice", "parallel_tool_calls", "ignore_eos",
                "user"} <= listed
