"""A durable store's database seen past the store: its schema as an operator would list it, its schema version,
and the database an older gateway (schema version 1) left behind.

A schema dump is one line per table, column (type, NOT NULL, default), primary key, index and `log_meta` key, in a
fixed order, so two dumps compare as lists and a difference reads as a diff.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from chroma_ha.store import postgres, sqlite
from chroma_ha.store.base import Entry, IdMapping, Outcome
from chroma_ha.store.migrations import Migration

if TYPE_CHECKING:
    from tests.contract.conftest import Backend

REFERENCE_FOLDER = Path(__file__).parent

# What an older gateway left: three entries (a collection created, two adds, one not applied yet), two cursors, a
# mapping and an intent, stored as the gateway of schema version 1 stored them.
V1_ENTRIES = [
    (1, "create_collection", b'{"name": "docs"}', None, {"canonical_id": "canon-1"}, (200, b'{"id": "a-1"}', "a")),
    (2, "add", b'{"ids": ["x"]}\x00\xff', "canon-1", {}, (201, b"{}", "a")),
    (3, "add", b'{"ids": ["y"]}', "canon-1", {"resolved": ["y"]}, None),
]
V1_CURSORS = {"a": (2, "incarnation-a"), "b": (0, "")}
V1_MAPPINGS = [IdMapping("a", "canon-1", "a-1")]
V1_INTENT = ("b", 1)


def migrations(backend: Backend) -> tuple[Migration, ...]:
    return sqlite.MIGRATIONS if backend.name == "sqlite" else postgres.MIGRATIONS


def v1_entries_as_read() -> list[tuple[Any, ...]]:
    """What `read` must give back of the version 1 entries: seq, op, body, collection id, extra, outcome."""
    return [
        (seq, op, body, cid, extra, Outcome(*out) if out else None) for seq, op, body, cid, extra, out in V1_ENTRIES
    ]


def as_read(entries: list[Entry]) -> list[tuple[Any, ...]]:
    return [(e.seq, e.op, e.body, e.collection_id, e.extra, e.outcome) for e in entries]


def reference_schema(backend: Backend) -> list[str]:
    text = (REFERENCE_FOLDER / f"schema_{backend.name}.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def dump_schema(backend: Backend) -> list[str]:
    return _dump_sqlite(backend.location) if backend.name == "sqlite" else _dump_postgres(backend.location)


def schema_version(backend: Backend) -> int:
    return int(_fetchall(backend, "SELECT value FROM log_meta WHERE key = 'schema_version'")[0][0])


def set_schema_version(backend: Backend, version: int) -> None:
    _execute(backend, "UPDATE log_meta SET value = {0} WHERE key = 'schema_version'", [(version,)])


def create_version_1(backend: Backend) -> None:
    """The database a gateway of schema version 1 made and wrote to, before migrations were numbered."""
    script = migrations(backend)[0].sql
    if backend.name == "sqlite":
        with closing(sqlite3.connect(backend.location)) as conn:
            conn.executescript(script)
    else:
        with psycopg.connect(backend.location, autocommit=True) as pg:
            pg.execute(script)
    encode = _sqlite_json if backend.name == "sqlite" else _postgres_json
    entries = []
    for seq, op, body, collection_id, extra, outcome in V1_ENTRIES:
        headers = encode({"x-n": str(seq)})
        stored = (seq, 1.0 + seq, op, "POST", f"/{seq}", "", headers, body, collection_id, "t/d", encode(extra))
        entries.append((*stored, *(outcome or (None, None, None))))
    _execute(
        backend,
        "INSERT INTO entries (seq, created_at, op, method, path, query, headers, body, collection_id, scope, extra,"
        " outcome_status, outcome_body, outcome_instance) VALUES ({0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0},"
        " {0}, {0}, {0}, {0})",
        entries,
    )
    cursors = [(instance, seq, incarnation, 1.0) for instance, (seq, incarnation) in V1_CURSORS.items()]
    _execute(
        backend, "INSERT INTO cursors (instance, seq, incarnation, updated_at) VALUES ({0}, {0}, {0}, {0})", cursors
    )
    mappings = [(m.instance, m.canonical_id, m.instance_id) for m in V1_MAPPINGS]
    _execute(
        backend, "INSERT INTO collection_ids (instance, canonical_id, instance_id) VALUES ({0}, {0}, {0})", mappings
    )
    _execute(backend, "INSERT INTO intents (instance, seq) VALUES ({0}, {0})", [V1_INTENT])
    if backend.name == "postgres":
        _execute(backend, "UPDATE log_head SET seq = {0}", [(len(V1_ENTRIES),)])


def _sqlite_json(value: object) -> bytes:
    return orjson.dumps(value)


def _postgres_json(value: object) -> str:
    return orjson.dumps(value).decode()


def _execute(backend: Backend, statement: str, rows: list[tuple[Any, ...]]) -> None:
    """`statement` with `{0}` where each parameter goes (the dialects spell placeholders differently)."""
    if backend.name == "sqlite":
        with closing(sqlite3.connect(backend.location)) as conn, conn:
            conn.executemany(statement.format("?"), rows)
    else:
        with psycopg.connect(backend.location) as pg, pg.cursor() as cur:
            cur.executemany(statement.format("%s"), rows)


def _fetchall(backend: Backend, query: str) -> list[tuple[Any, ...]]:
    if backend.name == "sqlite":
        with closing(sqlite3.connect(backend.location)) as conn:
            return conn.execute(query).fetchall()
    with psycopg.connect(backend.location) as pg:
        return pg.execute(query).fetchall()


def _dump_sqlite(path: str) -> list[str]:
    lines: list[str] = []
    with closing(sqlite3.connect(path)) as conn:
        tables = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        for (table,) in conn.execute(tables).fetchall():
            lines.append(f"table {table}")
            primary_key: list[tuple[int, str]] = []
            for _, name, type_, notnull, default, pk in conn.execute("SELECT * FROM pragma_table_info(?)", (table,)):
                lines.append(_column(name, type_, bool(notnull), default))
                if pk:
                    primary_key.append((pk, name))
            lines.append(f"  primary key ({', '.join(name for _, name in sorted(primary_key))})")
            indexes = 'SELECT name, "unique" FROM pragma_index_list(?) ORDER BY name'
            for index, unique in conn.execute(indexes, (table,)).fetchall():
                columns = [r[0] for r in conn.execute("SELECT name FROM pragma_index_info(?) ORDER BY seqno", (index,))]
                lines.append(f"  index {index}{' UNIQUE' if unique else ''} ({', '.join(columns)})")
        lines += [f"log_meta key {key}" for (key,) in conn.execute("SELECT key FROM log_meta ORDER BY key")]
    return lines


_PG_TABLES = """SELECT table_name FROM information_schema.tables
WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"""
_PG_COLUMNS = """SELECT column_name, data_type, is_nullable = 'NO', column_default, is_identity = 'YES'
FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position"""
_PG_PRIMARY_KEY = """SELECT k.column_name FROM information_schema.table_constraints AS c
JOIN information_schema.key_column_usage AS k
  ON k.constraint_schema = c.constraint_schema AND k.constraint_name = c.constraint_name
WHERE c.table_schema = current_schema() AND c.table_name = %s AND c.constraint_type = 'PRIMARY KEY'
ORDER BY k.ordinal_position"""
_PG_INDEXES = """SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = current_schema() AND tablename = %s ORDER BY indexname"""


def _dump_postgres(dsn: str) -> list[str]:
    lines: list[str] = []
    with psycopg.connect(dsn) as pg:
        for (table,) in pg.execute(_PG_TABLES).fetchall():
            lines.append(f"table {table}")
            for name, type_, notnull, default, identity in pg.execute(_PG_COLUMNS, (table,)).fetchall():
                lines.append(_column(name, type_, notnull, default) + (" IDENTITY" if identity else ""))
            primary_key = [r[0] for r in pg.execute(_PG_PRIMARY_KEY, (table,)).fetchall()]
            lines.append(f"  primary key ({', '.join(primary_key)})")
            lines += [f"  index {name}: {definition}" for name, definition in pg.execute(_PG_INDEXES, (table,))]
        lines += [f"log_meta key {key}" for (key,) in pg.execute("SELECT key FROM log_meta ORDER BY key")]
    return lines


def _column(name: str, type_: str, notnull: bool, default: object) -> str:
    return f"  column {name} {type_}" + (" NOT NULL" if notnull else "") + (f" DEFAULT {default}" if default else "")
