"""Internet scale, by simulation: inferd's routing policy (src/inferd/engines/routing.py, the very
code the gateway runs) in front of 100 modelled backends, thousands of requests a second of
multi-turn conversations, backends crashing, stalling and recovering on a seeded schedule.
Compares round-robin, least-outstanding and least-outstanding + prefix affinity on TTFT p50/p95,
cache-hit rate (cached prompt tokens / prompt tokens) and errors. A discrete-event simulation
(benchmarks/fleet_model.py): no real time, no threads; the same seed gives the same table.

    .venv/bin/python benchmarks/fleet_sim.py --backends 100 --rps 2000 --seconds 60

What the gateway does, as the simulation does it: the policy's ``choose`` picks a backend (None: a
503); ``BackendView.dispatch``/``finish`` count requests in flight and feed each backend's circuit
breaker (a refused connection or a timeout is ``FAILED``); a failure before the first byte is
retried once, the failed backend excluded; after the first byte it is an error to the client; an
active health check sets ``healthy`` every ``--health-interval`` seconds, and a backend seen back
after being down has its entries dropped from the prefix table (its cache is empty). One gateway, or
``--gateways N`` sharing nothing, each request handed to one of them at random.

Backend model, from measurements on the 2-core development machine (packaged
Qwen2.5-Coder-0.5B-Instruct Q4_K_M on llama.cpp; every time is divided by ``--speedup``):

- prefill: ``PREFILL_TOK_S`` uncached prompt tokens a second, one prompt at a time per backend;
  cached prefix tokens cost nothing. Measured with llama.cpp's own timings (benchmarks/prefill_probe.py,
  table in benchmarks/README.md, "Fleet simulation"): cold prompts of 227 and 754 tokens at 157-163
  tokens/s; a next turn's 39 new tokens behind 266-818 tokens of context at 101-127 tokens/s; the
  bench's c=1 TTFT of 343 ms for a short prompt (benchmarks/README.md, Results) agrees. Prompts over
  ~1,000 tokens were 2-10x slower per token on this CPU; not modelled.
- decode: the step time of a batch of b sequences, linear between the inter-token latencies
  measured at c=1, 8, 16 (``ITL_POINTS``: inferd→llama.cpp, benchmarks/README.md, "vLLM ... Results
  (quiet machine)": 23.7, 114.4, 202.9 ms), taken when a request's first token is out.
- capacity: 16 slots (the slots those measurements ran with) plus a queue of ``QUEUE``.
- prefix cache: an LRU of conversations (tokens of prompt + answer), bounded by ``--cache-tokens``;
  the default 65,536 is llama.cpp's KV cells as the engines.py measurements ran (16 slots x 4,096).
  A backend that served anything holds the shared system prompt.
- gateway: ``GATEWAY_S`` per attempt (benchmarks/README.md, "TTFT overhead": about 2 ms), not sped up.

``--speedup`` (default 200) is an assumption, not a measurement: it stands for a backend much
faster than two CPU cores (a GPU server), with the shape of the curves kept. Without it a backend
would serve a fraction of one request a second. See benchmarks/README.md for what this leaves out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fleet_model import OK, BUSY, BackendSpec, Faults, Simulation, Stats, Traffic, percentile  # noqa: E402
from inferd.engines.routing import (BackendView, Circuit, CircuitBreaker, Outcome, Policy,  # noqa: E402
                                    PrefixAffinity, PrefixTable, extend_key, make_policy)

PREFILL_TOK_S = 140.0  # uncached prompt tokens/s (prefill probe: 157-163 cold, 101-127 behind a cached prefix)
ITL_POINTS = ((1, 0.0237), (8, 0.1144), (16, 0.2029))  # s per decode step at 1, 8, 16 sequences (engines.py)
SLOTS = 16
QUEUE = 16
CACHE_TOKENS = 16 * 4096
GATEWAY_S = 0.002
POLICIES = ("round_robin", "least_outstanding", "prefix_affinity")
LABELS = {"round_robin": "round-robin", "least_outstanding": "least-outstanding",
          "prefix_affinity": "least-outstanding + prefix affinity"}


class PolicyRouter:
    """The real policy and one BackendView per backend, addressed by index (fleet_model.Router)."""

    def __init__(self, policy: Policy, num_backends: int, slots: int, queue: int,
                 failures_to_open: int, cool_off: float) -> None:
        self.policy, self.name = policy, policy.name
        self.views = [BackendView(f"b{i}", slots=slots, queue=queue,
                                  breaker=CircuitBreaker(failures_to_open, cool_off)) for i in range(num_backends)]
        self.index = {v.name: i for i, v in enumerate(self.views)}

    def choose(self, now: float, keys: list[str], exclude: list[int]) -> int | None:
        view = self.policy.choose(self.views, keys, now, exclude={self.views[i].name for i in exclude})
        return None if view is None else self.index[view.name]

    def dispatched(self, backend: int, now: float) -> bool:
        return self.views[backend].dispatch(now)

    def finished(self, backend: int, now: float, outcome: str, ticket: bool, prompt: int, cached: int) -> None:
        # a full backend's refusal says nothing about its health (a single gateway never causes one)
        result = Outcome.OK if outcome == OK else Outcome.NEUTRAL if outcome == BUSY else Outcome.FAILED
        self.views[backend].finish(now, result, ticket, prompt_tokens=prompt, cached_tokens=cached)

    def health(self, backend: int, ok: bool, now: float) -> None:
        view = self.views[backend]
        table = getattr(self.policy, "table", None)
        if ok and not view.healthy and table is not None:
            table.forget_backend(view.name)  # it was down: whatever it cached is gone
        view.healthy = ok

    def blocks(self, backend: int, now: float) -> bool:
        view = self.views[backend]
        state = view.circuit(now)
        return state is Circuit.OPEN or (state is Circuit.HALF_OPEN and view.breaker.probing)

    def times_opened(self) -> int:
        return sum(v.breaker.times_opened for v in self.views)


@dataclass
class Result:
    policy: str
    stats: Stats
    opened: int
    wall_s: float


def build(args: argparse.Namespace) -> tuple[BackendSpec, Traffic, Faults]:
    spec = BackendSpec(prefill_tok_s=PREFILL_TOK_S * args.speedup,
                       itl_points=tuple((b, s / args.speedup) for b, s in ITL_POINTS),
                       slots=args.slots, queue=args.queue, cache_tokens=args.cache_tokens)
    traffic = Traffic(rps=args.rps, seconds=args.seconds, warmup=args.warmup, mean_turns=args.mean_turns,
                      max_turns=args.max_turns, think_s=args.think, system_tokens=args.system_tokens,
                      user_median=args.user_tokens, output_median=args.output_tokens, context=args.context)
    faults = Faults(mtbf_s=args.mtbf, mttr_s=args.mttr, stall_share=args.stall_share, connect_fail_s=0.001,
                    timeout_s=args.timeout, health_interval_s=args.health_interval)
    return spec, traffic, faults


def simulate(policy_name: str, args: argparse.Namespace) -> Result:
    spec, traffic, faults = build(args)
    routers = [PolicyRouter(new_policy(policy_name, args), args.backends, args.slots, args.queue,
                            args.failures_to_open, args.cool_off) for _ in range(args.gateways)]
    t0 = time.perf_counter()
    sim = Simulation(list(routers), args.backends, spec, traffic, faults, GATEWAY_S, args.seed, extend_key)
    stats = sim.run()
    return Result(policy_name, stats, sum(r.times_opened() for r in routers), time.perf_counter() - t0)


def new_policy(name: str, args: argparse.Namespace) -> Policy:
    """The real policy by name; prefix affinity with the threshold and table size asked for."""
    if name == PrefixAffinity.name:
        return PrefixAffinity(threshold=args.affinity_threshold, table=PrefixTable(args.prefix_table))
    return make_policy(name)


def table(results: list[Result], seconds: float) -> str:
    head = ("| policy | requests | req/s | TTFT p50 ms | TTFT p95 ms | TTFT p99 ms | cache hits | errors "
            "| retried | of them OK | routed to open circuit | circuits opened | load spread |")
    lines = [head, "|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|"]
    for r in results:
        s = r.stats
        ms = [t * 1000 for t in s.ttft]
        served = s.served
        spread = max(served) / statistics.mean(served) if served and statistics.mean(served) else 0.0
        lines.append(f"| {LABELS[r.policy]} | {s.issued:,} | {s.issued / seconds:,.0f} | {percentile(ms, 0.5):.0f} "
                     f"| {percentile(ms, 0.95):.0f} | {percentile(ms, 0.99):.0f} | {100 * s.hit_rate():.1f}% "
                     f"| {s.num_failed} ({100 * s.num_failed / max(s.issued, 1):.2f}%) | {s.retries} "
                     f"| {s.retried_ok} | {s.blocked_routes} | {r.opened} | {spread:.2f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--backends", type=int, default=100)
    add("--gateways", type=int, default=1,
        help="gateways, each with its own policy state (counts, breakers, prefix table); a load balancer "
             "hands each request to one at random")
    add("--rps", type=float, default=2000.0, help="target requests (conversation turns) per second")
    add("--seconds", type=float, default=60.0, help="measured window (simulated seconds)")
    add("--warmup", type=float, default=90.0, help="simulated seconds of traffic before the window, not counted")
    add("--policies", default=",".join(POLICIES))
    add("--seed", type=int, default=1)
    add("--speedup", type=float, default=200.0, help="backend service times are this machine's divided by this")
    add("--slots", type=int, default=SLOTS)
    add("--queue", type=int, default=QUEUE)
    add("--cache-tokens", type=int, default=CACHE_TOKENS, help="prefix cache of a backend, in tokens")
    add("--mean-turns", type=float, default=4.0)
    add("--max-turns", type=int, default=16)
    add("--think", type=float, default=10.0, help="mean seconds between an answer and the next turn")
    add("--context", type=int, default=4096, help="tokens of a slot's context (a conversation ends before it)")
    add("--system-tokens", type=int, default=150)
    add("--user-tokens", type=float, default=60.0, help="median tokens of a user message")
    add("--output-tokens", type=float, default=120.0, help="median tokens of an answer")
    add("--mtbf", type=float, default=300.0, help="mean seconds a backend runs between failures (0: none)")
    add("--mttr", type=float, default=20.0, help="mean seconds a failed backend stays down")
    add("--stall-share", type=float, default=0.3, help="share of failures that hang instead of crashing")
    add("--timeout", type=float, default=5.0, help="gateway timeout against a backend that does not answer")
    add("--health-interval", type=float, default=5.0)
    add("--affinity-threshold", type=float, default=0.25,
        help="prefix affinity yields when its backend's load exceeds the least loaded one's by this share of capacity")
    add("--prefix-table", type=int, default=100_000, help="entries of the gateway's prefix table")
    add("--failures-to-open", type=int, default=3)
    add("--cool-off", type=float, default=5.0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = []
    for name in args.policies.split(","):
        results.append(simulate(name, args))
        r = results[-1]
        print(f"[{name}] {r.stats.events:,} events in {r.wall_s:.1f} s", file=sys.stderr, flush=True)
    print(f"{args.backends} backends, {args.gateways} gateway(s), target {args.rps:g} req/s, {args.seconds:g} s measured after "
          f"{args.warmup:g} s warm-up, seed {args.seed}, speed-up {args.speedup:g}, cache {args.cache_tokens:,} "
          f"tokens/backend, MTBF {args.mtbf:g} s, MTTR {args.mttr:g} s\n")
    print(table(results, args.seconds))
    print("\nErrors by kind: " + "; ".join(
        f"{LABELS[r.policy]}: " + (", ".join(f"{n} {kind}" for kind, n in sorted(r.stats.failed.items())) or "none")
        for r in results))


if __name__ == "__main__":
    main()
