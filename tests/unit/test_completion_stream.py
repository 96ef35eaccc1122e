"""The layers above the engine: a test double stands in for the engine (the real engine's
stream is covered end to end in tests/e2e); here it fails mid-stream on purpose."""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator

from inferd.api.sse import events
from inferd.chat.chunks import Envelope
from inferd.chat.reasoning import plan_reasoning
from inferd.chat.reasoning.run import ReasoningRun
from inferd.chat.reasoning.styles import NoReasoning
from inferd.chat.service import Completion
from inferd.engines.base import Capabilities, Delta, GenerationRequest, Sampling, Usage
from inferd.engines.flavours import LlamaCppFlavour
from inferd.engines.http import deltas
from inferd.engines.upstream import _next_event, _parsed
from inferd.errors import ContextLengthExceeded, EngineFailure, InvalidRequest

REQUEST = GenerationRequest(messages=[{"role": "user", "content": "hi"}],
                            sampling=Sampling(1.0, 1.0, 0, 0.0, 1.0, None))


class FailingEngine:
    """Yields one delta, then fails: an error after the stream has started."""

    capabilities = Capabilities(context_length=256, parallel=1)

    def __init__(self) -> None:
        self.closed = False

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        try:
            yield Delta(content="Hel")
            raise EngineFailure("The engine failed: out of memory")
        finally:
            self.closed = True


def _completion(engine: FailingEngine, finished: list) -> Completion:
    plan, _ = plan_reasoning(NoReasoning(), {}, (), {}, {})
    return Completion(Envelope(model="m"), ReasoningRun(engine, REQUEST, plan).deltas(), (),  # type: ignore[arg-type]
                      finished.append)


async def _collect(stream: AsyncIterator[bytes]) -> list[str]:
    return [chunk.decode() async for chunk in stream]


def test_error_after_start_becomes_an_sse_error_event_then_done() -> None:
    engine, finished = FailingEngine(), []
    completion = _completion(engine, finished)

    async def run() -> list[str]:
        await completion.open()
        return await _collect(events(completion.chunks(include_usage=True)))

    out = asyncio.run(run())
    assert json.loads(out[0][6:])["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert json.loads(out[1][6:])["choices"][0]["delta"] == {"content": "Hel"}
    error = json.loads(out[2][6:])["error"]
    assert error == {"message": "The engine failed: out of memory", "type": "server_error", "param": None,
                     "code": "engine_error"}
    assert out[3] == "data: [DONE]\n\n" and len(out) == 4
    assert engine.closed and finished == [None]  # released exactly once, no usage recorded


def test_close_before_reading_releases_once() -> None:
    engine, finished = FailingEngine(), []
    completion = _completion(engine, finished)

    async def run() -> None:
        await completion.open()
        await completion.aclose()
        await completion.aclose()

    asyncio.run(run())
    assert engine.closed and finished == [None]


def _feed(*items: object) -> list[Delta]:
    """Server-sent events as the upstream client parses them, through the llama.cpp flavour's refusals."""
    async def lines() -> AsyncIterator[str]:
        for item in items:
            yield "data: " + json.dumps(item)
            yield ""
        yield "data: [DONE]"

    async def chunks() -> AsyncIterator[dict]:
        refusal = LlamaCppFlavour().refusal("the engine")
        source = lines()
        while (data := await _next_event(source)) is not None:
            yield _parsed(data, refusal)

    async def run() -> list[Delta]:
        return [d async for d in deltas(chunks())]
    return asyncio.run(run())


def _chunk(content: str | None = None, finish: str | None = None) -> dict:
    delta = {"content": content} if content is not None else {}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_llamacpp_chunks_become_deltas_with_usage_last() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "prompt_tokens_details": {"cached_tokens": 3}}
    out = _feed({"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
                _chunk("a"), _chunk("b"), _chunk(finish="length"), {"choices": [], "usage": usage})
    assert out == [Delta("a"), Delta("b"), Delta(finish_reason="length", usage=Usage(5, 2, 3))]


def test_a_server_without_usage_gets_its_pieces_counted() -> None:
    out = _feed(_chunk("a"), _chunk("b"), _chunk("c", finish="stop"))
    assert out[-1] == Delta(finish_reason="stop", usage=Usage(prompt_tokens=0, completion_tokens=3))


def test_llamacpp_errors_map_to_api_errors() -> None:
    import pytest

    with pytest.raises(ContextLengthExceeded) as caught:
        _feed({"error": {"code": 400, "type": "exceed_context_size_error", "message": "x", "n_prompt_tokens": 9000,
                         "n_ctx": 4096}})
    assert "4096" in caught.value.message and "9000" in caught.value.message
    with pytest.raises(InvalidRequest):
        _feed({"error": {"code": 400, "type": "invalid_request_error", "message": "bad"}})
    with pytest.raises(EngineFailure):
        _feed({"error": {"code": 500, "type": "server_error", "message": "boom"}})
    with pytest.raises(EngineFailure):
        _feed(_chunk("a"))  # the stream ended without a finish reason
