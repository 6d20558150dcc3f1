"""A bootstrap streams, page by page, and a gateway SIGKILLed in the middle of one resumes at the page it reached.

Against real Chroma servers and a real gateway process: a large collection is copied to a wiped instance in pages;
the gateway is killed while it copies, started again, and the copy goes on after the last page the target held
(the pages copied by the second run are the rest, not the whole), while writes go on; the instance ends identical.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import chromadb

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, on_every_store, on_postgres, run_cli, snapshot, wait_for

RECORDS = 12_000
PAGE = 60  # records per bootstrap page: 200 pages
KILL_AFTER_PAGES = 25
TIMEOUT_S = 180.0


def seed(gateway: GatewayProcess) -> None:
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("big", embedding_function=None)
    for start in range(0, RECORDS, 2000):
        ids = range(start, start + 2000)
        col.add(
            ids=[f"seed-{n}" for n in ids],
            embeddings=[[float(n % 97), float(n % 13), 1.0, 0.5] for n in ids],
            metadatas=[{"n": n} for n in ids],
            documents=[f"record {n}" for n in ids],
        )


def write_until(gateway: GatewayProcess, prefix: str, stop: threading.Event, model: dict[str, Any]) -> int:
    """Upserts and deletes until `stop`; each acknowledged write is put in `model` (every one must succeed)."""
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).get_collection("big", embedding_function=None)
    n = 0
    while not stop.is_set():
        col.upsert(ids=[f"{prefix}-{n}"], embeddings=[[0.25, float(n), 0.0, 1.0]], metadatas=[{"w": prefix}])
        model["added"].add(f"{prefix}-{n}")
        col.delete(ids=[f"seed-{n * 7 % RECORDS}"])
        model["deleted"].add(f"seed-{n * 7 % RECORDS}")
        n += 1
    return n


def bootstrap_of(gateway: GatewayProcess, instance: str) -> dict[str, Any]:
    return dict(gateway.wal_status()["bootstrap"].get(instance, {}))


@on_every_store
def test_a_gateway_killed_mid_bootstrap_resumes_at_the_page_it_reached(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]
) -> None:
    servers = chroma_pair
    settings = {"CHROMA_HA_RETENTION": "0.5", "CHROMA_HA_BOOTSTRAP_PAGE_SIZE": str(PAGE)}
    gateway = gateway_with(settings)
    seed(gateway)
    gateway.wait_drained()
    wait_for("the log to be pruned", lambda: gateway.wal_status()["oldest"], TIMEOUT_S, until=lambda o: o > 3)
    target = servers[1].url
    servers[1].wipe()
    servers[1].start()
    model: dict[str, Any] = {"added": set(), "deleted": set()}

    with ThreadPoolExecutor(1) as pool:
        stop = threading.Event()
        writing = pool.submit(write_until, gateway, "before-kill", stop, model)
        reached = wait_for(
            "the bootstrap to copy some pages",
            lambda: bootstrap_of(gateway, target),
            TIMEOUT_S,
            until=lambda s: s.get("pages_copied", 0) >= KILL_AFTER_PAGES,
        )
        stop.set()
        assert writing.result() > 0
    gateway.kill()
    # one collection, listed at S (the writer's first writes included) in pages of PAGE ids
    assert reached["state"] == "copying records" and reached["pages_total"] == -(-reached["records_total"] // PAGE)
    assert reached["pages_total"] > 2 * KILL_AFTER_PAGES

    gateway.start()
    with ThreadPoolExecutor(1) as pool:
        stop = threading.Event()
        writing = pool.submit(write_until, gateway, "after-restart", stop, model)
        done = wait_for(
            "the resumed bootstrap",
            lambda: bootstrap_of(gateway, target),
            TIMEOUT_S,
            until=lambda s: s.get("state") == "done",
        )
        stop.set()
        assert writing.result() > 0
    gateway.wait_drained()

    assert done["state"] == "done", done
    # resumed where the killed gateway was, not started again: the pages copied now are the ones it had not reached
    assert done["resumed_after_page"] is not None and done["resumed_after_page"] >= reached["pages_copied"] - 1
    assert done["pages_copied"] == done["pages_total"] - done["resumed_after_page"]
    assert done["pages_total"] == reached["pages_total"] and done["start_seq"] == reached["start_seq"]
    held = snapshot(target)
    assert held == snapshot(servers[0].url)
    expected = ({f"seed-{n}" for n in range(RECORDS)} - model["deleted"]) | model["added"]
    assert set(held["big"]["records"]) == expected
    verified = run_cli(gateway, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


@on_postgres
def test_another_gateway_takes_over_a_bootstrap_whose_gateway_was_killed_and_resumes_it(
    gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]
) -> None:
    servers = chroma_pair
    settings = {"CHROMA_HA_RETENTION": "0.5", "CHROMA_HA_BOOTSTRAP_PAGE_SIZE": str(PAGE), "CHROMA_HA_LEASE_TTL": "2"}
    first = gateway_with(settings)  # started alone: it holds every applier's lease, the bootstrap runs there
    seed(first)
    first.wait_drained()
    second = gateway_with(settings)
    wait_for("the log to be pruned", lambda: first.wal_status()["oldest"], TIMEOUT_S, until=lambda o: o > 3)
    target = servers[1].url
    servers[1].wipe()
    servers[1].start()
    model: dict[str, Any] = {"added": set(), "deleted": set()}
    with ThreadPoolExecutor(1) as pool:
        stop = threading.Event()
        writing = pool.submit(write_until, second, "through-second", stop, model)
        reached = wait_for(
            "the first gateway's bootstrap to copy some pages",
            lambda: bootstrap_of(first, target),
            TIMEOUT_S,
            until=lambda s: s.get("pages_copied", 0) >= KILL_AFTER_PAGES,
        )
        first.kill()
        done = wait_for(
            "the second gateway to take the bootstrap over",
            lambda: bootstrap_of(second, target),
            TIMEOUT_S,
            until=lambda s: s.get("state") == "done",
        )
        stop.set()
        assert writing.result() > 0
    second.wait_drained(timeout=TIMEOUT_S)

    assert done["state"] == "done", done
    assert done["resumed_after_page"] is not None and done["resumed_after_page"] >= reached["pages_copied"] - 1
    assert done["pages_copied"] == done["pages_total"] - done["resumed_after_page"]
    assert done["start_seq"] == reached["start_seq"]
    held = snapshot(target)
    assert held == snapshot(servers[0].url)
    expected = ({f"seed-{n}" for n in range(RECORDS)} - model["deleted"]) | model["added"]
    assert set(held["big"]["records"]) == expected
