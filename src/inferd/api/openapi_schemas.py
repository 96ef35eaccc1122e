"""JSON Schemas of the OpenAPI document: requests as the validators check them, responses as they are built.

Ranges come from the validators themselves (``number``/``integer`` carry their ``json_schema``) and from
the constants they check against; ``chat_request`` fails if a validated field has no schema here, so the
document cannot fall behind the validator.
"""

from __future__ import annotations

from typing import Any, Callable

from ..provider.keyspec import NAME_MAX, RATE_FIELDS
from ..provider.reports import COLUMNS, FORMATS
from ..store.records import PERIODS
from ..store.reports import GROUPS
from . import extras as x
from .schemas import DETAILS, EFFORTS, FIELDS, MEDIA_FIELDS, ROLES

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema], required: tuple[str, ...] = (), **more: Any) -> Schema:
    return {"type": "object", "properties": properties, **({"required": list(required)} if required else {}), **more}


STRING: Schema = {"type": "string"}
BOOLEAN: Schema = {"type": "boolean"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
NAME: Schema = {"type": "string", "pattern": x.NAME.pattern}
FUNCTION_CALL = obj({"name": STRING, "arguments": STRING}, ("name", "arguments"))


def _range(check: Callable[..., Any], **more: Any) -> Schema:
    return {**check.json_schema, **more}  # type: ignore[attr-defined]


# every field the chat validator checks (api/schemas.FIELDS), with the seed's defaults
EXTRA_SCHEMAS: dict[str, Schema] = {
    "reasoning_effort": {"enum": list(EFFORTS), "default": "medium",
                         "description": "On reasoning models; the model card lists what each effort does."},
    "separate_reasoning": {**BOOLEAN, "description": "Reasoning in its own message field instead of inline."},
    "chat_template_kwargs": obj({"thinking": {**BOOLEAN, "description": "Ask a hybrid model to think (or not)."}},
                                description="Passed to the model's chat template.", additionalProperties=True),
    "stop": {"oneOf": [{"type": "string", "minLength": 1},
                       {"type": "array", "maxItems": x.MAX_STOPS, "items": {"type": "string", "minLength": 1}}]},
    "seed": {"type": "integer", "minimum": 0, "maximum": x.MAX_SEED},
    "n": {"type": "integer", "minimum": 1, "maximum": x.MAX_N, "default": 1},
    "logprobs": {**BOOLEAN, "default": False},
    "top_logprobs": {"type": "integer", "minimum": 0, "maximum": x.MAX_TOP_LOGPROBS,
                     "description": "Needs logprobs: true."},
    "presence_penalty": {"type": "number", "minimum": -x.MAX_PENALTY, "maximum": x.MAX_PENALTY, "default": 0},
    "frequency_penalty": {"type": "number", "minimum": -x.MAX_PENALTY, "maximum": x.MAX_PENALTY, "default": 0},
    "logit_bias": {"type": "object", "maxProperties": x.MAX_LOGIT_BIAS,
                   "propertyNames": {"pattern": f"^[0-9]{{1,{x.MAX_TOKEN_ID_DIGITS}}}$"},
                   "additionalProperties": {"type": "number", "minimum": -x.MAX_BIAS, "maximum": x.MAX_BIAS}},
    "response_format": {"oneOf": [
        obj({"type": {"enum": ["text", "json_object"]}}, ("type",)),
        obj({"type": {"const": "json_schema"},
             "json_schema": obj({"name": NAME, "schema": {"type": "object"}, "strict": BOOLEAN}, ("name",))},
            ("type", "json_schema"))]},
    "tools": {"type": "array", "maxItems": x.MAX_TOOLS, "items": ref("Tool"),
              "description": "Function names must be unique."},
    "tool_choice": {"oneOf": [{"enum": list(x.TOOL_CHOICES)},
                              obj({"type": {"const": "function"}, "function": obj({"name": STRING}, ("name",))},
                                  ("type", "function"))], "description": "Anything but none needs tools."},
    "parallel_tool_calls": BOOLEAN,
    "ignore_eos": {**BOOLEAN, "default": False, "description": "Generate max_tokens tokens, past end-of-sequence."},
    "user": {"type": "string", "maxLength": x.MAX_USER, "description": "Your end user's id, kept in usage."},
}
SEED_DEFAULTS: dict[str, Schema] = {"temperature": {"default": 1}, "top_p": {"default": 1},
                                    "repetition_penalty": {"description": "1: no penalty."}}


def chat_field(name: str, check: Callable[..., Any]) -> Schema:
    if hasattr(check, "json_schema"):
        return _range(check, **SEED_DEFAULTS.get(name, {}))
    return EXTRA_SCHEMAS[name]  # KeyError: a validated field the document does not describe


def chat_request(models: list[str]) -> Schema:
    fields = {name: chat_field(name, check) for name, check in FIELDS.items()}
    return obj({
        "model": {"type": "string", "minLength": 1, "description": f"A model id: {', '.join(models)}."},
        "messages": {"type": "array", "minItems": 1, "items": ref("Message")},
        "stream": {**BOOLEAN, "default": False},
        "stream_options": obj({"include_usage": {**BOOLEAN, "default": False}}),
        "max_completion_tokens": {"type": "integer", "minimum": 1, "description": "max_tokens, when that is absent."},
        **fields,
    }, ("model", "messages"), dependentSchemas=TOGETHER, description=(
        "A field that is null is the same as a field left out. The library's defaults for the model apply to "
        "fields left out; other top-level fields are ignored and named in the X-Inferd-Ignored-Params response "
        "header (400 instead with INFERD_STRICT_PARAMS). Integers are written without a fraction (2, not 2.0). "
        "A named tool_choice must name one of tools."))


# api/extras.check_together: top_logprobs needs logprobs true; a tool_choice other than none needs tools
TOGETHER = {"top_logprobs": obj({"logprobs": {"const": True}}, ("logprobs",)),
            "tool_choice": {"anyOf": [obj({"tool_choice": {"const": "none"}}),
                                      obj({"tools": {"type": "array", "minItems": 1}}, ("tools",))]}}


def _media_part(kind: str, more: dict[str, Schema]) -> Schema:
    url = obj({"url": {"type": "string", "minLength": 1, "description": "data: URL, or http(s) URL"}, **more},
              ("url",))
    return obj({"type": {"const": kind}, kind: url}, ("type", kind))


TEXT_PART = obj({"type": {"const": "text"}, "text": STRING}, ("type", "text"))


def content(part: Schema) -> Schema:
    return {"oneOf": [STRING, {"type": "array", "items": part}]}


def message_schemas() -> dict[str, Schema]:
    named = {"name": STRING, "tool_call_id": STRING}
    image = {"detail": {"enum": list(DETAILS)}}
    video = {name: _range(check) for name, check in MEDIA_FIELDS["video_url"].items()}
    return {
        "ContentPart": {"oneOf": [TEXT_PART,
                                  _media_part("image_url", image), _media_part("video_url", video)]},
        "Message": {"oneOf": [ref("UserMessage"), ref("AssistantMessage"), ref("OtherMessage")]},
        "UserMessage": obj({"role": {"const": "user"}, "content": content(ref("ContentPart")), **named},
                           ("role", "content")),
        "OtherMessage": obj({"role": {"enum": [r for r in ROLES if r not in ("user", "assistant")]},
                             "content": content(TEXT_PART), **named}, ("role", "content")),
        "AssistantMessage": obj({
            "role": {"const": "assistant"},
            "content": {"oneOf": [*content(TEXT_PART)["oneOf"], {"type": "null"}],
                        "description": "May be null or left out when the message carries tool_calls."},
            **named, "tool_calls": {"type": "array", "items": obj({"id": STRING, "type": {"const": "function"},
                                                                   "function": FUNCTION_CALL}, ("function",))},
        }, ("role",)),
        "Tool": obj({"type": {"const": "function"}, "function": obj({
            "name": NAME, "description": STRING, "parameters": {"type": "object"}, "strict": BOOLEAN}, ("name",))},
            ("function",)),
    }


USAGE = obj({"prompt_tokens": INTEGER, "completion_tokens": INTEGER, "total_tokens": INTEGER,
             "prompt_tokens_details": obj({"cached_tokens": INTEGER}),
             "completion_tokens_details": obj({"reasoning_tokens": INTEGER})},
            ("prompt_tokens", "completion_tokens", "total_tokens"))
LOGPROBS = nullable(obj({"content": {"type": "array", "items": {"type": "object"}}}, ("content",)))
ENVELOPE = {"id": STRING, "created": INTEGER, "model": STRING}


def completion_schemas() -> dict[str, Schema]:
    reasoning = nullable(STRING)
    message = obj({"role": {"const": "assistant"}, "content": nullable(STRING), "reasoning_content": reasoning,
                   "reasoning": reasoning, "tool_calls": {"type": "array", "items": obj({
                       "id": nullable(STRING), "type": {"const": "function"}, "function": FUNCTION_CALL})}},
                  ("role", "content"))
    choice = obj({"index": INTEGER, "message": message, "logprobs": LOGPROBS, "finish_reason": STRING},
                 ("index", "message", "finish_reason"))
    chunk_choice = obj({"index": INTEGER, "delta": {"type": "object"}, "logprobs": LOGPROBS,
                        "finish_reason": nullable(STRING)}, ("index", "delta", "finish_reason"))
    return {
        "ChatCompletion": obj({**ENVELOPE, "object": {"const": "chat.completion"},
                               "choices": {"type": "array", "items": choice}, "usage": USAGE},
                              ("id", "object", "created", "model", "choices", "usage")),
        "ChatCompletionChunk": obj({**ENVELOPE, "object": {"const": "chat.completion.chunk"},
                                    "choices": {"type": "array", "items": chunk_choice}, "usage": USAGE},
                                   ("id", "object", "created", "model", "choices"),
                                   description="One server-sent event's data (the stream ends with data: [DONE]); "
                                   "an error after the stream started is an event holding an Error."),
    }


def model_schemas() -> dict[str, Schema]:
    prices = obj({k: STRING for k in ("prompt", "completion", "request", "internal_reasoning", "input_cache_read")})
    reasoning = nullable(obj({"style": STRING, "default_effort": {"enum": list(EFFORTS)},
                              "efforts": {"type": "object", "additionalProperties": STRING}}))
    model = obj({"id": STRING, "object": {"const": "model"}, "created": INTEGER, "owned_by": STRING,
                 "context_length": INTEGER, "pricing": prices,
                 "architecture": obj({"input_modalities": {"type": "array", "items": STRING},
                                      "output_modalities": {"type": "array", "items": STRING}}),
                 "supported_parameters": {"type": "array", "items": STRING}, "reasoning": reasoning},
                ("id", "object", "created", "owned_by", "context_length", "pricing", "supported_parameters"))
    return {"Model": model,
            "ModelList": obj({"object": {"const": "list"}, "data": {"type": "array", "items": ref("Model")}},
                             ("object", "data"))}


def key_fields(models: list[str], *, creating: bool) -> Schema:
    rate = nullable(obj({name: nullable({"type": "integer", "minimum": 1}) for name in RATE_FIELDS},
                        additionalProperties=False))
    fields: dict[str, Schema] = {
        "name": {"type": "string", "minLength": 1, "maxLength": NAME_MAX, "pattern": r"\S"},
        "limit": nullable({"type": "number", "minimum": 0}),
        "limit_reset": {"enum": [*PERIODS, None]},
        "expires_at": nullable({"type": "string", "format": "date-time", "description": "UTC: ends in Z or +00:00"}),
        "rate_limit": rate,
        "token_limit": nullable({"type": "integer", "minimum": 0}),
        "models": nullable({"type": "array", "minItems": 1, "items": {"enum": models}}),
        ("management" if creating else "disabled"): BOOLEAN,
    }
    return obj(fields, ("name",) if creating else (), additionalProperties=False)


def key_schemas(models: list[str]) -> dict[str, Schema]:
    per_period = obj({p: INTEGER for p in ("total", *PERIODS)})
    money = nullable(NUMBER)
    data = obj({"hash": STRING, "name": STRING, "label": STRING, "management": BOOLEAN, "disabled": BOOLEAN,
                "limit": money, "limit_reset": nullable(STRING), "limit_remaining": money,
                "token_limit": nullable(INTEGER), "token_limit_remaining": nullable(INTEGER), "usage": NUMBER,
                "usage_daily": NUMBER, "usage_weekly": NUMBER, "usage_monthly": NUMBER, "tokens": per_period,
                "requests": per_period, "rate_limit": obj({n: nullable(INTEGER) for n in RATE_FIELDS}),
                "models": nullable({"type": "array", "items": STRING}), "expires_at": nullable(STRING),
                "created_at": STRING, "updated_at": nullable(STRING), "last_used_at": nullable(STRING)},
               ("hash", "name", "label", "management", "disabled", "limit", "rate_limit", "models"))
    return {
        "KeyCreate": key_fields(models, creating=True), "KeyUpdate": key_fields(models, creating=False),
        "Key": data,
        "KeyCreated": obj({"data": ref("Key"), "key": {**STRING, "description": "The secret: shown only here."}},
                          ("data", "key")),
        "KeyResponse": obj({"data": ref("Key")}, ("data",)),
        "KeyList": obj({"data": {"type": "array", "items": ref("Key")}, "offset": INTEGER, "limit": INTEGER},
                       ("data", "offset", "limit")),
        "KeyDeleted": obj({"deleted": {"const": True}}, ("deleted",)),
    }


def usage_schemas() -> dict[str, Schema]:
    row = obj({**{g: STRING for g in GROUPS if g != "key"}, "key_hash": STRING, "key_name": STRING,
               **{c: nullable(NUMBER) for c in COLUMNS}})
    return {"UsageReport": obj({"data": {"type": "array", "items": row},
                                "group_by": {"type": "array", "items": {"enum": list(GROUPS)}},
                                "from": nullable(STRING), "to": nullable(STRING)}, ("data", "group_by"))}


USAGE_FORMATS = list(FORMATS)
HEALTH = obj({"status": {"enum": ["ready", "degraded", "loading", "error", "draining"]},
              "models": {"type": "object", "additionalProperties": STRING},
              "engines": {"type": "object", "additionalProperties": obj({
                  "kind": STRING, "state": STRING, "pid": nullable(INTEGER), "rss_bytes": nullable(INTEGER),
                  "restarts": INTEGER, "in_flight": INTEGER, "last_error": nullable(STRING)})},
              "errors": {"type": "object", "additionalProperties": STRING}}, ("status", "models", "engines"))
ERROR = obj({"error": obj({"message": {"type": "string", "minLength": 1}, "type": STRING, "param": nullable(STRING),
                           "code": nullable(STRING)}, ("message", "type", "param", "code"))}, ("error",),
            description="OpenAI's error shape.")


def components(models: list[str]) -> dict[str, Schema]:
    return {"Error": ERROR, "ChatRequest": chat_request(models), **message_schemas(), **completion_schemas(),
            **model_schemas(), **key_schemas(models), **usage_schemas(), "Health": HEALTH}
