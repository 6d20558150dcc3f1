"""The log store: one contract (`LogStore`); a SQLite, a PostgreSQL and an in-memory backend."""

from __future__ import annotations

from ..settings import Settings
from .base import (
    Applied,
    CommitStats,
    Cursor,
    Divergence,
    Entry,
    EntryKey,
    GatewayStats,
    IdMapping,
    LogStore,
    Member,
    NewEntry,
    Outcome,
    Recommendation,
    Roster,
)
from .memory import MemoryDatabase, MemoryStore


def open_store(settings: Settings) -> LogStore:
    """The backend named by the `store` setting (not yet opened)."""
    if settings.is_postgres:
        from .postgres import PostgresStore

        return PostgresStore(settings.store)
    from .sqlite import SQLiteStore

    return SQLiteStore(settings.sqlite_path)


__all__ = [
    "Applied",
    "CommitStats",
    "Cursor",
    "Divergence",
    "Entry",
    "EntryKey",
    "GatewayStats",
    "IdMapping",
    "LogStore",
    "Member",
    "MemoryDatabase",
    "MemoryStore",
    "NewEntry",
    "Outcome",
    "Recommendation",
    "Roster",
    "open_store",
]
