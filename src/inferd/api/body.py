"""Reading a JSON body safely: size cap while streaming, no NaN/Infinity, clear errors."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request

from ..errors import InvalidRequest, PayloadTooLarge

# a \uD800-\uDFFF escape: only then can the parsed text hold a lone surrogate (rare, so checked lazily)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


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
        body = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"The body is not valid JSON: {exc}", code="invalid_json") from None
    if _SURROGATE_ESCAPE.search(data):
        _check_unicode(body)
    return body


def _check_unicode(body: Any) -> None:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("The body contains a lone UTF-16 surrogate escape (\\uD800-\\uDFFF without its "
                             "pair), which is not valid Unicode text.", code="invalid_json") from None


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the {limit // (1024 * 1024)} MiB limit.")
