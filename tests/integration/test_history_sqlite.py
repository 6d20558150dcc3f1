"""A recorded history of about two minutes on SQLite, one gateway process, two real Chroma servers: every fault
kind that applies (instance SIGKILL, wipe and SIGSTOP, gateway SIGKILL and restart, a slow and a lossy network to
one instance), thousands of operations, and not one anomaly. The seed is printed (`TORTURE_SEED` replays it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chroma_ha.torture import TortureConfig, run_torture
from chroma_ha.torture.nemesis import SQLITE_FAULTS
from chroma_ha.torture.report import render
from tests.harness import torture_seed

DURATION_S = 120.0


@pytest.mark.slow
def test_a_history_under_every_fault_on_sqlite_has_no_anomaly(tmp_path: Path) -> None:
    config = TortureConfig(duration=DURATION_S, seed=torture_seed(), store="sqlite", gateways=1, every_fault=True)
    report = run_torture(config, tmp_path, say=print)
    shown = render(report)
    print(shown)
    assert set(report.faults) == set(SQLITE_FAULTS), shown
    assert report.total_operations > 2000, shown
    assert report.operations["get"]["ok"] > 1000, shown
    assert report.anomalies == {}, shown
