"""Server-sent events, and responses that stop their work when the client goes away."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from starlette.types import Receive, Scope, Send

from ..errors import APIError, internal_error

log = logging.getLogger("inferd")
T = TypeVar("T")
DONE = b"data: [DONE]\n\n"


def event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: clients ignore it, proxies see the stream is alive


async def events(chunks: AsyncIterator[dict[str, Any]], opening: Awaitable[None] | None = None) -> AsyncIterator[bytes]:
    """Chunks as SSE events (after ``opening``, if the stream was committed before the generation opened);
    an error after the start goes out as an error event, then [DONE]."""
    try:
        if opening is not None:
            await opening
        async for chunk in chunks:
            yield event(chunk)
    except APIError as exc:
        yield event(exc.body())
    except Exception:
        log.exception("error during a stream")
        yield event(internal_error().body())
    yield DONE


class ClientGone(Exception):
    """The client disconnected before the work was done; the work has been cancelled."""


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """Run ``work``; if the client disconnects first, cancel it, wait for it, raise ClientGone."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        raise ClientGone()
    return task.result()


async def within(receive: Receive, task: asyncio.Future[Any], seconds: float) -> bool:
    """Whether ``task`` finished within ``seconds``; if the client disconnects first, cancel it, raise ClientGone."""
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watcher}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        gone = watcher.done() and not task.done()
    finally:
        watcher.cancel()
    if gone:
        task.cancel()
        await asyncio.wait({task})
        raise ClientGone()
    return task.done()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class EventStreamResponse:
    """An SSE response whose body generator is closed (aborting the generation) on disconnect, with a
    keep-alive comment whenever nothing was sent for ``keepalive`` seconds."""

    def __init__(self, body: AsyncIterator[bytes], headers: dict[str, str],
                 on_close: Callable[[], Awaitable[None]], keepalive: float) -> None:
        self._body = body
        self._on_close = on_close
        self._keepalive = keepalive
        self._last_sent = 0.0
        self._headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                         (b"x-accel-buffering", b"no")] + [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._headers})
            await until_disconnect(receive, self._send_all(send))
        except (ClientGone, OSError):
            pass
        finally:
            await self._body.aclose()  # type: ignore[attr-defined]
            await self._on_close()  # the generation ends even if the body never started

    async def _send_all(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        self._last_sent = loop.time()
        heartbeat = asyncio.ensure_future(self._heartbeat(send))
        try:
            async for data in self._body:
                self._last_sent = loop.time()
                await send({"type": "http.response.body", "body": data, "more_body": True})
        finally:
            heartbeat.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _heartbeat(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._last_sent + self._keepalive - loop.time())
            if loop.time() - self._last_sent >= self._keepalive:
                self._last_sent = loop.time()
                await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
