"""The routing policy (engines/routing.py): pure code driven with an explicit clock."""

from __future__ import annotations

from collections import Counter

import pytest

from inferd.engines.routing import (BackendView, Circuit, CircuitBreaker, LeastOutstanding, Outcome, PrefixAffinity,
                                    PrefixTable, RoundRobin, chain_keys, make_policy, prefix_keys)


def fleet(*slots: int, queue: int = 0) -> list[BackendView]:
    return [BackendView(name=f"b{i}", slots=s, queue=queue, rank=i) for i, s in enumerate(slots)]


# -- circuit breaker ------------------------------------------------------------------------------

def test_breaker_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(failures_to_open=3, cool_off=10.0)
    for outcome in (Outcome.FAILED, Outcome.FAILED, Outcome.OK, Outcome.FAILED, Outcome.FAILED):
        breaker.record(0.0, outcome)
    assert breaker.state(0.0) is Circuit.CLOSED  # a success in between resets the count
    breaker.record(1.0, Outcome.FAILED)
    assert breaker.state(1.0) is Circuit.OPEN and not breaker.allows(1.0)
    assert breaker.times_opened == 1


def test_breaker_half_opens_after_cool_off_with_one_probe() -> None:
    view = BackendView("b", slots=4)
    view.breaker = CircuitBreaker(failures_to_open=1, cool_off=5.0)
    view.finish(0.0, Outcome.FAILED, view.dispatch(0.0))
    assert view.circuit(4.9) is Circuit.OPEN and not view.is_available(4.9)
    assert view.circuit(5.0) is Circuit.HALF_OPEN and view.is_available(5.0)
    probe = view.dispatch(5.0)
    assert probe and not view.is_available(5.1)  # one probe at a time
    view.finish(6.0, Outcome.OK, probe)
    assert view.circuit(6.0) is Circuit.CLOSED and view.is_available(6.0)


def test_failed_probe_opens_again_for_a_new_cool_off() -> None:
    breaker = CircuitBreaker(failures_to_open=1, cool_off=5.0)
    breaker.record(0.0, Outcome.FAILED)
    breaker.on_dispatch(5.0)
    breaker.record(7.0, Outcome.FAILED, probe=True)
    assert breaker.state(11.9) is Circuit.OPEN
    assert breaker.state(12.0) is Circuit.HALF_OPEN and breaker.times_opened == 2


def test_a_cancelled_probe_frees_the_probe_without_deciding() -> None:
    breaker = CircuitBreaker(failures_to_open=1, cool_off=1.0)
    breaker.record(0.0, Outcome.FAILED)
    breaker.on_dispatch(2.0)
    assert not breaker.allows(2.0)
    breaker.record(2.5, Outcome.NEUTRAL, probe=True)
    assert breaker.state(2.5) is Circuit.HALF_OPEN and breaker.allows(2.5)


def test_late_success_of_an_older_request_does_not_close_an_open_circuit() -> None:
    breaker = CircuitBreaker(failures_to_open=1, cool_off=10.0)
    breaker.record(0.0, Outcome.FAILED)
    breaker.record(1.0, Outcome.OK)  # dispatched before the circuit opened
    assert breaker.state(1.0) is Circuit.OPEN


# -- prefix keys and table ------------------------------------------------------------------------

def test_next_turn_keys_extend_the_previous_turn() -> None:
    turn1 = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    turn2 = turn1 + [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "more"}]
    k1, k2 = prefix_keys(turn1), prefix_keys(turn2)
    assert len(k1) == 2 and len(k2) == 4 and k2[:2] == k1
    assert prefix_keys(turn1, salt="other-model") != k1
    assert prefix_keys([{"content": "hi", "role": "user"}]) == prefix_keys([{"role": "user", "content": "hi"}])
    assert chain_keys(["a", "b"])[0] == chain_keys(["a"])[0] != chain_keys(["b"])[0]


def test_prefix_table_finds_the_longest_known_prefix() -> None:
    table = PrefixTable()
    keys = chain_keys(["s", "u1", "a1", "u2"])
    table.remember(keys[:2], "b1")
    assert table.lookup(keys) == ("b1", 2)
    table.remember(keys, "b2")
    assert table.lookup(keys) == ("b2", 4)
    assert table.lookup(chain_keys(["other"])) is None
    table.forget_backend("b2")
    assert table.lookup(keys) == ("b1", 2)


def test_prefix_table_is_bounded_lru() -> None:
    table = PrefixTable(max_entries=2)
    a, b, c = (chain_keys([x]) for x in "abc")
    table.remember(a, "x")
    table.remember(b, "y")
    assert table.lookup(a) == ("x", 1)  # a is now the most recent
    table.remember(c, "z")
    assert len(table) == 2 and table.lookup(b) is None and table.lookup(a) == ("x", 1)


# -- policies -------------------------------------------------------------------------------------

def test_round_robin_takes_turns_and_skips_unavailable() -> None:
    views = fleet(1, 1, 1)
    views[1].healthy = False
    policy = RoundRobin()
    picks = [policy.choose(views, [], 0.0).name for _ in range(4)]  # type: ignore[union-attr]
    assert picks == ["b0", "b2", "b0", "b2"]


def test_least_outstanding_is_relative_to_capacity_and_spreads_ties() -> None:
    views = fleet(4, 1)
    policy = LeastOutstanding()
    views[0].in_flight = 2  # 2/4
    views[1].in_flight = 1  # 1/1: full
    assert policy.choose(views, [], 0.0) is views[0]
    views[1].in_flight = 0
    assert policy.choose(views, [], 0.0) is views[1]
    idle = fleet(1, 1, 1)
    assert Counter(policy.choose(idle, [], 0.0).name for _ in range(30)) == {"b0": 10, "b1": 10, "b2": 10}


def test_choose_returns_none_only_when_all_full_or_down_and_honours_exclude() -> None:
    views = fleet(1, 1, queue=1)
    policy = LeastOutstanding()
    assert policy.choose(views, [], 0.0, exclude={"b0"}) is views[1]
    views[0].in_flight, views[1].in_flight = 2, 2
    assert policy.choose(views, [], 0.0) is None
    views[1].in_flight = 1
    assert policy.choose(views, [], 0.0) is views[1]  # a queue place left
    assert policy.choose(views, [], 0.0, exclude={"b1"}) is None


def test_open_circuit_takes_no_traffic_until_half_open() -> None:
    views = fleet(2, 2)
    views[0].breaker = CircuitBreaker(failures_to_open=1, cool_off=3.0)
    views[0].finish(0.0, Outcome.FAILED, views[0].dispatch(0.0))
    policy = LeastOutstanding()
    assert {policy.choose(views, [], 1.0).name for _ in range(5)} == {"b1"}  # type: ignore[union-attr]
    assert {policy.choose(views, [], 3.0).name for _ in range(5)} == {"b0", "b1"}  # type: ignore[union-attr]


def test_preference_keeps_the_lowest_rank_while_it_has_a_free_slot() -> None:
    views = fleet(1, 8)  # b0: rank 0, one slot; b1: rank 1
    policy = LeastOutstanding(prefer=True)
    assert policy.choose(views, [], 0.0) is views[0]
    views[0].in_flight = 1
    assert policy.choose(views, [], 0.0) is views[1]  # under load: least outstanding
    views[1].in_flight = 8
    assert policy.choose(views, [], 0.0) is None


def test_affinity_sends_the_next_turn_to_the_same_backend() -> None:
    views = fleet(2, 2, 2)
    policy = PrefixAffinity()
    messages = [{"role": "user", "content": "hi"}]
    first = policy.choose(views, prefix_keys(messages), 0.0)
    assert first is not None
    for turn in range(4):
        messages = messages + [{"role": "assistant", "content": f"a{turn}"}, {"role": "user", "content": f"u{turn}"}]
        assert policy.choose(views, prefix_keys(messages), float(turn)) is first
    assert policy.hits == 4


def test_affinity_yields_to_an_overloaded_or_unavailable_owner() -> None:
    views = fleet(4, 4, queue=4)  # capacity 8 each
    policy = PrefixAffinity(threshold=0.25)
    keys = chain_keys(["conversation"])
    owner = policy.choose(views, keys, 0.0)
    other = views[1] if owner is views[0] else views[0]
    owner.in_flight = 2  # 0.25 above the other: still within the threshold
    assert policy.choose(views, keys, 0.0) is owner
    owner.in_flight = 4  # no free slot while the other has one
    assert policy.choose(views, keys, 0.0) is other
    assert policy.table.lookup(keys) == (other.name, 1)  # the prefix now lives there too
    other.healthy = False
    assert policy.choose(views, keys, 0.0) is owner
    unguarded = PrefixAffinity(threshold=0.6, slot_guard=False)
    unguarded.table.remember(keys, owner.name)
    other.healthy, owner.in_flight = True, 4  # 0.5 above, under the threshold: affinity wins
    assert unguarded.choose(views, keys, 0.0) is owner


def test_cached_rate_and_counts_per_backend() -> None:
    view = BackendView("b", slots=1)
    assert view.cached_rate is None
    view.finish(0.0, Outcome.OK, view.dispatch(0.0), prompt_tokens=100, cached_tokens=80)
    view.finish(0.0, Outcome.OK, view.dispatch(0.0), prompt_tokens=100, cached_tokens=0)
    assert view.cached_rate == pytest.approx(0.4) and view.served == 2 and view.in_flight == 0


def test_policies_by_name() -> None:
    assert isinstance(make_policy("round_robin"), RoundRobin)
    assert isinstance(make_policy("prefix_affinity", prefer=True), PrefixAffinity)
    assert make_policy("least_outstanding").name == "least_outstanding"
    with pytest.raises(ValueError, match="unknown routing policy"):
        make_policy("random")
