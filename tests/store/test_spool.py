"""Usage is never lost or doubled: records the database refuses go to the spool and are replayed.

Each fault is a real one of the database in use: SQLite locked by another connection, read-only
(``query_only``) and full (``max_page_count`` at the file's size); PostgreSQL with the table locked
(lock_timeout), the database read-only, out of disk (SQLSTATE 53100 ``disk_full``, raised by a
trigger, as a full disk makes PostgreSQL raise it) and refusing connections.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, Callable

import psycopg
import pytest

from inferd.engines.base import Usage
from inferd.provider.clock import FixedClock
from inferd.provider.ledger import UsageLedger
from inferd.provider.spool import Spool
from inferd.store import Store
from inferd.store.keys import insert_key
from inferd.store.ledger import counters
from inferd.provider.periods import all_periods

from .conftest import MODEL, make_gate

SQLITE_FAULTS = ("locked", "read-only", "full")
POSTGRES_FAULTS = ("locked", "read-only", "disk-full", "unreachable")


def _on_writer(store: Store, sql: str) -> Any:
    """Run SQL on the store's own writer connection (SQLite's per-connection pragmas)."""
    backend: Any = store.backend
    return store._writers.submit(lambda: backend.connection().execute(sql).fetchall()).result()


class SqliteFault:
    def __init__(self, name: str, store: Store, url: str) -> None:
        self.name, self.store, self.path = name, store, url.removeprefix("sqlite://")
        self._other: sqlite3.Connection | None = None

    def start(self) -> None:
        if self.name == "locked":
            self._other = sqlite3.connect(self.path, isolation_level=None)
            self._other.execute("BEGIN EXCLUSIVE")
        elif self.name == "read-only":
            _on_writer(self.store, "PRAGMA query_only = 1")
        else:
            pages = _on_writer(self.store, "PRAGMA page_count")[0][0]
            _on_writer(self.store, f"PRAGMA max_page_count = {pages}")

    def stop(self) -> None:
        if self._other is not None:
            self._other.execute("ROLLBACK")
            self._other.close()
        elif self.name == "read-only":
            _on_writer(self.store, "PRAGMA query_only = 0")
        else:
            _on_writer(self.store, "PRAGMA max_page_count = 1073741823")


class PostgresFault:
    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url
        self.db = url.rsplit("/", 1)[1]
        self.admin = psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True)
        self.holder: psycopg.Connection | None = None

    def _kick(self) -> None:
        self.admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                           "AND pid <> pg_backend_pid()", (self.db,))

    def start(self) -> None:
        if self.name == "locked":
            self.holder = psycopg.connect(self.url)
            self.holder.execute("LOCK TABLE usage IN ACCESS EXCLUSIVE MODE")
        elif self.name == "read-only":
            self.admin.execute(f"ALTER DATABASE {self.db} SET default_transaction_read_only = on")
            self._kick()
        elif self.name == "disk-full":
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                             "RAISE EXCEPTION 'could not extend file: No space left on device' "
                             "USING ERRCODE = 'disk_full'; END $$")
                conn.execute("CREATE TRIGGER full_disk BEFORE INSERT OR UPDATE ON usage FOR EACH ROW "
                             "EXECUTE FUNCTION full_disk()")
        else:
            self.admin.execute(f"ALTER DATABASE {self.db} ALLOW_CONNECTIONS false")
            self._kick()

    def stop(self) -> None:
        if self.holder is not None:
            self.holder.rollback()
            self.holder.close()
        elif self.name == "read-only":
            self.admin.execute(f"ALTER DATABASE {self.db} RESET default_transaction_read_only")
            self._kick()
        elif self.name == "disk-full":
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("DROP TRIGGER full_disk ON usage")
        else:
            self.admin.execute(f"ALTER DATABASE {self.db} ALLOW_CONNECTIONS true")
        self.admin.close()


def _faults() -> list[Any]:
    return ([pytest.param(("sqlite", f), id=f"sqlite-{f}") for f in SQLITE_FAULTS]
            + [pytest.param(("postgres", f), id=f"postgres-{f}") for f in POSTGRES_FAULTS])


@pytest.fixture()
def fault_case(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Store, Any]:
    dialect, name = request.param
    if dialect == "sqlite":
        url = "sqlite://" + str(tmp_path / "inferd.sqlite3")
    else:
        url = request.getfixturevalue("postgres").new_database()
    from inferd.store import open_store

    store = open_store(url, None, busy_timeout_ms=300)
    fault = SqliteFault(name, store, url) if dialect == "sqlite" else PostgresFault(name, url)
    yield name, store, fault
    store.close()


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def spooled_lines(folder: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in folder.glob("usage-*.jsonl"))


@pytest.mark.parametrize("fault_case", _faults(), indirect=True)
def test_records_survive_a_database_fault_once_each(fault_case: tuple[str, Store, Any], clock: FixedClock,
                                                    tmp_path: Path) -> None:
    name, store, fault = fault_case
    spool_dir = tmp_path / "spool"
    gate, ledger = make_gate(store, clock, spool_dir)
    key, _ = store.run_write(insert_key, "k", {}, 0.0)
    count = 300 if name == "full" else 20  # enough new rows to need a new page of the file

    async def run() -> None:
        held = [await gate.admit(key, MODEL, [{"role": "user", "content": "x" * 200}], 5, "u") for _ in range(count)]
        fault.start()
        try:
            for admission in held:
                admission.settle(Usage(5, 7))
            await until(lambda: ledger.spooled >= count)
            assert spooled_lines(spool_dir) == count and ledger.settled == 0
        finally:
            fault.stop()
        assert await ledger.drain()
        await ledger.close()

    asyncio.run(run())
    totals = store.run_read(counters, key.id, all_periods(clock.now()))["total"]
    assert totals["requests"] == count and totals["tokens"] == 12 * count
    statuses = store.run_read(lambda tx: tx.rows("SELECT status, COUNT(*) AS n FROM usage GROUP BY status"))
    assert [(r["status"], int(r["n"])) for r in statuses] == [("completed", count)]
    assert spooled_lines(spool_dir) == 0


def test_a_spool_left_by_a_dead_process_is_replayed_once(store: Store, clock: FixedClock, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    gate, ledger = make_gate(store, clock, spool_dir)
    key, _ = store.run_write(insert_key, "k", {}, 0.0)

    async def admit_and_crash() -> list[Any]:
        held = [await gate.admit(key, MODEL, [{"role": "user", "content": "hi"}], 5, None) for _ in range(3)]
        records = [a._record(Usage(2, 3), clock.now()) for a in held]
        dead = Spool(spool_dir)  # what a process that died with its database down left behind
        dead.append(records)
        dead._file.close()  # type: ignore[union-attr]
        dead._file = None
        return records

    records = asyncio.run(admit_and_crash())
    twice = Spool(spool_dir)  # and the same records again in a second leftover file: never doubled
    twice.append(records)
    twice._file.close()  # type: ignore[union-attr]

    async def restart() -> None:
        fresh = UsageLedger(store, Spool(spool_dir), retry_s=0.05)
        await fresh.start()
        assert fresh.settled == 3
        await fresh.close()

    asyncio.run(restart())
    totals = store.run_read(counters, key.id, all_periods(clock.now()))["total"]
    assert totals == {"requests": 3, "tokens": 15, "cost": pytest.approx(3 * (2 * 0.001 + 3 * 0.002))}
    assert list(spool_dir.glob("usage-*.jsonl")) == []
