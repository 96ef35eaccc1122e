"""The world of benchmarks/fleet_sim.py: conversation traffic, modelled backends, failures, and the
discrete-event loop that runs them against a routing policy (see fleet_sim.py for the numbers'
sources and the CLI). No real time, no threads, no I/O: one heap of timed events and one seeded RNG.

A request's life: it reaches the gateway, the policy picks a backend; the gateway adds its own overhead;
the backend admits it into a slot (or its queue, or answers "full"); its uncached prompt tokens are
prefilled (one prefill at a time per backend, first come first served) and the first token is out; it
decodes its output tokens at the step time of the batch it joined; its slot frees the next queued one.
A backend that crashes cuts every stream it holds and refuses connections until it recovers with an
empty cache; a backend that stalls answers nothing until the gateway's timeout. A failure before the
first byte is retried once on another backend; a failure after it is an error to the client.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_left
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

# Outcomes a router is told about when an attempt on a backend ends.
OK, FAILED, BUSY = "ok", "failed", "busy"
# Event kinds, in heap entries (time, sequence, kind, payload).
_NEW_CONV, _TURN, _ARRIVE, _PREFILLED, _DONE, _TIMEOUT, _CRASH, _STALL, _RECOVER, _HEALTH = range(10)


class Router(Protocol):
    """What the simulation needs from a routing policy (fleet_sim.py adapts the real one)."""

    name: str

    def choose(self, now: float, keys: list[str], exclude: list[int]) -> int | None:
        """A backend for a request whose successive prefixes have these keys, or None (503)."""
        ...

    def dispatched(self, backend: int, now: float) -> bool:
        """The request is sent; returns a ticket (the policy's half-open probe flag) for ``finished``."""
        ...

    def finished(self, backend: int, now: float, outcome: str, ticket: bool, prompt: int, cached: int) -> None: ...

    def health(self, backend: int, ok: bool, now: float) -> None: ...

    def blocks(self, backend: int, now: float) -> bool:
        """True when the policy's breaker would refuse this backend to an ordinary request now."""
        ...


@dataclass(frozen=True)
class BackendSpec:
    """Service model of one backend (times in seconds, already divided by the speed-up)."""

    prefill_tok_s: float
    itl_points: tuple[tuple[int, float], ...]  # (sequences in slots, seconds per decode step)
    slots: int
    queue: int
    cache_tokens: int

    def step_s(self, batch: int) -> float:
        """Decode step time with `batch` sequences in slots: linear between measured points."""
        xs = [b for b, _ in self.itl_points]
        i = min(max(bisect_left(xs, batch), 1), len(xs) - 1)
        (b0, t0), (b1, t1) = self.itl_points[i - 1], self.itl_points[i]
        return t0 + (t1 - t0) * (batch - b0) / (b1 - b0)


@dataclass(frozen=True)
class Traffic:
    rps: float  # target steady-state requests (turns) per second
    seconds: float  # measured window: turns arriving in [0, seconds) are counted
    warmup: float  # traffic runs from -warmup, uncounted, so caches and conversations reach steady state
    mean_turns: float
    max_turns: int
    think_s: float  # mean think time between a turn's answer and the next turn
    system_tokens: int  # a system prompt every conversation shares (a prefix every backend caches once warm)
    user_median: float  # tokens of a user message (log-normal)
    output_median: float  # tokens of an answer (log-normal)
    context: int  # a conversation ends before a turn whose prompt + answer would not fit a slot's context
    sigma: float = 0.8

    def conversation_rate(self) -> float:
        p = 1.0 / self.mean_turns
        mean = (1 - (1 - p) ** self.max_turns) / p  # mean of the geometric truncated at max_turns
        return self.rps / mean


@dataclass(frozen=True)
class Faults:
    mtbf_s: float  # mean up time of a backend between failures (exponential)
    mttr_s: float  # mean down time (exponential)
    stall_share: float  # share of failures that hang (answer nothing) instead of crashing
    connect_fail_s: float  # a crashed backend refuses a connection after this long
    timeout_s: float  # gateway's first-byte / idle timeout against a stalled backend
    health_interval_s: float  # active health check period (0: none)


@dataclass(slots=True, eq=False)
class Conversation:
    cid: int
    key: str
    turns_left: int
    history: int  # tokens of everything before the next user message (system + earlier turns)
    rng: random.Random  # its own draws, so a conversation is the same whatever the policy did to others
    keys: list[str]  # prefix keys of its messages so far (routing.chain_keys: one per message)


@dataclass(slots=True, eq=False)
class Turn:
    conv: Conversation
    arrival: float
    prompt: int
    output: int
    counted: bool
    keys: list[str]
    gateway: int  # which gateway the load balancer in front handed it to (retries stay there)
    tried: list[int] = field(default_factory=list)
    outcome: str = ""
    first_token: float = -1.0
    cached: int = 0


@dataclass(slots=True, eq=False)
class Attempt:
    turn: Turn
    backend: int
    epoch: int
    ticket: bool
    first_byte: bool = False


class Backend:
    """One modelled engine: slots, a bounded queue, a serial prefill stage and an LRU prefix cache."""

    def __init__(self, index: int, spec: BackendSpec) -> None:
        self.index, self.spec = index, spec
        self.state = "up"  # up | crashed | stalled
        self.epoch = 0
        self.running: dict[Attempt, None] = {}  # insertion-ordered: a run does not depend on object ids
        self.waiting: deque[Attempt] = deque()
        self.prefill_free_at = -math.inf
        self.cache: OrderedDict[int, int] = OrderedDict()  # conversation id -> tokens held
        self.cache_total = 0
        self.warm = False
        self.served = 0

    def held(self, cid: int) -> int:
        """Tokens of this conversation the cache holds (0: none); a hit makes it the most recent."""
        tokens = self.cache.get(cid, 0)
        if tokens:
            self.cache.move_to_end(cid)
        return tokens

    def remember(self, cid: int, tokens: int) -> None:
        self.cache_total += tokens - self.cache.pop(cid, 0)
        self.cache[cid] = tokens
        while self.cache_total > self.spec.cache_tokens and self.cache:
            self.cache_total -= self.cache.popitem(last=False)[1]

    def reset(self) -> list[Attempt]:
        """Everything held is lost (a crash or a stall); returns the attempts that were in it."""
        lost = list(self.running) + list(self.waiting)
        self.running.clear()
        self.waiting.clear()
        self.cache.clear()
        self.cache_total = 0
        self.warm = False
        self.epoch += 1
        return lost


@dataclass
class Stats:
    """What one run measured, over the counted turns."""

    issued: int = 0
    completed: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    retried_ok: int = 0
    ttft: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    blocked_routes: int = 0  # ordinary requests sent to a backend whose circuit refused them
    served: list[int] = field(default_factory=list)
    events: int = 0

    def fail(self, reason: str) -> None:
        self.failed[reason] = self.failed.get(reason, 0) + 1

    @property
    def num_failed(self) -> int:
        return sum(self.failed.values())

    def hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Simulation:
    """One run: a fleet of backends, conversation traffic, scheduled faults, one router per gateway."""

    def __init__(self, routers: list[Router], num_backends: int, spec: BackendSpec, traffic: Traffic, faults: Faults,
                 gateway_s: float, seed: int, extend_key: Callable[[str, str], str]) -> None:
        self.routers, self.traffic, self.faults, self.gateway_s = routers, traffic, faults, gateway_s
        self.extend_key = extend_key
        self.system_key = extend_key("", "system prompt")  # every conversation shares it
        self.seed = seed
        self.rng = random.Random(seed)  # conversation arrivals
        self.balancer_rng = random.Random(seed + 2)  # the load balancer's pick of a gateway, per request
        self.fault_rng = random.Random(seed + 1)  # faults independent of traffic: the same schedule per policy
        self.backends = [Backend(i, spec) for i in range(num_backends)]
        self.stats = Stats()
        self.heap: list[tuple[float, int, int, object]] = []
        self.seq = 0
        self.now = -traffic.warmup
        self.end = traffic.seconds
        self.next_cid = 0

    # -- the loop ---------------------------------------------------------------------------
    def at(self, when: float, kind: int, payload: object = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (when, self.seq, kind, payload))

    def run(self) -> Stats:
        self.at(self.now, _NEW_CONV)
        self._schedule_faults()
        if self.faults.health_interval_s > 0:
            self.at(self.now + self.faults.health_interval_s, _HEALTH)
        handlers = {_NEW_CONV: self._new_conversation, _TURN: self._turn, _ARRIVE: self._arrive,
                    _PREFILLED: self._prefilled, _DONE: self._done, _TIMEOUT: self._timeout,
                    _CRASH: self._crash, _STALL: self._stall, _RECOVER: self._recover, _HEALTH: self._health}
        while self.heap:
            self.now, _, kind, payload = heapq.heappop(self.heap)
            handlers[kind](payload)
            self.stats.events += 1
        self.stats.served = [b.served for b in self.backends]
        return self.stats

    # -- traffic ----------------------------------------------------------------------------
    def _new_conversation(self, _: object) -> None:
        t = self.traffic
        if self.now >= self.end:
            return
        rng = random.Random(self.seed * 1_000_003 + self.next_cid)
        turns = 1
        while turns < t.max_turns and rng.random() > 1.0 / t.mean_turns:
            turns += 1
        conv = Conversation(self.next_cid, f"conv-{self.next_cid}", turns, t.system_tokens, rng, [self.system_key])
        self.next_cid += 1
        self._turn(conv)
        self.at(self.now + self.rng.expovariate(t.conversation_rate()), _NEW_CONV)

    def _tokens(self, rng: random.Random, median: float) -> int:
        return max(1, min(4096, int(rng.lognormvariate(math.log(median), self.traffic.sigma))))

    def _turn(self, conv: object) -> None:
        assert isinstance(conv, Conversation)
        if self.now >= self.end:
            return
        user, output = self._tokens(conv.rng, self.traffic.user_median), self._tokens(conv.rng, self.traffic.output_median)
        if conv.history + user + output > self.traffic.context:
            return
        conv.turns_left -= 1
        conv.keys.append(self.extend_key(conv.keys[-1], f"{conv.key} user {conv.turns_left}"))
        gateway = self.balancer_rng.randrange(len(self.routers)) if len(self.routers) > 1 else 0
        turn = Turn(conv, self.now, conv.history + user, output, self.now >= 0, list(conv.keys), gateway)
        conv.history += user + output
        conv.keys.append(self.extend_key(conv.keys[-1], f"{conv.key} assistant {conv.turns_left}"))
        if turn.counted:
            self.stats.issued += 1
        self._route(turn)

    def _finish(self, turn: Turn, outcome: str) -> None:
        assert not turn.outcome, "a turn ended twice"
        turn.outcome = outcome
        if outcome == OK:
            if turn.counted:
                s = self.stats
                s.completed += 1
                s.ttft.append(turn.first_token - turn.arrival)
                s.prompt_tokens += turn.prompt
                s.cached_tokens += turn.cached
                s.retried_ok += len(turn.tried) > 1
            if turn.conv.turns_left > 0:
                think = turn.conv.rng.expovariate(1.0 / self.traffic.think_s)
                self.at(self.now + think, _TURN, turn.conv)
        elif turn.counted:  # the user gives up the conversation after an error
            self.stats.fail(outcome)

    # -- the gateway ------------------------------------------------------------------------
    def _route(self, turn: Turn) -> None:
        router = self.routers[turn.gateway]
        backend = router.choose(self.now, turn.keys, turn.tried)
        if backend is None:
            self._finish(turn, "503 all full or down")
            return
        if turn.counted and router.blocks(backend, self.now):
            self.stats.blocked_routes += 1
        if turn.tried and turn.counted:
            self.stats.retries += 1
        turn.tried.append(backend)
        ticket = router.dispatched(backend, self.now)
        self.at(self.now + self.gateway_s, _ARRIVE, Attempt(turn, backend, self.backends[backend].epoch, ticket))

    def _attempt_ended(self, att: Attempt, outcome: str) -> None:
        ok = outcome == OK
        self.routers[att.turn.gateway].finished(att.backend, self.now, outcome, att.ticket,
                                                att.turn.prompt if ok else 0, att.turn.cached if ok else 0)
        if outcome == OK:
            self._finish(att.turn, OK)
        elif att.first_byte:
            self._finish(att.turn, "cut after first byte")
        elif len(att.turn.tried) < 2:
            self._route(att.turn)  # retried once, invisibly, on another backend
        else:
            self._finish(att.turn, "failed twice before first byte")

    # -- a backend --------------------------------------------------------------------------
    def _arrive(self, att: object) -> None:
        assert isinstance(att, Attempt)
        b = self.backends[att.backend]
        att.epoch = b.epoch
        if b.state == "crashed":
            self.at(self.now + self.faults.connect_fail_s, _TIMEOUT, att)
        elif b.state == "stalled":
            self.at(self.now + self.faults.timeout_s, _TIMEOUT, att)
        elif len(b.running) < b.spec.slots:
            self._start(b, att)
        elif len(b.waiting) < b.spec.queue:
            b.waiting.append(att)
        else:
            self._attempt_ended(att, BUSY)

    def _start(self, b: Backend, att: Attempt) -> None:
        turn = att.turn
        b.running[att] = None
        shared = self.traffic.system_tokens if b.warm else 0
        turn.cached = min(max(b.held(turn.conv.cid), shared), turn.prompt - 1)  # the last token is always evaluated
        begin = max(self.now, b.prefill_free_at)
        b.prefill_free_at = begin + (turn.prompt - turn.cached) / b.spec.prefill_tok_s
        self.at(b.prefill_free_at, _PREFILLED, att)

    def _prefilled(self, att: object) -> None:
        assert isinstance(att, Attempt)
        b = self.backends[att.backend]
        if att.epoch != b.epoch:
            return  # the backend failed meanwhile; the attempt was already ended
        att.first_byte = True
        att.turn.first_token = self.now
        b.warm = True
        self.at(self.now + att.turn.output * b.spec.step_s(len(b.running)), _DONE, att)

    def _done(self, att: object) -> None:
        assert isinstance(att, Attempt)
        b = self.backends[att.backend]
        if att.epoch != b.epoch:
            return
        del b.running[att]
        b.served += att.turn.counted
        b.remember(att.turn.conv.cid, att.turn.prompt + att.turn.output)
        self._attempt_ended(att, OK)
        if b.waiting and len(b.running) < b.spec.slots:
            self._start(b, b.waiting.popleft())

    def _timeout(self, att: object) -> None:
        assert isinstance(att, Attempt)
        self._attempt_ended(att, FAILED)

    # -- faults and health ------------------------------------------------------------------
    def _schedule_faults(self) -> None:
        f = self.faults
        if f.mtbf_s <= 0:
            return
        for b in self.backends:
            t = self.now + self.fault_rng.expovariate(1.0 / f.mtbf_s)
            while t < self.end:
                kind = _STALL if self.fault_rng.random() < f.stall_share else _CRASH
                self.at(t, kind, b)
                t += self.fault_rng.expovariate(1.0 / f.mttr_s)
                self.at(t, _RECOVER, b)
                t += self.fault_rng.expovariate(1.0 / f.mtbf_s)

    def _crash(self, b: object) -> None:
        assert isinstance(b, Backend)
        b.state = "crashed"
        for att in b.reset():
            self._attempt_ended(att, FAILED)  # connection reset: at once

    def _stall(self, b: object) -> None:
        assert isinstance(b, Backend)
        b.state = "stalled"
        for att in b.reset():
            self.at(self.now + self.faults.timeout_s, _TIMEOUT, att)

    def _recover(self, b: object) -> None:
        assert isinstance(b, Backend)
        b.state = "up"
        b.prefill_free_at = self.now

    def _health(self, _: object) -> None:
        for router in self.routers:  # every gateway checks every backend
            for b in self.backends:
                router.health(b.index, b.state == "up", self.now)
        if self.now < self.end:
            self.at(self.now + self.faults.health_interval_s, _HEALTH)
