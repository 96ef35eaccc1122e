"""Admission through the gate on a real database: every limit, resets by the injected clock, races,
and several gateways (stores) sharing one database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

import pytest

from inferd.engines.base import Usage
from inferd.errors import APIError, QuotaExceeded, RateLimited
from inferd.provider.clock import FixedClock
from inferd.provider.gate import Admission, Gate
from inferd.provider.ledger import UsageLedger
from inferd.store import KeyRecord, Store
from inferd.store.keys import insert_key
from inferd.store.ledger import counters
from inferd.provider.periods import all_periods

from .conftest import MODEL, make_gate

HI = [{"role": "user", "content": "hi"}]  # reserves 64 + 16 + 2 + max_tokens tokens


def new_key(store: Store, **fields: Any) -> KeyRecord:
    key, _ = store.run_write(insert_key, f"k{len(fields)}-{id(fields)}", fields, 0.0)
    return key


async def attempt(gate: Gate, key: KeyRecord, max_tokens: int | None = 10) -> Admission | APIError:
    try:
        return await gate.admit(key, MODEL, HI, max_tokens, None)
    except (RateLimited, QuotaExceeded) as exc:
        return exc


async def burst(gate: Gate, key: KeyRecord, n: int, max_tokens: int | None = 10) -> list[Admission | APIError]:
    return list(await asyncio.gather(*(attempt(gate, key, max_tokens) for _ in range(n))))


def admitted(results: list[Any]) -> list[Admission]:
    return [r for r in results if isinstance(r, Admission)]


def test_requests_per_minute_admit_exactly_the_limit_and_slide(store: Store, clock: FixedClock, tmp_path: Path) -> None:
    gate, ledger = make_gate(store, clock, tmp_path)
    key = new_key(store, rpm=10)

    async def run() -> None:
        results = await burst(gate, key, 30)
        assert len(admitted(results)) == 10
        refused = [r for r in results if isinstance(r, RateLimited)]
        assert len(refused) == 20 and all(r.type == "requests" for r in refused)
        assert refused[0].headers["x-ratelimit-remaining-requests"] == "0"
        assert refused[0].headers["Retry-After"] == "61"  # counted to the second, conservatively
        clock.advance(30)
        assert isinstance(await attempt(gate, key), RateLimited)
        clock.advance(30.5)
        assert isinstance(await attempt(gate, key), RateLimited)  # within a second of the minute: still counted
        clock.advance(0.5)  # the first ten left the sliding minute
        assert len(admitted(await burst(gate, key, 12))) == 10
        for a in admitted(results):
            a.settle(Usage(5, 5))
        assert await ledger.drain()
        await ledger.close()

    asyncio.run(run())


def test_two_gateways_on_one_database_admit_exactly_the_limit(open_one: Callable[[], Store], clock: FixedClock,
                                                              tmp_path: Path) -> None:
    one, two = open_one(), open_one()
    gate_one, _ = make_gate(one, clock, tmp_path / "1")
    gate_two, _ = make_gate(two, clock, tmp_path / "2")
    key = new_key(one, rpm=10)

    async def run() -> int:
        results = await asyncio.gather(*(attempt(g, key) for _ in range(15) for g in (gate_one, gate_two)))
        return len(admitted(list(results)))

    assert asyncio.run(run()) == 10


def test_tokens_per_minute_reserve_then_settle_to_the_actual_count(store: Store, clock: FixedClock,
                                                                   tmp_path: Path) -> None:
    gate, ledger = make_gate(store, clock, tmp_path)
    key = new_key(store, tpm=300)  # one request reserves 64 + 16 + 2 + 100 = 182

    async def run() -> None:
        first = await attempt(gate, key, 100)
        assert isinstance(first, Admission) and first.headers["x-ratelimit-remaining-tokens"] == str(300 - 182)
        second = await attempt(gate, key, 100)
        assert isinstance(second, RateLimited) and second.type == "tokens"
        first.settle(Usage(10, 20))  # settles to 30 tokens: 30 + 182 fits
        assert await ledger.drain()
        assert isinstance(await attempt(gate, key, 100), Admission)
        too_large = await attempt(gate, key, None)  # no max_tokens: the whole context (1000) is reserved
        assert isinstance(too_large, RateLimited) and "Request too large" in too_large.message
        await ledger.close()

    asyncio.run(run())


def test_concurrent_requests_count_until_settled(store: Store, clock: FixedClock, tmp_path: Path) -> None:
    gate, ledger = make_gate(store, clock, tmp_path)
    key = new_key(store, concurrency=2)

    async def run() -> None:
        held = admitted(await burst(gate, key, 5))
        assert len(held) == 2
        held[0].settle(Usage(1, 1))
        assert await ledger.drain()
        assert len(admitted(await burst(gate, key, 3))) == 1
        await ledger.close()

    asyncio.run(run())


def test_racing_for_the_last_of_a_budget_overspends_by_less_than_one_reservation(
        store: Store, clock: FixedClock, tmp_path: Path) -> None:
    gate, ledger = make_gate(store, clock, tmp_path)
    key = new_key(store, spend_limit=1.0)
    reservation = MODEL.pricing.reservation(64 + 16 + 2 + 100)  # 0.364 at the completion price

    async def run() -> float:
        results = await burst(gate, key, 20, 100)
        winners = admitted(results)
        assert all(isinstance(r, QuotaExceeded) for r in results if r not in winners)
        for a in winners:  # the worst case: every winner spends its whole reservation
            a.settle(Usage(prompt_tokens=0, completion_tokens=182))
        assert await ledger.drain()
        assert isinstance(await attempt(gate, key, 100), QuotaExceeded)
        await ledger.close()
        return store.run_read(counters, key.id, all_periods(clock.now()))["total"]["cost"]

    spent = asyncio.run(run())
    assert 1.0 <= spent < 1.0 + reservation


@pytest.mark.parametrize("period,advance", [("daily", 61), ("weekly", 4 * 86400 + 61), ("monthly", 27 * 86400 + 61)])
def test_token_limit_resets_when_the_clock_crosses_the_period(store: Store, clock: FixedClock, tmp_path: Path,
                                                             period: str, advance: float) -> None:
    gate, ledger = make_gate(store, clock, tmp_path)  # the clock starts Wed 2026-03-04 23:59 UTC
    key = new_key(store, token_limit=50, limit_reset=period)

    async def run() -> None:
        first = await attempt(gate, key)
        assert isinstance(first, Admission)
        first.settle(Usage(30, 20))
        assert await ledger.drain()
        refused = await attempt(gate, key)
        assert isinstance(refused, QuotaExceeded) and refused.status == 402 and "per" in refused.message
        clock.advance(advance - 62)
        assert isinstance(await attempt(gate, key), QuotaExceeded)  # still inside the period
        clock.advance(62)
        assert isinstance(await attempt(gate, key), Admission)
        await ledger.close()

    asyncio.run(run())


def test_a_key_without_limits_is_admitted_without_a_lock_and_still_counted(store: Store, clock: FixedClock,
                                                                           tmp_path: Path) -> None:
    gate, ledger = make_gate(store, clock, tmp_path)
    key = new_key(store)

    async def run() -> None:
        results = admitted(await burst(gate, key, 20))
        assert len(results) == 20 and all(a.headers == {} for a in results)
        for a in results:
            a.settle(Usage(3, 4))
        assert await ledger.drain()
        await ledger.close()

    asyncio.run(run())
    assert store.run_read(counters, key.id, all_periods(clock.now()))["daily"] == {
        "requests": 20, "tokens": 140, "cost": pytest.approx(20 * (3 * 0.001 + 4 * 0.002))}
