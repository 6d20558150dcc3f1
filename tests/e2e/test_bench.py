"""`chroma-ha bench --quick` as a user runs it: it starts its own cluster, measures, and reports every figure.

No timing thresholds here: the machine running the tests is not the one the targets are for.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

QUICK_TIMEOUT_S = 180


def test_quick_bench_reports_every_figure(tmp_path: Path) -> None:
    report_path = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "chroma_ha", "bench", "--quick", "--json", str(report_path), "--dir",
         str(tmp_path / "cluster")],
        capture_output=True, text=True, timeout=QUICK_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(report_path.read_text())

    figures = report["figures"]
    expected = {
        "query_qps_direct_c1", "query_qps_gateway_c1", "query_ratio_c1",
        "query_qps_direct_c8", "query_qps_gateway_c8", "query_ratio_c8",
        "latency_direct_p50_ms", "latency_direct_p99_ms", "latency_gateway_p50_ms", "latency_gateway_p99_ms",
        "added_p50_ms", "write_sustainable_per_s", "lag_rate_per_s", "lag_p50_ms", "lag_p99_ms",
    }
    assert expected <= figures.keys()
    for name, value in figures.items():
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (name, value)

    assert {t["figure"] for t in report["targets"]} == {
        "query_ratio_c1", "query_ratio_c8", "added_p50_ms", "lag_p99_ms"
    }
    assert all(t["result"] in ("PASS", "MISS") for t in report["targets"])
    assert not any(report["errors"].values()), report["errors"]
    rounds = report["config"]["throughput_seconds"] / report["config"]["round_seconds"]
    for concurrency in ("c1", "c8"):  # one ratio per pair of alternating rounds
        ratios = report["round_ratios"][concurrency]
        assert len(ratios) == round(rounds) and all(r > 0 for r in ratios), ratios
    assert report["counts"]["lag_writes_unseen"] == 0
    for target in report["targets"]:
        assert f"{target['figure']} {target['result']}" in done.stdout
