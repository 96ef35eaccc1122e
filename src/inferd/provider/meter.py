"""What a completion did, counted as it happens: deltas, first-token time, how it ended.

When the engine reports no final usage (the client went away, the engine failed), the deltas
counted here are the tokens generated: llama.cpp streams one delta per token.
"""

from __future__ import annotations

import time

from ..engines.base import Delta
from ..errors import APIError


class Meter:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.gaps: list[float] = []  # seconds between consecutive generated deltas (inter-token latency)
        self.ended_at: float | None = None
        self.deltas = 0
        self.reasoning_deltas = 0
        self.finish_reason: str | None = None
        self.error: str | None = None  # the error code that ended it, if one did

    def on_delta(self, delta: Delta) -> None:
        if delta.content or delta.reasoning or delta.tool_calls:
            self.deltas += 1
            self.reasoning_deltas += bool(delta.reasoning)
            now = time.monotonic()
            if self.first_at is None:
                self.first_at = now
            else:
                self.gaps.append(now - self.last_at)  # type: ignore[operator]
            self.last_at = now
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason

    def on_error(self, exc: BaseException) -> None:
        """An error ends it; a cancellation (the client went away) is not an error."""
        if self.error is None and isinstance(exc, Exception):
            self.error = (exc.code or "error") if isinstance(exc, APIError) else "internal_error"

    def end(self) -> None:
        if self.ended_at is None:
            self.ended_at = time.monotonic()

    @property
    def ttft_ms(self) -> float | None:
        return (self.first_at - self.started) * 1000 if self.first_at is not None else None

    @property
    def duration_ms(self) -> float:
        return ((self.ended_at or time.monotonic()) - self.started) * 1000
