"""Run an ASGI app behind the edge: uvicorn's server loop and our protocol, our signals, the fd limit.

Signals: the first SIGTERM/SIGINT awaits ``app.state.drain()`` when the app provides it (an async
callable) while the server keeps accepting, then closes the listener, lets open responses finish
(up to ``GRACE_S``) and runs the app's lifespan shutdown. Without ``drain`` that is uvicorn's own
graceful stop. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import resource
import signal
import threading
from typing import Any, Iterator

import uvicorn

from ..settings import Settings
from .connections import ConnectionRegistry
from .protocol import Edge, EdgeProtocol

log = logging.getLogger("inferd.edge")
SIGNALS = (signal.SIGTERM, signal.SIGINT)
GRACE_S = 5.0  # open responses get this long after the listener closes
FD_RESERVE = 256  # descriptors kept for everything but client connections (engines, model files, SQLite, ...)


def run(app: Any, settings: Settings) -> int:
    """Serve ``app`` until a signal; 0 after a graceful stop, 1 after a forced one."""
    edge = Edge(settings, ConnectionRegistry(connection_cap(settings.max_connections),
                                             settings.max_connections_per_client))
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            loop="auto", http=functools.partial(EdgeProtocol, edge=edge), ws="none",
                            lifespan="on", timeout_keep_alive=settings.keepalive_timeout,
                            timeout_graceful_shutdown=GRACE_S, log_config=None,
                            access_log=False)  # logging is set up by logs.configure; access lines: api/observed
    server = EdgeServer(config, app)
    server.run()
    return 1 if server.force_exit else 0


def connection_cap(wanted: int) -> int:
    """``wanted``, after raising this process's descriptor limit for it; less (with a warning) if it can't be."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft != resource.RLIM_INFINITY and soft < needed:
        cap = max(soft - FD_RESERVE, 16)
        log.warning("the descriptor limit (%d, hard %d) allows %d connections, not INFERD_MAX_CONNECTIONS=%d",
                    soft, hard, cap, wanted)
        return cap
    return wanted


class EdgeServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self._app = app
        self._stopping: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self.on_signal, sig)
        try:
            yield
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)

    def on_signal(self, sig: int) -> None:
        if self._stopping is None:
            log.info("%s: stopping (a second signal stops at once)", signal.Signals(sig).name)
            self._stopping = asyncio.get_running_loop().create_task(self._drain_then_stop())
            return
        log.warning("%s again: stopping at once", signal.Signals(sig).name)
        self._stopping.cancel()
        self.force_exit = self.should_exit = True

    async def _drain_then_stop(self) -> None:
        drain = getattr(getattr(self._app, "state", None), "drain", None)
        try:
            if drain is not None:
                await drain()  # the server keeps accepting meanwhile; the app decides what to answer
        except Exception:
            log.exception("drain failed; stopping anyway")
        finally:
            self.should_exit = True
