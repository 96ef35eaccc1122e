"""Store tests run on both stores: SQLite in a temp file and a fresh database on the test PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from inferd.library import Library, ModelSpec
from inferd.provider.clock import FixedClock
from inferd.provider.gate import Gate
from inferd.provider.ledger import UsageLedger
from inferd.provider.pricing import Pricing
from inferd.provider.spool import Spool
from inferd.store import Store, open_store

# 2026-03-04 23:59:00 UTC, a Wednesday: one minute before a daily reset
START = 1772668740.0
MODEL = ModelSpec(id="m", engine="llamacpp", context_length=1000, parallel=1, filename="m.gguf",
                  pricing=Pricing(prompt=0.001, completion=0.002))
OTHER = ModelSpec(id="other", engine="llamacpp", context_length=1000, parallel=1, filename="o.gguf")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return "sqlite://" + str(tmp_path / "inferd.sqlite3")
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture()
def open_one(database_url: str) -> Iterator[Callable[[], Store]]:
    """Opens stores (one per simulated gateway) on the same database; all closed afterwards."""
    opened: list[Store] = []

    def open_() -> Store:
        opened.append(open_store(database_url, None, busy_timeout_ms=300))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


@pytest.fixture()
def store(open_one: Callable[[], Store]) -> Store:
    return open_one()


@pytest.fixture()
def clock() -> FixedClock:
    return FixedClock(START)


def make_gate(store: Store, clock: FixedClock, spool_dir: Path, retry_s: float = 0.05) -> tuple[Gate, UsageLedger]:
    ledger = UsageLedger(store, Spool(spool_dir), retry_s=retry_s)
    return Gate(store, ledger, Library([MODEL, OTHER]), clock, lease_s=3600.0), ledger
