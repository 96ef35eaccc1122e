"""Admission and settlement in the database: one usage row per admitted request.

``admit`` inserts the row (status ``in_flight``, with the request's reservation) after the
caller's decision on the key's current ``Load``, read under the key's lock, so that gateways
sharing one database never admit past a limit together. ``settle`` turns the row into the
final record exactly once (replaying a settlement changes nothing) and adds it to the key's
counters.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Callable, Sequence, TypeVar

from .backend import Tx, one
from .records import IN_FLIGHT, Load, Ticket, UsageRecord

V = TypeVar("V")

LOAD = """SELECT w.n AS window_requests, w.t AS window_tokens, w.oldest AS window_oldest,
       f.n AS in_flight, f.t AS reserved_tokens, f.c AS reserved_cost,
       COALESCE(c.tokens, 0) AS period_tokens, COALESCE(c.cost, 0) AS period_cost
FROM (SELECT COUNT(*) AS n, MIN(admitted_at) AS oldest,
             COALESCE(SUM(CASE WHEN status = 'in_flight' THEN reserved_tokens
                               ELSE prompt_tokens + completion_tokens END), 0) AS t
      FROM usage WHERE key_id = ? AND admitted_at > ?) w
CROSS JOIN (SELECT COUNT(*) AS n, COALESCE(SUM(reserved_tokens), 0) AS t, COALESCE(SUM(reserved_cost), 0) AS c
            FROM usage WHERE key_id = ? AND status = 'in_flight' AND admitted_at > ?) f
LEFT JOIN usage_counters c ON c.key_id = ? AND c.period = ? AND c.start = ?"""

INSERT = """INSERT INTO usage (id, key_id, model, engine, status, user_id, admitted_at, reserved_tokens, reserved_cost)
VALUES (?, ?, ?, ?, 'in_flight', ?, ?, ?, ?)"""

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
    row = one(tx, LOAD, (key_id, window_start, key_id, lease_start, key_id, *period))
    assert row is not None
    return Load(window_requests=int(row["window_requests"]), window_tokens=int(row["window_tokens"]),
                window_oldest=row["window_oldest"], in_flight=int(row["in_flight"]),
                period_tokens=int(row["period_tokens"]) + int(row["reserved_tokens"]),
                period_cost=float(row["period_cost"]) + float(row["reserved_cost"]))


def admit(tx: Tx, ticket: Ticket, window_start: float, lease_start: float, period: tuple[str, float],
          decide: Callable[[Load], tuple[bool, V]]) -> V:
    """Decide on the key's load under its lock; record the ticket if admitted. Returns the verdict."""
    tx.relaxed()  # a reservation is soft state: its settlement restores the record if a crash loses it
    current = Load()
    if ticket.key.has_admission_limits:
        tx.lock_key(ticket.key.id)
        current = load(tx, ticket.key.id, window_start, lease_start, period)
    admitted, verdict = decide(current)
    if admitted:
        tx.run(INSERT, (ticket.request_id, ticket.key.id, ticket.model, ticket.engine, ticket.user,
                        ticket.admitted_at, ticket.reserved_tokens, ticket.reserved_cost))
    return verdict


def settle(tx: Tx, records: Sequence[UsageRecord], periods: Callable[[float], Sequence[tuple[str, float]]]) -> int:
    """Finish records (one round trip per statement kind where the driver pipelines); returns how many
    were settled now, not before (a replay). Each adds to its key's counters for ``periods(admitted_at)``."""
    fresh = Counter(row["id"] for row in tx.many(SETTLE, [_settle_args(r) for r in records]))
    totals: dict[tuple[int, str, float], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    settled = 0
    for rec in records:
        if fresh[rec.request_id] > 0:
            fresh[rec.request_id] -= 1
            settled += 1
            for period, start in periods(rec.admitted_at):
                total = totals[(rec.key_id, period, start)]
                total[0] += 1
                total[1] += rec.total_tokens
                total[2] += rec.cost
    tx.many(COUNT, [(*k, int(v[0]), int(v[1]), v[2]) for k, v in totals.items()])
    return settled


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
