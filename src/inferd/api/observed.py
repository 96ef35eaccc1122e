"""The edge of every HTTP request: its X-Request-Id, its access log line, its metrics.

X-Request-Id: the client's value when it is 1 to 128 characters of letters, digits and ``-_.:``;
otherwise (absent, too long, other characters) a fresh one. It is set in the logging context for
the whole request (``logs.request_id``) and sent back on every response, errors and streams included.

The access line holds the method, the path (never the query string), the status, the duration, the
client address and at most the first 8 characters of the key's hash: never a key, an Authorization
header or any part of a body.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import internal_error
from ..logs import request_id
from .metrics import Metrics

log = logging.getLogger("inferd")
access = logging.getLogger("inferd.access")
HEADER = b"x-request-id"
VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
KEY_SHOWN = 8  # characters of a key's hash an access line may carry
PATH_SHOWN = 200


def chosen_id(scope: Scope) -> str:
    """The client's request id if it is acceptable, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            text = value.decode("latin-1")
            return text if VALID_ID.fullmatch(text) else new_id()
    return new_id()


def new_id() -> str:
    return uuid.uuid4().hex


def shown_path(path: str) -> str:
    """The path as one printable line (a decoded %0A cannot forge a log line), bounded."""
    text = json.dumps(path, ensure_ascii=True)[1:-1]
    return text if len(text) <= PATH_SHOWN else text[:PATH_SHOWN] + "..."


class Observed:
    """ASGI middleware around the app's routes (inside Starlette's error handling)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = chosen_id(scope)
        token = request_id.set(rid)
        started = time.monotonic()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (HEADER, rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if status:
                raise  # the response is under way: nothing else can be sent
            log.exception("unexpected error on %s %s", scope["method"], shown_path(scope["path"]))
            await _send_error(send_with_id)
        finally:
            self._done(scope, status, time.monotonic() - started)
            request_id.reset(token)

    def _done(self, scope: Scope, status: int, seconds: float) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        route = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.http_done(scope["method"], route, status, seconds, state.get("model_name"))
        key = state.get("key_hash")
        client = scope.get("client")
        access.info("%s %s %s %.1fms%s", scope["method"], shown_path(scope["path"]), status or "-", seconds * 1000,
                    f" key={key[:KEY_SHOWN]}" if key else "",
                    extra={"method": scope["method"], "path": shown_path(scope["path"]), "status": status or None,
                           "duration_ms": round(seconds * 1000, 1), "key": key[:KEY_SHOWN] if key else None,
                           "client": client[0] if client else None})


async def _send_error(send: Send) -> None:
    error = internal_error()
    body = json.dumps(error.body()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
