"""`chroma-ha serve`: run the gateway."""

from __future__ import annotations

import ipaddress
import logging
import sys

import click
import uvloop

from ..app import Gateway, serve_until_signalled
from ..errors import SettingsError, StoreError
from ..settings import Settings
from .options import load_settings, setting_options
from .secrets import secrets_kept

log = logging.getLogger(__name__)

OPEN_TO_THE_NETWORK = (
    "WARNING: the gateway listens on {host}, beyond this machine, and no tokens are configured: anyone who can "
    "reach it can read, write and delete every collection. Set auth_tokens_file (chroma-ha token new mints "
    "tokens) or listen on 127.0.0.1."
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def warn_if_open(settings: Settings) -> None:
    """Loudly, on stderr and in the log: a gateway reachable from the network that anyone may use."""
    if settings.auth.tokens_file or settings.auth.tokens or is_loopback(settings.http.host):
        return
    message = OPEN_TO_THE_NETWORK.format(host=settings.http.host)
    click.secho(message, fg="red", bold=True, err=True)
    sys.stderr.flush()
    log.warning(message)


def run_gateway(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; a port that cannot be bound stops it with a message naming the setting, a
    store that cannot be opened with one naming the store (never its password). Every line it prints, its log
    included, is scrubbed of the secrets in force."""
    with secrets_kept(settings):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        warn_if_open(settings)
        try:
            uvloop.run(serve_until_signalled(Gateway(settings)))
        except SettingsError as exc:
            raise click.UsageError(f"bad setting {exc}") from None
        except StoreError as exc:
            raise click.ClickException(f"cannot open the log store: {exc}") from None


@click.command()
@setting_options
def serve(**flags: object) -> None:
    """Run the gateway in front of the given Chroma instances; every setting is a flag or a CHROMA_HA_* variable."""
    run_gateway(load_settings(**flags))
