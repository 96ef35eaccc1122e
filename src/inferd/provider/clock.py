"""The time limits and usage read: injected, so that resets are tested without sleeping."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Protocol

log = logging.getLogger("inferd")


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC)."""


class SystemClock:
    def now(self) -> float:
        return time.time()


class FixedClock:
    """A clock that moves only when told (unit and store tests)."""

    def __init__(self, start: float) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class OffsetFileClock:
    """TEST ONLY (``INFERD_TEST_CLOCK_FILE``): system time plus the seconds written in a file.

    Lets a test move a real server process across a daily reset without sleeping. The server
    logs a warning at start whenever it is on; never set it in production.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        log.warning("INFERD_TEST_CLOCK_FILE is set: the limits' clock is offset by %s (test only)", path)

    def now(self) -> float:
        try:
            offset = float(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            offset = 0.0
        return time.time() + offset


def clock_for(test_clock_file: Path | None) -> Clock:
    return OffsetFileClock(test_clock_file) if test_clock_file is not None else SystemClock()
