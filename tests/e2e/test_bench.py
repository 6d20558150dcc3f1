"""`chroma-ha bench --quick` as a user runs it: it starts its own cluster, measures, and reports every figure.

No timing thresholds here: the machine running the tests is not the one the targets are for.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import psutil

QUICK_TIMEOUT_S = 180


def test_quick_bench_reports_every_figure(tmp_path: Path) -> None:
    report_path = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "chroma_ha",
            "bench",
            "--quick",
            "--json",
            str(report_path),
            "--dir",
            str(tmp_path / "cluster"),
        ],
        capture_output=True,
        text=True,
        timeout=QUICK_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(report_path.read_text())

    figures = report["figures"]
    expected = {
        "query_qps_direct_c1",
        "query_qps_gateway_c1",
        "query_ratio_c1",
        "query_qps_direct_c8",
        "query_qps_gateway_c8",
        "query_ratio_c8",
        "latency_direct_p50_ms",
        "latency_direct_p99_ms",
        "latency_gateway_p50_ms",
        "latency_gateway_p99_ms",
        "added_p50_ms",
        "write_sustainable_per_s",
        "lag_rate_per_s",
        "lag_p50_ms",
        "lag_p99_ms",
        "gateway_cpu_ms_per_s_at_rest",
    }
    assert expected <= figures.keys()
    for name, value in figures.items():
        # CPU counters tick every 10 ms: half a second of a gateway at rest may show none
        least = 0 if name == "gateway_cpu_ms_per_s_at_rest" else math.ulp(0)
        assert isinstance(value, (int, float)) and math.isfinite(value) and value >= least, (name, value)

    assert {t["figure"] for t in report["targets"]} == {
        "query_ratio_c1",
        "query_ratio_c8",
        "added_p50_ms",
        "lag_p99_ms",
    }
    assert all(t["result"] in ("PASS", "MISS") for t in report["targets"])
    assert not any(report["errors"].values()), report["errors"]
    rounds = report["config"]["throughput_seconds"] / report["config"]["round_seconds"]
    for concurrency in ("c1", "c8"):  # one ratio per pair of rounds
        ratios = report["round_ratios"][concurrency]
        assert len(ratios) == round(rounds) and all(r > 0 for r in ratios), ratios
    write_rounds = report["config"]["saturation_seconds"] / report["config"]["saturation_round_seconds"]
    write_ratios = report["round_ratios"]["writes"]  # standalone and gateway take turns too
    assert len(write_ratios) == round(write_rounds) and all(r > 0 for r in write_ratios), write_ratios
    assert "writes, ratio in each of" in done.stdout
    assert report["counts"]["lag_writes_unseen"] == 0
    for target in report["targets"]:
        assert f"{target['figure']} {target['result']}" in done.stdout


def test_quick_bench_on_postgres_with_two_gateways_counts_reads_of_each_others_writes(tmp_path: Path) -> None:
    report_path = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "chroma_ha",
            "bench",
            "--quick",
            "--store",
            "postgres",
            "--gateways",
            "2",
            "--json",
            str(report_path),
            "--dir",
            str(tmp_path / "cluster"),
        ],
        capture_output=True,
        text=True,
        timeout=QUICK_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(report_path.read_text())
    assert report["environment"]["store"] == "PostgreSQL" and report["environment"]["gateways"] == 2
    assert done.stdout.startswith(
        "chroma-ha bench: 2 Chroma instances behind 2 gateways (round-robin) (PostgreSQL log)"
    )
    pairs = report["config"]["freshness_pairs"]
    counts = {k: report["freshness"][k] for k in ("pairs", "seen", "missed", "stale", "errors")}
    assert counts == {"pairs": pairs, "seen": pairs, "missed": 0, "stale": 0, "errors": 0}
    for timing in ("write_p50_ms", "write_p99_ms", "read_p50_ms", "read_p99_ms"):
        assert 0 < report["freshness"][timing] < 60_000, (timing, report["freshness"])
    assert f"saw it {pairs}, did not 0, marked stale 0, failed 0" in done.stdout
    assert not any(report["errors"].values()), report["errors"]
    assert report["counts"]["lag_writes_unseen"] == 0


def test_two_gateways_need_a_shared_store() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chroma_ha", "bench", "--quick", "--gateways", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--gateways above 1 needs --store postgres" in done.stderr


def test_sigterm_stops_the_bench_and_the_cluster_it_started(tmp_path: Path) -> None:
    cluster_dir = tmp_path / "cluster"
    run = subprocess.Popen(
        [sys.executable, "-m", "chroma_ha", "bench", "--quick", "--dir", str(cluster_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert run.stderr is not None
        for line in run.stderr:  # the cluster is up once the bench says so
            if line.startswith("cluster up"):
                break
        else:
            raise AssertionError(f"the bench ended without saying the cluster is up (exit code {run.wait()})")
        started = [p for p in _processes_under(cluster_dir) if p.pid != run.pid]
        assert len(started) == 4, started  # two instances, the standalone server, the gateway
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) != 0
        left = _processes_under(cluster_dir)
        assert left == [], "the bench left processes of its cluster running"
    finally:
        run.kill()
        for process in _processes_under(cluster_dir):  # a failed run must not leak its cluster into the suite
            process.kill()


def _processes_under(folder: Path) -> list[psutil.Process]:
    """Processes that name `folder` or run in it: the bench itself, its Chroma servers and its gateway."""
    return [
        process
        for process in psutil.process_iter(["cmdline", "cwd"])
        if str(folder) in " ".join(process.info["cmdline"] or []) or str(folder) in (process.info["cwd"] or "")
    ]
