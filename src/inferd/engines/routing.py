"""The routing policy for a model served by several backends: pure code, no I/O, no clock of its own.

Every method that depends on time takes ``now`` (seconds, any monotonic origin), so the gateway
(``time.monotonic()``) and a discrete-event simulator (its virtual clock) drive the very same code.

- ``BackendView``: what the router knows of one backend (capacity, load, health, its circuit).
- ``CircuitBreaker``: closed -> open after consecutive failures -> half-open after a cool-off, where
  one probe request decides: closed on success, open again on failure.
- ``prefix_keys`` / ``PrefixTable``: a conversation's successive prefixes hashed, and which backend
  last received each, so the next turn finds the backend whose cache holds its prefix.
- ``RoundRobin``, ``LeastOutstanding``, ``PrefixAffinity``: one method, ``choose``.

How a caller drives it, per request::

    keys = prefix_keys(messages)
    view = policy.choose(views, keys, now, exclude=())   # None: every backend is full or down
    view.dispatch(now)                                   # in flight; takes the probe of a half-open circuit
    ...                                                  # the request runs
    view.finish(now, Outcome.OK)                         # or FAILED (error, timeout), or NEUTRAL (cancelled)
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Mapping, Protocol, Sequence


class Circuit(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(str, enum.Enum):
    OK = "ok"  # the backend answered (a client's own 4xx counts: the backend is alive)
    FAILED = "failed"  # an error of the backend, a refused connection, a timeout
    NEUTRAL = "neutral"  # says nothing about the backend (the client went away)


@dataclass
class CircuitBreaker:
    """Opens after ``failures_to_open`` consecutive failures; after ``cool_off`` seconds lets one probe through."""

    failures_to_open: int = 3
    cool_off: float = 5.0
    failures: int = 0  # consecutive
    opened_at: float | None = None  # None: closed
    probing: bool = False  # the one half-open probe is in flight
    times_opened: int = 0

    def state(self, now: float) -> Circuit:
        if self.opened_at is None:
            return Circuit.CLOSED
        return Circuit.HALF_OPEN if now >= self.opened_at + self.cool_off else Circuit.OPEN

    def allows(self, now: float) -> bool:
        """Whether a request may be sent now (a half-open circuit takes one probe at a time)."""
        state = self.state(now)
        return state is Circuit.CLOSED or (state is Circuit.HALF_OPEN and not self.probing)

    def on_dispatch(self, now: float) -> None:
        if self.state(now) is Circuit.HALF_OPEN:
            self.probing = True

    def record(self, now: float, outcome: Outcome, probe: bool = False) -> None:
        """The end of a request; ``probe``: it was the half-open probe (only a probe closes an open circuit)."""
        if probe:
            self.probing = False
        if outcome is Outcome.OK:
            if self.opened_at is None or probe:
                self.failures, self.opened_at = 0, None
        elif outcome is Outcome.FAILED:
            self.failures += 1
            if probe or (self.opened_at is None and self.failures >= self.failures_to_open):
                self._open(now)

    def _open(self, now: float) -> None:
        self.opened_at = now
        self.times_opened += 1


@dataclass
class BackendView:
    """The router's view of one backend. ``rank``: preference, lowest first."""

    name: str
    slots: int
    queue: int = 0
    rank: int = 0
    in_flight: int = 0
    healthy: bool = True  # the last active health check
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    served: int = 0  # requests finished (any outcome)
    prompt_tokens: int = 0
    cached_tokens: int = 0

    @property
    def capacity(self) -> int:
        return self.slots + self.queue

    @property
    def load(self) -> float:
        return self.in_flight / max(self.capacity, 1)

    @property
    def has_free_slot(self) -> bool:
        return self.in_flight < self.slots

    @property
    def is_full(self) -> bool:
        return self.in_flight >= self.capacity

    @property
    def cached_rate(self) -> float | None:
        """Share of prompt tokens served from the backend's cache, None before any prompt."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else None

    def circuit(self, now: float) -> Circuit:
        return self.breaker.state(now)

    def is_available(self, now: float) -> bool:
        return self.healthy and not self.is_full and self.breaker.allows(now)

    def dispatch(self, now: float) -> bool:
        """A request is sent here. Returns whether it is the half-open probe (pass it back to ``finish``)."""
        probe = self.breaker.state(now) is Circuit.HALF_OPEN
        self.breaker.on_dispatch(now)
        self.in_flight += 1
        return probe

    def finish(self, now: float, outcome: Outcome, probe: bool = False,
               prompt_tokens: int = 0, cached_tokens: int = 0) -> None:
        self.in_flight -= 1
        self.served += 1
        self.prompt_tokens += prompt_tokens
        self.cached_tokens += cached_tokens
        self.breaker.record(now, outcome, probe)


# -- prefix keys ---------------------------------------------------------------------------------

def extend_key(parent: str, text: str) -> str:
    """The key of a prefix one part longer than ``parent``'s (16 hex digits)."""
    return hashlib.blake2b(f"{parent}\x1e{text}".encode(), digest_size=8).hexdigest()


def chain_keys(parts: Iterable[str], salt: str = "") -> list[str]:
    """One key per successive prefix of ``parts``: key i stands for parts[0..i]."""
    keys, key = [], salt
    for part in parts:
        key = extend_key(key, part)
        keys.append(key)
    return keys


def prefix_keys(messages: Sequence[Mapping[str, Any]], salt: str = "") -> list[str]:
    """Keys of a chat request's successive message prefixes, shortest first.

    The next turn of a conversation repeats this request's messages, so its keys begin with
    these: the key of the full request is what the next turn looks up."""
    return chain_keys((json.dumps(m, sort_keys=True, separators=(",", ":"), default=str) for m in messages), salt)


class PrefixTable:
    """Which backend last received each prefix; bounded, least recently used entries leave first."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._owners: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._owners)

    def remember(self, keys: Sequence[str], backend: str) -> None:
        """Record that ``backend`` now holds the request's prefix (its full key; shorter ones are shared)."""
        if not keys:
            return
        self._owners[keys[-1]] = backend
        self._owners.move_to_end(keys[-1])
        while len(self._owners) > self.max_entries:
            self._owners.popitem(last=False)

    def lookup(self, keys: Sequence[str]) -> tuple[str, int] | None:
        """The backend holding the longest known prefix, and that prefix's length in keys."""
        for depth in range(len(keys), 0, -1):
            owner = self._owners.get(keys[depth - 1])
            if owner is not None:
                self._owners.move_to_end(keys[depth - 1])
                return owner, depth
        return None

    def forget_backend(self, backend: str) -> None:
        """Drop what a backend held (it restarted: its cache is empty)."""
        for key in [k for k, owner in self._owners.items() if owner == backend]:
            del self._owners[key]


# -- policies ------------------------------------------------------------------------------------

class Policy(Protocol):
    name: str

    def choose(self, views: Sequence[BackendView], keys: Sequence[str], now: float,
               exclude: Collection[str] = ()) -> BackendView | None:
        """The backend for a request, or None when every backend not excluded is full or down."""
        ...


def available(views: Sequence[BackendView], now: float, exclude: Collection[str]) -> list[BackendView]:
    return [v for v in views if v.name not in exclude and v.is_available(now)]


class RoundRobin:
    """Each backend in turn, skipping those that are full or down."""

    name = "round_robin"

    def __init__(self) -> None:
        self._cursor = 0

    def choose(self, views: Sequence[BackendView], keys: Sequence[str], now: float,
               exclude: Collection[str] = ()) -> BackendView | None:
        for step in range(len(views)):
            view = views[(self._cursor + step) % len(views)]
            if view.name not in exclude and view.is_available(now):
                self._cursor = (self._cursor + step + 1) % len(views)
                return view
        return None


class LeastOutstanding:
    """The backend with the fewest requests relative to its capacity; ties taken in turn.

    ``prefer``: first the lowest-ranked backend that has a free slot (e.g. a llama.cpp for a lone
    request), and least-outstanding among all once no preferred backend has one."""

    name = "least_outstanding"

    def __init__(self, prefer: bool = False) -> None:
        self.prefer = prefer
        self._turn = 0

    def choose(self, views: Sequence[BackendView], keys: Sequence[str], now: float,
               exclude: Collection[str] = ()) -> BackendView | None:
        return self._least(available(views, now, exclude))

    def _least(self, candidates: list[BackendView]) -> BackendView | None:
        if not candidates:
            return None
        if self.prefer:
            free = [v for v in candidates if v.has_free_slot]
            if free:
                best_rank = min(v.rank for v in free)
                candidates = [v for v in free if v.rank == best_rank]
        lowest = min(v.load for v in candidates)
        tied = [v for v in candidates if v.load == lowest]
        self._turn += 1
        return tied[self._turn % len(tied)]


class PrefixAffinity(LeastOutstanding):
    """Least-outstanding, except that a request goes where its longest known prefix went, unless
    that backend's load exceeds the least loaded one's by more than ``threshold`` (a share of
    capacity), or (``slot_guard``) it has no free slot while another backend does: waiting for a
    slot costs more than prefilling the prefix again."""

    name = "prefix_affinity"

    def __init__(self, prefer: bool = False, threshold: float = 0.25, slot_guard: bool = True,
                 table: PrefixTable | None = None) -> None:
        super().__init__(prefer)
        self.threshold = threshold
        self.slot_guard = slot_guard
        self.table = table if table is not None else PrefixTable()
        self.hits = 0  # choices that followed a known prefix

    def choose(self, views: Sequence[BackendView], keys: Sequence[str], now: float,
               exclude: Collection[str] = ()) -> BackendView | None:
        candidates = available(views, now, exclude)
        view = self._affine(candidates, keys) or self._least(candidates)
        if view is not None:
            self.table.remember(keys, view.name)
        return view

    def _affine(self, candidates: list[BackendView], keys: Sequence[str]) -> BackendView | None:
        found = self.table.lookup(keys)
        if found is None or not candidates:
            return None
        owner = next((v for v in candidates if v.name == found[0]), None)
        if owner is None or self._overloaded(owner, candidates):
            return None
        self.hits += 1
        return owner

    def _overloaded(self, owner: BackendView, candidates: list[BackendView]) -> bool:
        if self.slot_guard and not owner.has_free_slot and any(v.has_free_slot for v in candidates):
            return True
        return owner.load - min(v.load for v in candidates) > self.threshold


POLICIES: dict[str, type[RoundRobin] | type[LeastOutstanding] | type[PrefixAffinity]] = {
    RoundRobin.name: RoundRobin, LeastOutstanding.name: LeastOutstanding, PrefixAffinity.name: PrefixAffinity}


def make_policy(name: str, prefer: bool = False) -> Policy:
    """A policy by its name (``round_robin`` | ``least_outstanding`` | ``prefix_affinity``)."""
    if name not in POLICIES:
        raise ValueError(f"unknown routing policy '{name}' (one of: {', '.join(POLICIES)})")
    return RoundRobin() if name == RoundRobin.name else POLICIES[name](prefer=prefer)  # type: ignore[call-arg]
