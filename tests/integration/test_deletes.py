"""Deletes against real servers: document-level deletion on and off, and every kind of delete on every instance."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chromadb
import httpx
import pytest

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, snapshot

KEY = "document_id"


def chunked_docs(col: Any, docs: dict[str, int]) -> None:
    """Add `count` chunks per document, ids `<doc>-c<n>`, each with the document's id under KEY."""
    ids, embeddings, metadatas, documents = [], [], [], []
    for n_doc, (doc, count) in enumerate(sorted(docs.items())):
        for n in range(count):
            ids.append(f"{doc}-c{n}")
            embeddings.append([float(n_doc), float(n)])
            metadatas.append({KEY: doc, "page": n})
            documents.append(f"{doc} chunk {n}")
    col.add(ids=ids, embeddings=embeddings, metadatas=metadatas, documents=documents)


def instance_ids(servers: list[ChromaServer], name: str) -> list[set[str]]:
    return [set(snapshot(s.url)[name]["records"]) for s in servers]


@pytest.fixture
def expanding_gateway(gateway_with: Callable[..., GatewayProcess]) -> GatewayProcess:
    return gateway_with({"CHROMA_HA_DELETE_EXPAND_KEY": KEY, "CHROMA_HA_DELETE_EXPAND_COLLECTIONS": "docs,other-docs"})


def test_a_delete_by_document_id_removes_every_chunk_on_every_instance(
    expanding_gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    client = chromadb.HttpClient(host="127.0.0.1", port=expanding_gateway.port)
    col = client.create_collection("docs", embedding_function=None)
    chunked_docs(col, {"doc-a": 5, "doc-b": 3, "doc-c": 4})

    col.delete(ids=["doc-a"])  # the document's id: no record has it, its chunks carry it
    col.delete(ids=["doc-b-c1"])  # one chunk: the whole document goes
    expanding_gateway.wait_drained()

    expected = {f"doc-c-c{n}" for n in range(4)}
    assert set(col.get()["ids"]) == expected
    assert instance_ids(chroma_pair, "docs") == [expected, expected]
    assert snapshot(chroma_pair[0].url) == snapshot(chroma_pair[1].url)
    stats = httpx.get(f"{expanding_gateway.url}/wal/stats", timeout=10).json()
    assert stats["deletes_converted"] == 2


def test_a_filter_next_to_ids_picks_among_the_documents_records(
    expanding_gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    client = chromadb.HttpClient(host="127.0.0.1", port=expanding_gateway.port)
    col = client.create_collection("docs", embedding_function=None)
    chunked_docs(col, {"doc-a": 6, "doc-b": 6})

    col.delete(ids=["doc-a"], where={"page": {"$gte": 3}})  # pages 3-5 of doc-a, nothing of doc-b
    col.delete(ids=["doc-b-c0"], where_document={"$contains": "chunk 1"})  # only doc-b's chunk 1
    expanding_gateway.wait_drained()

    expected = {f"doc-a-c{n}" for n in range(3)} | {f"doc-b-c{n}" for n in (0, 2, 3, 4, 5)}
    assert instance_ids(chroma_pair, "docs") == [expected, expected]


def test_collections_not_listed_and_deletes_without_ids_are_applied_as_sent(
    expanding_gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    client = chromadb.HttpClient(host="127.0.0.1", port=expanding_gateway.port)
    unlisted = client.create_collection("notes", embedding_function=None)
    chunked_docs(unlisted, {"doc-a": 3})
    unlisted.delete(ids=["doc-a-c0"])  # not a listed collection: only that record
    listed = client.create_collection("docs", embedding_function=None)
    chunked_docs(listed, {"doc-a": 3, "doc-b": 2})
    listed.delete(where={"page": 0})  # no ids: Chroma's own where delete
    listed.delete(ids=["missing-doc"])  # nothing to expand: harmless
    expanding_gateway.wait_drained()

    assert instance_ids(chroma_pair, "notes") == [{"doc-a-c1", "doc-a-c2"}] * 2
    assert instance_ids(chroma_pair, "docs") == [{"doc-a-c1", "doc-a-c2", "doc-b-c1"}] * 2
    stats = httpx.get(f"{expanding_gateway.url}/wal/stats", timeout=10).json()
    assert stats["deletes_converted"] == 0


def test_with_expansion_off_a_delete_removes_only_the_named_records(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    client = chromadb.HttpClient(host="127.0.0.1", port=gateway.port)
    col = client.create_collection("docs", embedding_function=None)
    chunked_docs(col, {"doc-a": 4})
    col.delete(ids=["doc-a"])
    col.delete(ids=["doc-a-c2"])
    gateway.wait_drained()

    expected = {"doc-a-c0", "doc-a-c1", "doc-a-c3"}
    assert instance_ids(chroma_pair, "docs") == [expected, expected]
    assert httpx.get(f"{gateway.url}/wal/stats", timeout=10).json()["deletes_converted"] == 0


def test_every_kind_of_delete_reaches_every_instance_across_a_restart(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    client = chromadb.HttpClient(host="127.0.0.1", port=gateway.port)
    col = client.create_collection("kinds", embedding_function=None)
    ids = [f"r{n}" for n in range(40)]
    col.add(
        ids=ids,
        embeddings=[[float(n), 1.0] for n in range(40)],
        metadatas=[{"group": n % 4} for n in range(40)],
        documents=[f"text {n} {'odd' if n % 2 else 'even'}" for n in range(40)],
    )
    chroma_pair[1].kill()
    col.delete(ids=["r0", "r1", "does-not-exist"])
    col.delete(where={"group": 2})
    col.delete(where_document={"$contains": "odd"})
    chroma_pair[1].start()
    col.delete(ids=["r4", "r8", "r12"], where={"group": 0})
    col.delete(ids=["r16"], where_document={"$contains": "odd"})  # r16 is even: stays
    gateway.wait_drained()

    expected = {f"r{n}" for n in range(40) if n % 2 == 0 and n % 4 != 2} - {"r0", "r4", "r8", "r12"}
    assert set(col.get()["ids"]) == expected
    assert instance_ids(chroma_pair, "kinds") == [expected, expected]
    assert snapshot(chroma_pair[0].url) == snapshot(chroma_pair[1].url)


def test_a_delete_with_limit_removes_the_same_records_on_every_instance(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    """`limit` picks records in each instance's storage order; the gateway resolves them once, as ids."""
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("limited", embedding_function=None)
    col.add(ids=["z", "a", "m", "q"], embeddings=[[1.0, 0.0]] * 4, metadatas=[{"k": 1}] * 4)
    gateway.wait_drained()
    # Give the second instance a different storage order, as a bootstrap copy would have.
    direct = chromadb.HttpClient(host="127.0.0.1", port=chroma_pair[1].port).get_collection("limited")
    direct.delete(ids=["z", "a", "m", "q"])
    direct.add(ids=["q", "m", "a", "z"], embeddings=[[1.0, 0.0]] * 4, metadatas=[{"k": 1}] * 4)
    assert col.delete(where={"k": 1}, limit=2)["deleted"] == 2
    gateway.wait_drained()
    left = [sorted(snapshot(s.url)["limited"]["records"]) for s in chroma_pair]
    assert len(left[0]) == 2 and left[0] == left[1]
