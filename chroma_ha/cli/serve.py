"""`chroma-ha serve`: run the gateway."""

from __future__ import annotations

import logging

import click
import uvloop

from ..app import Gateway, serve_until_signalled
from ..errors import SettingsError
from ..settings import Settings
from .options import load_settings, setting_options


def run_gateway(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; a port that cannot be bound stops it with a message naming the setting."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        uvloop.run(serve_until_signalled(Gateway(settings)))
    except SettingsError as exc:
        raise click.UsageError(f"bad setting {exc}") from None


@click.command()
@setting_options
def serve(**flags: object) -> None:
    """Run the gateway in front of the given Chroma instances; every setting is a flag or a CHROMA_HA_* variable."""
    run_gateway(load_settings(**flags))
