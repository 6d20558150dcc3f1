"""`chroma-ha up`: the embedded default, a local cluster of Chroma servers behind the gateway, SQLite log."""

from __future__ import annotations

import signal
from pathlib import Path

import click

from ..local_cluster import ChromaServer
from ..settings import DEFAULT_PORT
from .options import load_settings
from .serve import run_gateway


class _Stopped(Exception):
    """Ctrl-C or SIGTERM: stop everything cleanly."""


@click.command()
@click.option("--instances", "count", type=int, default=2, show_default=True, help="How many Chroma servers")
@click.option(
    "--dir",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("chroma-ha-data"),
    show_default=True,
    help="Folder for the servers' data and the log",
)
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="Gateway port")
@click.option(
    "--chroma-port",
    type=int,
    default=None,
    help="Port of the first Chroma server (others follow); default: gateway port + 1",
)
def up(count: int, data_dir: Path, port: int, chroma_port: int | None) -> None:
    """Start COUNT local Chroma servers, the SQLite log and the gateway; Ctrl-C stops them all."""
    if count < 1:
        raise click.UsageError("bad setting instances: at least 1")
    first = chroma_port or port + 1
    data_dir = data_dir.resolve()
    servers = [ChromaServer(data_dir / f"instance-{n}", first + n) for n in range(count)]
    settings = load_settings(
        instances=tuple(s.url for s in servers), store=f"sqlite:///{data_dir / 'wal.db'}", port=port
    )

    def stopped(signum: int, frame: object) -> None:
        raise _Stopped  # while the servers start; once the gateway runs, it stops on the signal itself

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stopped)
    try:
        for server in servers:
            server.start(wait=False)
        for server in servers:
            server.wait_ready()
        click.echo(f"chroma-ha is up: {count} Chroma servers under {data_dir}")
        click.echo(f'Connect with: chromadb.HttpClient(host="127.0.0.1", port={port})')
        click.echo(f"Health: http://127.0.0.1:{port}/health   Log: http://127.0.0.1:{port}/wal/status")
        run_gateway(settings)
    except _Stopped:
        pass
    finally:
        for server in servers:
            server.stop()
        click.echo("chroma-ha stopped")
