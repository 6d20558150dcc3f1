"""A seeded random walk of writes and the four kinds of delete, with instances SIGKILLed and restarted under it.

The model is what Chroma does with each acknowledged write (add keeps existing ids, upsert and update merge
metadata, a delete with ids and a filter removes the ids that match it). At the end every instance must hold
exactly the model, and no deleted record may have come back.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

import chromadb

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, snapshot

SEED = int(os.environ.get("CHROMA_HA_TEST_SEED", "20261128"))
OPERATIONS = 1200
IDS = [f"r{n}" for n in range(160)]
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")  # none is a substring of another
GROUPS = 5
COLLECTIONS = ("fuzz-a", "fuzz-b")

Record = tuple[list[float], dict[str, Any], str]


def new_record(rng: random.Random) -> Record:
    embedding = [rng.randint(-40, 40) / 4 for _ in range(3)]  # exact in float32
    metadata = {"grp": rng.randrange(GROUPS), "v": rng.randrange(1000)}
    return embedding, metadata, f"{rng.choice(WORDS)} {rng.choice(WORDS)} {rng.randrange(10**6)}"


@dataclass
class Model:
    records: dict[str, Record] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)

    def remove(self, ids: set[str]) -> None:
        for rid in ids & set(self.records):
            del self.records[rid]
            self.deleted.add(rid)

    def matching(self, where: dict[str, Any] | None, contains: str | None) -> set[str]:
        return {
            rid
            for rid, (_, metadata, document) in self.records.items()
            if (where is None or metadata.get("grp") == where["grp"]) and (contains is None or contains in document)
        }


def step(rng: random.Random, col: Any, model: Model) -> str:
    """One random operation through the gateway, mirrored in the model once acknowledged."""
    kind = rng.choices(
        ("add", "upsert", "update", "delete_ids", "delete_where", "delete_document", "delete_both"),
        weights=(30, 20, 15, 12, 8, 8, 7),
    )[0]
    ids = rng.sample(IDS, rng.randint(1, 6))
    if kind in ("add", "upsert"):
        records = [new_record(rng) for _ in ids]
        getattr(col, kind)(
            ids=ids,
            embeddings=[r[0] for r in records],
            metadatas=[r[1] for r in records],
            documents=[r[2] for r in records],
        )
        for rid, (embedding, metadata, document) in zip(ids, records, strict=True):
            if rid not in model.records:
                model.records[rid] = (embedding, metadata, document)
            elif kind == "upsert":
                model.records[rid] = (embedding, {**model.records[rid][1], **metadata}, document)
    elif kind == "update":
        fresh = [new_record(rng) for _ in ids]
        fields = rng.sample(("embeddings", "metadatas", "documents"), rng.randint(1, 3))
        if "documents" in fields and "embeddings" not in fields:
            fields.append("embeddings")  # the client would try to embed the documents itself
        changes: dict[str, list[Any]] = {
            "embeddings": [r[0] for r in fresh],
            "metadatas": [{"grp": r[1]["grp"]} for r in fresh],
            "documents": [r[2] for r in fresh],
        }
        col.update(ids=ids, **{f: changes[f] for f in fields})
        for n, rid in enumerate(ids):
            if rid in model.records:
                embedding, metadata, document = model.records[rid]
                model.records[rid] = (
                    changes["embeddings"][n] if "embeddings" in fields else embedding,
                    {**metadata, **changes["metadatas"][n]} if "metadatas" in fields else metadata,
                    changes["documents"][n] if "documents" in fields else document,
                )
    elif kind == "delete_ids":
        col.delete(ids=ids)
        model.remove(set(ids))
    elif kind == "delete_where":
        where = {"grp": rng.randrange(GROUPS)}
        col.delete(where=where)
        model.remove(model.matching(where, None))
    elif kind == "delete_document":
        word = rng.choice(WORDS)
        col.delete(where_document={"$contains": word})
        model.remove(model.matching(None, word))
    else:
        where = {"grp": rng.randrange(GROUPS)}
        col.delete(ids=ids, where=where)
        model.remove(set(ids) & model.matching(where, None))
    return kind


def test_random_writes_and_deletes_with_instances_killed_end_identical_to_the_model(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    rng = random.Random(SEED)
    client = chromadb.HttpClient(host="127.0.0.1", port=gateway.port)
    cols = {name: client.create_collection(name, embedding_function=None) for name in COLLECTIONS}
    models = {name: Model() for name in COLLECTIONS}
    kills = sorted(rng.sample(range(30, OPERATIONS - 100), 6))
    down: ChromaServer | None = None
    restart_at = -1
    done: dict[str, int] = {}
    for n in range(OPERATIONS):
        if down is None and kills and n >= kills[0]:
            kills.pop(0)
            down = rng.choice(chroma_pair)
            down.kill()
            restart_at = n + rng.randint(15, 90)
        elif down is not None and n >= restart_at:
            down.start()
            down = None
        name = rng.choice(COLLECTIONS)
        kind = step(rng, cols[name], models[name])
        done[kind] = done.get(kind, 0) + 1
    if down is not None:
        down.start()
    gateway.wait_drained(timeout=180)

    assert all(done[kind] >= 50 for kind in done) and len(done) == 7, done
    held = [snapshot(server.url) for server in chroma_pair]
    for name, model in models.items():
        # Checked on each instance before the whole comparison, so that a resurrected record is named as such.
        gone = model.deleted - set(model.records)  # deleted and not written again since
        assert len(model.deleted) > 20 and len(gone) > 20, (len(model.deleted), len(gone))
        for server, state in zip(chroma_pair, held, strict=True):
            came_back = gone & set(state[name]["records"])
            assert not came_back, f"deleted records came back on {server.url}: {sorted(came_back)} (seed {SEED})"
    assert held[0] == held[1], f"instances differ (seed {SEED})"
    for name, model in models.items():
        expected = {rid: (emb, meta, doc, None) for rid, (emb, meta, doc) in model.records.items()}
        assert held[0][name]["records"] == expected, f"{name} differs from the model (seed {SEED})"
    assert gateway.wal_status()["divergences"] == []
