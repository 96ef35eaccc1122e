"""The provider layer's pure parts: periods, reservations, decisions and headers, pricing, key fields."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from inferd.engines.base import Usage
from inferd.errors import InvalidRequest, QuotaExceeded, RateLimited
from inferd.library import Library, ModelSpec
from inferd.provider.keyspec import key_data, parse_key_fields, parse_utc
from inferd.provider.limits import decide, estimated_prompt_tokens, format_duration, reserved_tokens
from inferd.provider.periods import period_end, period_start
from inferd.provider.pricing import Pricing, parse_pricing
from inferd.settings import load_settings
from inferd.store.records import KeyRecord, Load, RateLimit

LIBRARY = Library([ModelSpec(id="m", engine="llamacpp", context_length=512, parallel=1, filename="m.gguf")])


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("period,at,start,end", [
    ("daily", "2026-03-04T23:59:59", "2026-03-04T00:00:00", "2026-03-05T00:00:00"),
    ("weekly", "2026-03-04T12:00:00", "2026-03-02T00:00:00", "2026-03-09T00:00:00"),  # Monday to Monday
    ("weekly", "2026-03-02T00:00:00", "2026-03-02T00:00:00", "2026-03-09T00:00:00"),
    ("monthly", "2026-12-31T23:00:00", "2026-12-01T00:00:00", "2027-01-01T00:00:00"),
    ("monthly", "2028-02-29T10:00:00", "2028-02-01T00:00:00", "2028-03-01T00:00:00"),
])
def test_periods_start_and_end_in_utc(period: str, at: str, start: str, end: str) -> None:
    assert period_start(period, utc(at)) == utc(start)
    assert period_end(period, utc(at)) == utc(end)


def test_no_reset_counts_since_the_epoch() -> None:
    assert period_start(None, 1e9) == 0.0 and period_end(None, 1e9) is None


def test_reservation_is_an_upper_bound_and_the_context_without_max_tokens() -> None:
    messages = [{"role": "user", "content": "héllo"}]  # 6 bytes
    assert reserved_tokens(messages, 10, 4096) == 64 + 16 + 6 + 10
    assert reserved_tokens(messages, None, 4096) == 4096
    assert reserved_tokens(messages, 5000, 4096) == 4096
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]
    assert reserved_tokens(image, 10, 4096) == 4096  # images: token count unknown before the engine
    assert estimated_prompt_tokens([{"role": "user", "content": "x" * 40}]) == 10 + 4


@pytest.mark.parametrize("seconds,text", [(0.25, "250ms"), (12.54, "12.5s"), (59.96, "60s"), (60, "1m0s"),
                                          (-1, "0ms")])
def test_durations_are_written_as_openai_does(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def key(**fields) -> KeyRecord:  # type: ignore[no-untyped-def]
    return KeyRecord(id=1, hash="h", name="k", prefix="sk-inferd-abc", created_at=0.0, **fields)


def test_an_admission_carries_the_openai_rate_limit_headers() -> None:
    verdict = decide(key(rate_limit=RateLimit(10, 1000, None)), Load(3, 400, 100.0), 50, 130.0)
    assert verdict.admitted and verdict.headers == {
        "x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "6", "x-ratelimit-reset-requests": "30s",
        "x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "550", "x-ratelimit-reset-tokens": "30s"}
    assert decide(key(), Load(), 50, 0.0).headers == {}  # no such limits: no such headers


@pytest.mark.parametrize("fields,load,kind,status", [
    ({"rate_limit": RateLimit(concurrent_requests=2)}, Load(in_flight=2), "requests", 429),
    ({"rate_limit": RateLimit(requests_per_minute=5)}, Load(window_requests=5, window_oldest=100.0), "requests", 429),
    ({"rate_limit": RateLimit(tokens_per_minute=100)}, Load(window_tokens=60, window_oldest=100.0), "tokens", 429),
    ({"token_limit": 1000}, Load(period_tokens=1000), "insufficient_quota", 402),
    ({"limit": 2.0, "limit_reset": "daily"}, Load(period_cost=2.0), "insufficient_quota", 402),
])
def test_each_limit_refuses_with_its_error(fields: dict, load: Load, kind: str, status: int) -> None:
    verdict = decide(key(**fields), load, 50, 130.0)
    assert not verdict.admitted and verdict.error is not None
    assert verdict.error.status == status and verdict.error.type == kind
    if status == 429:
        assert isinstance(verdict.error, RateLimited) and verdict.error.code == "rate_limit_exceeded"
        assert int(verdict.headers["Retry-After"]) >= 1
    else:
        assert isinstance(verdict.error, QuotaExceeded) and verdict.error.code == "insufficient_quota"


def test_budgets_admit_while_anything_is_left() -> None:
    assert decide(key(limit=1.0), Load(period_cost=0.999), 50, 0.0).admitted
    assert decide(key(token_limit=10), Load(period_tokens=9), 5000, 0.0).admitted


def test_retry_after_is_when_the_oldest_request_leaves_the_minute() -> None:
    verdict = decide(key(rate_limit=RateLimit(requests_per_minute=1)), Load(1, 10, 100.0), 5, 145.2)
    assert verdict.error is not None and verdict.headers["Retry-After"] == "15"
    assert verdict.headers["x-ratelimit-reset-requests"] == "14.8s"


def test_pricing_costs_each_kind_of_token() -> None:
    price = parse_pricing("m", {"prompt": "0.001", "completion": 0.002, "internal_reasoning": 0.004,
                                "input_cache_read": 0.0005, "request": 0.01})
    usage = Usage(prompt_tokens=100, completion_tokens=50, cached_tokens=40, reasoning_tokens=20)
    assert price.cost(usage) == pytest.approx(0.01 + 60 * 0.001 + 40 * 0.0005 + 30 * 0.002 + 20 * 0.004)
    assert price.reservation(100) == pytest.approx(0.01 + 100 * 0.004)
    assert price.card()["internal_reasoning"] == "0.004" and price.card()["request"] == "0.01"
    plain = Pricing(prompt=0.001, completion=0.002)
    assert plain.cost(usage) == pytest.approx(100 * 0.001 + 50 * 0.002)  # defaults: prompt and completion prices
    assert Pricing().is_free and Pricing().card()["prompt"] == "0"


@pytest.mark.parametrize("table", [{"prompt": -1}, {"prompt": "abc"}, {"prompt": True}, {"image": 1},
                                   {"completion": float("nan")}])
def test_bad_pricing_is_refused_at_load(table: dict) -> None:
    with pytest.raises(ValueError, match="library entry 'm'"):
        parse_pricing("m", table)


@pytest.mark.parametrize("body,param", [
    ({"name": "a", "limit": -1}, "limit"),
    ({"name": "a", "limit": "5"}, "limit"),
    ({"name": "a", "limit": True}, "limit"),
    ({"name": "a", "limit_reset": "hourly"}, "limit_reset"),
    ({"name": "a", "expires_at": "2030-01-01T00:00:00+02:00"}, "expires_at"),
    ({"name": "a", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
    ({"name": "a", "expires_at": "tomorrow"}, "expires_at"),
    ({"name": "a", "expires_at": 1893456000}, "expires_at"),
    ({"name": "a", "rate_limit": {"requests_per_minute": "10"}}, "rate_limit.requests_per_minute"),
    ({"name": "a", "rate_limit": {"requests_per_minute": 0}}, "rate_limit.requests_per_minute"),
    ({"name": "a", "rate_limit": {"burst": 1}}, "rate_limit.burst"),
    ({"name": "a", "rate_limit": 5}, "rate_limit"),
    ({"name": "a", "token_limit": 1.5}, "token_limit"),
    ({"name": "a", "models": ["m", "nope"]}, "models[1]"),
    ({"name": "a", "models": []}, "models"),
    ({"name": "a", "management": "yes"}, "management"),
    ({"name": ""}, "name"),
    ({"limit": 1}, "name"),
    ({"name": "a", "budget": 1}, "budget"),
])
def test_bad_key_fields_name_the_field(body: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_key_fields(body, LIBRARY, creating=True)
    assert caught.value.param == param and caught.value.status == 400


def test_key_fields_become_columns() -> None:
    fields, management = parse_key_fields(
        {"name": " a ", "limit": 5, "limit_reset": "weekly", "expires_at": "2030-01-01T00:00:00Z",
         "rate_limit": {"requests_per_minute": 10, "concurrent_requests": None}, "token_limit": 0,
         "models": ["m", "m"], "management": True}, LIBRARY, creating=True)
    assert management and fields == {"name": "a", "spend_limit": 5.0, "limit_reset": "weekly",
                                     "expires_at": parse_utc("x", "2030-01-01T00:00:00Z"), "rpm": 10,
                                     "concurrency": None, "token_limit": 0, "models": ("m",)}
    patch, _ = parse_key_fields({"disabled": True, "rate_limit": None}, LIBRARY, creating=False)
    assert patch == {"disabled": True, "rpm": None, "tpm": None, "concurrency": None}
    with pytest.raises(InvalidRequest):
        parse_key_fields({"management": True}, LIBRARY, creating=False)  # a key's kind never changes


def test_key_data_shows_remaining_in_the_current_period() -> None:
    zero = {"requests": 0, "tokens": 0, "cost": 0.0}
    counters = {"total": {"requests": 9, "tokens": 900, "cost": 9.0}, "daily": {"requests": 1, "tokens": 100,
                                                                              "cost": 1.5}, "weekly": zero,
                "monthly": zero}
    data = key_data(key(limit=2.0, limit_reset="daily", token_limit=150), counters)
    assert data["limit_remaining"] == 0.5 and data["token_limit_remaining"] == 50
    assert data["usage"] == 9.0 and data["usage_daily"] == 1.5 and data["label"] == "sk-inferd-abc..."
    assert "secret" not in data and data["hash"] == "h"


def test_database_url_setting() -> None:
    assert load_settings({"INFERD_DATABASE_URL": "postgresql://u@127.0.0.1/db"}).database_url.startswith("postgresql")
    with pytest.raises(ValueError, match="INFERD_DATABASE_URL"):
        load_settings({"INFERD_DATABASE_URL": "mysql://x"})
    assert load_settings({}).test_clock_file is None
