"""Several engines behind one model id: an ``Engine`` whose ``generate`` picks a backend for each call.

The service sees one engine, so nothing above the seam changes: admission counts the model's
whole capacity, usage is recorded once per completion. Here, for every generation:

- the policy (``routing.py``, pure code) picks a backend from what is known now: load, health,
  circuits, and which backend last received the conversation's prefix;
- a backend that fails before the first delta (refused, 5xx, timeout, busy) is replaced once by
  another, unseen by the client; the client's own 4xx errors go back as they are;
- a failure after the first delta propagates, so the stream ends with an SSE error event;
- every outcome feeds the backend's circuit breaker (passive check); a task probes every backend
  on an interval (active check) through the engine's own ``probe``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Callable

from ..errors import APIError, EngineFailure, ModelSourceError, Unavailable
from ..library import BackendSpec, ModelSpec, RoutingOptions
from ..settings import Settings
from .base import Capabilities, Delta, Engine, EngineStatus, GenerationRequest
from .routing import BackendView, CircuitBreaker, Outcome, PrefixAffinity, make_policy, prefix_keys
from .supervisor import StartFailed

log = logging.getLogger("inferd")
PROBE_TIMEOUT_S = 5.0
Factory = Callable[[ModelSpec, Settings], Engine]


@dataclass
class Backend:
    spec: BackendSpec
    engine: Engine
    view: BackendView
    probed_ok: bool = True  # the last active check
    restarts: int = 0  # the engine's restart count when last looked at
    error: str = ""  # why it could not start

    async def check(self) -> None:
        probe = getattr(self.engine, "probe", None)
        try:
            ok = self.engine.status().is_ready and (await asyncio.wait_for(probe(), PROBE_TIMEOUT_S)
                                                    if probe is not None else True)
        except (asyncio.TimeoutError, OSError):
            ok = False
        except Exception:  # a bug in a probe must not end the health checks of every backend
            log.exception("backend %s: health check raised", self.spec.name)
            ok = False
        if ok != self.probed_ok:
            log.warning("backend %s: health check %s", self.spec.name, "passes again" if ok else "fails")
        self.probed_ok = ok

    def card(self, now: float) -> dict[str, Any]:
        status, view = self.engine.status(), self.view
        rate = view.cached_rate
        return {"name": view.name, "kind": status.kind, "state": status.state, "pid": status.pid,
                "restarts": status.restarts, "healthy": view.healthy, "circuit": view.circuit(now).value,
                "in_flight": view.in_flight, "slots": view.slots, "capacity": view.capacity, "rank": view.rank, "served": view.served,
                "failures": view.breaker.failures, "circuit_opened": view.breaker.times_opened,
                "cached_rate": None if rate is None else round(rate, 4),
                "last_error": self.error or status.error or None}


class RoutedEngine:
    kind = "routed"

    def __init__(self, spec: ModelSpec, settings: Settings, factory: Factory | None = None) -> None:
        from . import load_engine  # the table of engine kinds imports this module

        make = factory or load_engine
        self._spec = spec
        self._options = spec.routing or RoutingOptions()
        opts = self._options
        self._backends = [Backend(b, make(b.spec, _own_queue(settings, b)), BackendView(
            b.name, slots=b.spec.parallel, queue=b.capacity(settings.max_queue) - b.spec.parallel, rank=b.rank,
            breaker=CircuitBreaker(opts.failures_to_open, opts.cool_off))) for b in spec.backends]
        self._views = [b.view for b in self._backends]
        self._policy = make_policy(opts.policy, opts.prefer)
        if isinstance(self._policy, PrefixAffinity):
            self._policy.threshold = opts.affinity_threshold
        self.capabilities = Capabilities(context_length=spec.context_length, parallel=spec.parallel)
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start every backend side by side; the model is up when at least one is."""
        started = await asyncio.gather(*(self._start(b) for b in self._backends))
        if not any(started):
            raise StartFailed("no backend started: " + "; ".join(f"{b.spec.name}: {b.error}" for b in self._backends))
        await self._check_all()
        self._watch = asyncio.create_task(self._check_forever())

    async def _start(self, backend: Backend) -> bool:
        try:
            await backend.engine.start()
            return True
        except (ModelSourceError, StartFailed, ValueError, RuntimeError, OSError) as exc:
            backend.error = str(exc)
            log.error("model %s: backend %s failed to start: %s", self._spec.id, backend.spec.name, exc)
            return False

    async def _check_all(self) -> None:
        await asyncio.gather(*(b.check() for b in self._backends))
        self._refresh()

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self._options.health_interval)
            await self._check_all()

    def _refresh(self) -> None:
        """Fold each engine's state into its view; a restarted engine's cache is empty."""
        for backend in self._backends:
            status = backend.engine.status()
            backend.view.healthy = status.is_ready and backend.probed_ok and not backend.error
            if status.restarts != backend.restarts:
                backend.restarts = status.restarts
                if isinstance(self._policy, PrefixAffinity):
                    self._policy.table.forget_backend(backend.spec.name)

    def status(self) -> EngineStatus:
        self._refresh()
        now = time.monotonic()
        states = [b.engine.status() for b in self._backends]
        kinds = {s.state for s in states}
        state = next((k for k in ("ready", "restarting", "loading", "stopping", "stopped") if k in kinds), "failed")
        errors = "; ".join(f"backend {b.spec.name}: {b.error or s.error}" for b, s in zip(self._backends, states)
                           if not s.is_ready and (b.error or s.error))
        return EngineStatus(state=state, kind=self.kind, restarts=sum(s.restarts for s in states),
                            error="" if state == "ready" else errors,
                            backends=tuple(b.card(now) for b in self._backends))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        keys = prefix_keys(request.messages, salt=self._spec.id)
        tried: set[str] = set()
        failure: APIError | None = None
        for attempt in (1, 2):  # the first choice, and one retry elsewhere
            backend = self._choose(keys, tried, failure)
            tried.add(backend.spec.name)
            started = False
            try:
                async with aclosing(self._attempt(backend, request)) as deltas:
                    async for delta in deltas:
                        started = True
                        yield delta
                return
            except APIError as exc:
                if started or not _backend_fault(exc):
                    raise  # after the first delta: the stream ends with an error event
                failure = exc
                log.warning("model %s: backend %s failed before its first delta (%s)%s", self._spec.id,
                            backend.spec.name, exc.message, "; trying another" if attempt == 1 else "")
        assert failure is not None
        raise failure

    def _choose(self, keys: list[str], tried: set[str], failure: APIError | None) -> Backend:
        self._refresh()
        now = time.monotonic()
        view = self._policy.choose(self._views, keys, now, exclude=tried)
        if view is not None:
            return self._backends[self._views.index(view)]
        if failure is not None:  # nowhere to retry: the first backend's error stands
            raise failure
        raise self._unavailable(now)

    def _unavailable(self, now: float) -> Unavailable:
        up = [v for v in self._views if v.healthy and v.breaker.allows(now)]
        if up:  # some are up, and they are full
            return Unavailable(f"Every backend of model '{self._spec.id}' is at capacity; retry after the "
                               "Retry-After interval.", retry_after=1)
        return Unavailable(f"Every backend of model '{self._spec.id}' is down or failing; retry shortly.",
                           retry_after=max(1, round(self._options.cool_off / 2)), code="model_unavailable")

    async def _attempt(self, backend: Backend, request: GenerationRequest) -> AsyncIterator[Delta]:
        """One try on one backend; its outcome goes to the backend's circuit breaker."""
        view = backend.view
        probe = view.dispatch(time.monotonic())
        outcome, usage = Outcome.NEUTRAL, None  # NEUTRAL: cancelled, or the client went away
        try:
            async with aclosing(backend.engine.generate(request)) as deltas:
                async for delta in deltas:
                    usage = delta.usage or usage
                    yield delta
            outcome = Outcome.OK
        except APIError as exc:
            # a client's error means the backend answered; busy is not sick
            outcome = (Outcome.OK if not _backend_fault(exc) else
                       Outcome.NEUTRAL if isinstance(exc, Unavailable) else Outcome.FAILED)
            raise
        finally:
            view.finish(time.monotonic(), outcome, probe, prompt_tokens=usage.prompt_tokens if usage else 0,
                        cached_tokens=usage.cached_tokens if usage else 0)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        await asyncio.gather(*(b.engine.close() for b in self._backends))


def _own_queue(settings: Settings, backend: BackendSpec) -> Settings:
    """The settings a backend's engine is built with: its own queue, where it has one, sizes its connections
    (and a llama.cpp child's HTTP threads) as the server's ``max_queue`` does for a single engine."""
    return settings if backend.queue is None else replace(settings, max_queue=backend.queue)


def _backend_fault(exc: APIError) -> bool:
    """A failure of the backend (5xx, timeout, refused, busy), not of the client's request (4xx)."""
    return exc.status >= 500 or isinstance(exc, EngineFailure)
