"""Wire schema of POST /chat/completions: the seed contract's types and ranges, checked exactly.

Every failure raises ``InvalidRequest`` naming the offending ``param`` (a field path such as
``messages[0].content``). Nothing here knows about models or engines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import InvalidRequest
from .extras import EXTRA_FIELDS, check_together

ROLES = ("system", "user", "assistant", "tool")
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
PART_TYPES = ("text", "image_url", "video_url")
# fields the contract itself handles; any other top-level field is reported as ignored
ENVELOPE = ("model", "messages", "stream", "stream_options", "max_completion_tokens")


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    params: dict[str, Any] = field(default_factory=dict)  # seed parameters and OpenAI extras the client gave
    unknown: tuple[str, ...] = ()  # top-level fields outside the contract

    @property
    def user(self) -> str | None:
        """The end user the client names (OpenAI's ``user``), for the usage record."""
        return self.params.get("user")

    @property
    def modalities(self) -> set[str]:
        kinds = {"text"}
        for message in self.messages:
            if isinstance(message.get("content"), list):
                kinds.update(p["type"].removesuffix("_url") for p in message["content"])
        return kinds


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(low: float, high: float, *, low_open: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> float:
        if not _is_number(value):
            raise InvalidRequest(f"'{name}' must be a number, got {_show(value)}.", param=name, code="invalid_type")
        if value < low or value > high or (low_open and value == low):
            bracket = "(" if low_open else "["
            raise InvalidRequest(f"'{name}' must be in {bracket}{low:g}, {high:g}], got {value}.", param=name)
        return float(value)
    # the OpenAPI document states the range checked here (api/openapi_schemas.py)
    lower = "exclusiveMinimum" if low_open else "minimum"
    check.json_schema = {"type": "number", lower: low, "maximum": high}  # type: ignore[attr-defined]
    return check


def integer(low: int, high: int | None = None) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidRequest(f"'{name}' must be an integer, got {_show(value)}.", param=name, code="invalid_type")
        if value < low or (high is not None and value > high):
            limit = f"between {low} and {high}" if high is not None else f">= {low}"
            raise InvalidRequest(f"'{name}' must be {limit}, got {value}.", param=name)
        return value
    bounds = {"minimum": low, **({"maximum": high} if high is not None else {})}
    check.json_schema = {"type": "integer", **bounds}  # type: ignore[attr-defined]
    return check


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be a boolean, got {_show(value)}.", param=name, code="invalid_type")
    return value


def effort(name: str, value: Any) -> str:
    if value not in EFFORTS:
        raise InvalidRequest(f"'{name}' must be one of {', '.join(EFFORTS)}; got {_show(value)}.", param=name)
    return value


def template_kwargs(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{name}' must be an object, got {_show(value)}.", param=name, code="invalid_type")
    if "thinking" in value and value["thinking"] is not None:
        boolean(f"{name}.thinking", value["thinking"])
    return value


SEED_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "temperature": number(0, 2),
    "top_p": number(0, 1),
    "top_k": integer(0, 100),
    "min_p": number(0, 1),
    "repetition_penalty": number(0, 100, low_open=True),
    "max_tokens": integer(1),
    "reasoning_effort": effort,
    "separate_reasoning": boolean,
    "chat_template_kwargs": template_kwargs,
}

FIELDS = {**SEED_FIELDS, **EXTRA_FIELDS}


def parse_chat_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required: a model id from GET /api/v1/models.", param="model",
                             code="missing_required_parameter" if model is None else "invalid_type")
    params = {name: check(name, body[name]) for name, check in FIELDS.items() if body.get(name) is not None}
    check_together(params)
    if body.get("max_completion_tokens") is not None:
        params.setdefault("max_tokens", integer(1)("max_completion_tokens", body["max_completion_tokens"]))
    return ChatRequest(
        model=model,
        messages=_messages(body.get("messages")),
        stream=boolean("stream", body["stream"]) if body.get("stream") is not None else False,
        include_usage=_include_usage(body.get("stream_options")),
        params=params,
        unknown=tuple(k for k in body if k not in FIELDS and k not in ENVELOPE),
    )


def _include_usage(options: Any) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options", code="invalid_type")
    value = options.get("include_usage")
    return boolean("stream_options.include_usage", value) if value is not None else False


def _messages(messages: Any) -> list[dict[str, Any]]:
    if messages is None:
        raise InvalidRequest("'messages' is required: a non-empty array of messages.", param="messages",
                             code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages",
                             code="invalid_type" if not isinstance(messages, list) else "invalid_value")
    return [_message(f"messages[{i}]", message) for i, message in enumerate(messages)]


MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id")


def _message(path: str, message: Any) -> dict[str, Any]:
    """A checked copy holding only the fields the contract knows (others are dropped)."""
    _message_fields(path, message)
    checked = {k: message[k] for k in MESSAGE_FIELDS if message.get(k) is not None or k == "content" and k in message}
    if "tool_calls" in checked:  # "type" may be left out (it can only be "function"); chat templates need it
        checked["tool_calls"] = [{**call, "type": "function"} for call in checked["tool_calls"]]
    return checked


def _message_fields(path: str, message: Any) -> None:
    if not isinstance(message, dict):
        raise InvalidRequest(f"'{path}' must be an object with 'role' and 'content'.", param=path, code="invalid_type")
    role = message.get("role")
    if role not in ROLES:
        raise InvalidRequest(f"'{path}.role' must be one of {', '.join(ROLES)}; got {_show(role)}.",
                             param=f"{path}.role")
    for name in ("name", "tool_call_id"):
        if message.get(name) is not None and not isinstance(message[name], str):
            raise InvalidRequest(f"'{path}.{name}' must be a string.", param=f"{path}.{name}", code="invalid_type")
    if message.get("tool_calls") is not None:
        _tool_calls(f"{path}.tool_calls", message["tool_calls"])
    content = message.get("content")
    if content is None and role == "assistant":
        return  # an assistant turn may carry only tool calls
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(f"'{path}.content' must be a string or an array of content parts.",
                             param=f"{path}.content", code="invalid_type")
    for j, part in enumerate(content):
        _part(f"{path}.content[{j}]", part)
        if part["type"] != "text" and role != "user":
            raise InvalidRequest(f"'{path}.content[{j}]': {part['type']} parts are accepted in user messages only.",
                                 param=f"{path}.content[{j}].type")


def _tool_calls(path: str, calls: Any) -> None:
    if not isinstance(calls, list):
        raise InvalidRequest(f"'{path}' must be an array of tool calls.", param=path, code="invalid_type")
    for k, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if (not isinstance(function, dict) or call.get("type", "function") != "function"
                or not isinstance(function.get("name"), str) or not isinstance(function.get("arguments"), str)):
            raise InvalidRequest(f"'{path}[{k}]' must be {{\"type\": \"function\", \"id\": ..., \"function\": "
                                 "{\"name\": string, \"arguments\": string}}.", param=f"{path}[{k}]")


def _part(path: str, part: Any) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind not in PART_TYPES:
        raise InvalidRequest(f"'{path}.type' must be one of {', '.join(PART_TYPES)}; got {_show(kind)}.",
                             param=f"{path}.type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise InvalidRequest(f"'{path}.text' must be a string.", param=f"{path}.text", code="invalid_type")
        return
    media = part.get(kind)
    if not isinstance(media, dict) or not isinstance(media.get("url"), str) or not media["url"]:
        raise InvalidRequest(f"'{path}.{kind}.url' must be a non-empty string (a data: or http(s) URL).",
                             param=f"{path}.{kind}.url", code="invalid_type")
    for name, check in MEDIA_FIELDS[kind].items():
        if media.get(name) is not None:
            check(f"{path}.{kind}.{name}", media[name])


def _detail(name: str, value: Any) -> str:
    if value not in DETAILS:
        raise InvalidRequest(f"'{name}' must be one of {', '.join(DETAILS)}; got {_show(value)}.", param=name)
    return value


DETAILS = ("auto", "low", "high")
MEDIA_FIELDS: dict[str, dict[str, Callable[[str, Any], Any]]] = {
    "image_url": {"detail": _detail},
    # per-request frame sampling; max_frames above the server's maximum is clamped, not refused
    "video_url": {"fps": number(0, 60, low_open=True), "max_frames": integer(1)},
}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
