"""n choices above the engine: interleaving, per-choice stop and tool parsing, summed usage, and closing.

A test double stands in for the engine (layers above it); n against the real engine is in tests/e2e.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from inferd.chat.choices import ChoicePlan
from inferd.chat.chunks import Envelope
from inferd.chat.service import Completion
from inferd.chat.tools.policies import Hermes
from inferd.engines.base import Delta, GenerationRequest, Sampling, Usage

REQUEST = GenerationRequest(messages=[{"role": "user", "content": "hi"}],
                            sampling=Sampling(1.0, 1.0, 0, 0.0, 1.0, 8, seed=10))


class ScriptedEngine:
    """Per seed, a list of pieces; records the requests and which generations were closed."""

    def __init__(self, scripts: dict[int, list[str]], delay: float = 0.0) -> None:
        self.scripts, self.delay = scripts, delay
        self.seeds: list[int | None] = []
        self.closed: list[int] = []

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        seed = request.sampling.seed
        self.seeds.append(seed)
        try:
            for piece in self.scripts[seed]:
                await asyncio.sleep(self.delay)
                yield Delta(content=piece)
            yield Delta(finish_reason="stop", usage=Usage(prompt_tokens=5, completion_tokens=len(self.scripts[seed]),
                                                          cached_tokens=2))
        finally:
            self.closed.append(seed)


def collect(plan: ChoicePlan, engine: ScriptedEngine) -> list[Delta]:
    async def run() -> list[Delta]:
        return [d async for d in plan.deltas(engine.generate, REQUEST)]
    return asyncio.run(run())


def test_choices_get_consecutive_seeds_and_interleave_with_usage_summed_once() -> None:
    engine = ScriptedEngine({10: ["a", "b"], 11: ["c"], 12: ["d", "e", "f"]})
    got = collect(ChoicePlan(n=3), engine)
    assert sorted(engine.seeds) == [10, 11, 12]
    by_index = {i: "".join(d.content for d in got if d.index == i) for i in range(3)}
    assert by_index == {0: "ab", 1: "c", 2: "def"}
    finishes = [d for d in got if d.finish_reason is not None]
    assert sorted(d.index for d in finishes) == [0, 1, 2]
    assert [d.usage for d in finishes[:-1]] == [None, None]  # the total rides on the last finish
    assert finishes[-1].usage == Usage(prompt_tokens=5, completion_tokens=6, cached_tokens=2)
    assert got[-1] is finishes[-1]
    assert len({d.index for d in got[:3]}) > 1  # interleaved, not one choice after the other


def test_each_choice_applies_stop_strings_and_parses_tool_calls() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    engine = ScriptedEngine({10: ["x E", "ND y"], 11: ['{"name": "f", ', '"arguments": {}}']})
    plan = ChoicePlan(n=2, stops=("END",), parser=lambda: Hermes().parser(tools, True))
    got = collect(plan, engine)
    assert "".join(d.content for d in got if d.index == 0) == "x "
    finish = {d.index: d.finish_reason for d in got if d.finish_reason}
    assert finish == {0: "stop", 1: "tool_calls"}
    calls = [c for d in got if d.index == 1 for c in d.tool_calls]
    assert calls[0].name == "f" and "".join(c.arguments for c in calls) == "{}"


def test_closing_a_completion_early_closes_every_choice() -> None:
    engine = ScriptedEngine({10: list("abcdefgh"), 11: list("ijklmnop")}, delay=0.01)
    done: list[Usage | None] = []

    async def run() -> list[dict]:
        completion = Completion(Envelope(model="m"), ChoicePlan(n=2).deltas(engine.generate, REQUEST), (),
                                done.append, n=2)
        await completion.open()
        chunks = []
        async for chunk in completion.chunks(include_usage=True):
            chunks.append(chunk)
            if len(chunks) == 4:
                break
        await completion.aclose()
        return chunks

    chunks = asyncio.run(run())
    assert [c["choices"][0]["delta"].get("role") for c in chunks[:2]] == ["assistant", "assistant"]
    assert [c["choices"][0]["index"] for c in chunks[:2]] == [0, 1]
    assert sorted(engine.closed) == [10, 11] and done == [None]


def test_a_body_has_one_choice_per_index_and_the_summed_usage() -> None:
    engine = ScriptedEngine({10: ["a"], 11: ["b", "c"]})

    async def run() -> dict:
        completion = Completion(Envelope(model="m"), ChoicePlan(n=2).deltas(engine.generate, REQUEST), (),
                                lambda usage: None, n=2)
        await completion.open()
        return await completion.body()

    body = asyncio.run(run())
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in body["choices"]] == [
        (0, "a", "stop"), (1, "bc", "stop")]
    assert body["usage"]["completion_tokens"] == 3 and body["usage"]["prompt_tokens"] == 5
