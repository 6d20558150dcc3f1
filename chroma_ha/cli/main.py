"""The `chroma-ha` command group."""

from __future__ import annotations

import click

from .. import __version__
from .backup import backup
from .bench import bench
from .bootstrap import bootstrap
from .check import check
from .instances import instances
from .repair import repair
from .restore import restore
from .serve import serve
from .status import status
from .token import token
from .torture import torture
from .up import up
from .verify import verify
from .wal import wal


@click.group()
@click.version_option(__version__, prog_name="chroma-ha")
def cli() -> None:
    """chroma-ha: one highly available Chroma made of several ordinary Chroma servers."""


cli.add_command(bench)
cli.add_command(serve)
cli.add_command(up)
cli.add_command(verify)
cli.add_command(repair)
cli.add_command(check)
cli.add_command(status)
cli.add_command(wal)
cli.add_command(bootstrap)
cli.add_command(instances)
cli.add_command(token)
cli.add_command(torture)
cli.add_command(backup)
cli.add_command(restore)
