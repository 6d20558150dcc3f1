"""The `chroma-ha` command group."""

from __future__ import annotations

import click

from .. import __version__
from .bench import bench
from .repair import repair
from .serve import serve
from .token import token
from .up import up
from .verify import verify


@click.group()
@click.version_option(__version__, prog_name="chroma-ha")
def cli() -> None:
    """chroma-ha: one highly available Chroma made of several ordinary Chroma servers."""


cli.add_command(bench)
cli.add_command(serve)
cli.add_command(up)
cli.add_command(verify)
cli.add_command(repair)
cli.add_command(token)
