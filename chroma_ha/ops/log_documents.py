"""Read-only documents of the log's contents for operators: the entries around a `seq`, and the divergences with the
records behind them (the entry, what the first instance answered, what the diverging one answered).

Invariant: nothing here writes, and no entry's headers are ever shown (they may carry a client's credentials);
bodies are shown up to `BODY_SHOWN` bytes, as text.
"""

from __future__ import annotations

from typing import Any

from ..store import Entry, LogStore, Outcome

BODY_SHOWN = 2000
MAX_AROUND = 100  # entries shown on either side of a seq at most
DIVERGENCES_LISTED = 1000


def _text(body: bytes) -> str:
    shown = body[:BODY_SHOWN].decode("utf-8", errors="replace")
    return shown + (f"... ({len(body)} bytes)" if len(body) > BODY_SHOWN else "")


def outcome_document(outcome: Outcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    return {"status": outcome.status, "instance": outcome.instance, "body": _text(outcome.body)}


def entry_document(entry: Entry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "created_at": entry.created_at,
        "op": entry.op,
        "method": entry.method,
        "path": entry.path,
        "query": entry.query,
        "collection_id": entry.collection_id,
        "scope": entry.scope,
        "author": entry.author,
        "body_bytes": len(entry.body),
        "body": _text(entry.body),
        "extra": entry.extra,
        "outcome": outcome_document(entry.outcome),
    }


async def entries_around(store: LogStore, seq: int, before: int, after: int) -> dict[str, Any]:
    """The entries from `seq - before` to `seq + after` that the log still holds."""
    before, after = min(max(before, 0), MAX_AROUND), min(max(after, 0), MAX_AROUND)
    start = max(seq - before, 1)
    entries = await store.read(start - 1, seq + after - start + 1)
    return {
        "seq": seq,
        "head": await store.head(),
        "oldest": await store.oldest_seq(),
        "entries": [entry_document(e) for e in entries if e.seq <= seq + after],
    }


async def entry_at(store: LogStore, seq: int) -> Entry | None:
    found = await store.read(seq - 1, 1)
    return found[0] if found and found[0].seq == seq else None


async def divergences_document(store: LogStore, instance: str = "", include_resolved: bool = False) -> dict[str, Any]:
    """The divergences (unresolved unless asked), newest last, each with its entry (when still kept) and outcome."""
    found = [d for d in await store.divergences(include_resolved) if not instance or d.instance == instance]
    shown = found[-DIVERGENCES_LISTED:]
    documents = []
    for d in shown:
        entry = await entry_at(store, d.seq)
        documents.append(
            {
                "id": d.id,
                "seq": d.seq,
                "instance": d.instance,
                "status": d.status,
                "body": _text(d.body),
                "expected_status": d.expected_status,
                "created_at": d.created_at,
                "resolved_at": d.resolved_at,
                "entry": entry_document(entry) if entry is not None else None,
                "outcome": outcome_document(await store.outcome(d.seq)),
            }
        )
    return {"count": len(found), "shown": len(documents), "divergences": documents}
