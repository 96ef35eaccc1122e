"""Open connections per client address and in total; refusals past a cap, logged at most once per interval."""

from __future__ import annotations

import logging
import time
from typing import Callable

log = logging.getLogger("inferd.edge")
WARN_INTERVAL_S = 10.0


class ConnectionRegistry:
    def __init__(self, max_total: int, max_per_client: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client  # 0: no per-client cap
        self.num_open = 0
        self._per_client: dict[str, int] = {}
        self._clock = clock
        self._last_warning = float("-inf")
        self._num_refused_quietly = 0

    def admit(self, client: str) -> str | None:
        """Count a new connection from ``client`` in; or say why it is refused (it is then not counted)."""
        reason = self._over_cap(client)
        if reason is None:
            self.num_open += 1
            self._per_client[client] = self._per_client.get(client, 0) + 1
        else:
            self._warn(client, reason)
        return reason

    def release(self, client: str) -> None:
        self.num_open -= 1
        left = self._per_client[client] - 1
        if left:
            self._per_client[client] = left
        else:
            del self._per_client[client]

    def num_from(self, client: str) -> int:
        return self._per_client.get(client, 0)

    def _over_cap(self, client: str) -> str | None:
        if self.num_open >= self.max_total:
            return f"the server holds its maximum of {self.max_total} open connections"
        if self.max_per_client and self._per_client.get(client, 0) >= self.max_per_client:
            return f"this client address holds its maximum of {self.max_per_client} open connections"
        return None

    def _warn(self, client: str, reason: str) -> None:
        now = self._clock()
        if now - self._last_warning < WARN_INTERVAL_S:
            self._num_refused_quietly += 1
            return
        quiet, self._num_refused_quietly = self._num_refused_quietly, 0
        self._last_warning = now
        log.warning("refused a connection from %s: %s (%d more refused since the last such warning; at most one "
                    "warning per %.0f s)", client, reason, quiet, WARN_INTERVAL_S)
