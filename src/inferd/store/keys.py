"""API keys: high-entropy random secrets with a recognisable prefix, stored only as SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass

from .db import Store

KEY_PREFIX = "sk-inferd-"
LAST_USED_EVERY_S = 60.0  # last_used_at is refreshed at most this often per key


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(store: Store, name: str) -> str:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        store.execute("INSERT INTO api_keys (name, prefix, hash, created_at) VALUES (?, ?, ?, ?)",
                      (name, secret[: len(KEY_PREFIX) + 6], hash_key(secret), time.time()))
    except sqlite3.IntegrityError:
        raise ValueError(f"a key named '{name}' already exists") from None
    return secret


def list_keys(store: Store) -> list[ApiKey]:
    rows = store.query("SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM api_keys ORDER BY id")
    return [ApiKey(**dict(row)) for row in rows]


def revoke_key(store: Store, name: str) -> bool:
    return store.execute("UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                         (time.time(), name)) > 0


def count_active(store: Store) -> int:
    return store.query("SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL")[0]["n"]


class KeyVerifier:
    """Looks a presented secret up by its hash on every request, so a revoke takes effect at once."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._touched: dict[int, float] = {}

    def verify(self, secret: str) -> int | None:
        """The key id for a valid, unrevoked secret; else None."""
        digest = hash_key(secret)
        rows = self._store.query("SELECT id, hash FROM api_keys WHERE hash = ? AND revoked_at IS NULL", (digest,))
        if not rows or not hmac.compare_digest(rows[0]["hash"], digest):
            return None
        self._touch(rows[0]["id"])
        return rows[0]["id"]

    def _touch(self, key_id: int) -> None:
        now = time.time()
        if now - self._touched.get(key_id, 0.0) >= LAST_USED_EVERY_S:
            self._touched[key_id] = now
            self._store.write_later("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, key_id))
