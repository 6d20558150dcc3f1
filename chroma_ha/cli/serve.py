"""`chroma-ha serve`: run the gateway."""

from __future__ import annotations

import logging

import click
import uvloop

from ..app import Gateway, serve_until_signalled
from ..errors import SettingsError
from ..settings import Settings
from .options import deployment_options, load_settings


def run_gateway(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; a port that cannot be bound stops it with a message naming the setting."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        uvloop.run(serve_until_signalled(Gateway(settings)))
    except SettingsError as exc:
        raise click.UsageError(f"bad setting {exc}") from None


@click.command()
@deployment_options
@click.option("--host", default=None, help="Address to listen on [CHROMA_HA_HOST, default 127.0.0.1]")
@click.option("--port", type=int, default=None, help="Port to listen on [CHROMA_HA_PORT, default 8000]")
@click.option("--ack", type=click.Choice(["one", "all", "log"]), default=None, help="Ack policy [CHROMA_HA_ACK]")
@click.option("--write-timeout", type=float, default=None, help="Seconds a write waits for its ack policy")
def serve(**flags: object) -> None:
    """Run the gateway in front of the given Chroma instances."""
    run_gateway(load_settings(**flags))
