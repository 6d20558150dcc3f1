"""Schema migrations: numbered SQL files per dialect, `sql/<dialect>/migrations/NNNN_name.sql`.

Invariant: a store's `log_meta.schema_version` is the number of the last step applied to it, and every step up to
it was applied exactly once, in order, each in its own transaction together with the version it reached. A store
whose version is newer than the steps this code ships is refused: a gateway never writes to a schema it does not
know. A shipped step is never changed; a change of schema is a new step.

The backends run the steps (each under its own lock); this module only finds them and decides what comes next.
"""

from __future__ import annotations

import importlib.resources
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import StoreError

_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> tuple[Migration, ...]:
    """The steps of one dialect in order; numbered 1, 2, 3... with none missing, or the package is broken."""
    folder = importlib.resources.files("chroma_ha.store") / "sql" / dialect / "migrations"
    steps = []
    for resource in folder.iterdir():
        match = _FILE.match(resource.name)
        if match:
            sql = resource.read_text(encoding="utf-8")
            steps.append(Migration(int(match[1]), match[2], sql))
    steps.sort(key=lambda m: m.version)
    if [m.version for m in steps] != list(range(1, len(steps) + 1)):
        raise RuntimeError(f"{dialect} migrations are not numbered 1..n: {[m.version for m in steps]}")
    return tuple(steps)


def next_migration(migrations: Sequence[Migration], version: int) -> Migration | None:
    """The step that follows `version` (a store without a schema is at 0), or None when the store is current."""
    latest = migrations[-1].version
    if version > latest:
        raise StoreError(
            f"the store's schema version {version} is newer than this gateway knows ({latest}): "
            "upgrade the gateway before opening this store"
        )
    return migrations[version] if version < latest else None


def log_applied(dialect: str, migration: Migration) -> None:
    logger.info("%s store migrated to schema version %d (%s)", dialect, migration.version, migration.name)
