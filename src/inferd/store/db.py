"""SQLite store: a list of small migrations applied once, WAL mode, one writer thread."""

from __future__ import annotations

import queue
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable

Migration = Callable[[sqlite3.Connection], None]


def _m001_keys(db: sqlite3.Connection) -> None:
    db.execute("""CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL, last_used_at REAL, revoked_at REAL)""")


def _m002_usage(db: sqlite3.Connection) -> None:
    db.execute("""CREATE TABLE usage (
        id INTEGER PRIMARY KEY, key_id INTEGER NOT NULL REFERENCES api_keys(id), model TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, created_at REAL NOT NULL)""")
    db.execute("CREATE INDEX usage_key_time ON usage(key_id, created_at)")


MIGRATIONS: list[Migration] = [_m001_keys, _m002_usage]


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def migrate(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    current = row[0] or 0
    for version, migration in enumerate(MIGRATIONS[current:], start=current + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            migration(db)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


class Store:
    """Reads run on the caller's connection; writes from the server go through one writer thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = connect(path)
        migrate(self.db)
        self._writes: queue.Queue[tuple[str, tuple[Any, ...]] | None] = queue.Queue()
        self._writer: threading.Thread | None = None

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        cursor = self.db.execute(sql, args)
        cursor.row_factory = sqlite3.Row
        return cursor.fetchall()

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """A synchronous write (CLI use); returns the number of changed rows."""
        return self.db.execute(sql, args).rowcount

    def write_later(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        """Queue a write for the writer thread: never blocks the event loop."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
            self._writer.start()
        self._writes.put((sql, args))

    def _write_loop(self) -> None:
        db = connect(self.path)
        while (item := self._writes.get()) is not None:
            try:
                db.execute(*item)
            except sqlite3.Error as exc:  # a lost usage row must not kill the writer
                print(f"inferd: store write failed: {exc}", flush=True)
        db.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writes.put(None)
            self._writer.join(timeout=5)
        self.db.close()
