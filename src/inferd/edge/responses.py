"""Error responses the edge writes itself, below the ASGI app: the OpenAI error shape, then close."""

from __future__ import annotations

import json
import uuid
from http import HTTPStatus

from ..errors import APIError


def raw_response(error: APIError) -> bytes:
    """A complete HTTP/1.1 response for ``error`` with ``Connection: close``; its request never reached the
    app (its head was refused), so its X-Request-Id is a fresh one."""
    body = json.dumps(error.body(), separators=(",", ":")).encode()
    lines = [f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}", "content-type: application/json",
             f"content-length: {len(body)}", "connection: close", f"x-request-id: {uuid.uuid4().hex}"]
    lines += [f"{name.lower()}: {value}" for name, value in error.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body
