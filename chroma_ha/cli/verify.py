"""`chroma-ha verify`: do all instances hold the same tenants, databases, collections and records?

Exit status: 0 when they agree, 1 on any difference (an unreachable instance included), 2 on a usage error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from rich.console import Console

from ..catalog.compare import Report
from ..catalog.drain import LogWatch, NotDrained
from ..catalog.survey import DEFAULT_PAGE, Survey
from ..settings import Settings
from .context import BarTracker, deployment, progress_bar, write_json
from .options import load_settings, setting_options
from .secrets import secrets_kept


async def run_verify(settings: Settings, page_size: int, wait: float) -> Report:
    async with deployment(settings, settings.request_timeout) as d:
        notes = []
        try:
            await LogWatch(d.store).wait_drained([i.url for i in d.instances], wait)
        except NotDrained as exc:
            notes.append(f"{exc}; records still being applied may show as differences")
        canonical = await d.canonical_ids()
        if canonical is None:
            notes.append("the store maps no collection: collection ids were not checked against the catalog")
        tenants = await d.tenants()
        with progress_bar() as bar:
            report = await Survey(d.instances, canonical=canonical, page_size=page_size, tracker=BarTracker(bar)).run(
                tenants
            )
        report.notes[:0] = notes
        return report


def print_report(report: Report, console: Console) -> None:
    records = sum(
        max((i.get("count", 0) for i in c["instances"].values()), default=0)  # type: ignore[union-attr]
        for c in report.collections
    )
    console.print(
        f"Compared {len(report.collections)} collections ({records} records) in tenants "
        f"{', '.join(report.scopes)} on {len(report.instances)} instances."
    )
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    if report.ok:
        console.print("[green]OK[/green]: every instance holds the same data.")
        return
    console.print(f"[red]{len(report.differences)} differences[/red]:")
    for difference in report.differences:
        console.print(f"  {difference.kind:<13} {difference.where}", highlight=False)
        for line in difference.lines():
            console.print(f"  {'':<13}   {line}", highlight=False)
    console.print("[red]DIFFERENT[/red]: run `chroma-ha repair` to bring an instance back to a reference.")


@click.command()
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the report as JSON to this file",
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 10000),
    default=DEFAULT_PAGE,
    show_default=True,
    help="Records per `get` request",
)
@click.option(
    "--wait",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for every instance to apply the whole log before comparing",
)
@setting_options
def verify(json_path: Path | None, page_size: int, wait: float, **settings_flags: object) -> None:
    """Compare every collection on every instance (with `get`, page by page); exit 1 on any difference."""
    settings = load_settings(**settings_flags)
    with secrets_kept(settings):
        report = asyncio.run(run_verify(settings, page_size, wait))
        print_report(report, Console(soft_wrap=True))
        write_json(json_path, report.as_dict())
    raise SystemExit(0 if report.ok else 1)
