"""Apply a reasoning plan to a generation: split the output, enforce the reasoning budget.

With ``separate_reasoning: false`` the reasoning is written back into the content between
exactly one pair of the family's markers, whether the prompt opened the first one or the model
(or the engine echoing the prompt) wrote it.

The budget is enforced in two phases. Phase 1 generates at most ``budget`` tokens. If it
stopped there with the thinking still open, inferd writes the family's end marker after it
and phase 2 continues the same assistant turn (``GenerationRequest.continue_message``), so the
model writes a real answer. ``max_tokens`` bounds everything the model writes, reasoning and
answer together; a budget at or above ``max_tokens`` has no effect.
"""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import replace
from typing import AsyncIterator

from ...engines.base import Delta, Engine, GenerationRequest, Usage
from . import ReasoningPlan
from .splitter import Segment, State


CLOSING_ROOM = 8  # tokens the end marker and a first answer token need after phase 1


class ReasoningRun:
    def __init__(self, engine: Engine, request: GenerationRequest, plan: ReasoningPlan) -> None:
        self._engine, self._request, self._plan = engine, request, plan
        self._splitter = plan.style.splitter(plan.thinking)
        self._parts = {"reasoning": "", "content": ""}  # what the model wrote so far, split
        self._reasoning_tokens = 0
        self._inline = InlineMarkers(plan.style.inline_markers) if not plan.separate else None

    async def deltas(self) -> AsyncIterator[Delta]:
        if not self._plan.style.reasons:  # nothing to split or bound: the engine's deltas as they are
            async with aclosing(self._engine.generate(self._request)) as deltas:
                async for delta in deltas:
                    yield delta
            return
        limit = self._request.sampling.max_tokens
        budget = self._plan.thinking.budget if self._plan.thinking.on else None
        room = self._engine.capabilities.context_length  # a budget the context cannot hold never binds
        bounded = budget is not None and budget < room and (limit is None or budget < limit)
        first = None
        async for delta in self._phase(self._request, budget if bounded else limit):
            if delta.finish_reason is None:
                yield delta
            first = delta if delta.finish_reason is not None else first
        if not bounded or (first is not None and (first.finish_reason != "length" or self._context_full(first))):
            async for delta in self._end(first, None):
                yield delta
            return
        async for delta in self._continue(first, limit):
            yield delta

    def _context_full(self, first: Delta) -> bool:
        """Phase 1 stopped because the context ran out, not at the budget: nothing can follow."""
        used = first.usage.prompt_tokens + first.usage.completion_tokens if first.usage else 0
        return used + CLOSING_ROOM >= self._engine.capabilities.context_length

    async def _continue(self, first: Delta | None, limit: int | None) -> AsyncIterator[Delta]:
        """Phase 2: close the thinking if it is still open, and let the model answer."""
        closing = self._plan.style.closing(self._splitter.phase)
        if closing:
            yield self._delta(self._feed(closing, count=False))
        used = first.usage.completion_tokens if first and first.usage else 0
        reasoning = self._parts["reasoning"] if self._splitter.entered else None
        turn = self._plan.style.continuation(self._plan.thinking, reasoning, self._parts["content"])
        request = replace(self._request, continue_message=turn)
        last = None
        async for delta in self._phase(request, None if limit is None else limit - used):
            if delta.finish_reason is None:
                yield delta
            last = delta if delta.finish_reason is not None else last
        async for delta in self._end(last, first):
            yield delta

    async def _phase(self, request: GenerationRequest, max_tokens: int | None) -> AsyncIterator[Delta]:
        if max_tokens == 0:
            return  # a budget of 0: nothing to generate before the forced close
        request = replace(request, sampling=replace(request.sampling, max_tokens=max_tokens))
        async with aclosing(self._engine.generate(request)) as deltas:
            async for delta in deltas:
                if delta.content:
                    delta = replace(self._delta(self._feed(delta.content, count=True)), logprobs=delta.logprobs)
                yield delta

    async def _end(self, last: Delta | None, first: Delta | None) -> AsyncIterator[Delta]:
        rest = self._splitter.finish()
        for kind, piece in rest:
            self._parts[kind] += piece
        if rest:
            yield self._delta(rest)
        yield Delta(finish_reason=last.finish_reason if last else "stop", usage=self._usage(last, first))

    def _feed(self, text: str, *, count: bool) -> list[Segment]:
        if count and self._splitter.phase in (State.LEADING, State.REASONING):
            self._reasoning_tokens += 1  # llama.cpp streams one piece per token
        segments = self._splitter.feed(text)
        for kind, piece in segments:
            self._parts[kind] += piece
        return segments

    def _delta(self, segments: list[Segment]) -> Delta:
        if self._inline is not None:
            return Delta(content=self._inline.render(segments, self._splitter.phase))
        return Delta(content="".join(t for kind, t in segments if kind == "content"),
                     reasoning="".join(t for kind, t in segments if kind == "reasoning"))

    def _usage(self, last: Delta | None, first: Delta | None) -> Usage:
        """One usage for both phases: the client's prompt, everything the model wrote."""
        phases = [d.usage for d in (first, last) if d is not None and d.usage is not None]
        if not phases:
            return Usage(0, 0)
        completion = sum(u.completion_tokens for u in phases)
        reasoning = min(self._reasoning_tokens, completion) if self._parts["reasoning"] else 0
        return Usage(prompt_tokens=phases[0].prompt_tokens, completion_tokens=completion,
                     cached_tokens=phases[0].cached_tokens, reasoning_tokens=reasoning)


class InlineMarkers:
    """``separate_reasoning: false``: the reasoning stays in content, between one pair of markers."""

    def __init__(self, markers: tuple[str, str]) -> None:
        self._open, self._close = markers
        self._state = "before"  # before -> open -> closed

    def render(self, segments: list[Segment], phase: State) -> str:
        out: list[str] = []
        for kind, text in segments:
            if kind == "reasoning" and self._state == "before":
                out.append(self._open)
                self._state = "open"
            if kind == "content":
                self._close_if_open(out)
            out.append(text)
        if phase in (State.AFTER_END, State.CONTENT):  # the end marker went by (the model's or inferd's)
            self._close_if_open(out)
        return "".join(out)

    def _close_if_open(self, out: list[str]) -> None:
        if self._state == "open":
            out.append(self._close)
            self._state = "closed"
