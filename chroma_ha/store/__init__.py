"""The log store: one contract (`LogStore`), a SQLite and a PostgreSQL backend."""

from __future__ import annotations

from ..settings import Settings
from .base import Applied, Cursor, Divergence, Entry, IdMapping, LogStore, NewEntry, Outcome, Recommendation


def open_store(settings: Settings) -> LogStore:
    """The backend named by the `store` setting (not yet opened)."""
    if settings.is_postgres:
        from .postgres import PostgresStore

        return PostgresStore(settings.store)
    from .sqlite import SQLiteStore

    return SQLiteStore(settings.sqlite_path)


__all__ = [
    "Applied", "Cursor", "Divergence", "Entry", "IdMapping", "LogStore", "NewEntry", "Outcome",
    "Recommendation", "open_store",
]
