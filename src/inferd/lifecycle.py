"""The server process's life: uvicorn, with a drain on the first SIGTERM or SIGINT.

On the first signal the listener stays open: new requests get 503 ``server_draining`` and
``/health`` says ``draining`` while the requests in flight finish (``app.state.drain``); then
uvicorn closes and the process exits with status 0. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
from types import FrameType
from typing import Awaitable, Callable

import uvicorn

log = logging.getLogger("inferd")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._drain = drain
        self._draining: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # not recorded in uvicorn's captured signals, which it would raise again at exit (status 143, not 0)
        if self._draining is not None or self._loop is None:
            self.should_exit = self.force_exit = True
            return
        log.info("signal %d: draining (a second signal stops at once)", sig)
        self._loop.call_soon_threadsafe(self._begin_drain)

    def _begin_drain(self) -> None:
        if self._draining is None:
            self._draining = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self._drain()
        except Exception:
            log.exception("drain failed; stopping anyway")
        finally:
            self.should_exit = True


def run(app: object, *, host: str, port: int, log_level: str, drain: Callable[[], Awaitable[None]]) -> None:
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, loop="auto", http="auto",
                            timeout_graceful_shutdown=5)
    DrainingServer(config, drain).run()
