"""How fast does a bootstrap copy a large collection while writes go on, and how much memory does the gateway use?

Starts two Chroma servers (from the installed chromadb package) behind a gateway process on a SQLite log with a
short retention, loads a collection through the gateway, waits until the log is pruned, wipes the second instance
and starts it again: its applier bootstraps it from the first. Meanwhile a writer upserts through the gateway, and
the gateway's resident memory (RSS) is sampled every 50 ms from before the wipe until the copy is done.

    python bench/bootstrap_rate.py [--records 100000] [--dim 384] [--page 500] [--dir PATH]

Prints the records copied, the copy's duration and rate (from the bootstrap's own start and end times in
/wal/status), the writes acknowledged during it, and the gateway's RSS before and at its peak.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from records import BASE, load  # this folder's shared loader (the script's folder is on sys.path)

from chroma_ha.local_cluster import ChromaServer, GatewayProcess, free_port

TIMEOUT_S = 3600.0


def write_until(gateway: str, collection: str, dim: int, stop: threading.Event, counts: dict[str, int]) -> None:
    rng = random.Random(11)
    with httpx.Client(base_url=gateway, timeout=60) as http:
        n = 0
        while not stop.is_set():
            ids = [f"w{n}-{k}" for k in range(10)]
            body = {"ids": ids, "embeddings": [[rng.random() for _ in range(dim)] for _ in ids]}
            answer = http.post(f"{BASE}/{collection}/upsert", json=body)
            counts["ok" if answer.status_code < 300 else "failed"] += 1
            n += 1


def wal_status(gateway: str) -> dict[str, Any]:
    return dict(httpx.get(f"{gateway}/wal/status", timeout=30).raise_for_status().json())


def wait(what: str, check: Any, timeout: float = TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def finished(status: dict[str, Any]) -> dict[str, Any] | None:
    return status if status.get("state") in ("done", "failed") else None


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--page", type=int, default=500, help="CHROMA_HA_BOOTSTRAP_PAGE_SIZE")
    parser.add_argument("--dir", type=Path, default=None, help="keep the data and logs here")
    args = parser.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="chroma-ha-bootstrap-"))
    servers = [ChromaServer(workdir / f"instance-{n}", free_port()) for n in range(2)]
    env = {"CHROMA_HA_RETENTION": "1", "CHROMA_HA_BOOTSTRAP_PAGE_SIZE": str(args.page)}
    gateway = GatewayProcess([s.url for s in servers], f"sqlite:///{workdir / 'wal.db'}", workdir / "gw", env)
    try:
        for server in servers:
            server.start()
        gateway.start()
        started = time.monotonic()
        collection = load(gateway.url, args.records, args.dim)
        print(f"loaded {args.records} records of dimension {args.dim} in {time.monotonic() - started:.1f} s")
        head = wal_status(gateway.url)["head"]
        wait("the log to be pruned", lambda: wal_status(gateway.url)["oldest"] > head)
        target = servers[1].url
        baseline = rss(gateway.pid)
        peak, sampling = [baseline], threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak[0] = max(peak[0], rss(gateway.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, name="rss-sampler")
        sampler.start()
        counts = {"ok": 0, "failed": 0}
        stop = threading.Event()
        writer = threading.Thread(target=write_until, args=(gateway.url, collection, args.dim, stop, counts))
        writer.start()
        servers[1].wipe()
        servers[1].start()
        done = wait("the bootstrap", lambda: finished(wal_status(gateway.url)["bootstrap"].get(target, {})))
        stop.set()
        writer.join()
        sampling.set()
        sampler.join()
        seconds = done["finished_at"] - done["started_at"]
        print(f"bootstrap: {done['state']}, {done['records_copied']} records in {done['pages_copied']} pages")
        print(f"  {seconds:.1f} s, {done['records_copied'] / seconds:,.0f} records/s")
        print(f"  writes during it: {counts['ok']} upserts of 10 acknowledged, {counts['failed']} failed")
        print(f"  gateway RSS: {baseline / 2**20:.0f} MiB before, {peak[0] / 2**20:.0f} MiB at its peak")
    finally:
        gateway.stop()
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
