"""PostgreSQL behind the store (``INFERD_DATABASE_URL=postgresql://...``): psycopg 3, one connection
per thread, row locks on the key for admissions, an advisory lock around migrations."""

from __future__ import annotations

import contextlib
import re
import threading
from typing import Any, Iterator, Sequence

from .backend import apply_migrations
from .records import Duplicate, StoreUnavailable

MIGRATION_LOCK = 0x1F5D_0001  # pg_advisory_xact_lock key: one gateway migrates at a time


def _placeholders(sql: str) -> str:
    assert "%" not in sql, "portable SQL must not contain '%'"
    return sql.replace("?", "%s")


class PostgresTx:
    dialect = "postgres"

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self.cursor.execute(_placeholders(sql), tuple(args))
        return list(self.cursor.fetchall()) if self.cursor.description else []

    def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        self.cursor.execute(_placeholders(sql), tuple(args))
        return self.cursor.rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        if not rows:
            return []
        returning = "RETURNING" in sql
        self.cursor.executemany(_placeholders(sql), [tuple(r) for r in rows], returning=returning)
        out: list[dict[str, Any]] = []
        while returning:
            out += self.cursor.fetchall()
            if not self.cursor.nextset():
                break
        return out

    def lock_key(self, key_id: int) -> None:
        self.cursor.execute("SELECT id, set_config('synchronous_commit', 'off', true) FROM api_keys "
                            "WHERE id = %s FOR UPDATE", (key_id,))

    def relaxed(self) -> None:
        self.cursor.execute("SET LOCAL synchronous_commit = off")


def redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


class PostgresBackend:
    dialect = "postgres"

    def __init__(self, url: str, busy_timeout_ms: int = 5000) -> None:
        import psycopg  # optional until a database URL names PostgreSQL

        self._psycopg = psycopg
        self.url = url
        self.where = redact(url)
        self._lock_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[Any] = []
        self._guard = threading.Lock()
        with self.transaction(write=True) as tx:
            tx.run(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            apply_migrations(tx)

    def _connect(self) -> Any:
        from psycopg.rows import dict_row

        conn = self._psycopg.connect(self.url, row_factory=dict_row, connect_timeout=5, autocommit=True,
                                     options=f"-c lock_timeout={self._lock_timeout_ms}")
        with self._guard:
            self._all.append(conn)
        return conn

    def connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._local.conn = self._connect()
        return conn

    @contextlib.contextmanager
    def transaction(self, *, write: bool) -> Iterator[PostgresTx]:
        errors = self._psycopg.errors
        try:
            conn = self.connection()
            # a read is one statement in autocommit: no BEGIN/COMMIT round trips
            with conn.transaction() if write else contextlib.nullcontext(), conn.cursor() as cursor:
                yield PostgresTx(cursor)
        except errors.UniqueViolation as exc:
            raise Duplicate(str(exc)) from None
        except (self._psycopg.OperationalError, self._psycopg.InternalError) as exc:
            lost = self._drop_if_broken()
            raise StoreUnavailable(f"PostgreSQL ({self.where}): {str(exc).strip()}", connection_lost=lost) from None

    def _drop_if_broken(self) -> bool:
        conn = getattr(self._local, "conn", None)
        if conn is None or not (conn.closed or conn.broken):
            return False
        self._local.conn = None
        with self._guard, contextlib.suppress(ValueError):
            self._all.remove(conn)
        return True

    def close(self) -> None:
        with self._guard:
            for conn in self._all:
                with contextlib.suppress(Exception):
                    conn.close()
            self._all.clear()
