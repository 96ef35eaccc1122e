"""Choices: ``n`` generations of one request, each through the same steps, interleaved into one stream.

Each choice is its own engine generation (its own slot; with a ``seed``, choice i uses seed + i so
choices differ but repeat). Above the engine, a choice's content goes through the stop filter, then
the tool-call parser; its deltas carry its ``index``. Choices are interleaved as their deltas arrive
(OpenAI's order for ``n`` > 1 streams). Usage: completion tokens are summed over the choices, the
prompt is counted once (as OpenAI does); the total rides on the last finishing delta.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import AsyncIterator, Callable

from ..engines.base import Delta, Engine, GenerationRequest, TokenLogprob, ToolCallDelta, Usage
from ..engines.pool import EnginePool
from ..errors import APIError
from ..library import ModelSpec
from .stop import StopFilter
from .tools.parser import ToolCallParser

Generate = Callable[[GenerationRequest], AsyncIterator[Delta]]


@dataclass(frozen=True)
class ChoicePlan:
    n: int = 1
    stops: tuple[str, ...] = ()
    parser: Callable[[], ToolCallParser | None] = lambda: None

    def requests(self, request: GenerationRequest) -> list[GenerationRequest]:
        seed = request.sampling.seed
        return [request if i == 0 or seed is None else
                replace(request, sampling=replace(request.sampling, seed=seed + i)) for i in range(self.n)]

    def deltas(self, generate: Generate, request: GenerationRequest) -> AsyncIterator[Delta]:
        streams = [Choice(i, self.stops, self.parser()).deltas(generate(r)) for i, r in enumerate(self.requests(request))]
        return streams[0] if self.n == 1 else interleave(streams)


class Choice:
    """One choice: stop strings and tool calls applied to the engine's content, then index set."""

    def __init__(self, index: int, stops: tuple[str, ...], parser: ToolCallParser | None) -> None:
        self._index = index
        self._stop = StopFilter(stops)
        self._parser = parser
        self._pending: list[TokenLogprob] = []  # logprobs of text held back
        self._called = False  # a tool call went out

    async def deltas(self, source: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
        async with aclosing(source) as engine:
            async for delta in engine:
                if delta.finish_reason is not None:
                    for out in self._finish(delta):
                        yield out
                    return
                out = self._step(delta)
                if out is not None:
                    yield out

    def _step(self, delta: Delta) -> Delta | None:
        if self._stop.matched:
            return None  # the engine ends at the stop string too: what it writes meanwhile is dropped
        self._pending.extend(delta.logprobs)
        content = self._stop.feed(delta.content) if delta.content else ""
        return self._out(content, delta.reasoning, delta.tool_calls)

    def _finish(self, last: Delta) -> list[Delta]:
        out = [d for d in (self._out(self._stop.flush(), "", (), final=True),) if d is not None]
        finish = "stop" if self._stop.matched else last.finish_reason
        if self._called and finish == "stop":
            finish = "tool_calls"
        return out + [Delta(finish_reason=finish, usage=last.usage, index=self._index)]

    def _out(self, content: str, reasoning: str, calls: tuple[ToolCallDelta, ...], final: bool = False) -> Delta | None:
        tool_calls = list(calls)
        if self._parser is not None:
            parsed = self._parser.feed(content) if content else None
            content = parsed.content if parsed else ""
            tool_calls += parsed.calls if parsed else []
            if final:
                rest = self._parser.finish()
                content, tool_calls = content + rest.content, tool_calls + rest.calls
        logprobs: tuple[TokenLogprob, ...] = ()
        if content or final or self._stop.matched:
            logprobs = tuple(self._pending) if content else ()
            self._pending = []
        if not (content or reasoning or tool_calls or logprobs):
            return None
        self._called = self._called or bool(tool_calls)
        return Delta(content=content, reasoning=reasoning, logprobs=logprobs, tool_calls=tuple(tool_calls),
                     index=self._index)


async def interleave(streams: list[AsyncIterator[Delta]]) -> AsyncIterator[Delta]:
    """Deltas of several choices as they arrive; usage summed onto the last finish."""
    waiting = {asyncio.ensure_future(anext(s)): i for i, s in enumerate(streams)}
    usages: list[Usage] = []
    try:
        while waiting:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: waiting[t]):
                index = waiting.pop(task)
                try:
                    delta = task.result()
                except StopAsyncIteration:
                    continue
                if delta.finish_reason is not None:
                    usages.append(delta.usage or Usage(0, 0))
                    delta = replace(delta, usage=summed(usages) if len(usages) == len(streams) else None)
                else:
                    waiting[asyncio.ensure_future(anext(streams[index]))] = index
                yield delta
    finally:
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]


def summed(usages: list[Usage]) -> Usage:
    return Usage(prompt_tokens=usages[0].prompt_tokens, cached_tokens=usages[0].cached_tokens,
                 completion_tokens=sum(u.completion_tokens for u in usages),
                 reasoning_tokens=sum(u.reasoning_tokens for u in usages))


def acquire_places(pool: EnginePool, spec: ModelSpec, places: int) -> Engine:
    """One place in the model's admission per choice (``n`` choices take ``n`` slots); all or none."""
    engine = pool.acquire(spec)
    for taken in range(1, places):
        try:
            pool.acquire(spec)
        except APIError:
            release_places(pool, spec, taken)
            raise
    return engine


def release_places(pool: EnginePool, spec: ModelSpec, places: int) -> None:
    for _ in range(places):
        pool.release(spec)
