"""The store on SQLite and PostgreSQL: migrations, keys, settlement, counters, reports."""

from __future__ import annotations

from typing import Callable

import pytest

from inferd.store import Duplicate, Store, UsageRecord
from inferd.store.keys import insert_key, key_by_hash, key_by_name, list_keys, revoke, update_key
from inferd.store.ledger import admit, counters, record_status, settle
from inferd.store.migrations import MIGRATIONS
from inferd.store.records import Ticket
from inferd.store.reports import ReportQuery, report
from inferd.provider.periods import all_periods

from .conftest import START


def test_migrations_are_versioned_and_applied_once(store: Store, open_one: Callable[[], Store]) -> None:
    versions = store.run_read(lambda tx: [r["version"] for r in tx.rows("SELECT version FROM schema_version")])
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    again = open_one()  # a second gateway (or a restart) on the same database applies nothing
    assert again.run_read(lambda tx: tx.rows("SELECT COUNT(*) AS n FROM schema_version"))[0]["n"] == len(MIGRATIONS)


def test_keys_are_created_found_changed_and_revoked(store: Store) -> None:
    key, secret = store.run_write(insert_key, "alice", {"spend_limit": 2.5, "limit_reset": "daily", "rpm": 10,
                                                        "models": ("m",)}, START)
    assert secret.startswith("sk-inferd-") and key.limit == 2.5 and key.rate_limit.requests_per_minute == 10
    assert key.models == ("m",) and not key.management and key.is_usable(START)
    assert store.run_read(key_by_hash, key.hash) == key == store.run_read(key_by_name, "alice")
    changed = store.run_write(update_key, key.hash, {"disabled": True, "rpm": None, "models": None}, START + 1)
    assert changed is not None and changed.disabled and changed.rate_limit.requests_per_minute is None
    assert changed.models is None and changed.updated_at == START + 1 and not changed.is_usable(START + 1)
    with pytest.raises(Duplicate):
        store.run_write(insert_key, "alice", {}, START)
    assert store.run_write(lambda tx: revoke(tx, now=START + 2, digest=key.hash))
    assert not store.run_write(lambda tx: revoke(tx, now=START + 3, digest=key.hash))
    assert store.run_write(update_key, key.hash, {"disabled": False}, START + 4) is None  # revoked: gone
    assert [k.name for k in store.run_read(list_keys, 0, 10, False)] == []


def test_secrets_are_stored_only_as_hashes(store: Store) -> None:
    _, secret = store.run_write(insert_key, "hashed", {}, START)
    rows = store.run_read(lambda tx: tx.rows("SELECT * FROM api_keys"))
    text = repr(rows)
    assert secret not in text and secret[len("sk-inferd-"):] not in text and secret[:16] in text


def test_expired_key_is_not_usable(store: Store) -> None:
    key, _ = store.run_write(insert_key, "short", {"expires_at": START + 10}, START)
    assert key.is_usable(START + 9.9) and not key.is_usable(START + 10)


def _ticket(key_id_key, request_id: str, at: float, model: str = "m", tokens: int = 100) -> Ticket:
    return Ticket(request_id=request_id, key=key_id_key, model=model, engine="llamacpp", admitted_at=at,
                  reserved_tokens=tokens, reserved_cost=0.5, user="u1")


def _admit(store: Store, ticket: Ticket) -> None:
    assert store.run_write(admit, ticket, ticket.admitted_at - 60, ticket.admitted_at - 3600, ("total", 0.0),
                           lambda load: (True, load)) is not None


def _record(ticket: Ticket, tokens: int = 10, cost: float = 0.25) -> UsageRecord:
    return UsageRecord(request_id=ticket.request_id, key_id=ticket.key.id, admitted_at=ticket.admitted_at,
                       status="completed", model=ticket.model, engine=ticket.engine, prompt_tokens=tokens, completion_tokens=tokens, cost=cost,
                       settled_at=ticket.admitted_at + 1)


def test_settling_twice_counts_once(store: Store) -> None:
    key, _ = store.run_write(insert_key, "k", {}, START)
    ticket = _ticket(key, "r1", START)
    _admit(store, ticket)
    assert store.run_read(record_status, "r1") == "in_flight"
    periods = all_periods(START)
    assert store.run_write(settle, [_record(ticket)], all_periods) == 1
    assert store.run_write(settle, [_record(ticket), _record(ticket)], all_periods) == 0  # replays change nothing
    totals = store.run_read(counters, key.id, periods)
    assert totals["total"] == {"requests": 1, "tokens": 20, "cost": 0.25} == totals["daily"] == totals["monthly"]
    assert store.run_read(record_status, "r1") == "completed"


def test_a_settlement_whose_admission_row_was_lost_still_lands_once(store: Store) -> None:
    key, _ = store.run_write(insert_key, "k", {}, START)
    lost = _ticket(key, "never-committed", START)  # its admission did not survive a crash of the database
    assert store.run_write(settle, [_record(lost), _record(lost)], all_periods) == 1
    assert store.run_read(record_status, "never-committed") == "completed"
    assert store.run_read(counters, key.id, all_periods(START))["total"]["requests"] == 1


def test_reports_sum_and_group_by_day_model_and_key(store: Store) -> None:
    a, _ = store.run_write(insert_key, "a", {}, START)
    b, _ = store.run_write(insert_key, "b", {}, START)
    day2 = START + 120  # past midnight UTC
    plan = [(a, "1", START, "m"), (a, "2", day2, "m"), (a, "3", day2, "other"), (b, "4", day2, "m")]
    for key, rid, at, model in plan:
        ticket = _ticket(key, rid, at, model)
        _admit(store, ticket)
        store.run_write(settle, [_record(ticket)], all_periods)
    _admit(store, _ticket(b, "in-flight", day2))  # not settled: not in reports
    by_day = store.run_read(report, ReportQuery(group_by=("day",)))
    assert [(r["day"], r["requests"], r["total_tokens"]) for r in by_day] == [
        (int(START // 86400), 1, 20), (int(day2 // 86400), 3, 60)]
    by_model_key = store.run_read(report, ReportQuery(group_by=("model", "key")))
    assert [(r["model"], r["key_name"], r["requests"], r["cost"]) for r in by_model_key] == [
        ("m", "a", 2, 0.5), ("m", "b", 1, 0.25), ("other", "a", 1, 0.25)]
    assert by_model_key[0]["key_hash"] == a.hash
    filtered = store.run_read(report, ReportQuery(since=day2 - 60, key_id=a.id, model="m", group_by=()))
    assert [(r["requests"], r["prompt_tokens"], r["completion_tokens"]) for r in filtered] == [(1, 10, 10)]
    assert store.run_read(report, ReportQuery(until=START, group_by=())) == []
