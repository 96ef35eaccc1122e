"""Admission and settlement in the database: one usage row per admitted request.

``admit`` inserts the row (status ``in_flight``, with the request's reservation) after the
caller's decision on the key's current ``Load``, read under the key's lock, so that gateways
sharing one database never admit past a limit together. ``settle`` turns the row into the
final record exactly once (replaying a settlement changes nothing) and adds it to the key's
counters.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

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

SETTLE = """UPDATE usage SET status = ?, finish_reason = ?, settled_at = ?, prompt_tokens = ?, cached_tokens = ?,
    completion_tokens = ?, reasoning_tokens = ?, cost = ?, estimated = ?, ttft_ms = ?, duration_ms = ?
WHERE id = ? AND status = 'in_flight'"""

COUNT = """INSERT INTO usage_counters (key_id, period, start, requests, tokens, cost) VALUES (?, ?, ?, 1, ?, ?)
ON CONFLICT (key_id, period, start) DO UPDATE SET requests = usage_counters.requests + 1,
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
    current = Load()
    if ticket.key.has_admission_limits:
        tx.lock_key(ticket.key.id)
        current = load(tx, ticket.key.id, window_start, lease_start, period)
    admitted, verdict = decide(current)
    if admitted:
        tx.run(INSERT, (ticket.request_id, ticket.key.id, ticket.model, ticket.engine, ticket.user,
                        ticket.admitted_at, ticket.reserved_tokens, ticket.reserved_cost))
    return verdict


def settle(tx: Tx, rec: UsageRecord, periods: Sequence[tuple[str, float]]) -> bool:
    """Finish one record; False if it was settled already (a replay) or was never admitted."""
    changed = tx.run(SETTLE, (rec.status, rec.finish_reason, rec.settled_at, rec.prompt_tokens, rec.cached_tokens,
                              rec.completion_tokens, rec.reasoning_tokens, rec.cost, int(rec.estimated),
                              rec.ttft_ms, rec.duration_ms, rec.request_id))
    if not changed:
        return False
    for period, start in periods:
        tx.run(COUNT, (rec.key_id, period, start, rec.total_tokens, rec.cost))
    return True


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
