"""API keys: high-entropy random secrets with a recognisable prefix, stored only as SHA-256.

Functions take a transaction (``Tx``) so that the server (async, through ``Store``) and the CLI
(sync) share them, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from .backend import Tx, one
from .records import KeyRecord, RateLimit

KEY_PREFIX = "sk-inferd-"
COLUMNS = ("id, hash, name, prefix, created_at, management, disabled, spend_limit, limit_reset, token_limit, "
           "rpm, tpm, concurrency, models, expires_at, updated_at, last_used_at, revoked_at")
SETTABLE = ("name", "disabled", "spend_limit", "limit_reset", "token_limit", "rpm", "tpm", "concurrency",
            "models", "expires_at")


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def record(row: dict[str, Any]) -> KeyRecord:
    models = json.loads(row["models"]) if row["models"] is not None else None
    return KeyRecord(
        id=row["id"], hash=row["hash"], name=row["name"], prefix=row["prefix"], created_at=row["created_at"],
        management=bool(row["management"]), disabled=bool(row["disabled"]), limit=row["spend_limit"],
        limit_reset=row["limit_reset"], token_limit=row["token_limit"],
        rate_limit=RateLimit(row["rpm"], row["tpm"], row["concurrency"]),
        models=tuple(models) if models is not None else None, expires_at=row["expires_at"],
        updated_at=row["updated_at"], last_used_at=row["last_used_at"], revoked_at=row["revoked_at"])


def columns(fields: dict[str, Any]) -> dict[str, Any]:
    """Column values from settable fields (``models`` as JSON text); unknown names are a bug."""
    unknown = set(fields) - set(SETTABLE)
    assert not unknown, f"not settable: {unknown}"
    out = dict(fields)
    if out.get("models") is not None:
        out["models"] = json.dumps(list(out["models"]))
    if "disabled" in out:
        out["disabled"] = int(bool(out["disabled"]))
    return out


def insert_key(tx: Tx, name: str, fields: dict[str, Any], now: float, management: bool = False) -> tuple[KeyRecord, str]:
    """Create a key; the secret is returned only here (raises ``Duplicate`` for a taken name)."""
    secret = new_secret()
    values = {**columns(fields), "name": name, "prefix": secret[: len(KEY_PREFIX) + 6], "hash": hash_key(secret),
              "created_at": now, "management": int(management)}
    names = ", ".join(values)
    tx.run(f"INSERT INTO api_keys ({names}) VALUES ({', '.join('?' * len(values))})", tuple(values.values()))
    found = key_by_hash(tx, values["hash"])
    assert found is not None
    return found, secret


def key_by_hash(tx: Tx, digest: str) -> KeyRecord | None:
    row = one(tx, f"SELECT {COLUMNS} FROM api_keys WHERE hash = ?", (digest,))
    return record(row) if row else None


def key_by_name(tx: Tx, name: str) -> KeyRecord | None:
    row = one(tx, f"SELECT {COLUMNS} FROM api_keys WHERE name = ?", (name,))
    return record(row) if row else None


def list_keys(tx: Tx, offset: int = 0, limit: int | None = None, include_revoked: bool = True) -> list[KeyRecord]:
    where = "" if include_revoked else " WHERE revoked_at IS NULL"
    page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
    return [record(r) for r in tx.rows(f"SELECT {COLUMNS} FROM api_keys{where} ORDER BY id{page}")]


def update_key(tx: Tx, digest: str, fields: dict[str, Any], now: float) -> KeyRecord | None:
    """Change a live (not revoked) key; None if there is none with this hash."""
    values = {**columns(fields), "updated_at": now}
    sets = ", ".join(f"{name} = ?" for name in values)
    changed = tx.run(f"UPDATE api_keys SET {sets} WHERE hash = ? AND revoked_at IS NULL", (*values.values(), digest))
    return key_by_hash(tx, digest) if changed else None


def revoke(tx: Tx, *, now: float, name: str | None = None, digest: str | None = None) -> bool:
    column, value = ("name", name) if name is not None else ("hash", digest)
    return tx.run(f"UPDATE api_keys SET revoked_at = ?, updated_at = ? WHERE {column} = ? AND revoked_at IS NULL",
                  (now, now, value)) > 0


def touch(tx: Tx, key_id: int, now: float) -> None:
    tx.run("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, key_id))


def count_keys(tx: Tx) -> int:
    return int((one(tx, "SELECT COUNT(*) AS n FROM api_keys") or {"n": 0})["n"])


__all__ = ["KEY_PREFIX", "hash_key", "insert_key", "key_by_hash", "key_by_name", "list_keys",
           "update_key", "revoke", "touch", "count_keys"]
