"""Wire schema of the OpenAI extras: stop, seed, n, logprobs, penalties, logit_bias, response_format,
tools, tool_choice, parallel_tool_calls, ignore_eos, user. Types and ranges only, checked exactly;
every failure is an ``InvalidRequest`` naming the ``param``. Whether a model honours a field, and what
a JSON schema may contain, is decided later (the library and ``chat/structured``).
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

from ..errors import InvalidRequest

MAX_STOPS = 4
MAX_N = 8
MAX_TOP_LOGPROBS = 20
MAX_LOGIT_BIAS = 300  # entries, as OpenAI
MAX_SEED = 2**32 - 2  # llama.cpp's seeds are 32-bit and 2**32 - 1 means "random"
MAX_TOOLS = 128
MAX_USER = 256
MAX_PENALTY = 2.0  # presence_penalty and frequency_penalty lie in [-MAX_PENALTY, MAX_PENALTY]
MAX_BIAS = 100.0  # a logit_bias value lies in [-MAX_BIAS, MAX_BIAS]
MAX_TOKEN_ID_DIGITS = 9
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # function and schema names, as OpenAI
FORMATS = ("text", "json_object", "json_schema")
TOOL_CHOICES = ("none", "auto", "required")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _bad_type(name: str, what: str, value: Any) -> InvalidRequest:
    return InvalidRequest(f"'{name}' must be {what}, got {_show(value)}.", param=name, code="invalid_type")


def _int(name: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad_type(name, "an integer", value)
    if not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be between {low} and {high}, got {value}.", param=name)
    return value


def _num(name: str, value: Any, low: float, high: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise _bad_type(name, "a number", value)
    if not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be in [{low:g}, {high:g}], got {value}.", param=name)
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad_type(name, "a boolean", value)
    return value


def _object(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad_type(name, "an object", value)
    return value


def stop(name: str, value: Any) -> tuple[str, ...]:
    """A string or an array of up to 4 non-empty strings."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise _bad_type(name, "a string or an array of strings", value)
    if len(items) > MAX_STOPS:
        raise InvalidRequest(f"'{name}' takes at most {MAX_STOPS} strings, got {len(items)}.", param=name)
    for i, item in enumerate(items):
        path = name if isinstance(value, str) else f"{name}[{i}]"
        if not isinstance(item, str):
            raise _bad_type(path, "a string", item)
        if not item:
            raise InvalidRequest(f"'{path}' must not be empty.", param=path)
    return tuple(dict.fromkeys(items))


def seed(name: str, value: Any) -> int:
    return _int(name, value, 0, MAX_SEED)


def n(name: str, value: Any) -> int:
    return _int(name, value, 1, MAX_N)


def top_logprobs(name: str, value: Any) -> int:
    return _int(name, value, 0, MAX_TOP_LOGPROBS)


def penalty(name: str, value: Any) -> float:
    return _num(name, value, -MAX_PENALTY, MAX_PENALTY)


def logit_bias(name: str, value: Any) -> dict[int, float]:
    """Token id (a decimal string, as JSON object keys are) -> bias in [-100, 100]."""
    _object(name, value)
    if len(value) > MAX_LOGIT_BIAS:
        raise InvalidRequest(f"'{name}' takes at most {MAX_LOGIT_BIAS} tokens, got {len(value)}.", param=name)
    biases: dict[int, float] = {}
    for key, bias in value.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= MAX_TOKEN_ID_DIGITS):
            raise InvalidRequest(f"'{name}' keys must be token ids (non-negative integers), got {_show(key)}.",
                                 param=name)
        biases[int(key)] = _num(f"{name}.{key}", bias, -MAX_BIAS, MAX_BIAS)
    return biases


def response_format(name: str, value: Any) -> dict[str, Any]:
    _object(name, value)
    kind = value.get("type")
    if kind not in FORMATS:
        raise InvalidRequest(f"'{name}.type' must be one of {', '.join(FORMATS)}; got {_show(kind)}.",
                             param=f"{name}.type")
    if kind != "json_schema":
        return {"type": kind}
    spec = _object(f"{name}.json_schema", value.get("json_schema"))
    if not isinstance(spec.get("name"), str) or not NAME.match(spec["name"]):
        raise InvalidRequest(f"'{name}.json_schema.name' must be a string of 1 to 64 letters, digits, '_' or '-'.",
                             param=f"{name}.json_schema.name")
    schema = _object(f"{name}.json_schema.schema", spec.get("schema", {}))
    strict = _bool(f"{name}.json_schema.strict", spec["strict"]) if spec.get("strict") is not None else False
    return {"type": kind, "json_schema": {"name": spec["name"], "schema": schema, "strict": strict}}


def tools(name: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _bad_type(name, "an array of tools", value)
    if len(value) > MAX_TOOLS:
        raise InvalidRequest(f"'{name}' takes at most {MAX_TOOLS} tools, got {len(value)}.", param=name)
    checked = [_tool(f"{name}[{i}]", tool) for i, tool in enumerate(value)]
    names = [t["function"]["name"] for t in checked]
    for i, tool_name in enumerate(names):
        if tool_name in names[:i]:
            raise InvalidRequest(f"'{name}[{i}].function.name': the name '{tool_name}' is given twice.",
                                 param=f"{name}[{i}].function.name")
    return checked


def _tool(path: str, tool: Any) -> dict[str, Any]:
    _object(path, tool)
    if tool.get("type", "function") != "function":
        raise InvalidRequest(f"'{path}.type' must be 'function'; got {_show(tool.get('type'))}.", param=f"{path}.type")
    function = _object(f"{path}.function", tool.get("function"))
    if not isinstance(function.get("name"), str) or not NAME.match(function["name"]):
        raise InvalidRequest(f"'{path}.function.name' must be a string of 1 to 64 letters, digits, '_' or '-'.",
                             param=f"{path}.function.name")
    checked: dict[str, Any] = {"name": function["name"]}
    if function.get("description") is not None:
        if not isinstance(function["description"], str):
            raise _bad_type(f"{path}.function.description", "a string", function["description"])
        checked["description"] = function["description"]
    checked["parameters"] = _object(f"{path}.function.parameters", function.get("parameters") or
                                    {"type": "object", "properties": {}})
    if function.get("strict") is not None:
        checked["strict"] = _bool(f"{path}.function.strict", function["strict"])
    return {"type": "function", "function": checked}


def tool_choice(name: str, value: Any) -> str | dict[str, Any]:
    if isinstance(value, str):
        if value not in TOOL_CHOICES:
            raise InvalidRequest(f"'{name}' must be one of {', '.join(TOOL_CHOICES)} or "
                                 "{\"type\": \"function\", \"function\": {\"name\": ...}}; got "
                                 f"{_show(value)}.", param=name)
        return value
    _object(name, value)
    function = value.get("function")
    if value.get("type") != "function" or not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise InvalidRequest(f"'{name}' must name a function: {{\"type\": \"function\", \"function\": "
                             "{\"name\": ...}}.", param=name)
    return {"type": "function", "function": {"name": function["name"]}}


def user(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _bad_type(name, "a string", value)
    if len(value) > MAX_USER:
        raise InvalidRequest(f"'{name}' must be at most {MAX_USER} characters, got {len(value)}.", param=name)
    return value


EXTRA_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "stop": stop,
    "seed": seed,
    "n": n,
    "logprobs": _bool,
    "top_logprobs": top_logprobs,
    "presence_penalty": penalty,
    "frequency_penalty": penalty,
    "logit_bias": logit_bias,
    "response_format": response_format,
    "tools": tools,
    "tool_choice": tool_choice,
    "parallel_tool_calls": _bool,
    "ignore_eos": _bool,
    "user": user,
}


def check_together(params: dict[str, Any]) -> None:
    """Rules between fields: top_logprobs needs logprobs; a named tool_choice names a given tool."""
    if "top_logprobs" in params and not params.get("logprobs"):
        raise InvalidRequest("'top_logprobs' requires 'logprobs': true.", param="top_logprobs")
    choice = params.get("tool_choice")
    given = [t["function"]["name"] for t in params.get("tools") or ()]
    if choice is not None and choice != "none" and not given:
        raise InvalidRequest("'tool_choice' needs 'tools'.", param="tool_choice")
    if isinstance(choice, dict) and choice["function"]["name"] not in given:
        raise InvalidRequest(f"'tool_choice.function.name': no tool named '{choice['function']['name']}' in "
                             f"'tools' (given: {', '.join(given)}).", param="tool_choice.function.name")
