"""The benchmark's report: flat figures, targets judged PASS or MISS, a JSON document and a readable table."""

from __future__ import annotations

import math
import operator
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .freshness import FreshnessResult
from .query_phase import LatencyResult, ThroughputResult
from .stats import percentile_ms
from .write_phase import LagResult, SaturationResult

RATIO_TARGET = 0.85
ADDED_P50_TARGET_MS = 1.5
LAG_P99_TARGET_MS = 1000.0

_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, "<": operator.lt}


@dataclass(frozen=True)
class Target:
    figure: str
    op: str
    threshold: float
    label: str

    def judge(self, figures: dict[str, float]) -> dict[str, Any]:
        value = figures[self.figure]
        met = math.isfinite(value) and _OPS[self.op](value, self.threshold)
        return {
            "figure": self.figure,
            "label": self.label,
            "value": value,
            "op": self.op,
            "threshold": self.threshold,
            "result": "PASS" if met else "MISS",
        }


def targets(concurrencies: list[int]) -> list[Target]:
    found = [
        Target(f"query_ratio_c{c}", ">=", RATIO_TARGET, f"query throughput gateway/direct, concurrency {c}")
        for c in concurrencies
    ]
    found.append(Target("added_p50_ms", "<=", ADDED_P50_TARGET_MS, "added p50 latency of one query (ms)"))
    found.append(Target("lag_p99_ms", "<", LAG_P99_TARGET_MS, "replication lag p99 at half the write rate (ms)"))
    return found


def figures_of(
    throughput: list[ThroughputResult],
    rest_cpu_ms_per_s: float,
    latency: LatencyResult,
    saturation: SaturationResult,
    lag: LagResult,
) -> dict[str, float]:
    """Every headline number, flat, by a stable name."""
    figures: dict[str, float] = {"gateway_cpu_ms_per_s_at_rest": rest_cpu_ms_per_s}
    for t in throughput:
        c = t.concurrency
        figures[f"query_qps_direct_c{c}"] = t.direct.rate
        figures[f"query_qps_gateway_c{c}"] = t.gateway.rate
        figures[f"query_ratio_c{c}"] = t.ratio
        figures[f"gateway_cpu_ms_per_query_c{c}"] = t.gateway_cpu_ms_per_query
    figures.update(
        {
            "latency_direct_p50_ms": latency.p("direct", 50),
            "latency_direct_p99_ms": latency.p("direct", 99),
            "latency_gateway_p50_ms": latency.p("gateway", 50),
            "latency_gateway_p99_ms": latency.p("gateway", 99),
            "added_p50_ms": latency.added_p50_ms,
            "write_standalone_per_s": saturation.standalone.rate,
            "write_standalone_ack_p50_ms": percentile_ms(saturation.standalone.latencies, 50),
            "write_acked_per_s": saturation.acked_rate,
            "write_ratio": saturation.ratio,
            "write_ack_p50_ms": percentile_ms(saturation.writes.latencies, 50),
            "write_sustainable_per_s": saturation.sustainable_rate,
            "write_sustainable_records_per_s": saturation.sustainable_rate * saturation.batch,
            "lag_rate_per_s": lag.rate,
            "lag_writes": float(len(lag.lags)),
            "lag_p50_ms": lag.lag_ms(50),
            "lag_p99_ms": lag.lag_ms(99),
            "lag_max_ms": lag.lag_ms(100),
            "lag_ack_p50_ms": lag.ack_ms(50),
            "lag_ack_p99_ms": lag.ack_ms(99),
        }
    )
    if lag.unseen:  # a write that never reached every instance has no finite lag
        figures["lag_p99_ms"] = figures["lag_max_ms"] = math.inf
    return {name: round(value, 4) if math.isfinite(value) else value for name, value in figures.items()}


def build_report(
    *,
    config: dict[str, Any],
    environment: dict[str, Any],
    throughput: list[ThroughputResult],
    rest_cpu_ms_per_s: float,
    latency: LatencyResult,
    saturation: SaturationResult,
    lag: LagResult,
    freshness: FreshnessResult | None = None,
) -> dict[str, Any]:
    figures = figures_of(throughput, rest_cpu_ms_per_s, latency, saturation, lag)
    report = {
        "config": config,
        "environment": environment,
        "figures": figures,
        "targets": [t.judge(figures) for t in targets([t.concurrency for t in throughput])],
        "round_ratios": {
            **{f"c{t.concurrency}": [round(r, 4) for r in t.round_ratios] for t in throughput},
            "writes": [round(r, 4) for r in saturation.round_ratios],
        },
        "counts": {
            **{f"queries_direct_c{t.concurrency}": t.direct.completed for t in throughput},
            **{f"queries_gateway_c{t.concurrency}": t.gateway.completed for t in throughput},
            "latency_samples_per_target": len(latency.gateway),
            "saturation_writes": saturation.writes.completed,
            "standalone_writes": saturation.standalone.completed,
            "saturation_busy_seconds": round(saturation.busy_seconds, 3),
            "lag_writes_started": lag.started,
            "lag_slots_skipped": lag.skipped,
            "lag_writes_unseen": lag.unseen,
            "lag_polls": lag.polls,
        },
        "errors": {
            **{f"query_direct_c{t.concurrency}": t.direct.errors for t in throughput},
            **{f"query_gateway_c{t.concurrency}": t.gateway.errors for t in throughput},
            "latency": latency.errors,
            "saturation_writes": saturation.writes.errors,
            "standalone_writes": saturation.standalone.errors,
            "lag_writes": lag.errors,
        },
    }
    if freshness is not None:  # measured with several gateways only
        report["freshness"] = freshness.as_dict()
    return report


def _spread_line(what: str, ratios: list[float]) -> str:
    """How much the ratio moved from one pair of rounds to the next: the noise behind the figure above."""
    if not ratios:
        return f"  {what}: no complete pair of rounds"
    low, mid, high = min(ratios), statistics.median(ratios), max(ratios)
    return f"  {what}, ratio in each of {len(ratios)} pairs of rounds: min {low:.3f}, median {mid:.3f}, max {high:.3f}"


def _verdict(report: dict[str, Any], figure: str) -> str:
    for t in report["targets"]:
        if t["figure"] == figure:
            return f"{t['op']} {t['threshold']:g}  {t['result']}"
    return ""


NOISY_OTHERS_PERCENT = 10.0


def _host_line(host: dict[str, float] | None) -> str:
    if not host:
        return ""
    line = (
        f"CPU during the run: this benchmark's processes {host['cpu_percent_ours']:.0f}%, other processes "
        f"{host['cpu_percent_others']:.0f}% of the machine (load average {host['load_average_start']:.1f} -> "
        f"{host['load_average_end']:.1f})"
    )
    if host["cpu_percent_others"] > NOISY_OTHERS_PERCENT:
        line += "; other work competed for the CPUs, so expect noise"
    return line


def _freshness_lines(freshness: dict[str, float] | None) -> list[str]:
    if freshness is None:
        return []
    return [
        "",
        f"Reads of each other's writes ({freshness['pairs']} pairs: a write acknowledged by one gateway, read at once "
        "through the other)",
        f"  saw it {freshness['seen']}, did not {freshness['missed']}, marked stale {freshness['stale']}, "
        f"failed {freshness['errors']}",
        f"  write p50 / p99 {freshness['write_p50_ms']:.1f} / {freshness['write_p99_ms']:.1f} ms; the read after it "
        f"{freshness['read_p50_ms']:.1f} / {freshness['read_p99_ms']:.1f} ms",
    ]


def _fronts(env: dict[str, Any]) -> str:
    gateways = env.get("gateways", 1)
    return "the gateway" if gateways == 1 else f"{gateways} gateways (round-robin)"


def render_table(report: dict[str, Any]) -> str:
    f, env, cfg = report["figures"], report["environment"], report["config"]
    lines = [
        f"chroma-ha bench: {env['instances']} Chroma instances behind {_fronts(env)} ({env['store']} log), direct = "
        f"instance-0; {cfg['records']} records x {cfg['dim']} dims; {env['cpus']} CPUs; chromadb {env['chromadb']}",
        _host_line(env.get("host")),
        "",
        f"{'Query throughput (queries/s)':<34}{'direct':>10}{'gateway':>10}{'ratio':>8}   target",
    ]
    for c in cfg["concurrencies"]:
        lines.append(
            f"{'  concurrency ' + str(c):<34}{f[f'query_qps_direct_c{c}']:>10.1f}{f[f'query_qps_gateway_c{c}']:>10.1f}"
            f"{f[f'query_ratio_c{c}']:>8.3f}   {_verdict(report, f'query_ratio_c{c}')}"
        )
    for c in cfg["concurrencies"]:
        lines.append(_spread_line(f"concurrency {c}", report.get("round_ratios", {}).get(f"c{c}", [])))
    lines += [
        "",
        f"{'Single-query latency (ms)':<34}{'direct':>10}{'gateway':>10}{'added':>8}   target",
        f"{'  p50':<34}{f['latency_direct_p50_ms']:>10.3f}{f['latency_gateway_p50_ms']:>10.3f}"
        f"{f['added_p50_ms']:>8.3f}   {_verdict(report, 'added_p50_ms')}",
        f"{'  p99':<34}{f['latency_direct_p99_ms']:>10.3f}{f['latency_gateway_p99_ms']:>10.3f}"
        f"{f['latency_gateway_p99_ms'] - f['latency_direct_p99_ms']:>8.3f}",
        "",
        "Gateway CPU per proxied query: "
        + ", ".join(f"{f[f'gateway_cpu_ms_per_query_c{c}']:.3f} ms (c={c})" for c in cfg["concurrencies"])
        + f"; at rest {f['gateway_cpu_ms_per_s_at_rest']:.1f} ms per second",
        "",
        f"Writes (add of {cfg['write_batch']} records, closed loop at concurrency {cfg['write_concurrency']}, "
        f"{cfg['saturation_seconds']:g}s per side in paired rounds of {cfg['saturation_round_seconds']:g}s)",
        f"  standalone Chroma, direct       {f['write_standalone_per_s']:>10.1f} writes/s"
        f"   (ack p50 {f['write_standalone_ack_p50_ms']:.1f} ms)",
        f"  gateway, acknowledged           {f['write_acked_per_s']:>10.1f} writes/s"
        f"   (ack p50 {f['write_ack_p50_ms']:.1f} ms; {f['write_ratio']:.2f}x standalone)",
        f"  gateway, applied on both        {f['write_sustainable_per_s']:>10.1f} writes/s"
        f" = {f['write_sustainable_records_per_s']:.0f} records/s",
        _spread_line("writes", report.get("round_ratios", {}).get("writes", [])),
        "",
        f"Replication lag at {f['lag_rate_per_s']:.1f} writes/s ({cfg['paced_fraction']:g} of sustainable, "
        f"{int(f['lag_writes'])} writes): acknowledged -> applied on the last instance",
        f"  lag p50 / p99 / max             {f['lag_p50_ms']:>8.1f} / {f['lag_p99_ms']:.1f} / {f['lag_max_ms']:.1f} ms"
        f"   target {_verdict(report, 'lag_p99_ms')}",
        f"  ack p50 / p99                   {f['lag_ack_p50_ms']:>8.2f} / {f['lag_ack_p99_ms']:.2f} ms",
        *_freshness_lines(report.get("freshness")),
    ]
    errors = {k: v for k, v in report["errors"].items() if v}
    if errors or report["counts"]["lag_writes_unseen"] or report["counts"]["lag_slots_skipped"]:
        lines += [
            "",
            f"Errors: {errors or 'none'}; writes never seen on every instance: "
            f"{report['counts']['lag_writes_unseen']}; paced slots skipped: "
            f"{report['counts']['lag_slots_skipped']}",
        ]
    lines += ["", "Targets: " + ", ".join(f"{t['figure']} {t['result']}" for t in report["targets"])]
    return "\n".join(lines)
