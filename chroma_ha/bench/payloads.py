"""Request bodies and paths, byte for byte what the official client sends. Pure: no I/O.

Embeddings of writes travel as base64 little-endian float32 strings (the client's `supports_base64_encoding`
path); query embeddings travel as JSON lists of floats, as `Collection.query` sends them.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import orjson

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"
QUERY_INCLUDE = ["metadatas", "documents", "distances"]


@dataclass(frozen=True)
class Endpoint:
    """One collection as one server knows it: the gateway (canonical id) or an instance (its own id). With
    `more_urls` (further gateways on the same store), each request goes to the next gateway in turn: the bench's
    own round-robin, as a load balancer in front of them would spread them."""

    name: str
    base_url: str
    collection_id: str
    more_urls: tuple[str, ...] = ()
    _turns: Iterator[int] = field(default_factory=itertools.count, compare=False, hash=False, repr=False)

    @property
    def base_urls(self) -> tuple[str, ...]:
        return (self.base_url, *self.more_urls)

    def url(self, op: str) -> str:
        base = self.base_url
        if self.more_urls:
            base = self.base_urls[next(self._turns) % len(self.base_urls)]
        return f"{base}{COLLECTIONS}/{self.collection_id}/{op}"


def vectors(count: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((count, dim), dtype=np.float32)


def create_collection_body(name: str) -> bytes:
    return orjson.dumps({"name": name, "configuration": None, "metadata": None, "get_or_create": False})


def add_body(ids: list[str], embeddings: np.ndarray) -> bytes:
    return orjson.dumps(
        {
            "ids": ids,
            "embeddings": [base64.b64encode(row.astype("<f4").tobytes()).decode() for row in embeddings],
            "metadatas": [{"seq": int(i.rsplit("-", 1)[-1]), "group": int(i.rsplit("-", 1)[-1]) % 10} for i in ids],
            "documents": [f"document {i}" for i in ids],
            "uris": None,
        }
    )


def record_ids(prefix: str, start: int, count: int) -> list[str]:
    return [f"{prefix}-{n}" for n in range(start, start + count)]


def query_body(embedding: np.ndarray, n_results: int) -> bytes:
    return orjson.dumps(
        {
            "ids": None,
            "query_embeddings": [embedding.tolist()],
            "n_results": n_results,
            "where": None,
            "where_document": None,
            "include": QUERY_INCLUDE,
        }
    )


def get_ids_body(ids: list[str]) -> bytes:
    return orjson.dumps({"ids": ids, "include": []})
