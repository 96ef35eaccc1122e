"""Bearer secrets to keys: looked up by hash on every request, so that a revoke, a PATCH or an
expiry takes effect at once on every gateway sharing the database."""

from __future__ import annotations

import asyncio
import hmac
import logging

from ..store import KeyRecord, Store, StoreUnavailable, hash_key
from ..store.keys import key_by_hash, touch
from .clock import Clock

log = logging.getLogger("inferd")
LAST_USED_EVERY_S = 60.0  # last_used_at is refreshed at most this often per key


class KeyVerifier:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._touched: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def verify(self, secret: str) -> KeyRecord | None:
        """The key for a usable secret (known, not revoked, disabled or expired); else None.

        Raises ``StoreUnavailable`` when the database cannot be read."""
        digest = hash_key(secret)
        key = await self._store.read(key_by_hash, digest)
        if key is None or not hmac.compare_digest(key.hash, digest) or not key.is_usable(self._clock.now()):
            return None
        self._touch(key.id)
        return key

    def _touch(self, key_id: int) -> None:
        now = self._clock.now()
        if now - self._touched.get(key_id, 0.0) < LAST_USED_EVERY_S:
            return
        self._touched[key_id] = now
        task = asyncio.get_running_loop().create_task(self._write_touch(key_id, now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_touch(self, key_id: int, now: float) -> None:
        try:
            await self._store.write(touch, key_id, now)
        except StoreUnavailable as exc:  # last_used_at is a convenience: never worth a failed request
            log.debug("last_used_at not updated: %s", exc)
