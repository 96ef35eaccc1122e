"""The engines of a running server: their state per model, admission control, and drain.

A model takes at most ``parallel`` requests into its slots plus ``max_queue`` waiting; past
that the server answers 503 with Retry-After instead of queueing without bound. A model whose
engine is loading or restarting answers 503 ``model_loading``; a draining server answers 503
``server_draining`` to every new request.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ModelSourceError, Unavailable
from ..library import Library, ModelSpec
from ..settings import Settings
from . import load_engine
from .base import Engine, EngineStatus
from .procs import tree_rss
from .supervisor import StartFailed

log = logging.getLogger("inferd")
EngineFactory = Callable[[ModelSpec, Settings], Engine]
UNREADY = {"loading": (5, "model_loading", "is still loading"), "restarting": (5, "model_loading", "is restarting")}


@dataclass
class ModelState:
    engine: Engine | None = None
    error: str = ""  # why it could not be built or started
    in_flight: int = 0


class EnginePool:
    def __init__(self, library: Library, settings: Settings, factory: EngineFactory = load_engine) -> None:
        self._library = library
        self._settings = settings
        self._factory = factory
        self._states = {spec.id: ModelState() for spec in library}
        self._idle = asyncio.Event()
        self._closed = False
        self.draining = False

    async def start_all(self) -> None:
        """Build and start every model's engine, side by side; a model that cannot start is ``failed``."""
        await asyncio.gather(*(self._start(spec) for spec in self._library))

    async def _start(self, spec: ModelSpec) -> None:
        state = self._states[spec.id]
        try:
            state.engine = self._factory(spec, self._settings)
            await state.engine.start()
            log.info("model %s ready (%s engine, pid %s)", spec.id, spec.engine, state.engine.status().pid)
        except (ModelSourceError, StartFailed, ValueError, RuntimeError, OSError) as exc:
            message = str(exc) if isinstance(exc, ModelSourceError) else f"model '{spec.id}': {exc}"
            state.error = message
            log.error("model %s failed to load: %s", spec.id, message)
        except Exception as exc:  # a bug, not a bad model: the model fails, the server stays up
            state.error = f"model '{spec.id}': unexpected error while starting its engine ({type(exc).__name__})"
            log.exception("model %s failed to load", spec.id)

    def status(self, model_id: str) -> EngineStatus:
        state = self._states[model_id]
        if state.engine is None:
            return EngineStatus(state="failed" if state.error else "loading", kind="", error=state.error)
        status = state.engine.status()
        return status if not state.error else EngineStatus(state="failed", kind=status.kind, error=state.error)

    def acquire(self, spec: ModelSpec) -> Engine:
        """Take a place for one request; pair every successful call with ``release``."""
        if self.draining:
            raise Unavailable("The server is shutting down and takes no new requests; retry on another instance.",
                              retry_after=5, code="server_draining")
        state, status = self._states[spec.id], self.status(spec.id)
        if status.state in UNREADY:
            retry, code, what = UNREADY[status.state]
            raise Unavailable(f"Model '{spec.id}' {what}; retry shortly.", retry_after=retry, code=code)
        if status.state != "ready" or state.engine is None:
            raise Unavailable(f"Model '{spec.id}' failed to load: {status.error}", retry_after=60,
                              code="model_unavailable")
        if state.in_flight >= spec.capacity(self._settings.max_queue):
            raise Unavailable(f"Model '{spec.id}' is at capacity ({state.in_flight} requests in progress or "
                              "queued); retry after the Retry-After interval.", retry_after=1)
        state.in_flight += 1
        self._idle.clear()
        return state.engine

    def release(self, spec: ModelSpec) -> None:
        self._states[spec.id].in_flight -= 1
        if not any(s.in_flight for s in self._states.values()):
            self._idle.set()

    async def drain(self, seconds: float) -> bool:
        """Stop admitting; wait up to ``seconds`` for in-flight requests. True if they all finished."""
        self.draining = True
        if not any(s.in_flight for s in self._states.values()):
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    def health(self) -> dict[str, Any]:
        statuses = {model_id: self.status(model_id) for model_id in self._states}
        values = {s.state for s in statuses.values()}
        if self.draining:
            overall = "draining"
        else:
            overall = ("error" if "failed" in values else "loading" if "loading" in values
                       else "degraded" if values != {"ready"} else "ready")
        errors = {model_id: s.error for model_id, s in statuses.items() if s.error and s.state == "failed"}
        return {"status": overall, "models": {m: s.state for m, s in statuses.items()},
                "engines": {m: self._engine_card(m, s) for m, s in statuses.items()},
                **({"errors": errors} if errors else {})}

    def _engine_card(self, model_id: str, status: EngineStatus) -> dict[str, Any]:
        card = {"kind": status.kind, "state": status.state, "pid": status.pid,
                "rss_bytes": tree_rss(status.pid) if status.pid else None, "restarts": status.restarts,
                "in_flight": self._states[model_id].in_flight, "last_error": status.error or None}
        if status.backends:
            card["backends"] = [{**b, "rss_bytes": tree_rss(b["pid"]) if b.get("pid") else None}
                                for b in status.backends]
        return card

    async def close(self) -> None:
        """Stop every engine; requests still in flight end with a shutting-down error."""
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*(s.engine.close() for s in self._states.values() if s.engine is not None))
