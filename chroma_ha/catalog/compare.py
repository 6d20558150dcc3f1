"""Comparing what instances hold. Pure: no I/O, so every decision is unit-tested without servers.

Records are compared by content digests, never by `query` (HNSW is approximate). A record's digest covers its id,
its embedding as float32 bytes, its metadata (keys sorted), its document and its uri. A collection's digest is
the sum of its records' digests modulo 2**128, so it does not depend on the order in which pages arrive (two
instances return records in their own internal order). When two collections' digests differ, a second, detailed
pass keeps one digest per id to name the records that are missing, extra or different.

Records whose digests differ are then compared field by field, embeddings within `EMBEDDING_RTOL` of the vector's
largest component: Chroma normalizes the vectors of a cosine collection when it stores them and gives back
`norm * unit` on `get`, so a record copied from one instance to another (bootstrap, repair) reads back a few float32
ulps away from the original (85.0 becomes 85.00001). Instances fed by the log hold bit-identical vectors; the
tolerance only keeps copies from showing as differences that no copy could remove.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from .inventory import CollectionInfo, Records

_MOD = 1 << 128
EMBEDDING_RTOL = 1e-5  # float32 keeps ~7 digits; a normalize-and-scale round trip costs a few ulps
EXAMPLES = 10  # ids shown per kind of record difference


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def embedding_bytes(embedding: Any) -> bytes:
    if embedding is None:
        return b"\x00"
    if isinstance(embedding, str):  # base64 as the client sends it: compare the text
        return b"b" + embedding.encode()
    return b"f" + array("f", embedding).tobytes()


def record_digest(rid: str, embedding: Any, metadata: Any, document: Any, uri: Any) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in (rid.encode(), embedding_bytes(embedding), _canonical(metadata), _canonical(document), _canonical(uri)):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


def page_digests(page: Records) -> Iterable[tuple[str, bytes]]:
    for n, rid in enumerate(page.ids):
        yield rid, record_digest(rid, page.embeddings[n], page.metadatas[n], page.documents[n], page.uris[n])


def embeddings_close(a: Any, b: Any) -> bool:
    if a is None or b is None or isinstance(a, str) or isinstance(b, str):
        return bool(a == b)
    # Plain floats, not numpy: this runs only for records whose digests differ, and the gateway's install (and its
    # image) stays without numpy.
    x, y = [float(v) for v in a], [float(v) for v in b]
    if len(x) != len(y):
        return False
    if not x:
        return True
    scale = max(max(map(abs, x)), max(map(abs, y)))
    return all(abs(p - q) <= EMBEDDING_RTOL * scale for p, q in zip(x, y, strict=True))


def changed_records(reference: Records, other: Records) -> list[str]:
    """Ids of `reference` whose record in `other` is absent or differs (embeddings within tolerance). Pure."""
    theirs = {rid: n for n, rid in enumerate(other.ids)}
    changed = []
    for n, rid in enumerate(reference.ids):
        m = theirs.get(rid)
        if m is None or not (
            _canonical(reference.metadatas[n]) == _canonical(other.metadatas[m])
            and reference.documents[n] == other.documents[m]
            and reference.uris[n] == other.uris[m]
            and embeddings_close(reference.embeddings[n], other.embeddings[m])
        ):
            changed.append(rid)
    return changed


@dataclass
class CollectionDigest:
    """Order-independent summary of a collection's records: count, ids, contents."""

    count: int = 0
    ids: int = 0
    content: int = 0

    def add(self, page: Records) -> None:
        for rid, digest in page_digests(page):
            self.count += 1
            self.ids = (self.ids + int.from_bytes(hashlib.blake2b(rid.encode(), digest_size=16).digest())) % _MOD
            self.content = (self.content + int.from_bytes(digest)) % _MOD

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "ids_hash": f"{self.ids:032x}", "content_hash": f"{self.content:032x}"}


@dataclass(frozen=True)
class RecordDiff:
    """How `other` differs from `reference`, by record id."""

    missing: list[str]  # in the reference, not in the other
    extra: list[str]  # in the other, not in the reference
    changed: list[str]  # in both, with different contents

    @property
    def empty(self) -> bool:
        return not (self.missing or self.extra or self.changed)

    def summary(self) -> dict[str, Any]:
        return {
            kind: {"count": len(ids), "examples": ids[:EXAMPLES]}
            for kind, ids in (("missing", self.missing), ("extra", self.extra), ("changed", self.changed))
            if ids
        }


def diff_records(reference: Mapping[str, bytes], other: Mapping[str, bytes]) -> RecordDiff:
    missing = sorted(set(reference) - set(other))
    extra = sorted(set(other) - set(reference))
    changed = sorted(rid for rid, digest in reference.items() if rid in other and other[rid] != digest)
    return RecordDiff(missing, extra, changed)


def _examples(kind: Mapping[str, Any]) -> str:
    more = ", ..." if kind["count"] > len(kind["examples"]) else ""
    return ", ".join(kind["examples"]) + more


@dataclass(frozen=True)
class Difference:
    """One way in which the instances disagree."""

    kind: str  # tenant, database, collection, metadata, configuration, catalog, records, unreachable
    where: str  # tenant, tenant/database or tenant/database/collection
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "where": self.where, **self.detail}

    def lines(self) -> list[str]:
        """The difference for a person to read."""
        d = self.detail
        if "missing_on" in d:
            return [f"present on {', '.join(d['present_on'])}; missing on {', '.join(d['missing_on'])}"]
        if self.kind == "records":
            found = [f"compared with {d['reference']}:"]
            for instance, kinds in d["instances"].items():
                parts = [f"{kind} {v['count']} ({_examples(v)})" for kind, v in kinds.items()]
                found.append(f"{instance}: {'; '.join(parts)}")
            return found
        if "values" in d:
            return [f"{i}: {_canonical(v).decode()}" for i, v in d["values"].items()]
        if "canonical_ids" in d:
            return [f"{i}: canonical id {c or 'unknown'}" for i, c in d["canonical_ids"].items()]
        return [_canonical(d).decode()]


def presence(where: str, kind: str, holders: Mapping[str, bool]) -> Difference | None:
    """A difference when some instances hold a thing (tenant, database, collection) that others lack."""
    has = sorted(i for i, present in holders.items() if present)
    lacks = sorted(i for i, present in holders.items() if not present)
    if has and lacks:
        return Difference(kind, where, {"present_on": has, "missing_on": lacks})
    return None


def collection_fields(infos: Mapping[str, CollectionInfo]) -> list[Difference]:
    """Metadata and configuration (with the schema that carries it) of one collection on several instances."""
    found: list[Difference] = []
    for kind, getter in (
        ("metadata", lambda c: c.metadata),
        ("configuration", lambda c: {"configuration": c.configuration, "schema": c.schema}),
    ):
        values = {i: getter(c) for i, c in infos.items()}
        if len({_canonical(v) for v in values.values()}) > 1:
            label = next(iter(infos.values())).label
            found.append(Difference(kind, label, {"values": values}))
    return found


def catalog_ids(infos: Mapping[str, CollectionInfo], canonical: Mapping[str, Mapping[str, str]]) -> Difference | None:
    """Every instance's copy of a collection must map to one canonical id, or the gateway addresses the wrong one.

    `canonical` is instance -> (instance's collection id -> canonical id), from the store.
    """
    mapped = {i: canonical.get(i, {}).get(c.id) for i, c in infos.items()}
    if None in mapped.values() or len(set(mapped.values())) > 1:
        label = next(iter(infos.values())).label
        return Difference("catalog", label, {"canonical_ids": mapped})
    return None


def digests_differ(digests: Mapping[str, CollectionDigest]) -> bool:
    return len({(d.count, d.ids, d.content) for d in digests.values()}) > 1


def records_difference(label: str, reference: str, diffs: Mapping[str, RecordDiff]) -> Difference | None:
    shown = {i: d.summary() for i, d in diffs.items() if not d.empty}
    if not shown:
        return None
    return Difference("records", label, {"reference": reference, "instances": shown})


@dataclass
class Report:
    instances: Sequence[str]
    scopes: list[str] = field(default_factory=list)
    collections: list[dict[str, Any]] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "instances": list(self.instances),
            "scopes": self.scopes,
            "collections": self.collections,
            "differences": [d.as_dict() for d in self.differences],
            "notes": self.notes,
        }
