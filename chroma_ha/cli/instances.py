"""`chroma-ha instances list|add URL|remove URL`: change the instances of a running deployment through its admin API.

`add` records the instance as joining: the gateways copy it from an in-sync instance while writes go on and it
serves reads once caught up; with `--wait` the command shows its progress until it is active. `remove` drains the
instance (no new reads, its applier stopped) and forgets it; the last active instance is never removed. Exit status:
0 when done, 1 when the gateway refuses (its message says why) or `--wait` runs out.
"""

from __future__ import annotations

import time
from typing import Any

import click

from .remote import Remote, print_json, remote_options

POLL_S = 0.5


def _table(document: dict[str, Any]) -> None:
    click.echo(f"{'URL':40} {'STATE':9} {'UP':4} {'CURSOR':>9} {'LAG':>7}  APPLIER")
    for i in document["instances"]:
        up = "yes" if i["up"] else "no"
        click.echo(f"{i['url']:40} {i['state']:9} {up:4} {i['cursor']:>9} {i['lag']:>7}  {i['applier']}")
    click.echo(f"log head {document['head']}, membership version {document['version']}")


@click.group()
def instances() -> None:
    """List, add and remove the instances while the gateways serve."""


@instances.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the document as JSON")
@remote_options
def list_(as_json: bool, remote: Remote) -> None:
    """The instances with their membership state, health, cursor and lag."""
    document = remote.get("/instances")
    if as_json:
        print_json(document)
    else:
        _table(document)


@instances.command()
@click.argument("instance", metavar="URL")
@click.option("--wait/--no-wait", default=False, show_default=True, help="Wait until the instance is active")
@click.option("--wait-timeout", type=click.FloatRange(min=1), default=3600.0, show_default=True, help="Seconds to wait")
@remote_options
def add(instance: str, wait: bool, wait_timeout: float, remote: Remote) -> None:
    """Add the instance at URL: it joins, is copied and caught up, then serves reads."""
    added = remote.expect(202, "POST", "/instances", {"url": instance})
    url = added["url"]
    click.echo(f"{url} added: joining")
    if not wait:
        return
    deadline, last = time.monotonic() + wait_timeout, ""
    while time.monotonic() < deadline:
        row = next((i for i in remote.get("/instances")["instances"] if i["url"] == url), None)
        if row is None:
            raise click.ClickException(f"{url} is no longer an instance (removed meanwhile)")
        if row["state"] == "active":
            click.echo(f"{url} is active: it serves reads")
            return
        b = (remote.get("/wal/status").get("bootstrap") or {}).get(url)
        copy = f", copying {b['records_copied']}/{b['records_total']} records ({b['state']})" if b else ""
        shown = f"{row['state']}: applier {row['applier']}, cursor {row['cursor']}, {row['lag']} behind{copy}"
        if shown != last:
            click.echo(shown)
            last = shown
        time.sleep(POLL_S)
    raise click.ClickException(f"{url} was not active within {wait_timeout:g}s (last: {last or 'joining'})")


@instances.command()
@click.argument("instance", metavar="URL")
@remote_options
def remove(instance: str, remote: Remote) -> None:
    """Drain the instance at URL (no new reads), stop its applier and forget it."""
    removed = remote.expect(200, "POST", "/instances/remove", {"url": instance})
    click.echo(f"{removed['url']} removed (drained in {removed['drained_seconds']:g}s)")
