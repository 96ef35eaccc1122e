"""Usage records from the chat service on a real database, with a test double for the engine (the
real engine's paths are covered end to end in tests/e2e/test_provider.py): engine errors mid-stream,
cancellations, refusals after admission. Each admitted request leaves exactly one record."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from inferd.api.schemas import parse_chat_request
from inferd.chat.service import ChatService
from inferd.engines.base import Capabilities, Delta, GenerationRequest, Usage
from inferd.errors import EngineFailure, PermissionDenied, Unavailable
from inferd.provider.clock import FixedClock
from inferd.settings import Settings
from inferd.store import Store
from inferd.store.keys import insert_key

from .conftest import MODEL, make_gate


class ScriptedEngine:
    capabilities = Capabilities(context_length=1000, parallel=1)

    def __init__(self, tokens: int, fail: bool) -> None:
        self.tokens, self.fail = tokens, fail

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        for i in range(self.tokens):
            yield Delta(content=f"t{i} ")
            await asyncio.sleep(0)
        if self.fail:
            raise EngineFailure("The engine failed: out of memory")
        yield Delta(finish_reason="length", usage=Usage(7, self.tokens))


class OnePool:
    def __init__(self, engine: ScriptedEngine | None) -> None:
        self.engine, self.in_flight = engine, 0

    def acquire(self, spec: Any) -> ScriptedEngine:
        if self.engine is None:
            raise Unavailable("Model 'm' is at capacity.", retry_after=1)
        self.in_flight += 1
        return self.engine

    def release(self, spec: Any) -> None:
        self.in_flight -= 1


def _records(store: Store) -> list[dict[str, Any]]:
    return store.run_read(lambda tx: tx.rows(
        "SELECT status, prompt_tokens, completion_tokens, estimated, cost, user_id, finish_reason, engine, "
        "ttft_ms IS NOT NULL AS has_ttft FROM usage"))


def _run(store: Store, tmp_path: Path, engine: ScriptedEngine | None, consume: Any, user: str | None = None) -> OnePool:
    gate, ledger = make_gate(store, FixedClock(1e9), tmp_path)
    pool = OnePool(engine)
    service = ChatService(gate._library, pool, gate, Settings(data_dir=tmp_path))  # type: ignore[arg-type]
    key, _ = store.run_write(insert_key, "k", {}, 0.0)
    chat = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 50,
                               "stream": True, **({"user": user} if user else {})})

    async def go() -> None:
        try:
            completion = await service.start(key, chat)
            await consume(completion)
        except Unavailable:
            pass
        assert await ledger.drain()
        await ledger.close()

    asyncio.run(go())
    return pool


async def read_all(completion: Any) -> None:
    async for _ in completion.chunks(include_usage=True):
        pass


def test_a_completed_request_records_the_engine_usage_and_the_user(store: Store, tmp_path: Path) -> None:
    pool = _run(store, tmp_path, ScriptedEngine(5, fail=False), read_all, user="end-user-42")
    assert pool.in_flight == 0
    [rec] = _records(store)
    assert (rec["status"], rec["prompt_tokens"], rec["completion_tokens"], rec["estimated"]) == ("completed", 7, 5, 0)
    assert rec["user_id"] == "end-user-42" and rec["finish_reason"] == "length" and rec["engine"] == "llamacpp"
    assert rec["cost"] == pytest.approx(MODEL.pricing.cost(Usage(7, 5))) and rec["has_ttft"]


def test_an_engine_error_mid_stream_records_the_tokens_generated(store: Store, tmp_path: Path) -> None:
    async def consume(completion: Any) -> None:
        with pytest.raises(EngineFailure):
            await read_all(completion)

    _run(store, tmp_path, ScriptedEngine(4, fail=True), consume)
    [rec] = _records(store)
    assert (rec["status"], rec["completion_tokens"], rec["estimated"]) == ("engine_error", 4, 1)
    assert rec["prompt_tokens"] == 10 + 4  # 40 bytes of prompt, estimated at 4 bytes a token + 4 a message


def test_a_cancelled_stream_records_the_tokens_sent_so_far(store: Store, tmp_path: Path) -> None:
    async def consume(completion: Any) -> None:
        chunks = completion.chunks(include_usage=True)
        for _ in range(4):  # the role chunk, then three tokens
            await anext(chunks)
        await chunks.aclose()  # the client went away
        await completion.aclose()

    _run(store, tmp_path, ScriptedEngine(100, fail=False), consume)
    [rec] = _records(store)
    assert rec["status"] == "client_disconnected" and 3 <= rec["completion_tokens"] <= 4 and rec["estimated"] == 1


def test_a_refusal_after_admission_is_recorded_with_no_tokens(store: Store, tmp_path: Path) -> None:
    _run(store, tmp_path, None, read_all)  # the pool is at capacity: 503 after the key was admitted
    [rec] = _records(store)
    assert (rec["status"], rec["prompt_tokens"], rec["completion_tokens"]) == ("server_overloaded", 0, 0)


def test_a_management_key_cannot_call_completions(store: Store, tmp_path: Path) -> None:
    gate, _ = make_gate(store, FixedClock(1e9), tmp_path)
    admin, _ = store.run_write(insert_key, "admin", {}, 0.0, True)
    with pytest.raises(PermissionDenied):
        gate.model(admin, "m")


def test_a_client_gone_while_the_database_admits_still_leaves_one_record(store: Store, tmp_path: Path) -> None:
    gate, ledger = make_gate(store, FixedClock(1e9), tmp_path)
    key, _ = store.run_write(insert_key, "k", {"concurrency": 1}, 0.0)

    async def go() -> None:
        attempt = asyncio.ensure_future(gate.admit(key, MODEL, [{"role": "user", "content": "hi"}], 5, None))
        await asyncio.sleep(0)  # the admission is in the database's hands
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        for _ in range(500):
            if _records(store) and ledger.settled:
                break
            await asyncio.sleep(0.01)
        assert await ledger.drain()
        await ledger.close()

    asyncio.run(go())
    [rec] = _records(store)
    assert (rec["status"], rec["completion_tokens"]) == ("client_disconnected", 0)
