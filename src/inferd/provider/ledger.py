"""The usage ledger: settlements go to the store in batches, off the request path, and never get lost.

``record`` never blocks and never fails. A writer task settles queued records in one transaction
per batch; when the database refuses (locked, read-only, full, unreachable), the batch goes to
the spool file and is replayed every ``retry_s`` until the database takes it. Settling is
idempotent (keyed by the request id), so a replay of a batch that did commit changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Sequence

from ..store import Store, StoreUnavailable, UsageRecord
from ..store.backend import Tx
from ..store.ledger import settle
from .periods import all_periods
from .spool import Spool

log = logging.getLogger("inferd")


def settle_many(tx: Tx, records: Sequence[UsageRecord]) -> int:
    return settle(tx, records, all_periods)


class UsageLedger:
    def __init__(self, store: Store, spool: Spool, *, batch: int = 512, retry_s: float = 1.0) -> None:
        self._store = store
        self._spool = spool
        self._batch = batch
        self._retry_s = retry_s
        self._queue: asyncio.Queue[UsageRecord | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._held: list[UsageRecord] = []  # neither the database nor the spool file took these yet
        self._busy = False  # a batch or a replay is in the database's hands
        self.settled = 0
        self.spooled = 0

    def record(self, rec: UsageRecord) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-ledger")
        self._queue.put_nowait(rec)

    @property
    def backlog(self) -> int:
        """Records not yet in the database: queued, held in memory or spooled."""
        return (self._queue.qsize() if self._queue else 0) + len(self._held) + self._spool.count

    async def drain(self, timeout: float = 30.0) -> bool:
        """Wait until everything recorded so far is in the database (benchmarks, tests, shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.backlog or self._busy:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def start(self) -> None:
        """Replay what earlier processes left in the spool (at server start)."""
        await self._replay()

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            try:
                first = await asyncio.wait_for(self._queue.get(), self._retry_s)
            except asyncio.TimeoutError:
                await self._replay()
                continue
            items = [first]
            while len(items) < self._batch and not self._queue.empty():
                items.append(self._queue.get_nowait())
            batch = [item for item in items if item is not None]
            self._busy = True
            try:
                if batch:
                    await self._write(batch)
                if self._held or self._spool.count:
                    await self._replay()
            finally:
                self._busy = False
            if len(batch) < len(items):  # the stop sentinel from close()
                return

    async def _write(self, batch: list[UsageRecord]) -> None:
        try:
            self.settled += await self._store.write(settle_many, batch)
        except StoreUnavailable as exc:
            log.warning("usage: the database refused %d record(s) (%s); spooled for replay", len(batch), exc)
            self._to_spool(batch)

    def _to_spool(self, batch: list[UsageRecord]) -> None:
        try:
            self._spool.append(self._held + batch)
            self.spooled += len(self._held) + len(batch)
            self._held = []
        except OSError as exc:
            log.error("usage: the spool file refused %d record(s) too (%s); kept in memory", len(batch), exc)
            self._held += batch

    async def _replay(self) -> None:
        """Everything pending: held in memory, this process's spool, orphaned spool files."""
        if self._held:
            self._to_spool([])
        try:
            if self._spool.count:
                self.settled += await self._store.write(settle_many, self._spool.own())
                self._spool.clear_own()
                log.info("usage: spooled records replayed into the database")
            with self._spool.orphans() as files:
                for path, records in files:
                    self.settled += await self._store.write(settle_many, records)
                    log.info("usage: replayed %d record(s) from %s", len(records), path.name)
        except StoreUnavailable:
            pass  # still refused: try again in retry_s
        except OSError as exc:
            log.error("usage: the spool could not be read (%s)", exc)

    async def close(self) -> None:
        """Settle or spool everything queued (server shutdown)."""
        if self._task is not None and self._queue is not None:
            self._queue.put_nowait(None)  # type: ignore[arg-type]
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._replay()
        if self._held:
            log.error("usage: %d record(s) could be written nowhere and are lost", len(self._held))
        self._spool.close()
