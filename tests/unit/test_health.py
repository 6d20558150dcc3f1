from __future__ import annotations

from chroma_ha.cluster.health import HealthState
from chroma_ha.gateway.reads import fresh_first


def test_rise_and_fall_counts_keep_one_blip_from_flapping() -> None:
    state = HealthState(rise=2, fall=3)
    assert not state.failure("x") and not state.failure("x") and state.up
    assert state.failure("x") and not state.up
    assert not state.success() and not state.up
    assert state.success() and state.up


def test_reads_go_to_caught_up_instances_least_outstanding_first() -> None:
    states = {"a": HealthState(1, 1, outstanding=3), "b": HealthState(1, 1, outstanding=0)}
    assert fresh_first(states, {"a": 10, "b": 4}, {}, required=5) == ["a"]  # b has not applied seq 5 yet
    assert fresh_first(states, {"a": 10, "b": 6}, {}, required=5) == ["b", "a"]  # b has fewer in flight
    assert fresh_first(states, {"a": 10, "b": 6}, {"a": 10.0}, required=5) == ["a", "b"]  # a weighs ten times more
    assert fresh_first({**states, "a": HealthState(1, 1, up=False)}, {"a": 10, "b": 6}, {}, required=5) == ["b"]
    idle = {"a": HealthState(1, 1), "b": HealthState(1, 1)}
    assert fresh_first(idle, {"a": 6, "b": 6}, {}, required=5) == ["a", "b"]  # a tie keeps the configured order
