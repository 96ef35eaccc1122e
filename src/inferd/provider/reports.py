"""Usage report queries from URL parameters or CLI flags, and their JSON / CSV / table forms."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timezone
from typing import Any, Mapping

from ..errors import InvalidRequest
from ..store.reports import GROUPS, ReportQuery
from .keyspec import parse_utc

COLUMNS = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens", "total_tokens",
           "cost", "incomplete", "avg_ttft_ms", "avg_duration_ms")
FORMATS = ("json", "csv")


def parse_time(name: str, value: str) -> float:
    """``2026-11-01`` (UTC midnight) or an ISO 8601 UTC time."""
    if len(value) == 10:
        try:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), timezone.utc).timestamp()
        except ValueError:
            pass
    return parse_utc(name, value)


def parse_group(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ("day",)
    groups = tuple(g.strip() for g in value.split(",") if g.strip() and g.strip() != "none")
    for g in groups:
        if g not in GROUPS:
            raise InvalidRequest(f"'group_by' takes {', '.join(GROUPS)} (comma-separated) or none; got {g!r}.",
                                 param="group_by")
    return tuple(dict.fromkeys(groups))


def parse_query(params: Mapping[str, str], key_id: int | None) -> ReportQuery:
    known = ("from", "to", "model", "key", "group_by", "format")
    for name in params:
        if name not in known:
            raise InvalidRequest(f"Unknown parameter '{name}'; the parameters are: {', '.join(known)}.", param=name,
                                 code="unknown_parameter")
    return ReportQuery(since=parse_time("from", params["from"]) if params.get("from") else None,
                       until=parse_time("to", params["to"]) if params.get("to") else None,
                       key_id=key_id, model=params.get("model") or None, group_by=parse_group(params.get("group_by")))


def shown(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    if "day" in out:
        out["day"] = datetime.fromtimestamp(out["day"] * 86400, timezone.utc).strftime("%Y-%m-%d")
    return out


def header(query: ReportQuery) -> list[str]:
    names = []
    for g in query.group_by:
        names += ["key_hash", "key_name"] if g == "key" else [g]
    return names + list(COLUMNS)


def to_csv(query: ReportQuery, rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = header(query)
    writer.writerow(names)
    for row in rows:
        writer.writerow(["" if row.get(n) is None else row.get(n) for n in names])
    return out.getvalue()


def to_table(query: ReportQuery, rows: list[dict[str, Any]]) -> str:
    """A terminal table (``inferd usage``)."""
    names = [n for n in header(query) if n != "key_hash"]
    cells = [[_cell(row.get(n)) for n in names] for row in rows]
    widths = [max([len(n)] + [len(c[i]) for c in cells]) for i, n in enumerate(names)]
    lines = ["  ".join(n.upper().ljust(w) for n, w in zip(names, widths))]
    lines += ["  ".join(c.ljust(w) if i < len(query.group_by) else c.rjust(w) for i, (c, w) in
                        enumerate(zip(row, widths))) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
