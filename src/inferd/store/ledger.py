"""Admission and settlement in the database: one usage row per admitted request.

``admit`` decides on the key's current ``Load``, read under the key's lock, so that gateways
sharing one database never admit past a limit together, then inserts the request's row (status
``in_flight``, with its reservation) and counts it in the key's sliding minute: requests and
tokens per second (``rate_buckets``: at most 61 rows per key to sum, whatever the rate; a request
counts until its second is a full minute old, up to one second longer than exact). ``settle``
turns rows into final records exactly once (replaying a settlement changes nothing), corrects the
minute's tokens from reserved to actual, and adds to the key's period counters.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any, Callable, Sequence, TypeVar

from .backend import Tx, one
from .records import IN_FLIGHT, Load, Ticket, UsageRecord

V = TypeVar("V")
BUCKET_KEEP_S = 120  # buckets older than this are deleted at settlement

# one statement (one round trip): the sliding minute (at most 61 rows), the requests in flight (a
# partial index), the period's settled totals (a primary key)
LOAD = """SELECT w.n AS window_requests, w.t AS window_tokens, w.oldest AS window_oldest,
       f.n AS in_flight, f.t AS reserved_tokens, f.c AS reserved_cost,
       COALESCE(c.tokens, 0) AS period_tokens, COALESCE(c.cost, 0) AS period_cost
FROM (SELECT COALESCE(SUM(requests), 0) AS n, COALESCE(SUM(tokens), 0) AS t, MIN(second) AS oldest
      FROM rate_buckets WHERE key_id = ? AND second > ?) w
CROSS JOIN (SELECT COUNT(*) AS n, COALESCE(SUM(reserved_tokens), 0) AS t, COALESCE(SUM(reserved_cost), 0) AS c
            FROM usage WHERE key_id = ? AND status = 'in_flight' AND admitted_at > ?) f
LEFT JOIN usage_counters c ON c.key_id = ? AND c.period = ? AND c.start = ?"""

INSERT = """INSERT INTO usage (id, key_id, model, engine, status, user_id, admitted_at, reserved_tokens, reserved_cost)
VALUES (?, ?, ?, ?, 'in_flight', ?, ?, ?, ?)"""
BUCKET = """INSERT INTO rate_buckets (key_id, second, requests, tokens) VALUES (?, ?, ?, ?)
ON CONFLICT (key_id, second) DO UPDATE SET requests = rate_buckets.requests + excluded.requests,
    tokens = rate_buckets.tokens + excluded.tokens"""

# the whole record, so that a settlement whose admission row was lost (a crash before that commit
# reached the disk) still lands; an already settled row is left alone (a replay changes nothing)
SETTLE = """INSERT INTO usage (id, key_id, model, engine, user_id, admitted_at, status, finish_reason, settled_at,
    prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, cost, estimated, ttft_ms, duration_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET status = excluded.status, finish_reason = excluded.finish_reason,
    settled_at = excluded.settled_at, prompt_tokens = excluded.prompt_tokens, cached_tokens = excluded.cached_tokens,
    completion_tokens = excluded.completion_tokens, reasoning_tokens = excluded.reasoning_tokens,
    cost = excluded.cost, estimated = excluded.estimated, ttft_ms = excluded.ttft_ms, duration_ms = excluded.duration_ms
WHERE usage.status = 'in_flight'
RETURNING id"""

COUNT = """INSERT INTO usage_counters (key_id, period, start, requests, tokens, cost) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (key_id, period, start) DO UPDATE SET requests = usage_counters.requests + excluded.requests,
    tokens = usage_counters.tokens + excluded.tokens, cost = usage_counters.cost + excluded.cost"""


def load(tx: Tx, key_id: int, window_start: float, lease_start: float, period: tuple[str, float]) -> Load:
    """The key's use: the window counts whole seconds, each until it is a full minute old."""
    row = one(tx, LOAD, (key_id, math.floor(window_start) - 1, key_id, lease_start, key_id, *period))
    assert row is not None
    oldest = row["window_oldest"]
    return Load(window_requests=int(row["window_requests"]), window_tokens=int(row["window_tokens"]),
                window_oldest=float(oldest) + 1 if oldest is not None else None, in_flight=int(row["in_flight"]),
                period_tokens=int(row["period_tokens"]) + int(row["reserved_tokens"]),
                period_cost=float(row["period_cost"]) + float(row["reserved_cost"]))


def admit(tx: Tx, ticket: Ticket, window_start: float, lease_start: float, period: tuple[str, float],
          decide: Callable[[Load], tuple[bool, V]]) -> V:
    """Decide on the key's load under its lock; record the ticket if admitted. Returns the verdict."""
    current = Load()
    if ticket.key.has_admission_limits:
        tx.lock_key(ticket.key.id)
        current = load(tx, ticket.key.id, window_start, lease_start, period)
    else:
        tx.relaxed()
    admitted, verdict = decide(current)
    if admitted:
        tx.run(INSERT, (ticket.request_id, ticket.key.id, ticket.model, ticket.engine, ticket.user,
                        ticket.admitted_at, ticket.reserved_tokens, ticket.reserved_cost))
        tx.run(BUCKET, (ticket.key.id, math.floor(ticket.admitted_at), 1, ticket.reserved_tokens))
    return verdict


def settle(tx: Tx, records: Sequence[UsageRecord], periods: Callable[[float], Sequence[tuple[str, float]]]) -> int:
    """Finish records (one round trip per statement kind where the driver pipelines); returns how many
    were settled now, not before (a replay). Each adds to its key's counters for ``periods(admitted_at)``."""
    fresh = Counter(row["id"] for row in tx.many(SETTLE, [_settle_args(r) for r in records]))
    totals: dict[tuple[int, str, float], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    settled, settled_ids = 0, set()
    for rec in records:
        if fresh[rec.request_id] > 0:
            fresh[rec.request_id] -= 1
            settled += 1
            settled_ids.add(rec.request_id)
            for period, start in periods(rec.admitted_at):
                total = totals[(rec.key_id, period, start)]
                total[0] += 1
                total[1] += rec.total_tokens
                total[2] += rec.cost
    tx.many(COUNT, [(*k, int(v[0]), int(v[1]), v[2]) for k, v in totals.items()])
    _correct_minute(tx, [r for r in records if r.request_id in settled_ids])
    return settled


def _correct_minute(tx: Tx, records: Sequence[UsageRecord]) -> None:
    """The sliding minute counts a settled request's actual tokens instead of its reservation."""
    deltas: dict[tuple[int, int], int] = defaultdict(int)
    for rec in records:
        deltas[(rec.key_id, math.floor(rec.admitted_at))] += rec.total_tokens - rec.reserved_tokens
    tx.many(BUCKET, [(key_id, second, 0, delta) for (key_id, second), delta in deltas.items() if delta])
    if records:
        tx.run("DELETE FROM rate_buckets WHERE second < ?", (math.floor(max(r.settled_at for r in records)) - BUCKET_KEEP_S,))


def _settle_args(rec: UsageRecord) -> tuple[Any, ...]:
    return (rec.request_id, rec.key_id, rec.model, rec.engine, rec.user, rec.admitted_at, rec.status,
            rec.finish_reason, rec.settled_at, rec.prompt_tokens, rec.cached_tokens, rec.completion_tokens,
            rec.reasoning_tokens, rec.cost, int(rec.estimated), rec.ttft_ms, rec.duration_ms)


def counters(tx: Tx, key_id: int, periods: Sequence[tuple[str, float]]) -> dict[str, dict[str, float]]:
    """The key's settled totals for each (period, start): requests, tokens, cost."""
    out = {}
    for period, start in periods:
        row = one(tx, "SELECT requests, tokens, cost FROM usage_counters WHERE key_id = ? AND period = ? AND start = ?",
                  (key_id, period, start))
        out[period] = {"requests": int(row["requests"]), "tokens": int(row["tokens"]), "cost": float(row["cost"])} \
            if row else {"requests": 0, "tokens": 0, "cost": 0.0}
    return out


def record_status(tx: Tx, request_id: str) -> str | None:
    row = one(tx, "SELECT status FROM usage WHERE id = ?", (request_id,))
    return row["status"] if row else None


__all__ = ["IN_FLIGHT", "load", "admit", "settle", "counters", "record_status"]
