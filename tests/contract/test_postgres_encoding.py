"""A PostgreSQL database created with the SQL_ASCII encoding (what `initdb` makes where no locale is set, as in a
minimal container) still gives the store text as text: the store asks for UTF-8 on every connection. Without it,
psycopg hands such a database's text columns back as bytes, and the appliers failed on every entry's path."""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

from chroma_ha.local_postgres import database_dsn, drop_database
from chroma_ha.store.base import NewEntry
from chroma_ha.store.postgres import PostgresStore


async def test_a_sql_ascii_database_gives_text_back_as_text(postgres_server: str) -> None:
    name = f"ascii_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0").format(
                sql.Identifier(name)
            )
        )
    store = PostgresStore(database_dsn(postgres_server, name))
    try:
        await store.open()
        entry = NewEntry(
            op="add",
            method="POST",
            path="/api/v2/tenants/t/databases/d/collections/c/add",
            body=b'{"ids": ["snow\xe2\x98\x83"]}',
            query="n=1",
            headers={"content-type": "application/json"},
            collection_id="c",
            scope="t/d",
            extra={"name": "snow\u2603"},
        )
        [seq] = await store.append([entry])
        [read] = await store.read(seq - 1, 10)
        assert (read.path, read.query, read.scope, read.collection_id) == (entry.path, "n=1", "t/d", "c")
        assert read.headers == entry.headers and read.extra == entry.extra and read.body == entry.body
        assert all(isinstance(v, str) for v in (read.path, read.query, read.scope, read.op, read.method))
    finally:
        await store.close()
        drop_database(postgres_server, name)
