"""`chroma-ha check --url URL`: the acceptance run of a live deployment, from the outside.

Safe against production: it touches only a scratch collection of its own (a unique name), removes it afterwards, and
every wait is bounded by `--timeout`. Exit status: 0 when every check passes, 1 when any fails, 2 on a usage error.
"""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import urlsplit

import click
import orjson
from rich.console import Console
from rich.table import Table

from ..ops.acceptance import FAIL, PASS, CheckReport
from ..ops.acceptance_run import run_check
from .remote import resolve_admin_token

_STYLE = {PASS: "[green]pass[/green]", FAIL: "[red]FAIL[/red]"}


def print_report(report: CheckReport, console: Console) -> None:
    table = Table(title=f"chroma-ha check {report.url}", title_justify="left")
    table.add_column("check")
    table.add_column("result")
    table.add_column("seconds", justify="right")
    table.add_column("detail", overflow="fold")
    for r in report.results:
        table.add_row(r.name, _STYLE.get(r.status, f"[yellow]{r.status}[/yellow]"), f"{r.seconds:.3f}", r.detail)
    console.print(table)
    if report.instances_at_fault:
        console.print(f"[red]instances at fault[/red]: {', '.join(report.instances_at_fault)}")
    failed = [r.name for r in report.results if r.failed]
    if failed:
        console.print(f"[red]FAILED[/red]: {len(failed)} of {len(report.results)} checks ({', '.join(failed)})")
    else:
        console.print(f"[green]OK[/green]: {len(report.results)} checks, none failed")


def _checked_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{url!r} is not an http:// or https:// URL", param_hint="--url")
    return url.rstrip("/")


@click.command()
@click.option("--url", required=True, help="The gateway (or the load balancer in front of the gateways)")
@click.option("--admin-token", default="", help="The admin token, when one is set [default: CHROMA_HA_ADMIN_TOKEN]")
@click.option("--token", default="", help="A data token, sent as Authorization: Bearer on Chroma's routes")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds any request, and the wait for every instance to apply the writes, may take",
)
@click.option("--tenant", default="default_tenant", show_default=True, help="Tenant of the scratch collection")
@click.option("--database", default="default_database", show_default=True, help="Database of the scratch collection")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table")
def check(url: str, admin_token: str, token: str, timeout: float, tenant: str, database: str, as_json: bool) -> None:
    """Prove a running deployment works, from the outside: health, the admin API, metrics, auth, and a scratch
    collection's writes, replication, query and deletes. Exit 0 only when every check passes."""
    report = asyncio.run(
        run_check(
            _checked_url(url),
            timeout=timeout,
            admin_token=resolve_admin_token(admin_token),
            token=token,
            tenant=tenant,
            database=database,
        )
    )
    if as_json:
        sys.stdout.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print_report(report, Console(soft_wrap=True))
    raise SystemExit(0 if report.ok else 1)
