"""Limits, usage and reports against the real server on SQLite and PostgreSQL, through the openai
client and raw httpx: every limit with its headers, a daily reset (moved by the test clock), a
budget race, disconnect accounting, the spool while SQLite is locked, two gateways on one database."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import httpx
import openai
import pytest

from ..conftest import assert_error
from ..gateway import GEMMA, PRICES, Gateway
from ..harness import inferd

RATE_HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
                "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")


def client(gateway: Gateway, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/api/v1", api_key=secret, max_retries=0, timeout=120)


def ask(api: openai.OpenAI, max_tokens: int = 3) -> openai.types.chat.ChatCompletion:
    return api.chat.completions.create(model=GEMMA, messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=max_tokens)


def test_requests_per_minute_with_openai_headers_through_the_openai_client(gateway: Gateway) -> None:
    secret, _ = gateway.key(rate_limit={"requests_per_minute": 2, "tokens_per_minute": 10000})
    api = client(gateway, secret)
    raw = api.chat.completions.with_raw_response.create(model=GEMMA, messages=[{"role": "user", "content": "hi"}],
                                                        max_tokens=2)
    assert raw.parse().choices[0].message.content is not None
    assert {h: raw.headers[h] for h in RATE_HEADERS[:3]} == {
        "x-ratelimit-limit-requests": "2", "x-ratelimit-remaining-requests": "1", "x-ratelimit-reset-requests": "1m0s"}
    assert raw.headers["x-ratelimit-limit-tokens"] == "10000"
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) == 10000 - (64 + 16 + 2 + 2)
    streamed = api.chat.completions.with_raw_response.create(  # streams carry the same headers
        model=GEMMA, messages=[{"role": "user", "content": "hi"}], max_tokens=2, stream=True)
    assert streamed.headers["x-ratelimit-remaining-requests"] == "0"
    assert [chunk for chunk in streamed.parse()]
    with pytest.raises(openai.RateLimitError) as caught:
        ask(api)
    response = caught.value.response
    assert_error(response, 429, "requests", None, "rate_limit_exceeded")
    assert 1 <= int(response.headers["retry-after"]) <= 61  # the minute is counted in whole seconds
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert all(h in response.headers for h in RATE_HEADERS)
    assert gateway.server.is_healthy()


def test_tokens_per_minute_reserve_max_tokens_then_settle(gateway: Gateway) -> None:
    secret, data = gateway.key(rate_limit={"tokens_per_minute": 150})
    first = gateway.chat(secret, max_tokens=60)  # reserves 64 + 16 + 2 + 60 = 142 of 150
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-tokens"] == "8"
    gateway.settled(data["hash"], 1)  # settled to its real count (> 8), which still counts this minute
    second = gateway.chat(secret, max_tokens=60)
    assert_error(second, 429, "tokens", None, "rate_limit_exceeded")
    assert "x-ratelimit-reset-tokens" in second.headers and int(second.headers["retry-after"]) >= 1
    whole_context = gateway.chat(secret, max_tokens=None)  # no max_tokens: the model's context is reserved
    assert_error(whole_context, 429, "tokens", None, "rate_limit_exceeded")
    assert "Request too large" in whole_context.json()["error"]["message"]


def test_concurrent_requests_limit_holds_while_a_stream_runs(gateway: Gateway) -> None:
    secret, data = gateway.key(rate_limit={"concurrent_requests": 1})
    body = {"model": GEMMA, "stream": True, "max_tokens": 400,
            "messages": [{"role": "user", "content": "Write a long story about a dragon."}]}
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.stream("POST", gateway.url + "/api/v1/chat/completions", json=body, headers=headers,
                      timeout=120) as running:
        assert running.status_code == 200
        lines = running.iter_lines()  # held: a dropped iterator would close the connection
        next(lines)
        assert_error(gateway.chat(secret), 429, "requests", None, "rate_limit_exceeded")
    gateway.settled(data["hash"], 1)  # the stream's slot is given back when it is settled
    assert gateway.chat(secret).status_code == 200


def test_spend_limit_is_a_402_insufficient_quota_and_costs_follow_the_prices(gateway: Gateway) -> None:
    secret, data = gateway.key(limit=0.03)
    api = client(gateway, secret)
    spent = 0.0
    for n in (1, 2):  # 0 and then ~0.016 spent: something is left each time
        usage = ask(api).usage
        spent += usage.prompt_tokens * PRICES["prompt"] + usage.completion_tokens * PRICES["completion"]
        gateway.settled(data["hash"], n)
    with pytest.raises(openai.APIStatusError) as caught:
        ask(api)
    assert caught.value.status_code == 402
    assert_error(caught.value.response, 402, "insufficient_quota", None, "insufficient_quota")
    own = httpx.get(gateway.url + "/api/v1/key", headers={"Authorization": f"Bearer {secret}"}).json()["data"]
    assert own["usage"] == pytest.approx(spent) and own["limit_remaining"] == 0.0
    assert sum(r["cost"] for r in gateway.records(data["hash"])) == pytest.approx(spent)


def _next_midnight(t: float) -> float:
    day = datetime.fromtimestamp(t, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp() + 86400


def test_a_daily_token_limit_resets_at_utc_midnight(gateway: Gateway) -> None:
    secret, data = gateway.key(token_limit=20, limit_reset="daily")
    headers = {"Authorization": f"Bearer {secret}"}
    gateway.advance(_next_midnight(gateway.now()) + 60 - gateway.now())  # start early in a day
    for n in (1, 2):
        assert gateway.chat(secret).status_code == 200
        gateway.settled(data["hash"], n)
    assert_error(gateway.chat(secret), 402, "insufficient_quota", None, "insufficient_quota")
    used = httpx.get(gateway.url + "/api/v1/key", headers=headers).json()["data"]
    assert used["token_limit_remaining"] == 0 and used["tokens"]["daily"] >= 20
    gateway.advance(_next_midnight(gateway.now()) + 1 - gateway.now())  # one second into the next UTC day
    assert gateway.chat(secret).status_code == 200
    gateway.settled(data["hash"], 3)
    after = httpx.get(gateway.url + "/api/v1/key", headers=headers).json()["data"]
    assert 0 < after["tokens"]["daily"] < 20 and after["tokens"]["total"] > 20 and after["token_limit_remaining"] > 0


def test_racing_for_the_last_of_a_budget_overspends_by_less_than_one_reservation(gateway: Gateway) -> None:
    # less than any request costs (its prompt alone is over 5 tokens): one request uses it up, whether the others
    # arrive while its reservation holds the budget or after it settled
    limit = 0.005
    secret, data = gateway.key(limit=limit)
    reservation = (64 + 16 + 2 + 3) * PRICES["completion"]  # 0.17: more than the whole limit
    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(lambda _: gateway.chat(secret).status_code, range(6)))
    assert statuses == [200, 402, 402, 402, 402, 402]
    spent = sum(r["cost"] for r in gateway.settled(data["hash"], 1))
    assert limit <= spent < limit + reservation


def test_a_client_disconnect_counts_the_tokens_generated(gateway: Gateway) -> None:
    secret, data = gateway.key()
    body = {"model": GEMMA, "stream": True, "max_tokens": 400, "temperature": 0,
            "messages": [{"role": "user", "content": "Write a long story about a dragon."}]}
    received = 0
    with httpx.stream("POST", gateway.url + "/api/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {secret}"}, timeout=120) as stream:
        for line in stream.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                received += 1
            if received == 8:
                break  # and hang up
    [record] = gateway.settled(data["hash"], 1)
    assert record["status"] == "client_disconnected" and record["estimated"] == 1
    assert 8 <= record["completion_tokens"] < 400 and record["prompt_tokens"] > 0
    assert record["cost"] == pytest.approx(record["prompt_tokens"] * PRICES["prompt"]
                                           + record["completion_tokens"] * PRICES["completion"])


def test_the_user_field_is_recorded_with_the_usage(gateway: Gateway) -> None:
    secret, data = gateway.key()
    response = gateway.chat(secret, user="customer-7")
    assert response.status_code == 200 and "x-inferd-ignored-params" not in response.headers
    [record] = gateway.settled(data["hash"], 1)
    assert record["user_id"] == "customer-7" and record["engine"] == "llamacpp" and record["model"] == GEMMA
    assert record["ttft_ms"] > 0 and record["duration_ms"] >= record["ttft_ms"]


def test_usage_reports_in_json_and_csv(gateway: Gateway) -> None:
    a, a_data = gateway.key()
    b, b_data = gateway.key()
    for secret in (a, a, b):
        assert gateway.chat(secret).status_code == 200
    gateway.settled(a_data["hash"], 2)
    gateway.settled(b_data["hash"], 1)
    own = httpx.get(gateway.url + "/api/v1/usage", params={"group_by": "key"},
                    headers={"Authorization": f"Bearer {a}"}).json()["data"]
    assert [(r["key_name"], r["requests"]) for r in own] == [(a_data["name"], 2)]
    hidden = httpx.get(gateway.url + "/api/v1/usage", params={"key": b_data["hash"]},
                       headers={"Authorization": f"Bearer {a}"})
    assert_error(hidden, 404, "invalid_request_error", "key")
    every = gateway.manage("GET", "/usage", params={"group_by": "key,model"}).json()["data"]
    names = {r["key_name"]: r for r in every}
    assert names[a_data["name"]]["requests"] == 2 and names[b_data["name"]]["requests"] == 1
    assert names[a_data["name"]]["model"] == GEMMA
    one = gateway.manage("GET", "/usage", params={"key": b_data["hash"], "group_by": "day", "model": GEMMA}).json()
    today = datetime.fromtimestamp(gateway.now(), timezone.utc).strftime("%Y-%m-%d")
    assert [(r["day"], r["requests"]) for r in one["data"]] == [(today, 1)]
    csv = gateway.manage("GET", "/usage", params={"key": a_data["hash"], "group_by": "key", "format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    header, row = csv.text.strip().splitlines()
    assert header.startswith("key_hash,key_name,requests,prompt_tokens") and row.startswith(
        f"{a_data['hash']},{a_data['name']},2,")
    assert gateway.manage("GET", "/usage", params={"from": "2999-01-01"}).json()["data"] == []
    assert_error(gateway.manage("GET", "/usage", params={"group_by": "week"}), 400, "invalid_request_error", "group_by")
    assert_error(gateway.manage("GET", "/usage", params={"from": "yesterday"}), 400, "invalid_request_error", "from")
    assert_error(gateway.manage("GET", "/usage", params={"format": "xml"}), 400, "invalid_request_error", "format")


def test_inferd_usage_prints_a_table(gateway: Gateway) -> None:
    secret, data = gateway.key(name=f"table-{gateway.kind}")
    assert gateway.chat(secret).status_code == 200
    gateway.settled(data["hash"], 1)
    out = inferd("usage", "--key", f"table-{gateway.kind}", "--group-by", "key,model", env=gateway.server.env).stdout
    header, row = out.strip().splitlines()
    assert header.split()[:3] == ["KEY_NAME", "MODEL", "REQUESTS"]
    assert row.split()[:3] == [f"table-{gateway.kind}", GEMMA, "1"]
    assert secret not in out


def test_usage_goes_to_the_spool_while_sqlite_is_locked_and_is_replayed_once(sqlite_gateway: Gateway) -> None:
    """An SQLite fault through the real server (each fault of each store: tests/store/test_spool.py)."""
    gateway = sqlite_gateway
    secret, data = gateway.key()
    spool = gateway.folder / "data" / "spool"
    body = {"model": GEMMA, "stream": True, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    locker = sqlite3.connect(gateway.folder / "data" / "inferd.sqlite3", isolation_level=None)
    try:
        with httpx.stream("POST", gateway.url + "/api/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {secret}"}, timeout=120) as stream:
            locker.execute("BEGIN EXCLUSIVE")  # admitted; now the database is locked until released
            assert stream.read().endswith(b"data: [DONE]\n\n")
        deadline = time.monotonic() + 30
        while not any(p.read_text().strip() for p in spool.glob("usage-*.jsonl")):
            assert time.monotonic() < deadline, gateway.server.log()[-2000:]
            time.sleep(0.05)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    [record] = gateway.settled(data["hash"], 1)
    assert record["status"] == "completed" and record["completion_tokens"] > 0
    own = httpx.get(gateway.url + "/api/v1/key", headers={"Authorization": f"Bearer {secret}"}).json()["data"]
    assert own["requests"]["total"] == 1  # counted once
    assert "spooled for replay" in gateway.server.log()


def test_two_gateways_on_one_postgresql_admit_exactly_the_limit(postgres_gateway: Gateway, models_dir: Path,
                                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    gateway = postgres_gateway
    second = Gateway("postgres", tmp_path_factory.mktemp("second-gateway"), models_dir, gateway.database_url,
                     clock_file=gateway.clock_file, start=False)
    try:
        second.server.wait_health()  # stopped below whatever happens
        secret, _ = gateway.key(rate_limit={"requests_per_minute": 10})
        targets = [gateway, second] * 15
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda gw: gw.chat(secret, max_tokens=1).status_code, targets))
        assert sorted(statuses) == [200] * 10 + [429] * 20
        assert statuses[1::2].count(200) + statuses[0::2].count(200) == 10
    finally:
        second.stop()
