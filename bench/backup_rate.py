"""How fast are `chroma-ha backup` and `chroma-ha restore`, next to an export and import with the official client?

Starts two Chroma servers (from the installed chromadb package) behind a gateway process on a SQLite log, and a
third server on its own; loads a collection through the gateway, waits until both instances hold it, then, in one
run and on the same records:

1. `chroma-ha backup --to DIR` (a fuzzy snapshot of one instance plus the log after it);
2. the official client's export: `collection.get(include=[embeddings, metadatas, documents])` pages from the
   same instance, written as JSON lines;
3. the official client's import: those pages `add`ed into a fresh collection of the server on its own;
4. `chroma-ha restore --from DIR` into the wiped instances behind a fresh gateway (the records go through the
   gateway, its log and both instances), timed without and with the `verify` it ends with.

    python bench/backup_rate.py [--records 20000] [--dim 384] [--page 500] [--dir PATH]

Prints each step's duration and rate in records per second, and the backup process's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import chromadb
import httpx
import orjson
from records import load  # this folder's shared loader (the script's folder is on sys.path)

from chroma_ha.local_cluster import ChromaServer, GatewayProcess, free_port

INCLUDE = ["embeddings", "metadatas", "documents"]


def drained(gateway: str) -> None:
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        status = httpx.get(f"{gateway}/wal/status", timeout=30).raise_for_status().json()
        if all(i["cursor"] >= status["head"] for i in status["instances"].values()):
            return
        time.sleep(0.2)
    raise SystemExit("the instances did not apply the log within an hour")


def chroma_ha(gateway: GatewayProcess, *args: str) -> tuple[float, str]:
    """Seconds `chroma-ha <args>` took with the gateway's settings, and what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_HA_")}
    env.update({"CHROMA_HA_INSTANCES": ",".join(gateway.instances), "CHROMA_HA_STORE": gateway.store})
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "chroma_ha", *args], env=env, capture_output=True, text=True, cwd=gateway.workdir
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"chroma-ha {args[0]} failed: {done.stdout}{done.stderr}")
    return seconds, done.stdout


def export(url: str, path: Path, page: int) -> int:
    host, port = url.removeprefix("http://").split(":")
    collection = chromadb.HttpClient(host=host, port=int(port)).get_collection("big", embedding_function=None)
    count = 0
    with path.open("wb") as out:
        while True:
            got = collection.get(include=INCLUDE, limit=page, offset=count)  # type: ignore[list-item]
            if not got["ids"]:
                return count
            embeddings = [list(map(float, e)) for e in got["embeddings"]]  # type: ignore[union-attr]
            line = {"ids": got["ids"], "embeddings": embeddings, "metadatas": got["metadatas"]}
            out.write(orjson.dumps({**line, "documents": got["documents"]}) + b"\n")
            count += len(got["ids"])


def import_into(url: str, path: Path) -> int:
    host, port = url.removeprefix("http://").split(":")
    collection = chromadb.HttpClient(host=host, port=int(port)).create_collection("big", embedding_function=None)
    count = 0
    with path.open("rb") as f:
        for raw in f:
            page = orjson.loads(raw)
            collection.add(**page)
            count += len(page["ids"])
    return count


def rate(records: int, seconds: float) -> str:
    return f"{seconds:7.1f} s  {records / seconds:9,.0f} records/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--page", type=int, default=500, help="records per request, on both sides")
    parser.add_argument("--dir", type=Path, default=None, help="keep the data, the backup and the logs here")
    args = parser.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="chroma-ha-backup-"))
    servers = [ChromaServer(workdir / f"instance-{n}", free_port()) for n in range(2)]
    alone = ChromaServer(workdir / "standalone", free_port())
    urls = [s.url for s in servers]
    gateway = GatewayProcess(urls, f"sqlite:///{workdir / 'wal.db'}", workdir / "gw")
    restored = GatewayProcess(urls, f"sqlite:///{workdir / 'restored.db'}", workdir / "gw-restored")
    try:
        for server in [*servers, alone]:
            server.start()
        gateway.start()
        load(gateway.url, args.records, args.dim)
        drained(gateway.url)
        print(f"{args.records} records of dimension {args.dim}, pages of {args.page}")

        backup = workdir / "backup"
        seconds, _ = chroma_ha(gateway, "backup", "--to", str(backup), "--page-size", str(args.page))
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the only child waited for yet
        print(f"chroma-ha backup          {rate(args.records, seconds)}  (peak RSS {peak:.0f} MiB)")
        started = time.monotonic()
        exported = export(urls[0], workdir / "export.jsonl", args.page)
        print(f"client export (get pages) {rate(exported, time.monotonic() - started)}")
        started = time.monotonic()
        imported = import_into(alone.url, workdir / "export.jsonl")
        print(f"client import (add pages) {rate(imported, time.monotonic() - started)}")

        gateway.stop()
        for server in servers:
            server.wipe()
            server.start()
        restored.start()
        seconds, printed = chroma_ha(restored, "restore", "--from", str(backup), "--url", restored.url)
        verified = re.search(r"restore took ([0-9.]+) s", printed)
        restore_only = float(verified[1]) if verified else seconds
        print(f"chroma-ha restore         {rate(args.records, restore_only)}  (2 instances, through the gateway)")
        print(f"  with its verify         {rate(args.records, seconds)}")
    finally:
        for process in (gateway, restored):
            process.stop()
        for server in [*servers, alone]:
            server.stop()


if __name__ == "__main__":
    main()
