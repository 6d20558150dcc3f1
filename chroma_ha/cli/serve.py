"""`chroma-ha serve`: run the gateway."""

from __future__ import annotations

import logging

import click
import uvicorn

from ..app import Gateway
from ..gateway.http_protocol import JoinedWritesHttpProtocol
from ..gateway.server import build_asgi
from ..settings import Settings
from .options import deployment_options, load_settings


def run_gateway(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = build_asgi(Gateway(settings))
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, loop="uvloop", http=JoinedWritesHttpProtocol,
        log_level="warning", access_log=False, timeout_graceful_shutdown=5,
        # per-request work the gateway does not need: forwarded-for rewriting, server and date headers
        proxy_headers=False, server_header=False, date_header=False,
    )
    uvicorn.Server(config).run()


@click.command()
@deployment_options
@click.option("--host", default=None, help="Address to listen on [CHROMA_HA_HOST, default 127.0.0.1]")
@click.option("--port", type=int, default=None, help="Port to listen on [CHROMA_HA_PORT, default 8000]")
@click.option("--ack", type=click.Choice(["one", "all", "log"]), default=None, help="Ack policy [CHROMA_HA_ACK]")
@click.option("--write-timeout", type=float, default=None, help="Seconds a write waits for its ack policy")
def serve(**flags: object) -> None:
    """Run the gateway in front of the given Chroma instances."""
    run_gateway(load_settings(**flags))
