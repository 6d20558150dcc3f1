"""`chroma-ha status`: a readable summary of a running gateway's `/status` (or the document itself, `--json`).

Exit status: 0 when the gateway says it is healthy, 1 when it is degraded, unhealthy or cannot be reached.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .remote import Remote, ago, print_json, remote_options

_STATUS_STYLE = {"healthy": "green", "degraded": "yellow", "unhealthy": "red"}


def print_status(document: dict[str, Any], console: Console) -> None:
    status = document.get("status", "?")
    log = document.get("log", {})
    console.print(
        f"[bold]{document.get('gateway_id', '?')}[/bold] chroma-ha {document.get('version', '?')}, "
        f"up {ago(document.get('uptime_seconds'))}: [{_STATUS_STYLE.get(status, 'white')}]{status}[/], "
        f"{document.get('healthy_instances', '?')} instances up; "
        f"log seq {log.get('oldest', '?')}..{log.get('head', '?')}"
    )
    for reason in document.get("reasons", []):
        console.print(f"  [yellow]-[/yellow] {reason}", highlight=False)
    table = Table(title_justify="left")
    for column in (
        "instance",
        "member",
        "up",
        "applier",
        "cursor",
        "pending",
        "lag",
        "heartbeat",
        "success",
        "last error",
    ):
        table.add_column(column, justify="right" if column in ("cursor", "pending", "lag", "heartbeat") else "left")
    for url, i in document.get("instances", {}).items():
        heartbeat = i.get("heartbeat_ms")
        table.add_row(
            url,
            str(i.get("member", "?")),
            "[green]yes[/green]" if i.get("up") else "[red]no[/red]",
            str(i.get("state", "?")),
            str(i.get("cursor", "?")),
            str(i.get("pending", "?")),
            ago(i.get("lag_seconds")),
            f"{heartbeat:.1f}ms" if heartbeat is not None else "-",
            f"{100 * i.get('success_rate', 0):.1f}%",
            str(i.get("last_error") or ""),
        )
    console.print(table)
    firing = document.get("alerts_firing", [])
    console.print(f"alerts firing: {', '.join(firing)}" if firing else "no alert firing")


@click.command()
@remote_options
@click.option("--json", "as_json", is_flag=True, help="Print /status as JSON")
def status(remote: Remote, as_json: bool) -> None:
    """A readable summary of a running gateway: its health, the log, each instance and the alerts firing."""
    document = remote.get("/status")
    if as_json:
        print_json(document)
    else:
        print_status(document, Console(soft_wrap=True))
    raise SystemExit(0 if document.get("status") == "healthy" else 1)
