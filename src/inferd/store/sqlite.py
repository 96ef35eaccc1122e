"""SQLite behind the store: WAL, one connection per thread, ``BEGIN IMMEDIATE`` for writes."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from .backend import apply_migrations
from .records import Duplicate, StoreUnavailable


class SqliteTx:
    dialect = "sqlite"

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self.db.execute(sql, tuple(args))
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self.db.execute(sql, tuple(args)).rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        return [row for args in rows for row in self.rows(sql, args)]

    def lock_key(self, key_id: int) -> None:
        """``BEGIN IMMEDIATE`` already holds the database's one write lock (and WAL with
        synchronous=NORMAL never waits for the disk at commit)."""

    def relaxed(self) -> None:
        """Already so."""


class SqliteBackend:
    dialect = "sqlite"

    def __init__(self, path: Path, busy_timeout_ms: int = 5000) -> None:
        self.path = path
        self.where = str(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.transaction(write=True) as tx:
            apply_migrations(tx)

    def connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=self._busy_timeout_ms / 1000)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    @contextlib.contextmanager
    def transaction(self, *, write: bool) -> Iterator[SqliteTx]:
        try:
            db = self.connection()
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield SqliteTx(db)
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            raise Duplicate(str(exc)) from None
        except sqlite3.Error as exc:  # locked, read-only, full, I/O: the caller may try again later
            self._rollback_quietly()
            raise StoreUnavailable(f"SQLite ({self.path.name}): {exc}") from None

    def _rollback_quietly(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None and db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            self._all.clear()
