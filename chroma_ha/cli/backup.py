"""`chroma-ha backup --to PATH`: a consistent backup of the deployment; `backup --check PATH` verifies one.

It runs with the gateway's settings (`--store`, `--instance`, like `verify`): a backup needs the log's entries with
their payloads, which only the store holds, and one instance to page through, which the gateway's read path
(any eligible instance per request) cannot promise. Exit status: 0 when the backup is complete (or checks out),
1 when it cannot be taken or is corrupted, 2 on a usage error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from ..backup.container import is_archive_file, opened, pack, staging
from ..backup.format import check_files, load_manifest
from ..backup.snapshot import PAGE_SIZE, BackupTaker
from ..errors import BackupError
from ..settings import Settings
from .context import BarTracker, deployment, progress_bar
from .options import load_settings, setting_options
from .secrets import secrets_kept


async def run_backup(settings: Settings, target: Path, page_size: int) -> tuple[dict[str, Any], bool]:
    """The manifest of the complete backup, and whether this run resumed one a previous run left."""
    folder = staging(target)
    if is_archive_file(target) and target.exists():
        return load_manifest_of(target), False
    async with deployment(settings, settings.request_timeout) as d:
        with progress_bar() as bar:
            taker = BackupTaker(
                store=d.store,
                client=d.client,
                instances=[i.url for i in d.instances],
                folder=folder,
                page_size=page_size,
                tracker=BarTracker(bar),
            )
            manifest = await taker.run()
    if is_archive_file(target):
        pack(folder, target)
    return manifest, taker.resumed


def load_manifest_of(path: Path) -> dict[str, Any]:
    """The manifest of a complete backup, every file checked against it."""
    with opened(path) as folder:
        manifest = load_manifest(folder)
        if not manifest["complete"]:
            raise BackupError(f"{path} is not complete: run `chroma-ha backup --to {path}` again to finish it")
        check_files(folder, manifest)
        return manifest


def describe(manifest: dict[str, Any]) -> str:
    records = sum(c["records"] for c in manifest["collections"] if c["state"] == "done")
    entries = sum(f["count"] for name, f in manifest["files"].items() if name.startswith("log/"))
    return (
        f"{len([c for c in manifest['collections'] if c['state'] == 'done'])} collections, {records} records "
        f"from {manifest['source']} (from seq {manifest['start_seq']}, consistent at seq "
        f"{manifest['consistent_seq']}), {entries} log entries up to seq {manifest['end_seq']}"
    )


@click.command()
@click.option(
    "--to", "to", type=click.Path(path_type=Path), default=None, help="A folder, or a file ending .tar or .tar.gz"
)
@click.option(
    "--check",
    "check_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Verify the backup at this path against its manifest instead of taking one",
)
@click.option(
    "--page-size", type=click.IntRange(1, 10000), default=PAGE_SIZE, show_default=True, help="Records per request"
)
@setting_options
def backup(to: Path | None, check_path: Path | None, page_size: int, **settings_flags: object) -> None:
    """Back up every tenant, database and collection, and the log after the snapshot; resumable."""
    if (to is None) == (check_path is None):
        raise click.UsageError("give either --to PATH (take a backup) or --check PATH (verify one)")
    try:
        if check_path is not None:
            manifest = load_manifest_of(check_path)
            click.echo(f"{check_path}: OK, {len(manifest['files'])} files match the manifest: {describe(manifest)}")
            return
        assert to is not None
        settings = load_settings(**settings_flags)
        with secrets_kept(settings):
            manifest, resumed = asyncio.run(run_backup(settings, to, page_size))
            click.echo(f"backup in {to}{' (resumed)' if resumed else ''}: {describe(manifest)}")
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
