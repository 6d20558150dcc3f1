"""Schema migrations of the durable stores (SQLite, PostgreSQL): a store an older gateway left is brought up to the
current schema and keeps its data; the steps add up to the schema kept in `schema_<dialect>.txt`; each step is
applied once however many stores open together; a schema newer than the code is refused.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING

import pytest

from chroma_ha.errors import StoreError
from chroma_ha.store import postgres, sqlite
from chroma_ha.store.base import IdMapping
from tests.contract.database import (
    V1_CURSORS,
    V1_INTENT,
    V1_MAPPINGS,
    as_read,
    create_version_1,
    dump_schema,
    migrations,
    reference_schema,
    schema_version,
    set_schema_version,
    v1_entries_as_read,
)
from tests.contract.test_store import new_entry, read_all

if TYPE_CHECKING:
    from tests.contract.conftest import Backend

MIGRATIONS_LOGGER = "chroma_ha.store.migrations"
APPLIED = re.compile(r"migrated to schema version (\d+)")


def applied_versions(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The schema versions the stores said they migrated to, in order (one log record per step applied)."""
    said = [APPLIED.search(r.getMessage()) for r in caplog.records if r.name == MIGRATIONS_LOGGER]
    return [int(match[1]) for match in said if match]


def test_both_dialects_number_the_same_steps() -> None:
    assert [(m.version, m.name) for m in sqlite.MIGRATIONS] == [(m.version, m.name) for m in postgres.MIGRATIONS]


async def test_a_store_left_by_schema_version_1_is_migrated_and_keeps_its_data(durable: Backend) -> None:
    create_version_1(durable)
    assert schema_version(durable) == 1

    store = await durable.open_store()

    assert schema_version(durable) == migrations(durable)[-1].version
    assert dump_schema(durable) == reference_schema(durable)
    assert as_read(await read_all(store)) == v1_entries_as_read()
    assert [k.canonical_id for k in await store.read_keys(0, 10)] == ["canon-1", None, None]
    assert {i: (c.seq, c.incarnation) for i, c in (await store.cursors()).items()} == V1_CURSORS
    assert await store.mappings() == V1_MAPPINGS
    assert await store.has_intent(*V1_INTENT)
    assert await store.head() == 3
    assert await store.append([new_entry(4)]) == [4]
    before = await store.catalog_version()
    await store.record_mappings([IdMapping("b", "canon-1", "b-1")])
    assert await store.catalog_version() > before


async def test_the_migrations_add_up_to_the_current_schema(durable: Backend) -> None:
    await durable.open_store()
    assert dump_schema(durable) == reference_schema(durable)


async def test_each_step_is_applied_once_however_many_stores_open(
    durable: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=MIGRATIONS_LOGGER)
    stores = await asyncio.gather(*(durable.open_store() for _ in range(4)))
    await durable.open_store()
    assert applied_versions(caplog) == [m.version for m in migrations(durable)]
    results = await asyncio.gather(*(s.append([new_entry(n)]) for n, s in enumerate(stores)))
    assert sorted(r[0] for r in results) == [1, 2, 3, 4]


async def test_stores_opening_together_on_version_1_apply_the_later_steps_once(
    durable: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    create_version_1(durable)
    caplog.set_level(logging.INFO, logger=MIGRATIONS_LOGGER)
    stores = await asyncio.gather(*(durable.open_store() for _ in range(4)))
    assert applied_versions(caplog) == [m.version for m in migrations(durable)[1:]]
    for store in stores:
        assert as_read(await read_all(store)) == v1_entries_as_read()


async def test_a_schema_newer_than_the_code_is_refused(durable: Backend) -> None:
    store = await durable.open_store()
    await store.append([new_entry(1)])
    await durable.close_store(store)
    newer = migrations(durable)[-1].version + 1
    set_schema_version(durable, newer)

    with pytest.raises(StoreError, match=f"schema version {newer} is newer than this gateway knows"):
        await durable.open_store()
    assert schema_version(durable) == newer
