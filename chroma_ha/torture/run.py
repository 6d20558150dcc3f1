"""One torture run: start the cluster, run the workload under the nemesis for the duration, heal, drain, read what
each instance holds, and check the history.

The seed is drawn when none is given, and is the first thing recorded: the same seed draws the same fault schedule
and the same operations (their timing follows the machine).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .checker import Report, check
from .cluster import COLLECTION, TortureCluster
from .history import FinalState, History
from .nemesis import Nemesis, fault_kinds
from .proxy import CLEAN, NetFaults
from .workload import Target, Workload

DRAIN_TIMEOUT_S = 600.0  # a wiped instance replays the whole log: minutes, on a busy machine
log = logging.getLogger(__name__)


@dataclass
class TortureConfig:
    duration: float = 120.0
    seed: int | None = None
    store: str = "sqlite"
    gateways: int = 1
    instances: int = 2
    writers: int = 4
    readers: int = 4
    keys_per_writer: int = 12
    faults: tuple[str, ...] | None = None  # None: every kind that applies to the store
    quiet: tuple[float, float] = (1.0, 3.0)
    fault_length: tuple[float, float] = (1.5, 4.0)
    gateway_settings: dict[str, str] = field(default_factory=dict)
    every_fault: bool = False  # go on past `duration` (up to twice as long) until every fault kind has run once
    network: NetFaults = CLEAN  # the network to the first instance for the whole run (the nemesis's aside)

    def seeded(self) -> TortureConfig:
        if self.seed is not None:
            return self
        return TortureConfig(**{**self.__dict__, "seed": random.SystemRandom().randrange(2**32)})


def final_state(instance: str) -> FinalState:
    """Every record of the torture collection on one instance, asked directly (with `get`: HNSW is approximate)."""
    base = f"{instance}/api/v2/tenants/default_tenant/databases/default_database/collections"
    with httpx.Client(timeout=60) as client:
        collection = client.get(f"{base}/{COLLECTION}").raise_for_status().json()
        got = (
            client.post(f"{base}/{collection['id']}/get", json={"include": ["embeddings", "metadatas", "documents"]})
            .raise_for_status()
            .json()
        )
    records = {
        rid: [
            (got["metadatas"][n] or {}).get("v"),
            got["documents"][n],
            [round(x, 4) for x in got["embeddings"][n]],
            got["metadatas"][n],
        ]
        for n, rid in enumerate(got["ids"])
    }
    return FinalState(instance, records)


def run_torture(config: TortureConfig, workdir: Path, say: Callable[[str], None] = log.info) -> Report:
    """The whole run in `workdir` (the history is `workdir/history.jsonl`); the checker's report."""
    config = config.seeded()
    assert config.seed is not None
    workdir.mkdir(parents=True, exist_ok=True)
    kinds = config.faults if config.faults is not None else fault_kinds(config.store)
    history = History(
        workdir / "history.jsonl",
        {
            "seed": config.seed,
            "store": config.store,
            "gateways": config.gateways,
            "instances": config.instances,
            "duration": config.duration,
            "fault_kinds": list(kinds),
            "gateway_settings": config.gateway_settings,
            "network": {"latency_s": config.network.latency, "drop": config.network.drop},
        },
    )
    say(f"seed {config.seed}: {config.store}, {config.gateways} gateway(s), {config.instances} instances")
    try:
        with TortureCluster(
            workdir,
            instances=config.instances,
            gateways=config.gateways,
            store=config.store,
            seed=config.seed,
            gateway_settings=config.gateway_settings,
        ) as cluster:
            workload = Workload(
                history,
                Target(cluster.gateway_urls, cluster.collection),
                seed=config.seed,
                writers=config.writers,
                readers=config.readers,
                keys_per_writer=config.keys_per_writer,
                generations=cluster.generations,
            )
            nemesis = Nemesis(
                cluster, history, seed=config.seed, kinds=kinds, quiet=config.quiet, length=config.fault_length
            )
            cluster.proxy.set_faults(config.network)
            started = time.monotonic()
            workload.start()
            if kinds:
                nemesis.start()
            try:
                while time.monotonic() - started < config.duration:
                    time.sleep(min(10.0, config.duration - (time.monotonic() - started)))
                    say(f"{time.monotonic() - started:.0f}s of {config.duration:g}s")
                if kinds and config.every_fault and not nemesis.every_kind_done.wait(config.duration):
                    say("not every fault kind ran within twice the duration")
            finally:
                nemesis.stop()
                workload.stop()
            cluster.proxy.set_faults(CLEAN)
            drained = cluster.wait_caught_up(DRAIN_TIMEOUT_S)
            history.note(drained=drained, nemesis_errors=nemesis.errors)
            for url in cluster.direct_urls:
                history.final(final_state(url))
    finally:
        history.close()
    report = check(history.recorded())
    report.notes.update(history=str(history.path), drained=drained, nemesis_errors=nemesis.errors)
    if not drained:
        report.anomalies["not_drained"] = 1
    if nemesis.errors:
        report.anomalies["nemesis_failed"] = len(nemesis.errors)
    return report
