"""The records the scripts in this folder load: one collection named `big` of `records` rows of `dim` floats, with a
metadata field and a document each, added through `gateway` in batches; the same rows on every run (seeded)."""

from __future__ import annotations

import random

import httpx

BASE = "/api/v2/tenants/default_tenant/databases/default_database/collections"
LOAD_BATCH = 1000


def load(gateway: str, records: int, dim: int) -> str:
    """The collection's id, once every batch was acknowledged."""
    rng = random.Random(7)
    with httpx.Client(base_url=gateway, timeout=300) as http:
        own = http.post(BASE, json={"name": "big"}).raise_for_status().json()["id"]
        for start in range(0, records, LOAD_BATCH):
            ids = range(start, min(records, start + LOAD_BATCH))
            body = {
                "ids": [f"r{n}" for n in ids],
                "embeddings": [[rng.random() for _ in range(dim)] for _ in ids],
                "metadatas": [{"n": n} for n in ids],
                "documents": [f"record {n}" for n in ids],
            }
            http.post(f"{BASE}/{own}/add", json=body).raise_for_status()
    return str(own)
