"""A recorded history of about two minutes on a real PostgreSQL shared by two gateway processes, in front of two
real Chroma servers: every fault kind, a PostgreSQL stopped and started again included, thousands of operations
through both gateways, and not one anomaly. The seed is printed (`TORTURE_SEED` replays it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chroma_ha.torture import TortureConfig, run_torture
from chroma_ha.torture.nemesis import POSTGRES_FAULTS
from chroma_ha.torture.report import render
from tests.harness import torture_seed

DURATION_S = 120.0


@pytest.mark.slow
def test_a_history_under_every_fault_on_postgres_with_two_gateways_has_no_anomaly(tmp_path: Path) -> None:
    config = TortureConfig(duration=DURATION_S, seed=torture_seed(), store="postgres", gateways=2, every_fault=True)
    report = run_torture(config, tmp_path, say=print)
    shown = render(report)
    print(shown)
    assert set(report.faults) == set(POSTGRES_FAULTS), shown
    assert report.total_operations > 2000, shown
    assert report.anomalies == {}, shown
