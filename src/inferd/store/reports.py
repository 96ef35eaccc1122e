"""Usage reports: settled records summed over a time range, grouped by day, model and/or key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .backend import Tx

GROUPS = ("day", "model", "key")
SUMS = """COUNT(*) AS requests, SUM(u.prompt_tokens) AS prompt_tokens, SUM(u.cached_tokens) AS cached_tokens,
    SUM(u.completion_tokens) AS completion_tokens, SUM(u.reasoning_tokens) AS reasoning_tokens,
    SUM(u.prompt_tokens + u.completion_tokens) AS total_tokens, SUM(u.cost) AS cost,
    SUM(CASE WHEN u.status = 'completed' THEN 0 ELSE 1 END) AS incomplete,
    AVG(u.ttft_ms) AS avg_ttft_ms, AVG(u.duration_ms) AS avg_duration_ms"""


@dataclass(frozen=True)
class ReportQuery:
    since: float | None = None  # admitted_at >= since (UTC epoch seconds)
    until: float | None = None  # admitted_at < until
    key_id: int | None = None
    model: str | None = None
    group_by: tuple[str, ...] = ("day",)


def _day(dialect: str) -> str:
    # whole UTC days since the epoch; PostgreSQL's CAST rounds, SQLite's truncates
    return "FLOOR(u.admitted_at / 86400)" if dialect == "postgres" else "CAST(u.admitted_at / 86400 AS INTEGER)"


def report(tx: Tx, query: ReportQuery) -> list[dict[str, Any]]:
    picks = {"day": f"{_day(tx.dialect)} AS day", "model": "u.model AS model", "key": "k.hash AS key_hash, k.name AS key_name"}
    keys = {"day": _day(tx.dialect), "model": "u.model", "key": "k.name, k.hash"}
    where, args = ["u.status <> 'in_flight'"], []
    for clause, value in (("u.admitted_at >= ?", query.since), ("u.admitted_at < ?", query.until),
                          ("u.key_id = ?", query.key_id), ("u.model = ?", query.model)):
        if value is not None:
            where.append(clause)
            args.append(value)
    select = ", ".join([picks[g] for g in query.group_by] + [SUMS])
    group = (" GROUP BY " + ", ".join(keys[g] for g in query.group_by)) if query.group_by else ""
    order = (" ORDER BY " + ", ".join(keys[g] for g in query.group_by)) if query.group_by else ""
    sql = (f"SELECT {select} FROM usage u JOIN api_keys k ON k.id = u.key_id WHERE {' AND '.join(where)}"
           f"{group}{order}")
    rows = tx.rows(sql, args)
    return [_clean(r) for r in rows if r["requests"]]


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in ("requests", "prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens",
                 "total_tokens", "incomplete"):
        out[name] = int(out[name] or 0)
    out["cost"] = float(out["cost"] or 0)
    for name in ("avg_ttft_ms", "avg_duration_ms"):
        out[name] = round(float(out[name]), 3) if out[name] is not None else None
    if "day" in out:
        out["day"] = int(out["day"])
    return out
