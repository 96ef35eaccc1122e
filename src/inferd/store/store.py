"""The store the server uses: the same operations on SQLite or PostgreSQL, off the event loop.

Every operation is a function of a transaction (``keys``, ``ledger``, ``reports``); ``read`` and
``write`` run one in a worker thread. SQLite gets a single writer thread (its one write lock is
never fought over inside a process) and reader threads; PostgreSQL a few threads, each with its
own connection.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from .backend import Backend, Tx
from .records import StoreUnavailable

T = TypeVar("T")


class Store:
    def __init__(self, backend: Backend, *, writers: int, readers: int) -> None:
        self.backend = backend
        self.dialect = backend.dialect
        self._writers = ThreadPoolExecutor(writers, thread_name_prefix="store-write")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="store-read") if readers else self._writers

    def run_read(self, fn: Callable[..., T], *args: Any) -> T:
        """Synchronously, on the caller's thread (the CLI)."""
        return self._run(False, fn, args)

    def run_write(self, fn: Callable[..., T], *args: Any) -> T:
        return self._run(True, fn, args)

    def _run(self, write: bool, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """Once more on a new connection when the old one turned out dead (a database restart)."""
        for attempt in (1, 2):
            try:
                with self.backend.transaction(write=write) as tx:
                    return fn(tx, *args)
            except StoreUnavailable as exc:
                if attempt == 2 or not exc.connection_lost:
                    raise
        raise AssertionError("unreachable")

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, self.run_read, fn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writers, self.run_write, fn, *args)

    def close(self) -> None:
        self._writers.shutdown(wait=True)
        if self._readers is not self._writers:
            self._readers.shutdown(wait=True)
        self.backend.close()


def open_store(database_url: str, sqlite_path: Any, busy_timeout_ms: int = 5000) -> Store:
    """PostgreSQL when the URL names it; else SQLite at ``sqlite_path`` (or the URL's path)."""
    if database_url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresBackend

        return Store(PostgresBackend(database_url, busy_timeout_ms), writers=4, readers=0)
    from pathlib import Path

    from .sqlite import SqliteBackend

    path = Path(database_url.removeprefix("sqlite://")) if database_url.startswith("sqlite://") else Path(sqlite_path)
    return Store(SqliteBackend(path, busy_timeout_ms), writers=1, readers=2)


__all__ = ["Store", "Tx", "open_store"]
