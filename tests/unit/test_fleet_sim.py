"""The fleet simulation (benchmarks/fleet_sim.py) on a tiny fleet: its accounting, and what the real
routing policy must show in it (affinity keeps caches warm; no request goes to an open circuit)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import fleet_sim  # noqa: E402

# 5 backends, 2 measured seconds; slow backends (speed-up 20) so requests overlap and queue.
TINY = ["--backends", "5", "--rps", "100", "--seconds", "2", "--warmup", "2", "--think", "0.3", "--speedup", "20"]
# Backends fail often: every one of them about once a second, down for a fraction of a second.
FAULTY = TINY + ["--mtbf", "1.0", "--mttr", "0.4", "--stall-share", "0.5", "--timeout", "0.2",
                 "--health-interval", "0.5", "--cool-off", "0.2"]


def run(policy: str, argv: list[str]) -> fleet_sim.Result:
    return fleet_sim.simulate(policy, fleet_sim.parse_args(argv))


@pytest.mark.parametrize("gateways", ["1", "3"])
@pytest.mark.parametrize("policy", fleet_sim.POLICIES)
def test_every_request_is_accounted_for_under_failures(policy: str, gateways: str) -> None:
    r = run(policy, FAULTY + ["--gateways", gateways])
    s = r.stats
    assert s.issued > 60
    assert s.completed + s.num_failed == s.issued, (s.completed, s.failed, s.issued)
    assert s.num_failed > 0 and s.retries > 0 and r.opened > 0  # the faults did happen
    assert len(s.ttft) == s.completed and min(s.ttft) > 0


@pytest.mark.parametrize("gateways", ["1", "3"])
@pytest.mark.parametrize("policy", fleet_sim.POLICIES)
def test_no_request_goes_to_an_open_circuit(policy: str, gateways: str) -> None:
    r = run(policy, FAULTY + ["--gateways", gateways])
    assert r.opened > 0
    assert r.stats.blocked_routes == 0


def test_affinity_keeps_more_of_the_prompt_cached_than_round_robin() -> None:
    rr = run("round_robin", TINY + ["--mtbf", "0"])
    affinity = run("prefix_affinity", TINY + ["--mtbf", "0"])
    assert rr.stats.num_failed == affinity.stats.num_failed == 0
    assert affinity.stats.hit_rate() > rr.stats.hit_rate() + 0.2, (affinity.stats.hit_rate(), rr.stats.hit_rate())


def test_a_seed_gives_the_same_run() -> None:
    a, b = run("prefix_affinity", FAULTY), run("prefix_affinity", FAULTY)
    assert (a.stats.issued, a.stats.failed, a.stats.ttft, a.stats.served) == \
        (b.stats.issued, b.stats.failed, b.stats.ttft, b.stats.served)
    c = run("prefix_affinity", FAULTY + ["--seed", "2"])
    assert c.stats.ttft != a.stats.ttft
