"""`chroma-ha wal`: the log of a running gateway, through its admin API: where it stands, the entries around a `seq`,
the divergences with their records, and a manual prune (which never removes an entry some instance still needs).
"""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .remote import Remote, ago, print_json, remote_options

_json_option = click.option("--json", "as_json", is_flag=True, help="Print the admin API's document as JSON")


def _outcome(outcome: dict[str, Any] | None) -> str:
    return f"{outcome['status']} from {outcome['instance']}" if outcome else "not applied yet"


@click.group()
def wal() -> None:
    """The write-ahead log of a running gateway: status, entries, divergences, prune."""


@wal.command("status")
@remote_options
@_json_option
def wal_status(remote: Remote, as_json: bool) -> None:
    """Head, oldest kept entry, and each instance's cursor and backlog; exit 1 while a divergence is unresolved."""
    document = remote.get("/wal/status")
    if as_json:
        print_json(document)
    else:
        console = Console(soft_wrap=True)
        console.print(
            f"log seq {document['oldest']}..{document['head']}, {document['state']}, "
            f"largest backlog {document['pending']} (oldest {ago(document['oldest_pending_age_seconds'])}), "
            f"{document['divergence_count']} divergences"
        )
        table = Table()
        for column in ("instance", "up", "applier", "cursor", "pending", "lag"):
            table.add_column(column)
        for url, i in document["instances"].items():
            up = "[green]yes[/green]" if i["up"] else "[red]no[/red]"
            table.add_row(url, up, i["state"], str(i["cursor"]), str(i["pending"]), ago(i["lag_seconds"]))
        console.print(table)
    raise SystemExit(1 if document["divergence_count"] else 0)


@wal.command("entries")
@click.argument("seq", type=click.IntRange(min=1))
@click.option("--before", type=click.IntRange(0, 100), default=5, show_default=True, help="Entries before SEQ")
@click.option("--after", type=click.IntRange(0, 100), default=5, show_default=True, help="Entries after SEQ")
@remote_options
@_json_option
def wal_entries(seq: int, before: int, after: int, remote: Remote, as_json: bool) -> None:
    """The entries the log still holds around SEQ: what each did and how it was answered (bodies shortened)."""
    document = remote.get("/wal/entries", seq=seq, before=before, after=after)
    if as_json:
        print_json(document)
        return
    console = Console(soft_wrap=True)
    console.print(f"log seq {document['oldest']}..{document['head']}; entries {seq - before}..{seq + after}:")
    if not document["entries"]:
        console.print("none (pruned, or not written yet)")
    table = Table()
    for column in ("seq", "at", "op", "request", "bytes", "outcome"):
        table.add_column(column)
    for e in document["entries"]:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["created_at"]))
        marker = "[bold]" if e["seq"] == seq else ""
        request = f"{e['method']} {e['path']}" + (f"?{e['query']}" if e["query"] else "")
        table.add_row(f"{marker}{e['seq']}", at, e["op"], request, str(e["body_bytes"]), _outcome(e["outcome"]))
    console.print(table)


@wal.command("divergences")
@click.option("--instance", default="", help="Only this instance's divergences")
@click.option("--all", "include_resolved", is_flag=True, help="Also the resolved ones")
@remote_options
@_json_option
def wal_divergences(instance: str, include_resolved: bool, remote: Remote, as_json: bool) -> None:
    """Entries one instance accepted and another rejected, with the entry and both answers; exit 1 when any."""
    document = remote.get("/wal/divergences", instance=instance or None, include_resolved=include_resolved or None)
    if as_json:
        print_json(document)
    else:
        console = Console(soft_wrap=True)
        console.print(
            f"{document['count']} divergences"
            + (f" (the last {document['shown']})" if document["count"] > document["shown"] else "")
        )
        for d in document["divergences"]:
            entry = d["entry"]
            what = f"{entry['op']} {entry['method']} {entry['path']}" if entry else "(entry pruned)"
            resolved = f", resolved {time.ctime(d['resolved_at'])}" if d["resolved_at"] else ""
            console.print(f"[bold]seq {d['seq']}[/bold] on {d['instance']}: {what}{resolved}", highlight=False)
            console.print(f"  expected {d['expected_status']} ({_outcome(d['outcome'])})", highlight=False)
            if d["outcome"]:
                console.print(f"    {d['outcome']['body']}", highlight=False)
            console.print(f"  {d['instance']} answered {d['status']}:", highlight=False)
            console.print(f"    {d['body']}", highlight=False)
        if document["count"]:
            console.print("Repair an instance with `chroma-ha repair`, or rebuild it with `chroma-ha bootstrap`.")
    raise SystemExit(1 if document["count"] else 0)


@wal.command("prune")
@click.option("--upto", type=click.IntRange(min=1), default=None, help="Prune at most up to this seq")
@click.option(
    "--older-than",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Keep entries younger than this many seconds",
)
@remote_options
@_json_option
def wal_prune(upto: int | None, older_than: float, remote: Remote, as_json: bool) -> None:
    """Prune now the entries every instance has applied (never one an instance still needs), instead of waiting for
    the retention window."""
    document = remote.expect(200, "POST", "/wal/prune", {"upto": upto, "older_than": older_than})
    if as_json:
        print_json(document)
        return
    click.echo(
        f"pruned {document['pruned']} entries: the log now holds seq {document['oldest']}..{document['head']} "
        f"(every instance has applied up to {document['applied_everywhere_upto']})"
    )
