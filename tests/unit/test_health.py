from __future__ import annotations

import random
from collections.abc import Callable

from chroma_ha.cluster.health import HealthState
from chroma_ha.gateway.reads import fresh_first


def test_rise_and_fall_counts_keep_one_blip_from_flapping() -> None:
    state = HealthState(rise=2, fall=3)
    assert not state.failure("x") and not state.failure("x") and state.up
    assert state.failure("x") and not state.up
    assert not state.success() and not state.up
    assert state.success() and state.up


def same(draws: list[float]) -> Callable[[], float]:
    return iter(draws).__next__


def test_reads_go_to_caught_up_instances_least_outstanding_first() -> None:
    states = {"a": HealthState(1, 1, outstanding=3), "b": HealthState(1, 1, outstanding=0)}
    one = same([1.0] * 10)  # equal draws: the order is by load and weight alone
    assert fresh_first(states, {"a": 10, "b": 4}, {}, required=5, draw=one) == ["a"]  # b has not applied seq 5
    assert fresh_first(states, {"a": 10, "b": 6}, {}, required=5, draw=one) == ["b", "a"]  # b has fewer in flight
    assert fresh_first(states, {"a": 10, "b": 6}, {"a": 10.0}, required=5, draw=one) == ["a", "b"]  # a weighs 10x
    down = {**states, "a": HealthState(1, 1, up=False)}
    assert fresh_first(down, {"a": 10, "b": 6}, {}, required=5, draw=one) == ["b"]
    idle = {"a": HealthState(1, 1), "b": HealthState(1, 1)}
    assert fresh_first(idle, {"a": 6, "b": 6}, {}, required=5, draw=same([2.0, 1.0])) == ["b", "a"]  # b drew sooner


def test_idle_instances_share_reads_in_proportion_to_their_weights() -> None:
    idle = {"a": HealthState(1, 1), "b": HealthState(1, 1)}
    rng = random.Random(7)

    def share(weights: dict[str, float]) -> float:
        firsts = [fresh_first(idle, {"a": 1, "b": 1}, weights, 0, lambda: rng.expovariate(1.0))[0] for _ in range(4000)]
        return firsts.count("a") / len(firsts)

    assert 0.46 < share({}) < 0.54
    assert 0.71 < share({"a": 3.0, "b": 1.0}) < 0.79
