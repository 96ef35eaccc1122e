"""Admission before any engine slot is taken, and settlement when the completion ends.

``Gate.model`` applies the key's kind and allow-list; ``Gate.admit`` reserves the request
against the key's limits in the store (under the key's lock, so gateways sharing a database
agree) and returns an ``Admission``, whose ``settle`` hands the final record to the ledger.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from ..engines.base import Usage
from ..errors import ModelNotFound, PermissionDenied, Unavailable
from ..library import Library, ModelSpec
from ..store import KeyRecord, Store, StoreUnavailable, Ticket, UsageRecord
from ..store.ledger import admit
from .clock import Clock
from .ledger import UsageLedger
from .limits import WINDOW_S, Verdict, decide, estimated_prompt_tokens, reserved_tokens
from .meter import Meter
from .periods import key_period, period_start


def store_unavailable(exc: StoreUnavailable) -> Unavailable:
    return Unavailable(f"The key and usage database is unavailable; retry shortly. ({exc})", retry_after=1,
                       code="store_unavailable")


def visible_spec(key: KeyRecord, library: Library, model_id: str) -> ModelSpec:
    """A model outside the key's allow-list is as absent as one that does not exist."""
    if not key.allows(model_id) or model_id not in {spec.id for spec in library}:
        allowed = [spec.id for spec in library if key.allows(spec.id)]
        raise ModelNotFound(f"The model '{model_id}' does not exist. Available models: {', '.join(allowed)}.",
                            param="model")
    return library.get(model_id)


class Gate:
    def __init__(self, store: Store, ledger: UsageLedger, library: Library, clock: Clock, lease_s: float) -> None:
        self._store = store
        self._ledger = ledger
        self._library = library
        self._clock = clock
        self._lease_s = lease_s

    def model(self, key: KeyRecord, model_id: str) -> ModelSpec:
        """The spec of a model this key may call; a model outside its allow-list is absent."""
        if key.management:
            raise PermissionDenied("Management keys administer keys and cannot call completions; use an "
                                   "ordinary key (create one with POST /api/v1/keys).")
        return visible_spec(key, self._library, model_id)

    async def admit(self, key: KeyRecord, spec: ModelSpec, messages: list[dict[str, Any]],
                    max_tokens: int | None, user: str | None, choices: int = 1) -> "Admission":
        now = self._clock.now()
        tokens = reserved_tokens(messages, max_tokens, spec.context_length, choices)
        ticket = Ticket(request_id=uuid.uuid4().hex, key=key, model=spec.id, engine=spec.engine, admitted_at=now,
                        reserved_tokens=tokens, reserved_cost=spec.pricing.reservation(tokens), user=user)
        period = key_period(key.limit_reset)

        def verdict(load: Any) -> tuple[bool, Verdict]:
            result = decide(key, load, tokens, now)
            return result.admitted, result

        pending = asyncio.ensure_future(self._store.write(admit, ticket, now - WINDOW_S, now - self._lease_s,
                                                          (period, period_start(period, now)), verdict))
        try:
            result: Verdict = await asyncio.shield(pending)
        except StoreUnavailable as exc:
            raise store_unavailable(exc) from None
        except asyncio.CancelledError:  # the client left while the database decided: settle if admitted
            pending.add_done_callback(lambda done: self._abandoned(done, ticket))
            raise
        if result.error is not None:
            raise result.error
        return Admission(ticket, spec, result.headers, estimated_prompt_tokens(messages), self)

    def settle(self, rec: UsageRecord) -> None:
        self._ledger.record(rec)

    def _abandoned(self, done: "asyncio.Future[Verdict]", ticket: Ticket) -> None:
        if not done.cancelled() and done.exception() is None and done.result().admitted:
            self.settle(UsageRecord(request_id=ticket.request_id, key_id=ticket.key.id, admitted_at=ticket.admitted_at,
                                    status="client_disconnected", model=ticket.model, engine=ticket.engine,
                                    user=ticket.user, reserved_tokens=ticket.reserved_tokens,
                                    settled_at=self._clock.now()))

    def now(self) -> float:
        return self._clock.now()


class Admission:
    """One admitted request: its rate-limit headers, and its settlement (exactly once)."""

    def __init__(self, ticket: Ticket, spec: ModelSpec, headers: dict[str, str], prompt_estimate: int,
                 gate: Gate) -> None:
        self.ticket = ticket
        self.headers = headers
        self.meter = Meter()
        self._spec = spec
        self._prompt_estimate = prompt_estimate
        self._gate: Gate | None = gate

    def settle(self, usage: Usage | None) -> UsageRecord | None:
        """The final record, handed to the ledger; None when already settled."""
        if self._gate is None:
            return None
        gate, self._gate = self._gate, None
        self.meter.end()
        record = self._record(usage, gate.now())
        gate.settle(record)
        return record

    def _record(self, usage: Usage | None, now: float) -> UsageRecord:
        meter = self.meter
        estimated = usage is None and meter.deltas > 0  # cut short after the prompt was processed
        if usage is None:
            usage = Usage(prompt_tokens=self._prompt_estimate if estimated else 0, completion_tokens=meter.deltas,
                          reasoning_tokens=meter.reasoning_deltas)
            status = meter.error or "client_disconnected"
        else:
            status = "completed"
        return UsageRecord(
            request_id=self.ticket.request_id, key_id=self.ticket.key.id, admitted_at=self.ticket.admitted_at,
            status=status, model=self.ticket.model, engine=self.ticket.engine, user=self.ticket.user,
            reserved_tokens=self.ticket.reserved_tokens, prompt_tokens=usage.prompt_tokens, cached_tokens=usage.cached_tokens,
            completion_tokens=usage.completion_tokens, reasoning_tokens=usage.reasoning_tokens,
            cost=self._spec.pricing.cost(usage), finish_reason=meter.finish_reason, estimated=estimated,
            ttft_ms=meter.ttft_ms, duration_ms=meter.duration_ms, settled_at=now)
