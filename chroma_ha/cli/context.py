"""What `verify` and `repair` share: the deployment (the store, and the instances as the store lists them, or the
`instances` setting before a gateway has seeded the list) and the output."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..catalog.inventory import ChromaInstance, tenants_of
from ..settings import Settings
from ..store import LogStore, open_store
from ..store.base import DRAINING
from ..upstream.client import InstanceClient
from ..upstream.transport import Transport


@dataclass
class Deployment:
    settings: Settings
    store: LogStore
    client: Transport
    instances: list[ChromaInstance]

    def instance(self, url: str) -> ChromaInstance:
        for instance in self.instances:
            if instance.url == url.rstrip("/"):
                return instance
        raise click.UsageError(f"{url} is not one of the instances: {', '.join(i.url for i in self.instances)}")

    async def tenants(self) -> list[str]:
        return tenants_of(await self.store.scopes())

    async def canonical_ids(self) -> dict[str, dict[str, str]] | None:
        """instance -> (its collection id -> canonical id); None when the store knows no collection at all."""
        mappings = await self.store.mappings()
        if not mappings:
            return None
        found: dict[str, dict[str, str]] = {i.url: {} for i in self.instances}
        for m in mappings:
            found.setdefault(m.instance, {})[m.instance_id] = m.canonical_id
        return found


@contextlib.asynccontextmanager
async def deployment(settings: Settings, request_timeout: float) -> AsyncIterator[Deployment]:
    if not settings.is_postgres and not Path(settings.sqlite_path).exists():
        raise click.UsageError(f"bad setting store: no log at {settings.sqlite_path} (give the gateway's --store)")
    store = open_store(settings)
    client = InstanceClient(
        request_timeout, max_answer_bytes=settings.max_answer_bytes, credentials=settings.headers_for_instances()
    )
    await store.open()
    try:
        roster = await store.members()  # the store's list once it has one; before, the configured one
        urls = [m.url for m in roster.members if m.state != DRAINING] if roster.version else settings.instances
        yield Deployment(settings, store, client, [ChromaInstance(client, url) for url in urls])
    finally:
        await client.close()
        await store.close()


class BarTracker:
    """A progress bar on stderr: records read, out of the records counted so far."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("starting", total=0)
        self._total = 0

    def add_total(self, records: int) -> None:
        self._total += records
        self._progress.update(self._task, total=self._total)

    def advance(self, records: int) -> None:
        self._progress.advance(self._task, records)

    def describe(self, text: str) -> None:
        self._progress.update(self._task, description=text)


def progress_bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    )


def write_json(path: Path | None, document: Any) -> None:
    if path is not None:
        path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def may_ask() -> bool:
    """Questions only for a person at a terminal; scripts and pipes are never asked."""
    return sys.stdin.isatty()
