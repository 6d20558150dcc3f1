"""`chroma-ha repair`: bring divergent instances back to the state of an in-sync reference.

Runs next to a running gateway (the log must drain for the fix to start; see `chroma_ha.catalog.repair` for how it
avoids racing the appliers). Exit status: 0 when every target was repaired (or, with --dry-run, when the plan was
made), 1 when something could not be repaired, 2 on a usage error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from rich.console import Console

from ..catalog.drain import LogWatch
from ..catalog.repair import Repair, RepairResult
from ..settings import Settings
from .context import BarTracker, Deployment, deployment, may_ask, progress_bar, write_json
from .options import load_settings, setting_options
from .secrets import secrets_kept


async def choose_reference(d: Deployment) -> str:
    """The instance with no open divergence that has applied the most of the log."""
    diverged = {v.instance for v in await d.store.divergences()}
    cursors = await d.store.cursors()
    candidates = [i.url for i in d.instances if i.url not in diverged]
    if not candidates:
        raise click.UsageError("every instance has open divergences: name the in-sync one with --reference")
    return max(candidates, key=lambda url: cursors[url].seq if url in cursors else -1)


async def run_repair(
    settings: Settings,
    reference: str | None,
    targets: tuple[str, ...],
    *,
    dry_run: bool,
    assume_yes: bool,
    wait: float,
    console: Console,
) -> list[RepairResult]:
    async with deployment(settings, settings.request_timeout) as d:
        ref = d.instance(reference) if reference else d.instance(await choose_reference(d))
        chosen = [d.instance(t) for t in targets] if targets else [i for i in d.instances if i is not ref]
        if ref in chosen:
            raise click.UsageError("the reference cannot also be a target")
        if not chosen:
            raise click.UsageError("nothing to repair: there is only one instance")
        console.print(
            f"reference: {ref.url}; targets: {', '.join(t.url for t in chosen)}"
            + (" (dry run: nothing is changed)" if dry_run else "")
        )
        if not dry_run and not assume_yes and may_ask() and not click.confirm("Repair these targets?"):
            raise click.Abort()
        tenants = await d.tenants()
        watch = LogWatch(d.store)
        results = []
        for target in chosen:
            with progress_bar() as bar:
                repair = Repair(
                    ref,
                    target,
                    store=d.store,
                    watch=watch,
                    dry_run=dry_run,
                    drain_timeout=wait,
                    tracker=BarTracker(bar),
                )
                results.append(await repair.run(tenants))
        return results


def print_results(results: list[RepairResult], dry_run: bool, console: Console) -> None:
    for result in results:
        verb = "would take" if dry_run else "took"
        if not result.actions:
            console.print(f"{result.target}: already identical to {result.reference}")
        else:
            console.print(f"{result.target}: {verb} {len(result.actions)} actions to match {result.reference}:")
            for action in result.actions:
                console.print(f"  - {action.describe()}")
        for failure in result.failures:
            console.print(f"  [red]could not repair[/red] {failure}")


@click.command()
@click.option("--reference", default=None, help="The in-sync instance to copy from (default: chosen from the log)")
@click.option("--target", "targets", multiple=True, help="An instance to repair; repeat (default: all others)")
@click.option("--dry-run", is_flag=True, help="Only say what would be done")
@click.option("--yes", "assume_yes", is_flag=True, help="Do not ask for confirmation at a terminal")
@click.option(
    "--wait", type=float, default=60.0, show_default=True, help="Seconds to wait for the log to drain before each step"
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write what was done as JSON to this file",
)
@setting_options
def repair(
    reference: str | None,
    targets: tuple[str, ...],
    dry_run: bool,
    assume_yes: bool,
    wait: float,
    json_path: Path | None,
    **settings_flags: object,
) -> None:
    """Make target instances identical to a reference: copy what is missing or different, remove the rest."""
    settings = load_settings(**settings_flags)
    with secrets_kept(settings):
        console = Console(soft_wrap=True, highlight=False)
        results = asyncio.run(
            run_repair(
                settings,
                reference,
                targets,
                dry_run=dry_run,
                assume_yes=assume_yes,
                wait=wait,
                console=console,
            )
        )
        print_results(results, dry_run, console)
    write_json(
        json_path,
        [
            {
                "target": r.target,
                "reference": r.reference,
                "dry_run": dry_run,
                "ok": r.ok,
                "actions": [a.as_dict() for a in r.actions],
                "failures": r.failures,
            }
            for r in results
        ],
    )
    raise SystemExit(0 if all(r.ok for r in results) else 1)
