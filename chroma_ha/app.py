"""The composition root: builds every part from the settings, starts and stops the long-lived tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from .catalog.ids import Catalog
from .errors import StoreError
from .gateway.consistency import LogIndex
from .gateway.deletes import DocumentDeletes, LimitedDeletes
from .gateway.proxy import InstanceClient
from .gateway.reads import ReadPath
from .gateway.writes import WritePath
from .health import HealthMonitor
from .ops.alerts import Alerts
from .ops.metrics import Metrics
from .ops.monitor import ResourceMonitor
from .replication.applier import Applier
from .replication.batching import Limits
from .replication.bootstrap import Bootstrapper
from .replication.incarnation import ensure_marker
from .replication.progress import Progress
from .replication.retention import Retention
from .settings import Settings
from .store import LogStore, open_store

log = logging.getLogger(__name__)

SQLITE_OWNER = "sqlite-gateway"  # one gateway per SQLite file: a restarted gateway takes its own leases back
INDEX_CHUNK = 5000


class Gateway:
    def __init__(self, settings: Settings, store: LogStore | None = None) -> None:
        self.settings = settings
        self.store = store or open_store(settings)
        self.client = InstanceClient(settings.request_timeout)
        self.catalog = Catalog(self.store)
        self.progress = Progress(settings.instances)
        self.index = LogIndex()
        self.health = HealthMonitor(
            settings.instances, self.client, interval=settings.health_interval,
            timeout=settings.health_timeout, rise=settings.health_rise, fall=settings.health_fall,
        )
        self.alerts = Alerts(
            slack_webhook=settings.slack_webhook, alert_webhook=settings.alert_webhook,
            gateway_id=settings.gateway_id, dedup_window=settings.alert_dedup_window,
            min_interval=settings.alert_min_interval, rate_per_minute=settings.alert_rate_per_minute,
        )
        self.health.on_change(self.alerts.instance_changed)
        self.metrics = Metrics()
        self.limits = Limits(settings.batch_max_records, settings.batch_max_bytes)
        owner = settings.gateway_id if settings.is_postgres else SQLITE_OWNER
        self.bootstrap = Bootstrapper(
            store=self.store, catalog=self.catalog, client=self.client, health=self.health,
            progress=self.progress, appliers=lambda: self.appliers,
        )
        self.retention = Retention(self.store, settings.instances, settings.retention)
        self.appliers = {
            instance: Applier(
                instance, store=self.store, catalog=self.catalog, client=self.client, health=self.health,
                progress=self.progress, limits=lambda: self.limits, owner=owner,
                poll_interval=settings.poll_interval, backoff_base=settings.backoff_base,
                backoff_cap=settings.backoff_cap, lease_ttl=settings.lease_ttl,
                on_divergence=self.alerts.divergence, bootstrapper=self.bootstrap,
            )
            for instance in settings.instances
        }
        self.writes = WritePath(
            store=self.store, catalog=self.catalog, progress=self.progress, health=self.health,
            index=self.index, ack=settings.ack, write_timeout=settings.write_timeout,
            poll_interval=settings.poll_interval,
            expander=LimitedDeletes(
                reads=lambda: self.reads,
                documents=DocumentDeletes(
                    key=settings.delete_expand_key, collections=settings.delete_expand_collections,
                    reads=lambda: self.reads,
                ) if settings.delete_expand_key else None,
            ),
        )
        self.reads = ReadPath(
            instances=settings.instances, client=self.client, catalog=self.catalog, health=self.health,
            progress=self.progress, index=self.index,
            weights={i: settings.weight(i) for i in settings.instances},
            read_wait=settings.read_wait, stale_reads=settings.stale_reads,
            catch_up=self._catch_up_index if settings.is_postgres else None,
        )
        self._index_lock = asyncio.Lock()
        self.monitor = ResourceMonitor(self)
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.store.open()
        await self.catalog.load()
        cursors = await self.store.cursors()
        for instance in self.settings.instances:
            if instance in cursors:
                self.progress.set_cursor(instance, cursors[instance].seq)
        await self._rebuild_index()
        await asyncio.gather(*(self.health.probe(i) for i in self.settings.instances))
        self._spawn("health", lambda: self.health.run(self._stop))
        for instance, applier in self.appliers.items():
            self._spawn(f"applier:{instance}", lambda a=applier: a.run(self._stop))  # type: ignore[misc]
        self._spawn("alerts", lambda: self.alerts.run(self._stop))
        self._spawn("monitor", lambda: self.monitor.run(self._stop))
        self._spawn("retention", lambda: self.retention.run(self._stop))
        if self.settings.is_postgres:
            self._spawn("cursor-follower", self._follow_remote_cursors)

    async def _rebuild_index(self) -> None:
        floor = min(self.progress.cursors.values(), default=0)
        entries, after = [], floor
        while True:
            chunk = await self.store.read(after, INDEX_CHUNK)
            if not chunk:
                break
            entries.extend(chunk)
            after = chunk[-1].seq
        self.index.rebuild(entries, floor)

    async def _catch_up_index(self) -> None:
        """With a shared store, note what other gateways appended up to the head as it is now."""
        head = await self.store.head()
        async with self._index_lock:
            while self.index.position < head:
                chunk = await self.store.read(self.index.position, INDEX_CHUNK)
                if not chunk:
                    break
                for entry in chunk:
                    self.index.note(entry.seq, entry)
                self.index.position = chunk[-1].seq

    def _spawn(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        self._tasks.append(asyncio.create_task(self._supervise(name, factory), name=name))

    async def _supervise(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run a long-lived task until stop; a crash is logged loudly and the task restarted."""
        while not self._stop.is_set():
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s failed; restarting it", name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)

    async def _follow_remote_cursors(self) -> None:
        """Cursors of instances whose applier runs in another gateway (shared PostgreSQL store)."""
        while not self._stop.is_set():
            try:
                cursors = await self.store.cursors()
            except StoreError:
                cursors = {}
            for instance, applier in self.appliers.items():
                if applier.state == "standby" and instance in cursors:
                    self.progress.set_cursor(instance, cursors[instance].seq)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.settings.poll_interval)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for applier in self.appliers.values():
            await applier._release_lease()
        await self.client.close()
        await self.store.close()

    async def reset(self) -> list[tuple[str, int, bytes]]:
        """Reset every instance, the catalog and the log (only when allow_reset is set)."""
        async with contextlib.AsyncExitStack() as paused:
            for applier in self.appliers.values():
                await paused.enter_async_context(applier.paused)
            answers = []
            for instance in self.settings.instances:
                response = await self.client.request(instance, "POST", "/api/v2/reset")
                answers.append((instance, response.status, response.body))
            await self.store.reset()
            self.catalog.clear()
            self.progress.clear_outcomes()
            head = await self.store.head()
            for instance, applier in self.appliers.items():
                marker = await ensure_marker(self.client, instance)
                assert marker is not None
                await self.store.set_cursor(instance, head, marker.id)
                applier.cursor, applier.incarnation = head, marker
                self.progress.set_cursor(instance, head)
            self.index.rebuild([], head)
            return answers
