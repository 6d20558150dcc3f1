"""The history checker catches what it claims, one crafted history per anomaly kind, and passes the histories it
must pass: indeterminate writes either way, stale reads the gateway marked, overwritten writes, reads that overlap
a write."""

from __future__ import annotations

from pathlib import Path

import pytest

from chroma_ha.torture.checker import Report, check
from chroma_ha.torture.history import (
    CORRUPT,
    FAILED,
    INDETERMINATE,
    OK,
    Fault,
    FinalState,
    History,
    Op,
    Recorded,
    document_of,
    embedding_of,
    group_of,
    load,
)

KEY = "w0k0"


class Script:
    """A history written op by op: each op takes one second, the next starts a tenth of a second later."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.faults: list[Fault] = []
        self.t = 0.0

    def _add(self, op: Op, took: float) -> Op:
        op.invoke, op.complete, op.index = self.t, self.t + took, len(self.ops)
        self.t += took + 0.1
        self.ops.append(op)
        return op

    def write(
        self, kind: str, version: int | None = None, outcome: str = OK, key: str = KEY, group: int | None = None
    ) -> Op:
        return self._add(Op("writer-0", kind, [key], 0, 0.0, version=version, group=group, outcome=outcome), 1.0)

    def read(self, got: int | None, key: str = KEY, stale_by: str | None = None, outcome: str = OK) -> Op:
        op = Op("reader-0", "get", [key], 0, 0.0, outcome=outcome, stale_by=stale_by)
        op.result = {key: got} if outcome == OK else None
        return self._add(op, 1.0)

    def recorded(self, finals: dict[str, int | None] | list[dict[str, int | None]] | None = None) -> Recorded:
        states = finals if isinstance(finals, list) else [finals] if finals is not None else []
        return Recorded(
            {"seed": 7, "instances": 2},
            self.ops,
            self.faults,
            [FinalState(f"http://i{n}", records(state)) for n, state in enumerate(states)],
        )


def records(state: dict[str, int | None]) -> dict[str, list[object]]:
    return {
        key: [v, document_of(key, v), embedding_of(key, v), {"w": 0, "v": v, "g": group_of(v)}]
        for key, v in state.items()
        if v is not None
    }


def anomalies(report: Report) -> dict[str, int]:
    return report.anomalies


# --- each anomaly is caught ---------------------------------------------------------------------------------------


def test_a_read_after_an_acknowledged_write_that_returns_the_value_before_it_is_a_stale_read() -> None:
    s = Script()
    s.write("upsert", 1)
    s.write("upsert", 2)
    s.read(1)
    report = check(s.recorded({KEY: 2}))
    assert anomalies(report) == {"stale_read": 1}
    [found] = report.first_anomalies
    assert found.key == KEY and found.op == 2 and "expected one of [2]" in found.message
    assert any("upsert v2" in line for line in found.timeline)


def test_an_acknowledged_write_missing_at_the_end_is_a_lost_write() -> None:
    s = Script()
    s.write("upsert", 1)
    s.write("update", 2)
    assert anomalies(check(s.recorded({KEY: 1}))) == {"lost_write": 1}
    assert anomalies(check(s.recorded({KEY: None}))) == {"lost_write": 1}


def test_an_acknowledged_delete_that_comes_back_is_a_resurrected_delete() -> None:
    s = Script()
    s.write("add", 1)
    s.write("delete")
    s.read(None)
    s.read(1)
    assert anomalies(check(s.recorded({KEY: None}))) == {"resurrected_delete": 1}
    assert anomalies(check(s.recorded({KEY: 1}))) == {"resurrected_delete": 2}  # read back, and held at the end


def test_a_delete_by_where_deletes_only_its_group_and_one_that_comes_back_is_caught() -> None:
    s = Script()
    s.write("upsert", 3, key="w0k0")  # group 0
    s.write("upsert", 4, key="w0k1")  # group 1
    where = s.write("delete_where", group=0)
    where.keys = ["w0k0", "w0k1"]
    s.read(None, key="w0k0")
    s.read(4, key="w0k1")  # not its group: still there
    assert anomalies(check(s.recorded({"w0k1": 4}))) == {}
    s.read(3, key="w0k0")
    assert anomalies(check(s.recorded({"w0k1": 4}))) == {"resurrected_delete": 1}


def test_a_version_no_write_wrote_is_a_value_never_written() -> None:
    s = Script()
    s.write("upsert", 1)
    s.write("upsert", 2, outcome=FAILED)  # certainly not applied
    s.read(2)
    s.read(9)
    s.read(CORRUPT)
    s.faults.append(Fault("gateway_kill", "gateway-0", 0.0, None))  # the failed write was the gateway's dying
    assert anomalies(check(s.recorded({KEY: 1}))) == {"value_never_written": 3}
    assert anomalies(check(s.recorded({KEY: 2}))) == {"value_never_written": 4}


def test_a_read_cannot_return_a_write_invoked_after_it_completed() -> None:
    s = Script()
    s.write("upsert", 1)
    s.read(2)
    s.write("upsert", 2)
    assert anomalies(check(s.recorded({KEY: 2}))) == {"value_never_written": 1}


def test_a_record_whose_document_does_not_match_its_version_is_caught_at_the_end() -> None:
    s = Script()
    s.write("upsert", 1)
    recorded = s.recorded({KEY: 1})
    recorded.finals[0].records[KEY][1] = "something else"
    assert anomalies(check(recorded)) == {"value_never_written": 1}


def test_instances_that_differ_once_drained_are_divergent() -> None:
    s = Script()
    s.write("upsert", 1, key="w0k0")
    s.write("upsert", 2, key="w0k1", outcome=INDETERMINATE)  # either state is allowed on each instance...
    s.faults.append(Fault("gateway_kill", "gateway-0", 0.0, None))
    report = check(s.recorded([{"w0k0": 1, "w0k1": 2}, {"w0k0": 1, "w0k1": None}]))
    assert anomalies(report) == {"divergent_instances": 1}  # ...but not a different one on each
    assert "http://i1 differs from http://i0 on 1 keys" in report.first_anomalies[0].message
    recorded = s.recorded([{"w0k0": 1, "w0k1": 2}, {"w0k0": 1, "w0k1": 2}])
    recorded.finals[1].records["w0k0"][2] = [0.5, 0.0, 0.0, 1.0]  # same version, another embedding
    assert anomalies(check(recorded)) == {"divergent_instances": 1}


def test_an_operation_that_failed_with_its_gateway_and_an_instance_up_is_caught() -> None:
    s = Script()
    s.write("upsert", 1)
    failed = s.write("upsert", 2, outcome=FAILED)
    failed.status, failed.error = 503, "nothing was logged"
    s.read(None, outcome=FAILED)
    # one instance of two was down: the other could serve
    s.faults.append(Fault("instance_kill", "instance-1", 0.0, s.t))
    report = check(s.recorded({KEY: 1}))
    assert anomalies(report) == {"failed_while_available": 2}


# --- what must pass ------------------------------------------------------------------------------------------------


def test_failures_while_the_gateway_the_store_or_every_instance_was_down_are_excused_with_a_grace_window() -> None:
    s = Script()
    s.write("upsert", 1)
    s.faults.append(Fault("gateway_kill", "gateway-0", s.t, s.t + 0.5))
    s.t += 3.0  # within the grace window after the gateway came back
    s.write("upsert", 2, outcome=INDETERMINATE)
    s.read(None, outcome=FAILED)
    s.faults.append(Fault("postgres_restart", "store", s.t, s.t + 1.0))
    s.write("upsert", 3, outcome=FAILED)
    s.faults.append(Fault("instance_kill", "instance-0", s.t, s.t + 2.0))
    s.faults.append(Fault("instance_pause", "instance-1", s.t + 0.5, s.t + 1.5))
    s.read(None, outcome=FAILED)
    assert anomalies(check(s.recorded({KEY: 2}))) == {}
    # a read is not excused by the store: reads go on while the store is down
    s.t += 20
    s.faults.append(Fault("postgres_restart", "store", s.t, s.t + 1.0))
    s.read(2, outcome=FAILED)
    assert anomalies(check(s.recorded({KEY: 2}))) == {"failed_while_available": 1}


@pytest.mark.parametrize("final", [1, 2])
def test_an_indeterminate_write_may_or_may_not_have_happened(final: int) -> None:
    s = Script()
    s.write("upsert", 1)
    s.write("upsert", 2, outcome=INDETERMINATE)
    s.read(1)
    s.read(2)
    s.read(1)  # (the union of both is allowed: the checker keeps sets of states, not one order of reads)
    s.faults.append(Fault("gateway_kill", "gateway-0", 1.0, 2.0))
    assert anomalies(check(s.recorded({KEY: final}))) == {}


def test_an_indeterminate_add_of_an_existing_key_changes_nothing_either_way() -> None:
    s = Script()
    s.write("add", 1)
    s.write("add", 2, outcome=INDETERMINATE)  # add of an id that exists changes nothing
    s.faults.append(Fault("gateway_kill", "gateway-0", 1.0, 2.0))
    assert anomalies(check(s.recorded({KEY: 1}))) == {}
    assert anomalies(check(s.recorded({KEY: 2}))) == {"value_never_written": 1}


def test_a_stale_read_the_gateway_marked_is_counted_apart() -> None:
    s = Script()
    s.write("upsert", 1)
    s.write("upsert", 2)
    s.write("delete")
    s.read(1, stale_by="3")
    s.read(2, stale_by="-1")
    report = check(s.recorded({}))
    assert anomalies(report) == {} and report.stale_marked == 2
    s.read(7, stale_by="1")  # marked or not, a value never written is an anomaly
    assert anomalies(check(s.recorded({}))) == {"value_never_written": 1}


def test_overwritten_writes_need_not_survive_and_update_of_a_missing_key_does_nothing() -> None:
    s = Script()
    s.write("upsert", 1)
    s.write("upsert", 2)
    s.write("delete")
    s.write("update", 3)  # of a missing key: nothing
    s.read(None)
    s.write("add", 4)
    s.write("update", 5)
    report = check(s.recorded({KEY: 5}))
    assert anomalies(report) == {}
    assert report.operations == {
        "add": {"ok": 1},
        "delete": {"ok": 1},
        "get": {"ok": 1},
        "update": {"ok": 2},
        "upsert": {"ok": 2},
    }


def test_a_read_that_overlaps_a_write_may_return_either_state() -> None:
    s = Script()
    s.write("upsert", 1)
    write = s.write("upsert", 2)
    before = Op(
        "reader-0", "get", [KEY], 0, write.invoke + 0.2, complete=write.complete + 0.2, outcome=OK, result={KEY: 1}
    )
    after = Op(
        "reader-1", "get", [KEY], 0, write.invoke + 0.3, complete=write.complete + 0.3, outcome=OK, result={KEY: 2}
    )
    s.ops += [before, after]
    assert anomalies(check(s.recorded({KEY: 2}))) == {}
    late = Op(
        "reader-2", "get", [KEY], 0, write.complete + 0.01, complete=write.complete + 0.5, outcome=OK, result={KEY: 1}
    )
    s.ops.append(late)
    assert anomalies(check(s.recorded({KEY: 2}))) == {"stale_read": 1}


def test_a_history_file_checks_the_same_offline(tmp_path: Path) -> None:
    history = History(tmp_path / "h.jsonl", {"seed": 11, "instances": 2})
    for op in (Op("writer-0", "upsert", [KEY], 0, 0.0, version=1, complete=1.0, outcome=OK),
               Op("writer-0", "upsert", [KEY], 0, 1.1, version=2, complete=2.0, outcome=OK),
               Op("reader-0", "get", [KEY], 0, 2.5, complete=3.0, outcome=OK, result={KEY: 1})):  # fmt: skip
        history.op(op)
    history.fault(Fault("net_slow", "instance-0", 0.5, 1.5, {"latency_s": 0.2}))
    history.final(FinalState("http://i0", records({KEY: 2})))
    history.close()
    live, offline = check(history.recorded()), check(load(tmp_path / "h.jsonl"))
    assert live.anomalies == offline.anomalies == {"stale_read": 1}
    assert offline.seed == 11 and offline.faults == {"net_slow": 1}
    assert offline.latency["write_during_faults"]["count"] == 2 and offline.latency["read_during_faults"]["count"] == 0
