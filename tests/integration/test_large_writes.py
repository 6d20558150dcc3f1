"""Large writes through the gateway: a burst that direct Chroma absorbs is absorbed with the default settings, although
every instance indexes it on the same cores. The write timeout measures the absence of progress, not the age of the
write (see `WritePath._wait`)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import chromadb

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, wait_drained, wait_until_identical

WRITERS = 3
BATCHES = 3  # the later adds of a writer take longer than the default write timeout on this machine
BATCH = 4000  # below the client's batch limit (Chroma's pre-flight max_batch_size)
DIM = 128
HNSW = {"hnsw": {"ef_construction": 400, "max_neighbors": 64, "ef_search": 200}}


def write(port: int, writer: int) -> list[str]:
    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    col = client.get_or_create_collection(f"big-{writer}", embedding_function=None, configuration=HNSW)  # type: ignore[arg-type]
    rng = random.Random(writer)
    written = []
    for batch in range(BATCHES):
        ids = [f"w{writer}-b{batch}-{n}" for n in range(BATCH)]
        col.add(
            ids=ids,
            embeddings=[[rng.random() for _ in range(DIM)] for _ in ids],  # type: ignore[arg-type]
            metadatas=[{"writer": writer, "batch": batch, "n": n} for n in range(BATCH)],
            documents=[f"document {i} " * 8 for i in ids],
        )
        written.extend(ids)
    return written


def test_a_burst_of_large_adds_succeeds_with_the_default_write_timeout(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    with ThreadPoolExecutor(WRITERS) as pool:
        written = [f.result() for f in [pool.submit(write, gateway.port, w) for w in range(WRITERS)]]
    wait_drained(gateway.url, timeout=300)
    state = wait_until_identical([s.url for s in chroma_pair], timeout=120)
    for writer, ids in enumerate(written):
        assert set(state[f"big-{writer}"]["records"]) == set(ids)
        assert state[f"big-{writer}"]["configuration"]["hnsw"]["ef_construction"] == 400
