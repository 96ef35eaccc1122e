"""What the store keeps: keys with their limits, and one usage record per admitted request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PERIODS = ("daily", "weekly", "monthly")  # a key's limit_reset; None: the limits never reset
IN_FLIGHT = "in_flight"  # a usage record's status between admission and settlement


class StoreUnavailable(Exception):
    """The database refused or could not take an operation (locked, read-only, full, unreachable)."""

    def __init__(self, message: str, *, connection_lost: bool = False) -> None:
        super().__init__(message)
        self.connection_lost = connection_lost  # a new connection may well succeed at once


class Duplicate(Exception):
    """A unique value (a key's name) is taken."""


@dataclass(frozen=True)
class RateLimit:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return {"requests_per_minute": self.requests_per_minute, "tokens_per_minute": self.tokens_per_minute,
                "concurrent_requests": self.concurrent_requests}


@dataclass(frozen=True)
class KeyRecord:
    id: int
    hash: str
    name: str
    prefix: str
    created_at: float
    management: bool = False
    disabled: bool = False
    limit: float | None = None  # spend per reset period, in the library's price units
    limit_reset: str | None = None  # daily | weekly | monthly | None
    token_limit: int | None = None  # tokens per reset period
    rate_limit: RateLimit = field(default_factory=RateLimit)
    models: tuple[str, ...] | None = None  # allow-list; None: every model
    expires_at: float | None = None
    updated_at: float | None = None
    last_used_at: float | None = None
    revoked_at: float | None = None  # deleted (API) or revoked (CLI): gone for good

    def is_usable(self, now: float) -> bool:
        return not self.disabled and self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    @property
    def has_admission_limits(self) -> bool:
        rl = self.rate_limit
        return any(v is not None for v in (self.limit, self.token_limit, rl.requests_per_minute,
                                           rl.tokens_per_minute, rl.concurrent_requests))

    def allows(self, model_id: str) -> bool:
        return self.models is None or model_id in self.models


@dataclass(frozen=True)
class Ticket:
    """What one request asks for at admission."""

    request_id: str
    key: KeyRecord
    model: str
    engine: str
    admitted_at: float
    reserved_tokens: int
    reserved_cost: float
    user: str | None = None


@dataclass(frozen=True)
class Load:
    """A key's current use, read under its lock: the sliding minute, the in-flight requests, the period."""

    window_requests: int = 0
    window_tokens: int = 0
    window_oldest: float | None = None  # when the oldest request in the window was admitted (to the second)
    in_flight: int = 0
    period_tokens: int = 0  # settled in this period + reserved by requests in flight
    period_cost: float = 0.0


@dataclass(frozen=True)
class UsageRecord:
    """A finished request: the settlement of its ticket (replayable: keyed by request_id)."""

    request_id: str
    key_id: int
    admitted_at: float
    status: str  # completed | client_disconnected | engine_error | error code of a refusal after admission
    model: str = ""
    engine: str = ""
    user: str | None = None
    reserved_tokens: int = 0  # what admission reserved: the sliding minute is corrected by the difference
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float = 0.0
    finish_reason: str | None = None
    estimated: bool = False  # prompt tokens estimated: the engine never reported them (cut short)
    ttft_ms: float | None = None
    duration_ms: float | None = None
    settled_at: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)
