"""`chroma-ha restore --from PATH [--to-seq N | --to-time T]`: a backup into empty instances, through a gateway.

The gateway is the one at `--url` (by default the `host` and `port` of the settings), serving the instances of
the settings (`--instance`, `--store`, as for `serve` and `verify`); `verify` compares them at the end. Writes use
`--token`, by default the admin token of the settings (it may write every tenant). Exit status: 0 when restored and
every instance agrees, 1 when the restore is refused or fails or `verify` finds a difference, 2 on a usage error.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from pathlib import Path

import click
from rich.console import Console

from ..backup.container import opened
from ..backup.format import check_files, load_manifest
from ..backup.restore import EntrySource, Restorer, RestoreReport
from ..catalog.survey import DEFAULT_PAGE
from ..errors import BackupError
from ..settings import Settings
from ..upstream.client import InstanceClient
from .context import BarTracker, progress_bar
from .options import load_settings, setting_options
from .secrets import secrets_kept
from .verify import print_report, run_verify


def parse_time(text: str) -> float:
    """Seconds since the epoch, or an ISO 8601 time (UTC when it names no zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither an ISO 8601 time nor seconds since the epoch") from None
    return (when if when.tzinfo else when.replace(tzinfo=datetime.UTC)).timestamp()


def target_seq(manifest: dict[str, object], entries: EntrySource, to_seq: int | None, to_time: float | None) -> int:
    consistent = int(str(manifest["consistent_seq"]))
    if to_time is not None:
        to_seq = entries.seq_at(to_time)
        if to_seq < consistent:
            raise BackupError(
                f"the backup is consistent from seq {consistent} on, and seq {to_seq} is the last logged at that "
                "time: restore a backup taken before it"
            )
    if to_seq is None:
        return entries.last
    if to_seq < consistent:
        raise BackupError(
            f"--to-seq {to_seq} is before seq {consistent}, where this backup becomes consistent (its snapshot "
            "was copied while writes went on): restore a backup taken before it"
        )
    if to_seq > entries.last:
        raise BackupError(f"the backup (with the archive given) holds entries up to seq {entries.last}, not {to_seq}")
    return to_seq


async def run_restore(
    settings: Settings,
    path: Path,
    url: str,
    token: str,
    archive: Path | None,
    to_seq: int | None,
    to_time: float | None,
) -> RestoreReport:
    with opened(path) as folder:
        manifest = load_manifest(folder)
        if not manifest["complete"]:
            raise BackupError(f"{path} is not complete: finish it with `chroma-ha backup --to {path}`")
        check_files(folder, manifest)
        entries = EntrySource(folder, manifest, archive)
        seq = target_seq(manifest, entries, to_seq, to_time)
        credentials = {url: (("authorization", f"Bearer {token}"),)} if token else None
        client = InstanceClient(settings.request_timeout, credentials=credentials)
        try:
            with progress_bar() as bar:
                return await Restorer(client, url, tracker=BarTracker(bar)).run(folder, manifest, entries, seq)
        finally:
            await client.close()


@click.command()
@click.option("--from", "source", type=click.Path(path_type=Path), required=True, help="The backup: folder or file")
@click.option("--to-seq", type=click.IntRange(min=0), default=None, help="Replay the log up to this seq")
@click.option("--to-time", default=None, help="Replay the entries logged up to this time (ISO 8601 or epoch seconds)")
@click.option(
    "--archive",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="A continuous archive (ARCHIVE_DIR) whose entries follow the backup's",
)
@click.option("--url", default=None, help="The gateway to restore through [default: http://HOST:PORT]")
@click.option("--token", default="", help="A token that writes every tenant [default: the ADMIN_TOKEN setting]")
@click.option(
    "--wait", type=float, default=120.0, show_default=True, help="Seconds verify waits for the log to be applied"
)
@setting_options
def restore(
    source: Path,
    to_seq: int | None,
    to_time: str | None,
    archive: Path | None,
    url: str | None,
    token: str,
    wait: float,
    **settings_flags: object,
) -> None:
    """Restore a backup into empty instances: its snapshot, then its log up to the point asked for; then verify."""
    if to_seq is not None and to_time is not None:
        raise click.UsageError("give --to-seq or --to-time, not both")
    settings = load_settings(**settings_flags)
    gateway = (url or f"http://{settings.http.host}:{settings.http.port}").rstrip("/")
    when = parse_time(to_time) if to_time is not None else None
    with secrets_kept(settings):
        started = time.monotonic()
        try:
            report = asyncio.run(
                run_restore(settings, source, gateway, token or settings.admin.token, archive, to_seq, when)
            )
        except BackupError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(
            f"restored {report.collections} collections and {report.records} records, then replayed "
            f"{report.entries} entries up to seq {report.to_seq} ({report.refused} answered 4xx as no-ops, "
            f"{report.skipped} of collections dropped later skipped); restore took {time.monotonic() - started:.1f} s"
        )
        verified = asyncio.run(run_verify(settings, DEFAULT_PAGE, wait))
        print_report(verified, Console(soft_wrap=True))
    raise SystemExit(0 if verified.ok else 1)
