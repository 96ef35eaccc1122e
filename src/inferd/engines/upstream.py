"""Streaming chat completions from an OpenAI-compatible server: one HTTP client for every engine.

A llama.cpp child, a vLLM child and a server elsewhere all speak ``POST /v1/chat/completions``
with server-sent events; this module sends the body a flavour built, reads the stream as
parsed chunks, and turns what goes wrong into ``APIError``s: the upstream refusing the request
(4xx) is the client's problem (400, with the upstream's message), everything else is the
gateway's (502 ``upstream_error``, 504 ``upstream_timeout``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import httpx

from ..errors import APIError, EngineFailure, GatewayTimeout, InvalidRequest, Unavailable

log = logging.getLogger("inferd")
T = TypeVar("T")
Refusal = Callable[[int, dict[str, Any]], APIError]  # status, error object -> what the client gets
POOL_WAIT_S = 30.0  # the longest a request waits for a free connection to its engine


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0  # seconds to open the connection
    first_byte: float | None = None  # seconds until the first event (queue + prefill); None: no limit
    idle: float | None = None  # seconds between two events once streaming; None: no limit


def _read_limit(timeouts: Timeouts) -> float | None:
    if timeouts.first_byte is None or timeouts.idle is None:
        return None
    return max(timeouts.first_byte, timeouts.idle)


class Upstream:
    def __init__(self, name: str, timeouts: Timeouts, *, headers: dict[str, str] | None = None,
                 connections: int = 64, pool_wait: float = POOL_WAIT_S) -> None:
        self.name = name  # who answers, for messages: "the engine of model X", "upstream http://..."
        self._timeouts = timeouts
        self._client = httpx.AsyncClient(
            headers=headers or {}, trust_env=False,
            # admission keeps generations within the pool; a pool that stays full is a fault, not a queue
            # read: a bound for a send left to finish by a cancelled caller (the stream's own limits are shorter)
            timeout=httpx.Timeout(connect=timeouts.connect, read=_read_limit(timeouts), write=60.0, pool=pool_wait),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))

    async def chunks(self, url: str, body: dict[str, Any], refusal: Refusal) -> AsyncIterator[dict[str, Any]]:
        """The parsed ``data:`` events of one streamed completion, up to ``[DONE]``."""
        try:
            async with asyncio.timeout(self._timeouts.first_byte):
                response = await self._sent(self._client.build_request("POST", url, json=body))
                try:
                    lines = response.aiter_lines()
                    if response.status_code != 200:
                        raise refusal(response.status_code, await _error_object(response))
                    first = await _next_event(lines)
                except BaseException:
                    await release(response)
                    raise
        except TimeoutError:
            raise GatewayTimeout(f"{self.name} sent nothing within {self._timeouts.first_byte:g} s.") from None
        except httpx.HTTPError as exc:
            raise self._broken(exc) from None
        try:
            event = first
            while event is not None:
                yield _parsed(event, refusal)
                event = await self._next(lines)
        finally:
            await release(response)  # unread: the connection is dropped, which aborts the generation

    async def _sent(self, request: httpx.Request) -> httpx.Response:
        """The response head, streaming; a caller cancelled meanwhile leaves the send to end on its own, and
        what it brings is closed then (the engine sees the connection drop and aborts)."""
        return await _uncancelled(self._client.send(request, stream=True), then=release)

    async def _next(self, lines: AsyncIterator[str]) -> str | None:
        try:
            if self._timeouts.idle is None:
                return await _next_event(lines)
            async with asyncio.timeout(self._timeouts.idle):
                return await _next_event(lines)
        except TimeoutError:
            raise GatewayTimeout(f"{self.name} stopped sending for {self._timeouts.idle:g} s.") from None
        except httpx.HTTPError as exc:
            raise self._broken(exc) from None

    def _broken(self, exc: httpx.HTTPError) -> APIError:
        if isinstance(exc, httpx.ConnectError):
            return EngineFailure(f"{self.name} cannot be reached ({exc or type(exc).__name__}).", code="upstream_error")
        return EngineFailure(f"{self.name} broke off the response ({exc or type(exc).__name__}).",
                             code="upstream_error")

    async def get(self, url: str, timeout: float = 2.0) -> httpx.Response:
        return await _uncancelled(self._client.get(url, timeout=timeout))

    async def post(self, url: str, body: dict[str, Any], timeout: float = 30.0) -> httpx.Response:
        try:
            return await _uncancelled(self._client.post(url, json=body, timeout=timeout))
        except httpx.HTTPError as exc:
            raise self._broken(exc) from None

    def connections_in_use(self) -> int:
        """Pooled connections not idle, and requests waiting for one (both 0 when nothing is in flight)."""
        pool = self._client._transport._pool  # type: ignore[attr-defined]
        return sum(not c.is_idle() for c in pool.connections) + sum(r.is_queued() for r in pool._requests)

    async def close(self) -> None:
        await self._client.aclose()


_detached: set[asyncio.Future[Any]] = set()  # work a cancelled caller left to finish, held until done


async def _uncancelled(work: Awaitable[T], then: Callable[[T], Awaitable[None]] | None = None) -> T:
    """``work``, which cancelling the caller does not interrupt: it finishes as a task of its own, and
    ``then`` gets what it brings.

    httpx's pool (httpcore 1.0.9) keeps a connection taken for good when a send or a close is cancelled at
    the wrong moment: a connection given to a request but not yet used stays NEW or CONNECTING with no
    request, and a close cut short never hands its connection back. A client leaving at such a moment (the
    cancellation inferd uses to abort its generation) would shrink the pool by one, until requests wait for
    a connection that never comes. So no pool operation is ever cancelled half-way.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        _detached.add(task)
        task.add_done_callback(functools.partial(_finish_detached, then=then))
        raise


def _finish_detached(task: asyncio.Future[Any], then: Callable[[Any], Awaitable[None]] | None) -> None:
    _detached.discard(task)
    if task.cancelled():
        return
    if task.exception() is not None:
        log.debug("an engine request abandoned by its caller failed: %r", task.exception())
    elif then is not None:
        _detach(then(task.result()))


def _detach(work: Awaitable[None]) -> None:
    task = asyncio.ensure_future(work)
    _detached.add(task)
    task.add_done_callback(functools.partial(_finish_detached, then=None))


async def release(response: httpx.Response) -> None:
    """Close ``response`` (a stream read in part: its connection is dropped), to the end even if the caller is
    cancelled meanwhile."""
    await _uncancelled(response.aclose())


async def _next_event(lines: AsyncIterator[str]) -> str | None:
    """The next ``data:`` payload; None at ``[DONE]`` or the end of the stream."""
    async for line in lines:
        if line.startswith("data:"):
            data = line[5:].strip()
            return None if data == "[DONE]" else data
        if line.startswith("error:"):  # some servers send a failure as its own event type
            return line[6:].strip()
    return None


def _parsed(data: str, refusal: Refusal) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError:
        raise EngineFailure(f"The engine sent an event that is not JSON: {data[:200]!r}", code="upstream_error") from None
    if not isinstance(chunk, dict):
        raise EngineFailure(f"The engine sent an unexpected event: {data[:200]!r}", code="upstream_error")
    if "error" in chunk:
        error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
        raise refusal(int(error.get("code") or 500) if str(error.get("code", "")).isdigit() else 500, error)
    return chunk


async def _error_object(response: httpx.Response) -> dict[str, Any]:
    raw = (await response.aread())[:4096]
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {"message": raw.decode("utf-8", "replace").strip() or response.reason_phrase}
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
    if isinstance(error, dict):
        return error
    return {"message": str(parsed.get("message") or error) if isinstance(parsed, dict) else str(error)}


def standard_refusal(name: str) -> Refusal:
    """OpenAI-compatible servers: a 4xx is about the request, anything else is the upstream's failure."""
    def refuse(status: int, error: dict[str, Any]) -> APIError:
        message = str(error.get("message") or error.get("detail") or "no message")[:1000]
        if status in (429, 503):
            return Unavailable(f"{name} is busy: {message}", retry_after=1)
        if status in (401, 403, 404):  # inferd's own key, URL or model name for the upstream is wrong
            return EngineFailure(f"{name} refused inferd ({status}): {message}", code="upstream_error")
        if 400 <= status < 500:  # the upstream's own code and param, where it names them
            code, param = error.get("code"), error.get("param")
            return InvalidRequest(f"The upstream model server refused the request: {message}",
                                  code=code if isinstance(code, str) and code else "upstream_refused",
                                  param=param if isinstance(param, str) else None)
        return EngineFailure(f"{name} failed ({status}): {message}", code="upstream_error")
    return refuse
