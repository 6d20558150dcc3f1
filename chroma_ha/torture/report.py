"""The checker's report, as text for a terminal and as JSON for a file."""

from __future__ import annotations

import dataclasses
from typing import Any

from .checker import Report


def as_dict(report: Report) -> dict[str, Any]:
    shown = dataclasses.asdict(report)
    shown["total_operations"] = report.total_operations
    shown["ok"] = report.ok
    return shown


def render(report: Report) -> str:
    lines = [f"seed {report.seed}: {report.total_operations} operations"]
    for kind, outcomes in sorted(report.operations.items()):
        lines.append(f"  {kind:<13} " + ", ".join(f"{outcome} {n}" for outcome, n in sorted(outcomes.items())))
    faults = ", ".join(f"{kind} {n}" for kind, n in report.faults.items()) or "none"
    lines.append(f"faults: {faults}")
    lines.append(f"stale reads marked by the gateway (no anomaly): {report.stale_marked}")
    lines.append("latency (ms, successful operations):")
    for name, figures in report.latency.items():
        lines.append(f"  {name:<20} n={figures['count']} p50={figures['p50_ms']} p99={figures['p99_ms']}")
    if report.ok:
        lines.append("anomalies: none")
    else:
        lines.append("anomalies: " + ", ".join(f"{kind} {n}" for kind, n in report.anomalies.items()))
        for anomaly in report.first_anomalies:
            lines.append(f"- {anomaly.kind} on {anomaly.key}: {anomaly.message}")
            lines.extend(f"    {event}" for event in anomaly.timeline)
    if report.notes.get("history"):
        lines.append(f"history: {report.notes['history']} (check it again: chroma-ha torture --check FILE)")
    lines.append(f"replay: chroma-ha torture --seed {report.seed} ...")
    return "\n".join(lines)
