"""Apply a reasoning plan to a generation: split the output, enforce the reasoning budget.

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


class ReasoningRun:
    def __init__(self, engine: Engine, request: GenerationRequest, plan: ReasoningPlan) -> None:
        self._engine, self._request, self._plan = engine, request, plan
        self._splitter = plan.style.splitter(plan.thinking)
        self._text = ""  # what the model wrote so far (and the markers inferd inserted)
        self._parts = {"reasoning": "", "content": ""}  # the same, split
        self._reasoning_tokens = 0

    async def deltas(self) -> AsyncIterator[Delta]:
        limit = self._request.sampling.max_tokens
        budget = self._plan.thinking.budget if self._plan.thinking.on else None
        room = self._engine.capabilities.context_length  # a budget the context cannot hold never binds
        bounded = budget is not None and budget < room and (limit is None or budget < limit)
        opening = self._plan.style.opening(self._plan.thinking)
        if opening and not self._plan.separate:
            yield Delta(content=opening)
        first = None
        async for delta in self._phase(self._request, budget if bounded else limit):
            if delta.finish_reason is None:
                yield delta
            first = delta if delta.finish_reason is not None else first
        if not bounded or (first is not None and first.finish_reason != "length"):
            async for delta in self._end(first, None):
                yield delta
            return
        async for delta in self._continue(first, limit):
            yield delta

    async def _continue(self, first: Delta | None, limit: int | None) -> AsyncIterator[Delta]:
        """Phase 2: close the thinking if it is still open, and let the model answer."""
        closing = self._plan.style.closing(self._text, self._splitter.state)
        if closing:
            yield self._delta(self._feed(closing, count=False), closing)
        used = first.usage.completion_tokens if first and first.usage else 0
        turn = self._plan.style.continuation(self._text, self._parts["reasoning"], self._parts["content"])
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
                    delta = self._delta(self._feed(delta.content, count=True), delta.content)
                yield delta

    async def _end(self, last: Delta | None, first: Delta | None) -> AsyncIterator[Delta]:
        rest = self._splitter.finish()
        if rest and self._plan.separate:
            yield self._delta(rest, "")
        yield Delta(finish_reason=last.finish_reason if last else "stop", usage=self._usage(last, first))

    def _feed(self, text: str, *, count: bool) -> list[Segment]:
        if count and self._splitter.state in (State.LEADING, State.REASONING):
            self._reasoning_tokens += 1  # llama.cpp streams one piece per token
        self._text += text
        segments = self._splitter.feed(text)
        for kind, piece in segments:
            self._parts[kind] += piece
        return segments

    def _delta(self, segments: list[Segment], raw: str) -> Delta:
        if not self._plan.separate:
            return Delta(content=raw)
        return Delta(content="".join(t for kind, t in segments if kind == "content"),
                     reasoning="".join(t for kind, t in segments if kind == "reasoning"))

    def _usage(self, last: Delta | None, first: Delta | None) -> Usage:
        """One usage for both phases: the client's prompt, everything the model wrote."""
        phases = [d.usage for d in (first, last) if d is not None and d.usage is not None]
        if not phases:
            return Usage(0, 0)
        completion = sum(u.completion_tokens for u in phases)
        reasoning = min(self._reasoning_tokens, completion) if self._splitter.reasoned else 0
        return Usage(prompt_tokens=phases[0].prompt_tokens, completion_tokens=completion,
                     cached_tokens=phases[0].cached_tokens, reasoning_tokens=reasoning)
