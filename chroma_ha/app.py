"""The composition root: builds every part from the settings in dependency order, giving each exactly what it uses,
then starts, supervises and stops the long-lived tasks and the HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from .backup.segments import ARCHIVE_CURSOR, Archiver
from .catalog.ids import Catalog
from .cluster.health import HealthMonitor
from .cluster.limits import BatchLimits, Limits
from .cluster.membership import Members, seed_difference
from .cluster.progress import Progress
from .cluster.stats import ApplierStats, WriteStats
from .errors import InstanceError, SettingsError
from .gateway.admin import admin_actions, admin_routes, member_listing
from .gateway.api import ChromaApi
from .gateway.auth import Gate
from .gateway.consistency import LogFollower, LogIndex
from .gateway.deletes import DocumentDeletes, LimitedDeletes
from .gateway.http_server import HttpServer
from .gateway.reads import ReadPath
from .gateway.server import Routes
from .gateway.tokens import TokenFileError, parse_token_setting
from .gateway.writes import WritePath
from .ops.alerts import Alerts
from .ops.cluster_stats import ClusterStats
from .ops.metrics import Metrics
from .ops.monitor import ResourceMonitor
from .ops.pressure import Thresholds
from .ops.status import AdminDocuments
from .ops.view import ClusterView
from .replication.applier import Applier
from .replication.bootstrap import Bootstrapper
from .replication.cursor_follower import CursorFollower
from .replication.maintenance import Maintenance
from .replication.members import MemberActions, MemberSync
from .replication.retention import Retention
from .settings import Settings
from .store import LogStore, Roster, open_store
from .upstream.client import InstanceClient
from .upstream.incarnation import ensure_marker
from .upstream.transport import Transport

log = logging.getLogger(__name__)

SQLITE_OWNER = "sqlite-gateway"  # one gateway per SQLite file: a restarted gateway takes its own leases back
STOP_GRACE_S = 5.0


class Gateway:
    def __init__(self, settings: Settings, store: LogStore | None = None, transport: Transport | None = None) -> None:
        """`store` and `transport` default to what the settings name: the configured store, the network."""
        s = settings
        self.settings = s
        self.started_at = time.time()
        self.gate = _gate(s)  # who may do what; first, so that a bad token file stops the start before anything
        # what everything below talks through: the log store and the instances
        self.store = store or open_store(s)
        self.client = transport or InstanceClient(
            s.request_timeout, max_answer_bytes=s.max_answer_bytes, credentials=s.headers_for_instances()
        )
        # the shared view of the cluster; the members are the store's, known once it is open (start)
        self.catalog = Catalog(self.store)
        self.members = Members(Roster(0, ()))
        self.progress = Progress(())
        self.health = HealthMonitor(
            (),
            self.client,
            interval=s.health.interval,
            timeout=s.health.timeout,
            rise=s.health.rise,
            fall=s.health.fall,
        )
        self.limits = BatchLimits(Limits(s.replication.batch_max_records, s.replication.batch_max_bytes))
        self.applier_stats: dict[str, ApplierStats] = {}
        self.write_stats = WriteStats()
        self.alerts = Alerts(
            slack_webhook=s.alerts.slack_webhook,
            alert_webhook=s.alerts.webhook,
            gateway_id=s.gateway_id,
            dedup_window=s.alerts.dedup_window,
            min_interval=s.alerts.min_interval,
            rate_per_minute=s.alerts.rate_per_minute,
            claims=self.store,
        )
        self.health.on_change(self.alerts.instance_changed)
        self.appliers: dict[str, Applier] = {}  # one per member but the draining, started by `member_sync`
        self.owner = s.gateway_id if s.is_postgres else SQLITE_OWNER  # the name the appliers hold leases by
        self.bootstrap = Bootstrapper(
            store=self.store,
            catalog=self.catalog,
            client=self.client,
            health=self.health,
            progress=self.progress,
            sources=self.appliers,
            page_size=s.replication.bootstrap_page_size,
        )
        self._applier_tasks: dict[str, asyncio.Task[None]] = {}
        self.cursor_follower = CursorFollower(
            self.store,
            self.client,
            self.health,
            self.progress,
            standby=lambda: [i for i, applier in self.appliers.items() if applier.state == "standby"],
            poll_interval=s.replication.poll_interval,
        )
        self.member_sync = MemberSync(
            store=self.store,
            members=self.members,
            appliers=self.appliers,
            health=self.health,
            progress=self.progress,
            attach=self._attach,
            detach=self._detach,
            poll=s.replication.membership_poll,
            on_removed=self.alerts.instance_removed,
        )
        self.archiver = (
            Archiver(
                self.store,
                Path(s.replication.archive_dir),
                owner=s.gateway_id,
                interval=s.replication.archive_interval,
                lease_ttl=s.replication.lease_ttl,
            )
            if s.replication.archive_dir
            else None
        )
        self.retention = Retention(
            self.store,
            s.instances,
            s.replication.retention,
            rebuild_after=s.replication.rebuild_after,
            max_entries=s.replication.retention_max_entries,
            holders=(ARCHIVE_CURSOR,) if self.archiver is not None else (),
        )
        self.index = LogIndex()
        self.follower = LogFollower(self.store, self.index)
        self.reads = ReadPath(
            members=self.members,
            client=self.client,
            catalog=self.catalog,
            health=self.health,
            progress=self.progress,
            index=self.index,
            weights={i: s.weight(i) for i in s.instances},
            read_wait=s.consistency.read_wait,
            stale_reads=s.consistency.stale_reads,
            ignore_freshness=s.consistency.unsafe_reads_ignore_freshness,
            follower=self.follower if s.is_postgres else None,
        )
        documents = (
            DocumentDeletes(key=s.deletes.expand_key, collections=s.deletes.expand_collections, reads=self.reads)
            if s.deletes.expand_key
            else None
        )
        self.writes = WritePath(
            store=self.store,
            catalog=self.catalog,
            progress=self.progress,
            health=self.health,
            members=self.members,
            index=self.index,
            ack=s.consistency.ack,
            write_timeout=s.consistency.write_timeout,
            poll_interval=s.replication.poll_interval,
            stats=self.write_stats,
            expander=LimitedDeletes(self.reads, documents),
        )
        self.metrics = Metrics(self.applier_stats, self.write_stats, self.alerts, self.store.commit_stats)
        self.monitor = ResourceMonitor(
            members=self.members,
            interval=s.monitor.interval,
            ping_timeout=s.health.timeout,
            thresholds=Thresholds.from_settings(s.monitor),
            store=self.store,
            client=self.client,
            health=self.health,
            progress=self.progress,
            applier_stats=self.applier_stats,
            write_stats=self.write_stats,
            alerts=self.alerts,
            metrics=self.metrics,
            limits=self.limits,
        )
        view = ClusterView(
            settings=s,
            store=self.store,
            members=self.members,
            health=self.health,
            progress=self.progress,
            appliers=self.appliers,
            applier_stats=self.applier_stats,
            bootstrap_status=self.bootstrap.status_document,
            limits=self.limits,
            write_stats=self.write_stats,
            started_at=self.started_at,
            retention_status=self.retention.status_document,
            **({"archive_status": self.archiver.status_document} if self.archiver is not None else {}),
            freshness_questions=lambda: self.follower.catch_ups,
        )
        self.cluster_stats = ClusterStats(
            self.store, s.gateway_id, self.write_stats, self.applier_stats, self.started_at, s.monitor.interval
        )
        self.documents = AdminDocuments(view, self.monitor, self.alerts, self.metrics, self.cluster_stats)
        self.api = ChromaApi(
            reads=self.reads,
            writes=self.writes,
            observe=self.metrics.observe_request,
            reset=self.reset if s.admin.allow_reset else None,
            gate=self.gate,
        )
        self.maintenance = Maintenance(self.store, self.retention, self.appliers, self.health)
        self.member_actions = MemberActions(
            store=self.store,
            members=self.members,
            sync=self.member_sync,
            client=self.client,
            health=self.health,
            progress=self.progress,
            appliers=self.appliers,
            drain_timeout=s.request_timeout,
        )
        self.routes = Routes(
            self.api,
            admin_routes(self.documents, self.gate) | member_listing(self.member_actions, self.gate),
            admin_actions(self.maintenance, self.member_actions, self.gate),
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _applier(self, instance: str) -> Applier:
        s = self.settings
        return Applier(
            instance,
            store=self.store,
            catalog=self.catalog,
            client=self.client,
            health=self.health,
            progress=self.progress,
            limits=self.limits,
            stats=self.applier_stats.setdefault(instance, ApplierStats()),
            owner=self.owner,
            poll_interval=s.replication.poll_interval,
            backoff_base=s.replication.backoff_base,
            backoff_cap=s.replication.backoff_cap,
            lease_ttl=s.replication.lease_ttl,
            on_divergence=self.alerts.divergence,
            bootstrapper=self.bootstrap,
            shared_store=s.is_postgres,
        )

    def _attach(self, instance: str) -> None:
        """Start the applier of a member (`member_sync` decides when)."""
        applier = self.appliers[instance] = self._applier(instance)
        self._applier_tasks[instance] = self._spawn(f"applier:{instance}", applier.run)

    async def _detach(self, instance: str) -> None:
        """Stop the applier of a member that is draining or gone, between two of its store writes or calls."""
        task = self._applier_tasks.pop(instance)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self._tasks.remove(task)
        await self.appliers.pop(instance).close()
        self.applier_stats.pop(instance, None)

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        roster = await self._members()
        await self.catalog.load()
        cursors = {i: c for i, c in (await self.store.cursors()).items() if i in roster.urls}
        for instance in roster.urls:
            self.progress.watch(instance)
            self.health.watch(instance)
        await self.follower.rebuild(min((cursors[i].seq if i in cursors else 0 for i in roster.urls), default=0))
        await asyncio.gather(*(self.health.probe(i) for i in roster.urls))
        # what each instance that is up holds, if it is still the incarnation its cursor names
        await asyncio.gather(*(self.cursor_follower.take(c) for c in cursors.values()))
        self._spawn("health", self.health.run)
        await self.member_sync.sync()  # the members' appliers start here
        self._spawn("members", self.member_sync.run)
        self._spawn("alerts", self.alerts.run)
        self._spawn("monitor", self.monitor.run)
        self._spawn("retention", self.retention.run)
        if self.archiver is not None:
            self._spawn("archiver", self.archiver.run)
        self._spawn("cluster-stats", self.cluster_stats.run)
        if self.settings.is_postgres:
            self._spawn("cursor-follower", self.cursor_follower.run)

    async def _members(self) -> Roster:
        """The store's list of members, seeded from the `instances` setting when it has none yet; once it has one,
        it wins, and a difference from the setting is only reported."""
        configured = self.settings.instances
        if configured and await self.store.seed_members(configured):
            log.info("members seeded from the instances setting: %s", ", ".join(configured))
        roster = await self.store.members()
        difference = seed_difference(configured, roster)
        if difference:
            log.warning(
                "the instances setting differs from the store's list of members, which wins (change it with "
                "`chroma-ha instances add|remove`): configured but not members: %s; members not configured: %s",
                ", ".join(difference.only_configured) or "none",
                ", ".join(difference.only_stored) or "none",
            )
        return roster

    def _spawn(self, name: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> asyncio.Task[None]:
        task = asyncio.create_task(self._supervise(name, run), name=name)
        self._tasks.append(task)
        return task

    async def _supervise(self, name: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Run a long-lived task until stop; a crash is logged loudly and the task restarted."""
        while not self._stop.is_set():
            try:
                await run(self._stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s failed; restarting it", name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for applier in self.appliers.values():
            await applier.close()
        await self.client.close()
        await self.store.close()

    async def serve(self, stop: asyncio.Event, *, on_ready: Callable[[], None] | None = None) -> None:
        """Start, answer on the configured host and port until `stop` is set, then stop gracefully."""
        settings = self.settings
        await self.start()
        http = settings.http
        server = HttpServer(
            self.routes,
            max_body_bytes=http.max_body_bytes,
            idle_timeout=http.idle_timeout,
            head_timeout=http.head_timeout,
            send_timeout=http.send_timeout,
            max_connections=http.max_connections,
        )
        try:
            try:
                await server.start(settings.http.host, settings.http.port)
            except OSError as exc:
                where = f"{settings.http.host}:{settings.http.port}"
                raise SettingsError("port", f"cannot listen on {where}: {exc.strerror or exc}") from exc
            log.info("gateway listening on http://%s:%d", settings.http.host, settings.http.port)
            if on_ready is not None:
                on_ready()
            await stop.wait()
        finally:
            await server.stop(STOP_GRACE_S)
            await self.stop()

    def _rebuild(self, reset: list[tuple[str, int, bytes]]) -> None:
        """The instances a stopped reset did reset are rebuilt from the kept log by their appliers."""
        for instance, _, _ in reset:
            self.appliers[instance].recheck()

    async def reset(self) -> list[tuple[str, int, bytes]]:
        """Reset every instance in turn, then the catalog and the log (only when allow_reset is set). The first
        instance that refuses or cannot be reached stops it with the log kept: the instances reset before it
        are rebuilt from the log, as any wiped instance is, and hold nothing meanwhile (their cursors are held)."""
        async with contextlib.AsyncExitStack() as paused:
            for applier in self.appliers.values():
                await paused.enter_async_context(applier.pause())
            answers: list[tuple[str, int, bytes]] = []
            for instance in list(self.appliers):
                try:
                    response = await self.client.request(instance, "POST", "/api/v2/reset", idempotent=True)
                except InstanceError:
                    self._rebuild(answers)
                    raise
                answers.append((instance, response.status, response.body))
                if not response.ok:
                    self._rebuild(answers[:-1])
                    return answers
            await self.store.reset()
            self.catalog.clear()
            self.progress.clear_outcomes()
            head = await self.store.head()
            for instance, applier in self.appliers.items():
                marker = await ensure_marker(self.client, instance)
                assert marker is not None
                await applier.reset_to(head, marker)
            self.index.rebuild([], head)
            return answers


def _gate(settings: Settings) -> Gate:
    """Who may do what, from the auth and admin settings; a bad token file or setting stops the start."""
    try:
        fixed = parse_token_setting(settings.auth.tokens)
    except TokenFileError as exc:
        raise SettingsError("auth_tokens", str(exc)) from None
    return Gate(admin_token=settings.admin.token, tokens_file=settings.auth.tokens_file, tokens=fixed)


async def serve_until_signalled(gateway: Gateway) -> None:
    """`Gateway.serve`, stopped by SIGINT or SIGTERM; SIGHUP reloads the token file."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, gateway.gate.reload)
    try:
        await gateway.serve(stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)
