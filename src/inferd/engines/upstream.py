"""Streaming chat completions from an OpenAI-compatible server: one HTTP client for every engine.

A llama.cpp child, a vLLM child and a server elsewhere all speak ``POST /v1/chat/completions``
with server-sent events; this module sends the body a flavour built, reads the stream as
parsed chunks, and turns what goes wrong into ``APIError``s: the upstream refusing the request
(4xx) is the client's problem (400, with the upstream's message), everything else is the
gateway's (502 ``upstream_error``, 504 ``upstream_timeout``).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import httpx

from ..errors import APIError, EngineFailure, GatewayTimeout, InvalidRequest, Unavailable

Refusal = Callable[[int, dict[str, Any]], APIError]  # status, error object -> what the client gets
POOL_WAIT_S = 30.0  # the longest a request waits for a free connection to its engine


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0  # seconds to open the connection
    first_byte: float | None = None  # seconds until the first event (queue + prefill); None: no limit
    idle: float | None = None  # seconds between two events once streaming; None: no limit


class Upstream:
    def __init__(self, name: str, timeouts: Timeouts, *, headers: dict[str, str] | None = None,
                 connections: int = 64) -> None:
        self.name = name  # who answers, for messages: "the engine of model X", "upstream http://..."
        self._timeouts = timeouts
        self._client = httpx.AsyncClient(
            headers=headers or {}, trust_env=False,
            # admission keeps generations within the pool; a pool that stays full is a fault, not a queue
            timeout=httpx.Timeout(connect=timeouts.connect, read=None, write=60.0, pool=POOL_WAIT_S),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))

    async def chunks(self, url: str, body: dict[str, Any], refusal: Refusal) -> AsyncIterator[dict[str, Any]]:
        """The parsed ``data:`` events of one streamed completion, up to ``[DONE]``."""
        try:
            async with asyncio.timeout(self._timeouts.first_byte):
                response = await self._client.send(self._client.build_request("POST", url, json=body), stream=True)
                try:
                    lines = response.aiter_lines()
                    if response.status_code != 200:
                        raise refusal(response.status_code, await _error_object(response))
                    first = await _next_event(lines)
                except BaseException:
                    await response.aclose()
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
            await response.aclose()  # unread: the connection is dropped, which aborts the generation

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
        return await self._client.get(url, timeout=timeout)

    async def post(self, url: str, body: dict[str, Any], timeout: float = 30.0) -> httpx.Response:
        try:
            return await self._client.post(url, json=body, timeout=timeout)
        except httpx.HTTPError as exc:
            raise self._broken(exc) from None

    async def close(self) -> None:
        await self._client.aclose()


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
