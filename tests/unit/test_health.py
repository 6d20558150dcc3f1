from __future__ import annotations

from chroma_ha.gateway.reads import eligible, rank
from chroma_ha.health import HealthState


def test_rise_and_fall_counts_keep_one_blip_from_flapping() -> None:
    state = HealthState(rise=2, fall=3)
    assert not state.failure("x") and not state.failure("x") and state.up
    assert state.failure("x") and not state.up
    assert not state.success() and not state.up
    assert state.success() and state.up


def test_reads_go_to_caught_up_instances_least_outstanding_first() -> None:
    states = {"a": HealthState(1, 1, outstanding=3), "b": HealthState(1, 1, outstanding=0)}
    assert eligible(states, {"a": 10, "b": 4}, required=5) == ["a"]
    assert eligible(states, {"a": 10, "b": 6}, required=5) == ["a", "b"]
    assert eligible({**states, "a": HealthState(1, 1, up=False)}, {"a": 10, "b": 6}, required=5) == ["b"]
    assert rank(["a", "b"], states, {}) == ["b", "a"]
    assert rank(["a", "b"], states, {"a": 10.0}) == ["a", "b"]
