"""The engines of a running server: loading state per model, and admission control.

A model takes at most ``parallel`` requests into its slots plus ``max_queue`` waiting;
past that the server answers 503 with Retry-After instead of queueing without bound.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..errors import ModelSourceError, Unavailable
from ..library import Library, ModelSpec
from ..settings import Settings
from ..sources import ensure_model_file
from . import load_engine
from .base import Engine

log = logging.getLogger("inferd")


@dataclass
class ModelState:
    status: str = "loading"  # loading | ready | failed
    engine: Engine | None = None
    error: str = ""
    in_flight: int = 0


class EnginePool:
    def __init__(self, library: Library, settings: Settings) -> None:
        self._library = library
        self._settings = settings
        self._states = {spec.id: ModelState() for spec in library}

    def load_all(self) -> None:
        """Assemble, verify and load every model (blocking: run it off the event loop)."""
        for spec in self._library:
            state = self._states[spec.id]
            try:
                path = ensure_model_file(spec, self._settings.model_files_dir)
                state.engine = load_engine(spec, path, self._settings)
                state.status = "ready"
                log.info("model %s ready (%s)", spec.id, path)
            except (ModelSourceError, ValueError, RuntimeError, OSError) as exc:
                state.status, state.error = "failed", str(exc)
                log.error("model %s failed to load: %s", spec.id, exc)

    def acquire(self, spec: ModelSpec) -> Engine:
        """Take a place for one request; pair every successful call with ``release``."""
        state = self._states[spec.id]
        if state.status == "loading":
            raise Unavailable(f"Model '{spec.id}' is still loading; retry shortly.", retry_after=5, code="model_loading")
        if state.status == "failed" or state.engine is None:
            raise Unavailable(f"Model '{spec.id}' failed to load: {state.error}", retry_after=60,
                              code="model_unavailable")
        if state.in_flight >= spec.parallel + self._settings.max_queue:
            raise Unavailable(f"Model '{spec.id}' is at capacity ({state.in_flight} requests in progress or "
                              "queued); retry after the Retry-After interval.", retry_after=1)
        state.in_flight += 1
        return state.engine

    def release(self, spec: ModelSpec) -> None:
        self._states[spec.id].in_flight -= 1

    def health(self) -> dict[str, Any]:
        statuses = {model_id: s.status for model_id, s in self._states.items()}
        values = set(statuses.values())
        overall = "error" if "failed" in values else "loading" if "loading" in values else "ready"
        errors = {model_id: s.error for model_id, s in self._states.items() if s.error}
        return {"status": overall, "models": statuses, **({"errors": errors} if errors else {})}

    async def close(self) -> None:
        for state in self._states.values():
            if state.engine is not None:
                await state.engine.close()
