"""Reset periods in UTC: a day starts at 00:00, a week on Monday 00:00, a month on the 1st."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

COUNTED = ("total", "daily", "weekly", "monthly")  # the counters kept for every key


def period_start(period: str | None, t: float) -> float:
    """Start of the period holding ``t``; a key without ``limit_reset`` counts since the epoch."""
    if period in (None, "total"):
        return 0.0
    day = datetime.fromtimestamp(t, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day.timestamp()
    if period == "weekly":
        return (day - timedelta(days=day.weekday())).timestamp()
    if period == "monthly":
        return day.replace(day=1).timestamp()
    raise ValueError(f"unknown period {period!r}")


def period_end(period: str | None, t: float) -> float | None:
    if period in (None, "total"):
        return None
    start = datetime.fromtimestamp(period_start(period, t), timezone.utc)
    if period == "daily":
        return (start + timedelta(days=1)).timestamp()
    if period == "weekly":
        return (start + timedelta(days=7)).timestamp()
    month = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return month.timestamp()


def all_periods(t: float) -> list[tuple[str, float]]:
    """The (period, start) counters a request admitted at ``t`` adds to."""
    return [(p, period_start(p, t)) for p in COUNTED]


def key_period(limit_reset: str | None) -> str:
    return limit_reset or "total"
