"""`chroma-ha torture` as a user runs it: a short run without faults passes and writes its report and history;
a history checked again offline gives the same verdict, and one with an anomaly exits 1 naming it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson


def torture(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chroma_ha", "torture", *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_a_short_run_passes_and_its_history_checks_the_same_offline_and_an_anomaly_exits_1(tmp_path: Path) -> None:
    run = torture("--duration", "6", "--no-faults", "--seed", "42", "--dir", str(tmp_path / "run"), "--json",
                  str(tmp_path / "report.json"))  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "seed 42: " in run.stdout and "anomalies: none" in run.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is True and report["seed"] == 42 and report["anomalies"] == {}
    assert report["operations"]["get"]["ok"] > 10 and report["notes"]["instances_compared"] == 2
    history = tmp_path / "run" / "history.jsonl"

    again = torture("--check", str(history))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"seed 42: {report['total_operations']} operations" in again.stdout

    # the same history with one read turned stale: a read of a key's first acknowledged write returns absent
    lines = [orjson.loads(line) for line in history.read_bytes().splitlines()]
    writes = [d for d in lines if d["type"] == "op" and d["kind"] == "upsert" and d["outcome"] == "ok"]
    first = writes[0]
    key = first["keys"][0]
    at = first["complete"]
    read = {"process": "reader-9", "kind": "get", "keys": [key], "version": None, "result": {key: None}}
    stale = {**first, **read, "invoke": at + 0.001, "complete": at + 0.002}
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b"\n".join(orjson.dumps(d) for d in [*lines, stale]) + b"\n")
    caught = torture("--check", str(broken))
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "stale_read 1" in caught.stdout and f"stale_read on {key}" in caught.stdout
