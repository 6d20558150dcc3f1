"""`chroma-ha bootstrap INSTANCE`: force a rebuild of one instance through the running gateway's admin API.

The gateway clears the instance and copies every collection from an in-sync instance, then applies the log from
the copy's seq, while writes go on. Exit status: 0 once the rebuild is done (or, with `--no-wait`, accepted),
1 when the gateway refuses it or it is not done within `--wait-timeout`.
"""

from __future__ import annotations

import time
from typing import Any

import click

from .remote import Remote, print_json, remote_options

POLL_S = 0.5


def _progress(b: dict[str, Any]) -> str:
    return (
        f"{b['state']}: {b['collections_done']}/{b['collections_total']} collections, "
        f"{b['records_copied']}/{b['records_total']} records from {b['source'] or '?'}"
    )


@click.command()
@click.argument("instance")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the rebuild is done")
@click.option(
    "--wait-timeout",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="Seconds to wait for the rebuild",
)
@click.option("--json", "as_json", is_flag=True, help="Print the final bootstrap status as JSON")
@remote_options
def bootstrap(instance: str, wait: bool, wait_timeout: float, as_json: bool, remote: Remote) -> None:
    """Rebuild INSTANCE (its URL as the gateway knows it) from an in-sync instance, while writes go on."""
    instance = instance.rstrip("/")
    status, document = remote.call("POST", "/instances/bootstrap", {"instance": instance})
    if status != 202:
        raise click.ClickException(f"the gateway refused: {document.get('message', document)}")
    requested_at = float(document["requested_at"])
    if not as_json:
        click.echo(f"rebuild of {instance} requested (copying from one of {', '.join(document['sources'])})")
    if not wait:
        if as_json:
            print_json(document)
        return
    deadline, last = time.monotonic() + wait_timeout, ""
    while time.monotonic() < deadline:
        wal = remote.get("/wal/status")
        b = (wal.get("bootstrap") or {}).get(instance)
        applier = wal["instances"].get(instance, {}).get("state")
        if b and b["started_at"] >= requested_at - 1:
            shown = _progress(b)
            if shown != last and not as_json:
                click.echo(shown)
            last = shown
            if b["state"] == "done" and applier != "bootstrapping":
                if as_json:
                    print_json(b)
                else:
                    click.echo(
                        f"{instance} rebuilt: {b['records_copied']} records; "
                        f"it applies the log from seq {b['start_seq']}"
                    )
                return
            if b["state"] == "failed" and not as_json:
                click.echo(f"attempt failed ({b['error']}); the gateway tries again")
        time.sleep(POLL_S)
    raise click.ClickException(
        f"the rebuild of {instance} was not done within {wait_timeout:g}s (last: {last or 'not started'})"
    )
