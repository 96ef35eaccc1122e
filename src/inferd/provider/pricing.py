"""Per-token prices of a library entry (OpenRouter's field names) and what a request costs.

``[models.pricing]`` in the library: ``prompt``, ``completion``, ``internal_reasoning``
(reasoning tokens; default: the completion price), ``input_cache_read`` (cached prompt
tokens; default: the prompt price) per token, and ``request`` per request, in whatever
unit the operator bills in. Numbers or numeric strings, >= 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..engines.base import Usage

FIELDS = ("prompt", "completion", "internal_reasoning", "input_cache_read", "request")


@dataclass(frozen=True)
class Pricing:
    prompt: float = 0.0
    completion: float = 0.0
    internal_reasoning: float | None = None
    input_cache_read: float | None = None
    request: float = 0.0

    @property
    def is_free(self) -> bool:
        return self.max_token_price == 0 and self.request == 0

    @property
    def max_token_price(self) -> float:
        return max(self.prompt, self.completion, self.internal_reasoning or 0.0, self.input_cache_read or 0.0)

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
        cache_price = self.prompt if self.input_cache_read is None else self.input_cache_read
        reasoning_price = self.completion if self.internal_reasoning is None else self.internal_reasoning
        return (self.request + (usage.prompt_tokens - cached) * self.prompt + cached * cache_price
                + (usage.completion_tokens - reasoning) * self.completion + reasoning * reasoning_price)

    def reservation(self, tokens: int) -> float:
        """The most ``tokens`` tokens of any kind can cost (an upper bound for admission)."""
        return self.request + tokens * self.max_token_price

    def card(self) -> dict[str, str]:
        """As ``/api/v1/models`` shows it: decimal strings, as OpenRouter does."""
        shown = {"prompt": self.prompt, "completion": self.completion, "request": self.request,
                 "internal_reasoning": self.completion if self.internal_reasoning is None else self.internal_reasoning,
                 "input_cache_read": self.prompt if self.input_cache_read is None else self.input_cache_read}
        return {name: _decimal(value) for name, value in shown.items()}


def _decimal(value: float) -> str:
    text = f"{value:.12f}".rstrip("0").rstrip(".")
    return text or "0"


def parse_pricing(model_id: str, table: Any) -> Pricing:
    if not isinstance(table, dict):
        raise ValueError(f"library entry '{model_id}': 'pricing' must be a table of per-token prices")
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise ValueError(f"library entry '{model_id}': unknown pricing fields {unknown} (known: {', '.join(FIELDS)})")
    return Pricing(**{name: _price(model_id, name, value) for name, value in table.items()})


def _price(model_id: str, name: str, value: Any) -> float:
    try:
        price = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        price = math.nan
    if not math.isfinite(price) or price < 0:
        raise ValueError(f"library entry '{model_id}': pricing.{name} must be a number >= 0, got {value!r}")
    return price
