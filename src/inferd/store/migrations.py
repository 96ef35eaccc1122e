"""Schema migrations shared by SQLite and PostgreSQL: a list of small steps, each applied once.

A step is a tuple of SQL statements; ``{pk}`` and ``{float}`` are the only words that differ
between the two dialects. ``schema_version`` records how many steps a database has taken.
"""

from __future__ import annotations

DIALECT_WORDS = {
    "sqlite": {"pk": "INTEGER PRIMARY KEY", "float": "REAL"},
    "postgres": {"pk": "BIGSERIAL PRIMARY KEY", "float": "DOUBLE PRECISION"},
}

M001_KEYS = ("""CREATE TABLE api_keys (
    id {pk}, name TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
    created_at {float} NOT NULL, last_used_at {float}, revoked_at {float})""",)

M002_USAGE = ("""CREATE TABLE usage (
    id {pk}, key_id BIGINT NOT NULL REFERENCES api_keys(id), model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, created_at {float} NOT NULL)""",
              "CREATE INDEX usage_key_time ON usage(key_id, created_at)")

# keys get limits; usage becomes the ledger: one row per admitted request, settled when it ends
M003_PROVIDER = (
    "ALTER TABLE api_keys ADD COLUMN management INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE api_keys ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE api_keys ADD COLUMN spend_limit {float}",
    "ALTER TABLE api_keys ADD COLUMN limit_reset TEXT",
    "ALTER TABLE api_keys ADD COLUMN token_limit BIGINT",
    "ALTER TABLE api_keys ADD COLUMN rpm BIGINT",
    "ALTER TABLE api_keys ADD COLUMN tpm BIGINT",
    "ALTER TABLE api_keys ADD COLUMN concurrency BIGINT",
    "ALTER TABLE api_keys ADD COLUMN models TEXT",
    "ALTER TABLE api_keys ADD COLUMN expires_at {float}",
    "ALTER TABLE api_keys ADD COLUMN updated_at {float}",
    "ALTER TABLE usage RENAME TO usage_v1",
    """CREATE TABLE usage (
    id TEXT PRIMARY KEY, key_id BIGINT NOT NULL REFERENCES api_keys(id), model TEXT NOT NULL,
    engine TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, finish_reason TEXT, user_id TEXT,
    admitted_at {float} NOT NULL, settled_at {float},
    reserved_tokens BIGINT NOT NULL DEFAULT 0, reserved_cost {float} NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0, cached_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0, reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    cost {float} NOT NULL DEFAULT 0, estimated INTEGER NOT NULL DEFAULT 0, ttft_ms {float}, duration_ms {float})""",
    """INSERT INTO usage (id, key_id, model, status, admitted_at, settled_at, prompt_tokens, completion_tokens)
    SELECT 'v1-' || CAST(id AS TEXT), key_id, model, 'completed', created_at, created_at, prompt_tokens,
    completion_tokens FROM usage_v1""",
    "DROP TABLE usage_v1",
    "CREATE INDEX usage_key_time ON usage(key_id, admitted_at)",
    "CREATE INDEX usage_time ON usage(admitted_at)",
    "CREATE INDEX usage_in_flight ON usage(key_id, admitted_at) WHERE status = 'in_flight'",
    # settled totals per key and period ('total', 'daily', 'weekly', 'monthly') starting at ``start``
    """CREATE TABLE usage_counters (
    key_id BIGINT NOT NULL REFERENCES api_keys(id), period TEXT NOT NULL, start {float} NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0, tokens BIGINT NOT NULL DEFAULT 0, cost {float} NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, period, start))""",
    """INSERT INTO usage_counters (key_id, period, start, requests, tokens, cost)
    SELECT key_id, 'total', 0, COUNT(*), SUM(prompt_tokens + completion_tokens), 0 FROM usage GROUP BY key_id""",
    # the sliding minute: requests admitted and their tokens (reserved, then settled) per key and second
    """CREATE TABLE rate_buckets (
    key_id BIGINT NOT NULL, second BIGINT NOT NULL, requests BIGINT NOT NULL DEFAULT 0,
    tokens BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (key_id, second))""",
)

MIGRATIONS: list[tuple[str, ...]] = [M001_KEYS, M002_USAGE, M003_PROVIDER]


def statements(step: tuple[str, ...], dialect: str) -> list[str]:
    words = DIALECT_WORDS[dialect]
    return [sql.format(**words) for sql in step]
