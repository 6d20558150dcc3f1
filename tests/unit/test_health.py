from __future__ import annotations

import random

from chroma_ha.cluster.health import HealthState
from chroma_ha.gateway.reads import Leader, fresh_first


def test_rise_and_fall_counts_keep_one_blip_from_flapping() -> None:
    state = HealthState(rise=2, fall=3)
    assert not state.failure("x") and not state.failure("x") and state.up
    assert state.failure("x") and not state.up
    assert not state.success() and not state.up
    assert state.success() and state.up


def a_leads(candidates: list[str]) -> str:
    return "a"


def test_reads_go_to_caught_up_instances_least_loaded_first() -> None:
    """The leader only breaks ties of load."""
    states = {"a": HealthState(1, 1, outstanding=3), "b": HealthState(1, 1, outstanding=0)}
    assert fresh_first(states, {"a": 10, "b": 4}, {}, 5, a_leads) == ["a"]  # b has not applied seq 5
    assert fresh_first(states, {"a": 10, "b": 6}, {}, 5, a_leads) == ["b", "a"]  # b has fewer in flight
    busy = {**states, "b": HealthState(1, 1, outstanding=1)}
    assert fresh_first(busy, {"a": 10, "b": 6}, {"a": 10.0}, 5, a_leads) == ["a", "b"]  # 3 / 10 is less than 1
    down = {**states, "a": HealthState(1, 1, up=False)}
    assert fresh_first(down, {"a": 10, "b": 6}, {}, 5, a_leads) == ["b"]
    idle = {"a": HealthState(1, 1), "b": HealthState(1, 1)}
    assert fresh_first(idle, {"a": 6, "b": 6}, {}, 5, lambda candidates: "b") == ["b", "a"]  # equal: b leads
    assert fresh_first(idle, {"a": 6, "b": 6}, {}, 5) == ["a", "b"]  # no leader: the configured order


def test_a_leader_is_kept_for_a_run_of_choices_and_drawn_again_when_it_is_no_candidate() -> None:
    leader = Leader({}, run=4, rng=random.Random(3))
    firsts = [leader.among(["a", "b"]) for _ in range(40)]
    runs = [firsts[n : n + 4] for n in range(0, 40, 4)]
    assert all(len(set(run)) == 1 for run in runs)  # one instance for each run of 4
    assert {run[0] for run in runs} == {"a", "b"}  # and each of them leads some runs
    current = firsts[-1]
    other = "b" if current == "a" else "a"
    assert leader.among([other]) == other  # the leader went down mid-run: another is drawn at once


def test_idle_instances_share_reads_in_proportion_to_their_weights() -> None:
    idle = {"a": HealthState(1, 1), "b": HealthState(1, 1)}

    def share(weights: dict[str, float]) -> float:
        leader = Leader(weights, rng=random.Random(7))
        firsts = [fresh_first(idle, {"a": 1, "b": 1}, weights, 0, leader.among)[0] for _ in range(40_000)]
        return firsts.count("a") / len(firsts)

    assert 0.46 < share({}) < 0.54
    assert 0.71 < share({"a": 3.0, "b": 1.0}) < 0.79
