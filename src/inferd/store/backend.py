"""The seam between the store's operations and a database: a transaction that runs SQL.

Operations are written once, in the SQL both SQLite and PostgreSQL speak, with ``?`` placeholders;
a backend turns driver errors into ``StoreUnavailable`` (try again later) or ``Duplicate``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol, Sequence

from .migrations import MIGRATIONS, statements


class Tx(Protocol):
    dialect: str

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    def run(self, sql: str, args: Sequence[Any] = ()) -> int: ...

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        """One statement over many argument rows (pipelined where the driver can); rows it RETURNs."""

    def lock_key(self, key_id: int) -> None:
        """Serialize admissions of one key until the transaction ends (across processes); the
        transaction may then commit without waiting for its log to reach the disk (an admission is
        soft state: its settlement carries the whole record)."""

    def relaxed(self) -> None:
        """The same commit without waiting for the disk, for an admission that takes no lock."""


class Backend(Protocol):
    dialect: str
    where: str  # for messages: a file path, or a database URL without its password

    def transaction(self, *, write: bool) -> contextlib.AbstractContextManager[Tx]: ...

    def close(self) -> None: ...


def one(tx: Tx, sql: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
    found = tx.rows(sql, args)
    return found[0] if found else None


def apply_migrations(tx: Tx) -> int:
    """Apply the steps this database has not taken yet (the caller holds the schema lock)."""
    tx.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    current = (one(tx, "SELECT MAX(version) AS v FROM schema_version") or {}).get("v") or 0
    for version, step in enumerate(MIGRATIONS[current:], start=current + 1):
        for sql in statements(step, tx.dialect):
            tx.run(sql)
        tx.run("INSERT INTO schema_version (version) VALUES (?)", (version,))
    return len(MIGRATIONS) - current

