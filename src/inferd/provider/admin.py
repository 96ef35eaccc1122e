"""The terminal side of the provider layer: ``inferd keys ...``, ``inferd usage``, and the first keys."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable

from ..errors import APIError
from ..library import load_library
from ..settings import Settings
from ..store import Duplicate, Store, StoreUnavailable, open_store
from ..store.backend import Tx
from ..store.keys import count_keys, insert_key, key_by_name, list_keys, revoke
from ..store.reports import report
from .keyspec import parse_key_fields
from .reports import parse_query, shown, to_csv, to_table


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    keys = sub.add_parser("keys", help="manage API keys")
    key_sub = keys.add_subparsers(dest="action", required=True)
    create = key_sub.add_parser("create", help="create a key and print it once")
    common(create)
    create.add_argument("--name", required=True, help="the key's name (unique)")
    create.add_argument("--management", action="store_true", help="a management key: manages keys, no completions")
    create.add_argument("--limit", type=float, help="spend limit per reset period, in the library's price units")
    create.add_argument("--limit-reset", choices=("daily", "weekly", "monthly"), help="when limits reset (UTC)")
    create.add_argument("--token-limit", type=int, help="tokens per reset period")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--concurrency", type=int, help="concurrent requests")
    create.add_argument("--models", help="allow-list of model ids, comma-separated")
    create.add_argument("--expires-at", help="ISO 8601 UTC time, e.g. 2030-01-31T00:00:00Z")
    revoke_p = key_sub.add_parser("revoke", help="revoke a key by name")
    common(revoke_p)
    revoke_p.add_argument("--name", help="the key's name")
    revoke_p.add_argument("name_pos", nargs="?", metavar="NAME")
    common(key_sub.add_parser("list", help="list keys (never their secrets)"))
    usage = sub.add_parser("usage", help="usage report as a table (or CSV / JSON)")
    common(usage)
    usage.add_argument("--from", dest="since", help="from this UTC date or time (inclusive), e.g. 2026-11-01")
    usage.add_argument("--to", dest="until", help="to this UTC date or time (exclusive)")
    usage.add_argument("--model", help="only this model")
    usage.add_argument("--key", dest="key_name", help="only the key with this name")
    usage.add_argument("--group-by", default="day", help="day, model, key (comma-separated), or none")
    usage.add_argument("--format", dest="output", choices=("table", "csv", "json"), default="table")


def _store(settings: Settings) -> Store:
    return open_store(settings.database_url, settings.db_path, settings.store_busy_timeout_ms)


def run_keys(settings: Settings, args: argparse.Namespace) -> int:
    try:
        store = _store(settings)
    except StoreUnavailable as exc:
        print(f"inferd: {exc}", file=sys.stderr)
        return 1
    try:
        if args.action == "create":
            return _create(settings, store, args)
        if args.action == "list":
            return _list(store)
        return _revoke(store, args.name or args.name_pos)
    except StoreUnavailable as exc:
        print(f"inferd: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _create(settings: Settings, store: Store, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name, "management": args.management, "limit": args.limit,
                            "limit_reset": args.limit_reset, "token_limit": args.token_limit,
                            "expires_at": args.expires_at,
                            "rate_limit": {"requests_per_minute": args.rpm, "tokens_per_minute": args.tpm,
                                           "concurrent_requests": args.concurrency}}
    if args.models:
        body["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        fields, management = parse_key_fields(body, load_library(settings.library), creating=True)
        name = fields.pop("name")
        _, secret = store.run_write(insert_key, name, fields, time.time(), management)
    except APIError as exc:
        print(f"inferd: {'--' + exc.param.replace('_', '-') + ': ' if exc.param else ''}{exc.message}",
              file=sys.stderr)
        return 2
    except Duplicate:
        print(f"inferd: a key named '{args.name}' already exists", file=sys.stderr)
        return 1
    kind = "management key" if management else "API key"
    print(f"Created {kind} '{name}'. It is shown only now; store it safely:")
    print(secret)
    return 0


def _list(store: Store) -> int:
    now = time.time()
    print(f"{'NAME':<24} {'PREFIX':<18} {'KIND':<10} {'CREATED':<20} {'LAST USED':<20} STATUS")
    for key in store.run_read(list_keys):
        status = ("revoked" if key.revoked_at else "disabled" if key.disabled else
                  "expired" if not key.is_usable(now) else "active")
        kind = "management" if key.management else "ordinary"
        print(f"{key.name:<24} {key.prefix + '…':<18} {kind:<10} {_when(key.created_at):<20} "
              f"{_when(key.last_used_at):<20} {status}")
    return 0


def _revoke(store: Store, name: str | None) -> int:
    if not name:
        print("inferd keys revoke: give the key's name (--name NAME)", file=sys.stderr)
        return 2
    if not store.run_write(lambda tx: revoke(tx, now=time.time(), name=name)):
        print(f"inferd: no active key named '{name}'", file=sys.stderr)
        return 1
    print(f"Revoked API key '{name}'.")
    return 0


def _when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "-"


def run_usage(settings: Settings, args: argparse.Namespace) -> int:
    params = {k: v for k, v in {"from": args.since, "to": args.until, "model": args.model,
                                "group_by": args.group_by}.items() if v is not None}
    store = _store(settings)
    try:
        key_id = None
        if args.key_name:
            key = store.run_read(key_by_name, args.key_name)
            if key is None:
                print(f"inferd: no key named '{args.key_name}'", file=sys.stderr)
                return 1
            key_id = key.id
        query = parse_query(params, key_id)
        rows = [shown(r) for r in store.run_read(report, query)]
    except APIError as exc:
        print(f"inferd: {exc.message}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"inferd: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(to_csv(query, rows) if args.output == "csv" else to_table(query, rows), end="\n" * (args.output == "table"))
    return 0


def _two_keys(tx: Tx, now: float) -> tuple[str, str]:
    _, admin = insert_key(tx, "admin", {}, now, True)
    _, default = insert_key(tx, "default", {}, now, False)
    return admin, default


def first_keys(settings: Settings) -> None:
    """No key at all yet (a first start): create a management key and an ordinary key, print both once."""
    store = _store(settings)
    try:
        if store.run_read(count_keys):
            return
        admin, default = store.run_write(_two_keys, time.time())
    except Duplicate:  # another gateway on the same database created them at the same moment
        return
    finally:
        store.close()
    print("inferd: no API keys yet; created management key 'admin' (manages keys through /api/v1/keys, "
          "cannot call completions). It is shown only now:", flush=True)
    print(admin, flush=True)
    print("inferd: no API keys yet; created key 'default'. It is shown only now:", flush=True)
    print(default, flush=True)
