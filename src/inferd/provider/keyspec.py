"""The key management API's fields: checked (400 naming the field) and shown (OpenRouter's shape)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from ..errors import InvalidRequest
from ..library import Library
from ..store.records import PERIODS, KeyRecord
from .periods import key_period

COMMON = ("name", "limit", "limit_reset", "expires_at", "rate_limit", "token_limit", "models")
CREATE_FIELDS = COMMON + ("management",)
PATCH_FIELDS = COMMON + ("disabled",)
NAME_MAX = 100  # characters of a key's name
RATE_FIELDS = {"requests_per_minute": "rpm", "tokens_per_minute": "tpm", "concurrent_requests": "concurrency"}


def parse_key_fields(body: Any, library: Library, *, creating: bool) -> tuple[dict[str, Any], bool]:
    """Store columns to set, and whether a new key is a management key."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    allowed = CREATE_FIELDS if creating else PATCH_FIELDS
    for name in body:
        if name not in allowed:
            raise InvalidRequest(f"Unknown field '{name}'; the fields are: {', '.join(allowed)}.", param=name,
                                 code="unknown_parameter")
    if creating and "name" not in body:
        raise InvalidRequest("'name' is required.", param="name", code="missing_required_parameter")
    out: dict[str, Any] = {}
    for name, value in body.items():
        out.update(_field(name, value, library))
    management = out.pop("management", False)
    return out, management


def _field(name: str, value: Any, library: Library) -> dict[str, Any]:
    if name == "name":
        return {"name": _name(value)}
    if name == "limit":
        return {"spend_limit": _number(name, value)}
    if name == "limit_reset":
        if value is not None and value not in PERIODS:
            raise InvalidRequest(f"'limit_reset' must be one of {', '.join(PERIODS)} or null; got {value!r}.",
                                 param=name)
        return {"limit_reset": value}
    if name == "expires_at":
        return {"expires_at": parse_utc(name, value) if value is not None else None}
    if name == "rate_limit":
        return _rate_limit(value)
    if name == "token_limit":
        return {"token_limit": _integer(name, value, 0)}
    if name == "models":
        return {"models": _models(value, library)}
    return {name: _boolean(name, value)}  # disabled, management


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > NAME_MAX:
        raise InvalidRequest(f"'name' must be a non-empty string of at most {NAME_MAX} characters.", param="name",
                             code="invalid_type" if not isinstance(value, str) else "invalid_value")
    return value.strip()


def _number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidRequest(f"'{name}' must be a number or null, got {value!r}.", param=name, code="invalid_type")
    if value < 0:
        raise InvalidRequest(f"'{name}' must be >= 0, got {value}.", param=name)
    return float(value)


def _integer(name: str, value: Any, low: int) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be an integer or null, got {value!r}.", param=name, code="invalid_type")
    if value < low:
        raise InvalidRequest(f"'{name}' must be >= {low}, got {value}.", param=name)
    return value


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be a boolean, got {value!r}.", param=name, code="invalid_type")
    return value


def _rate_limit(value: Any) -> dict[str, Any]:
    if value is None:
        return dict.fromkeys(RATE_FIELDS.values())
    if not isinstance(value, dict):
        raise InvalidRequest("'rate_limit' must be an object with requests_per_minute, tokens_per_minute, "
                             "concurrent_requests (integers >= 1 or null).", param="rate_limit", code="invalid_type")
    out = {}
    for name, limit in value.items():
        if name not in RATE_FIELDS:
            raise InvalidRequest(f"Unknown field 'rate_limit.{name}'; the fields are: {', '.join(RATE_FIELDS)}.",
                                 param=f"rate_limit.{name}", code="unknown_parameter")
        out[RATE_FIELDS[name]] = _integer(f"rate_limit.{name}", limit, 1)
    return out


def _models(value: Any, library: Library) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'models' must be a non-empty array of model ids, or null for every model.",
                             param="models", code="invalid_type")
    known = {spec.id for spec in library}
    for i, model in enumerate(value):
        if not isinstance(model, str) or model not in known:
            raise InvalidRequest(f"'models[{i}]': unknown model {model!r}; the library has: {', '.join(known)}.",
                                 param=f"models[{i}]", code="model_not_found")
    return tuple(dict.fromkeys(value))


def parse_utc(name: str, value: Any) -> float:
    """An ISO 8601 time in UTC (``Z`` or ``+00:00``) as epoch seconds."""
    if not isinstance(value, str):
        raise InvalidRequest(f"'{name}' must be an ISO 8601 UTC time string such as 2030-01-31T00:00:00Z.",
                             param=name, code="invalid_type")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"'{name}' is not an ISO 8601 time: {value!r}.", param=name) from None
    if when.tzinfo is None or when.utcoffset() != timezone.utc.utcoffset(None):
        raise InvalidRequest(f"'{name}' must be in UTC (end with Z or +00:00): {value!r}.", param=name)
    return when.timestamp()


def iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if t is not None else None


def key_data(key: KeyRecord, counters: dict[str, dict[str, float]]) -> dict[str, Any]:
    """A key as the management API shows it (never its secret): limits, usage per period, remaining."""
    current = counters[key_period(key.limit_reset)]
    return {
        "hash": key.hash, "name": key.name, "label": key.prefix + "...", "management": key.management,
        "disabled": key.disabled, "limit": key.limit, "limit_reset": key.limit_reset,
        "limit_remaining": max(0.0, key.limit - current["cost"]) if key.limit is not None else None,
        "token_limit": key.token_limit,
        "token_limit_remaining": max(0, key.token_limit - int(current["tokens"])) if key.token_limit is not None else None,
        "usage": counters["total"]["cost"], "usage_daily": counters["daily"]["cost"],
        "usage_weekly": counters["weekly"]["cost"], "usage_monthly": counters["monthly"]["cost"],
        "tokens": {p: int(c["tokens"]) for p, c in counters.items()},
        "requests": {p: int(c["requests"]) for p, c in counters.items()},
        "rate_limit": key.rate_limit.as_dict(), "models": list(key.models) if key.models is not None else None,
        "expires_at": iso(key.expires_at), "created_at": iso(key.created_at), "updated_at": iso(key.updated_at),
        "last_used_at": iso(key.last_used_at),
    }
