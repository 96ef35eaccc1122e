"""Admission decisions: rate limits (a sliding minute), concurrency, token and spend limits.

A request reserves tokens at admission (``max_tokens`` plus an upper bound of its prompt, or the
model's whole context when it gives no ``max_tokens``) and the cost those tokens could have; the
reservation counts against every limit until the request settles to its actual count. Spend and
token limits admit while something is left, so racing requests overspend by less than one
request's reservation. Decisions are pure functions of the key and its ``Load``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import APIError, QuotaExceeded, RateLimited
from ..store.records import KeyRecord, Load

WINDOW_S = 60.0  # requests and tokens per minute: a sliding window of this length
TEMPLATE_TOKENS = 64  # upper bound of a chat template's fixed tokens
MESSAGE_TOKENS = 16  # upper bound of a template's tokens around each message


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    headers: dict[str, str] = field(default_factory=dict)
    error: APIError | None = None


def text_bytes(messages: list[dict[str, Any]]) -> tuple[int, bool]:
    """UTF-8 bytes of the messages' text, and whether any part is media."""
    size, media = 0, False
    for message in messages:
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for part in parts:
            if part.get("type") == "text":
                size += len(part["text"].encode())
            else:
                media = True
    return size, media


def reserved_tokens(messages: list[dict[str, Any]], max_tokens: int | None, context_length: int,
                    choices: int = 1) -> int:
    """An upper bound of the tokens a request can use: a token covers at least one byte of text; with
    ``n`` choices the prompt is counted once and each further choice can write ``max_tokens`` more."""
    size, media = text_bytes(messages)
    more = (choices - 1) * (context_length if max_tokens is None else max_tokens)
    if max_tokens is None or media:
        return context_length + more
    return min(context_length, TEMPLATE_TOKENS + MESSAGE_TOKENS * len(messages) + size + max_tokens) + more


def estimated_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """A typical count (about 4 bytes a token) for a request cut short before the engine reported one."""
    size, _ = text_bytes(messages)
    return math.ceil(size / 4) + 4 * len(messages)


def decide(key: KeyRecord, load: Load, reserved: int, now: float) -> Verdict:
    """Admit, or refuse with the first limit the request would break (checked in this order)."""
    headers = rate_headers(key, load, reserved, now)
    rl = key.rate_limit
    retry = _retry_after(load, now)
    if rl.concurrent_requests is not None and load.in_flight >= rl.concurrent_requests:
        return _refuse(RateLimited(f"Rate limit reached: {rl.concurrent_requests} concurrent requests for this key; "
                                   "retry when one of them has finished.", kind="requests",
                                   headers={**headers, "Retry-After": "1"}))
    if rl.requests_per_minute is not None and load.window_requests >= rl.requests_per_minute:
        return _refuse(RateLimited(f"Rate limit reached on requests per minute: limit {rl.requests_per_minute}, "
                                   f"used {load.window_requests}. Retry after {retry} s.", kind="requests",
                                   headers={**headers, "Retry-After": str(retry)}))
    if rl.tokens_per_minute is not None and load.window_tokens + reserved > rl.tokens_per_minute:
        return _refuse(_tokens_refusal(rl.tokens_per_minute, load, reserved, retry, headers))
    if key.token_limit is not None and load.period_tokens >= key.token_limit:
        return _refuse(QuotaExceeded(f"This key's token limit ({key.token_limit} tokens{_per(key)}) is used up.",
                                     param=None))
    if key.limit is not None and load.period_cost >= key.limit:
        return _refuse(QuotaExceeded(f"This key's spend limit ({key.limit:g}{_per(key)}) is used up.", param=None))
    return Verdict(True, headers)


def _tokens_refusal(tpm: int, load: Load, reserved: int, retry: int, headers: dict[str, str]) -> RateLimited:
    if reserved > tpm:
        return RateLimited(f"Request too large for this key's tokens per minute: limit {tpm}, requested {reserved} "
                           "(max_tokens plus the prompt; without max_tokens the model's whole context is "
                           "reserved). Set a smaller max_tokens.", kind="tokens",
                           headers={**headers, "Retry-After": str(int(WINDOW_S))})
    return RateLimited(f"Rate limit reached on tokens per minute: limit {tpm}, used {load.window_tokens}, "
                       f"requested {reserved}. Retry after {retry} s.", kind="tokens",
                       headers={**headers, "Retry-After": str(retry)})


def _per(key: KeyRecord) -> str:
    return {"daily": " per day", "weekly": " per week", "monthly": " per month"}.get(key.limit_reset or "", "")


def _refuse(error: APIError) -> Verdict:
    return Verdict(False, dict(error.headers), error)


def _retry_after(load: Load, now: float) -> int:
    """Whole seconds until the oldest request in the window leaves it (at least 1)."""
    if load.window_oldest is None:
        return 1
    return max(1, math.ceil(load.window_oldest + WINDOW_S - now))


def rate_headers(key: KeyRecord, load: Load, reserved: int, now: float) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the limits this key has, counting this request as admitted."""
    rl = key.rate_limit
    reset = format_duration((load.window_oldest if load.window_oldest is not None else now) + WINDOW_S - now)
    headers: dict[str, str] = {}
    if rl.requests_per_minute is not None:
        headers |= {"x-ratelimit-limit-requests": str(rl.requests_per_minute),
                    "x-ratelimit-remaining-requests": str(max(0, rl.requests_per_minute - load.window_requests - 1)),
                    "x-ratelimit-reset-requests": reset}
    if rl.tokens_per_minute is not None:
        headers |= {"x-ratelimit-limit-tokens": str(rl.tokens_per_minute),
                    "x-ratelimit-remaining-tokens": str(max(0, rl.tokens_per_minute - load.window_tokens - reserved)),
                    "x-ratelimit-reset-tokens": reset}
    return headers


def format_duration(seconds: float) -> str:
    """As OpenAI writes resets: ``250ms``, ``12.5s``, ``1m0s``."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{round(seconds, 1):g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"
