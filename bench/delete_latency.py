"""How long after a delete is acknowledged is the record gone from every live instance?

Starts a local cluster (Chroma servers from the installed chromadb package, a SQLite log, a gateway process with
default settings), loads a collection, then deletes records one at a time through the gateway. After each
acknowledgement it polls every instance directly (`get` by id on the instance's own collection id) until the record
is absent everywhere, and records the time from the acknowledgement to that moment.

    python bench/delete_latency.py [--instances 2] [--records 2000] [--deletes 300] [--dim 128]

Prints p50, p90, p99 and max of that delay, and of the delete's own round trip for comparison.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from chroma_ha.local_cluster import ChromaServer, free_port

BASE = "/api/v2/tenants/default_tenant/databases/default_database/collections"
READY_TIMEOUT_S = 60.0
GONE_TIMEOUT_S = 30.0


def start_gateway(instances: list[str], workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_HA_")}
    env.update(
        {
            "CHROMA_HA_INSTANCES": ",".join(instances),
            "CHROMA_HA_STORE": f"sqlite:///{workdir / 'wal.db'}",
            "CHROMA_HA_PORT": str(port),
        }
    )
    log = open(workdir / "gateway.log", "ab")  # noqa: SIM115 - owned by the child process
    process = subprocess.Popen(
        [sys.executable, "-m", "chroma_ha", "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the gateway did not start; see {workdir / 'gateway.log'}")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{name:<34} p50 {percentile(ms, 50):8.2f} ms   p90 {percentile(ms, 90):8.2f} ms   "
        f"p99 {percentile(ms, 99):8.2f} ms   max {max(ms):8.2f} ms   mean {statistics.fmean(ms):8.2f} ms"
    )


def run(instances: int, records: int, deletes: int, dim: int) -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="delete-latency-") as tmp:
        workdir = Path(tmp)
        servers = [ChromaServer(workdir / f"chroma-{n}", free_port()) for n in range(instances)]
        gateway = None
        try:
            for server in servers:
                server.start(wait=False)
            for server in servers:
                server.wait_ready()
            gateway, url = start_gateway([s.url for s in servers], workdir)
            client = httpx.Client(base_url=url, timeout=30)
            created = client.post(BASE, json={"name": "bench-deletes"}).raise_for_status().json()
            ids = [f"rec-{n}" for n in range(records)]
            for start in range(0, records, 500):
                part = ids[start : start + 500]
                client.post(
                    f"{BASE}/{created['id']}/add",
                    json={
                        "ids": part,
                        "embeddings": [[rng.random() for _ in range(dim)] for _ in part],
                        "metadatas": [{"n": start + i} for i in range(len(part))],
                    },
                ).raise_for_status()
            direct = [httpx.Client(base_url=s.url, timeout=5) for s in servers]
            own_ids = [c.get(f"{BASE}/bench-deletes").raise_for_status().json()["id"] for c in direct]
            for c, own in zip(direct, own_ids, strict=True):  # everything applied before measuring
                while c.get(f"{BASE}/{own}/count").json() != records:
                    time.sleep(0.05)

            acks, gone = [], []
            for rid in rng.sample(ids, deletes):
                sent = time.perf_counter()
                client.post(f"{BASE}/{created['id']}/delete", json={"ids": [rid]}).raise_for_status()
                acked = time.perf_counter()
                acks.append(acked - sent)
                pending = set(range(len(direct)))
                while pending:
                    for n in list(pending):
                        got = direct[n].post(f"{BASE}/{own_ids[n]}/get", json={"ids": [rid], "include": []})
                        if not got.json()["ids"]:
                            pending.discard(n)
                    if time.perf_counter() - acked > GONE_TIMEOUT_S:
                        raise SystemExit(f"{rid} still present {GONE_TIMEOUT_S}s after its acknowledgement")
                gone.append(time.perf_counter() - acked)
            print(
                f"{instances} instances, {records} records of dimension {dim}, {deletes} deletes by id, "
                "gateway with default settings (ack=one, SQLite log)"
            )
            print(summary("delete round trip (until ack)", acks))
            print(summary("ack -> absent on every instance", gone))
        finally:
            if gateway is not None:
                gateway.terminate()
                gateway.wait(15)
            for server in servers:
                server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--deletes", type=int, default=300)
    parser.add_argument("--dim", type=int, default=128)
    args = parser.parse_args()
    run(args.instances, args.records, args.deletes, args.dim)


if __name__ == "__main__":
    main()
