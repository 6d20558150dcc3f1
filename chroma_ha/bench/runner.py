"""One benchmark run: start the local cluster, prepare the data, run every phase, build the report."""

from __future__ import annotations

import asyncio
import os
import platform
import tempfile
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager, nullcontext
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp

from .cluster import INSTANCE_COUNT, BenchCluster
from .config import BenchConfig
from .freshness import measure_freshness
from .host import HostLoad
from .prepare import Setup, prepare
from .query_phase import CpuMeter, ThroughputResult, measure_latency, measure_throughput, warm_up
from .report import build_report
from .workloads import new_session
from .write_phase import WriteSource, measure_lag, measure_saturation

Log = Callable[[str], None]


def run_bench(
    config: BenchConfig,
    work_dir: Path | None = None,
    gateway_env: dict[str, str] | None = None,
    log: Log = print,
    *,
    store: str = "sqlite",
    gateways: int = 1,
) -> dict[str, Any]:
    """Everything in one run, so the ratios compare measurements taken on the same machine minutes apart."""
    started = time.monotonic()
    folder: AbstractContextManager[str] = (
        nullcontext(str(work_dir)) if work_dir else tempfile.TemporaryDirectory(prefix="chroma-ha-bench-")
    )
    with folder as path, BenchCluster(Path(path), gateway_env, store=store, gateways=gateways) as cluster:
        shown = ", ".join(f"{g.url} (pid {g.pid})" for g in cluster.gateways)
        log(
            f"cluster up in {time.monotonic() - started:.1f}s: instances {', '.join(cluster.instance_urls)}, "
            f"{cluster.store_name} store, gateway {shown}"
        )
        report = _run_loop(_measure(config, cluster, log))
    report["environment"]["wall_seconds"] = round(time.monotonic() - started, 1)
    return report


def _run_loop(main: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _measure(config: BenchConfig, cluster: BenchCluster, log: Log) -> dict[str, Any]:
    host = HostLoad([*cluster.gateway_pids, *cluster.server_pids])
    gateway_urls = [g.url for g in cluster.gateways]
    async with new_session(connections=4 * max(*config.concurrencies, config.write_concurrency, 8)) as session:
        setup = await prepare(
            session,
            gateway_urls,
            cluster.instance_urls,
            cluster.standalone.url,
            records=config.records,
            dim=config.dim,
            load_batch=config.load_batch,
            query_pool=config.query_pool,
            n_results=config.n_results,
            seed=config.seed,
            drain_timeout=config.drain_timeout_seconds,
            log=log,
        )
        gateway_cpu = CpuMeter(*cluster.gateway_pids)
        log(f"gateways at rest: {config.rest_seconds:g}s with nothing sent")
        rest = await gateway_cpu.rate_at_rest(config.rest_seconds)
        throughput = await _queries(session, setup, config, gateway_cpu, log)
        log(f"single-query latency: {config.latency_samples} samples per target")
        latency = await measure_latency(
            session, setup.queries_direct, setup.queries_gateway, setup.query_bodies, config.latency_samples
        )
        source = WriteSource(config.write_batch, config.dim, config.seed + 2)
        log(
            f"write saturation: {config.saturation_seconds:g}s at concurrency {config.write_concurrency}, "
            f"{config.saturation_rounds} pairs of rounds, standalone Chroma and the gateway"
        )
        saturation = await measure_saturation(
            session,
            setup.writes_gateway,
            setup.writes_standalone,
            source,
            concurrency=config.write_concurrency,
            seconds=config.saturation_seconds,
            rounds=config.saturation_rounds,
            batch=config.write_batch,
            drain_timeout=config.drain_timeout_seconds,
        )
        rate = saturation.sustainable_rate * config.paced_fraction
        log(f"replication lag: {config.paced_seconds:g}s of writes at {rate:.1f}/s")
        lag = await measure_lag(
            session,
            setup.writes_gateway,
            setup.writes_instances,
            source,
            rate=rate,
            seconds=config.paced_seconds,
            max_outstanding=4 * config.write_concurrency,
            poll_interval=config.lag_poll_seconds,
            drain_timeout=config.drain_timeout_seconds,
            log=log,
        )
        freshness = None
        if len(gateway_urls) > 1:
            log(f"reads of each other's writes: {config.freshness_pairs} write-then-read pairs across gateways")
            freshness = await measure_freshness(
                session,
                tuple(gateway_urls),
                setup.writes_gateway.collection_id,
                pairs=config.freshness_pairs,
                dim=config.dim,
            )
    environment = {**_environment(), "store": cluster.store_name, "gateways": len(gateway_urls)}
    return build_report(
        config=config.as_dict(),
        environment={**environment, "host": host.summary()},
        throughput=throughput,
        rest_cpu_ms_per_s=rest * 1000,
        latency=latency,
        saturation=saturation,
        lag=lag,
        freshness=freshness,
    )


async def _queries(
    session: aiohttp.ClientSession, setup: Setup, config: BenchConfig, gateway_cpu: CpuMeter, log: Log
) -> list[ThroughputResult]:
    targets = [setup.queries_direct, setup.queries_gateway]
    await warm_up(session, targets, setup.query_bodies, max(config.concurrencies), config.warmup_seconds)
    results = []
    for concurrency in config.concurrencies:
        log(f"query throughput at concurrency {concurrency}: {config.throughput_seconds:g}s per target")
        results.append(
            await measure_throughput(
                session,
                setup.queries_direct,
                setup.queries_gateway,
                setup.query_bodies,
                concurrency=concurrency,
                seconds=config.throughput_seconds,
                rounds=config.rounds,
                gateway_cpu=gateway_cpu,
            )
        )
    return results


def _environment() -> dict[str, Any]:
    return {
        "instances": INSTANCE_COUNT,
        "direct_baseline": "queries: instance-0 asked directly with its own collection id; writes: a standalone "
        "Chroma server",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "chromadb": version("chromadb"),
        "chroma_ha": version("chroma-ha"),
    }
