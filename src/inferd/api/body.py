"""Reading a JSON body safely: size cap while streaming, no NaN/Infinity, clear errors."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from ..errors import InvalidRequest, PayloadTooLarge


async def read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise _too_large(limit)
    if not data:
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        # NaN/Infinity parse as floats so that the field's own check rejects them, naming the param
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"The body is not valid JSON: {exc}", code="invalid_json") from None


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the {limit // (1024 * 1024)} MiB limit.")
