"""Logging: text or one JSON object per line, and the request id of the request a line was written for.

The request id lives in a context variable that the edge middleware (``api/observed.py``) sets for each
request; tasks started while handling it inherit it, so every line written for the request carries it.
Lines written outside a request carry ``-``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

from .settings import LOG_FORMATS

NO_REQUEST = "-"
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("inferd_request_id", default=NO_REQUEST)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
ENGINE_OUTPUT = "inferd.engine.output"  # the engines' own output lines, copied as they come
# attributes an access line adds to its record (logging's ``extra``); JSON lines carry them as fields
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "key", "client")


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` to the current request's id (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, access fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": _utc(record.created), "level": record.levelname.lower(), "logger": record.name,
                "message": record.getMessage(), "request_id": getattr(record, "request_id", NO_REQUEST)}
        line.update({name: getattr(record, name) for name in ACCESS_FIELDS if hasattr(record, name)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def configure(level: str, fmt: str) -> None:
    """Root handler on stderr in ``fmt``; uvicorn's loggers and the engines' output go through it."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}; got '{fmt}'")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    engines = logging.getLogger(ENGINE_OUTPUT)
    engines.setLevel(logging.INFO)  # shown at every log level, as before: a crash's last words matter
    engines.propagate = False
    raw = logging.StreamHandler(sys.stderr)
    raw.addFilter(RequestIdFilter())
    raw.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(message)s"))
    engines.handlers[:] = [raw]
