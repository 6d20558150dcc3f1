"""The plan of a bootstrap, kept in the store page by page, so a gateway that crashes mid-copy resumes it.

A plan names the source, the seq S the copy starts from, the collections (each on the source and its copy on the
target) and the ids each collection held at S, in pages. Pages live in the store, not in memory: a bootstrap holds
one page of ids at a time however large a collection is.

Invariants:
- The plan (page 0) is written after every page of ids, so a plan found in the store is whole; ids pages without a
  plan are the leftovers of a crash while listing, and a new bootstrap drops them.
- The position (page -1) names the last page whose records the target acknowledged, written after it did: a crash
  repeats at most the page after it, and adding ids the target holds already changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass

import orjson

from ..catalog.inventory import CollectionInfo
from ..store import LogStore

BOOTSTRAPPING = "bootstrapping"  # the incarnation recorded while a copy runs: never an instance's marker id

PLAN, POSITION = 0, -1
READ_AHEAD = 4  # pages of ids read from the store at once while copying
WRITE_BATCH = 20  # pages of ids written to the store in one transaction while listing


@dataclass(frozen=True)
class Pair:
    """One collection: where it is on the source, its copy on the target, and the id clients know it by."""

    source: CollectionInfo
    target: CollectionInfo
    canonical_id: str | None


@dataclass(frozen=True)
class Plan:
    source: str
    source_incarnation: str
    target_incarnation: str
    start_seq: int
    pairs: tuple[Pair, ...]
    pages: int
    records: int


@dataclass(frozen=True)
class IdsPage:
    number: int  # 1.., in the order the source lists its records
    collection: int  # index into Plan.pairs
    ids: list[str]


def encode_plan(plan: Plan) -> bytes:
    return orjson.dumps(asdict(plan))


def decode_plan(body: bytes) -> Plan:
    data = orjson.loads(body)
    pairs = tuple(
        Pair(CollectionInfo(**p["source"]), CollectionInfo(**p["target"]), p["canonical_id"]) for p in data["pairs"]
    )
    return Plan(
        data["source"],
        data["source_incarnation"],
        data["target_incarnation"],
        data["start_seq"],
        pairs,
        data["pages"],
        data["records"],
    )


class PlanBook:
    """The store's pages of one target's plan."""

    def __init__(self, store: LogStore, target: str) -> None:
        self._store = store
        self._target = target
        self._pending: list[tuple[int, bytes]] = []

    @property
    def target(self) -> str:
        return self._target

    async def drop(self) -> None:
        self._pending.clear()
        await self._store.drop_bootstrap(self._target)

    async def add_ids(self, page: IdsPage) -> None:
        self._pending.append((page.number, orjson.dumps({"c": page.collection, "ids": page.ids})))
        if len(self._pending) >= WRITE_BATCH:
            await self._flush()

    async def commit(self, plan: Plan) -> None:
        """The ids pages written first, then the plan that makes them a whole plan, then the position 0."""
        await self._flush()
        await self._store.save_bootstrap_pages(self._target, [(PLAN, encode_plan(plan))])
        await self.reached(0)

    async def load(self) -> tuple[Plan, int] | None:
        """The whole plan in the store and the last page the target holds, or None."""
        head = await self._store.bootstrap_pages(self._target, POSITION, 2)
        pages = dict(head)
        if PLAN not in pages:
            return None
        position = int(orjson.loads(pages[POSITION])) if POSITION in pages else 0
        return decode_plan(pages[PLAN]), position

    async def pages_after(self, position: int) -> AsyncIterator[IdsPage]:
        """The ids pages after `position`, a few at a time from the store."""
        after = position
        while True:
            rows = await self._store.bootstrap_pages(self._target, after + 1, READ_AHEAD)
            if not rows:
                return
            for number, body in rows:
                data = orjson.loads(body)
                yield IdsPage(number, data["c"], data["ids"])
                after = number

    async def reached(self, page: int) -> None:
        await self._store.save_bootstrap_pages(self._target, [(POSITION, orjson.dumps(page))])

    async def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            await self._store.save_bootstrap_pages(self._target, pending)


def split(ids: Sequence[str], size: int) -> list[list[str]]:
    """Pages of at most `size` ids, in order. Pure."""
    return [list(ids[start : start + size]) for start in range(0, len(ids), size)]
