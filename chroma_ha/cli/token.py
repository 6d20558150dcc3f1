"""`chroma-ha token new`: mint a data-path token; it is shown once and only its hash is kept.

The token is printed on the first line of the output, alone, so a script can take it; the `[[token]]` entry that
grants it follows (or, with `--file`, is appended to the token file, which is then checked whole before it is
written). The gateway takes a changed file on SIGHUP.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..gateway.tokens import ALL, TokenFileError, mint, parse_token_file, toml_entry


@click.group()
def token() -> None:
    """Tokens of the data path (see the README's Authentication section)."""


@token.command("new")
@click.option("--name", required=True, help="Who the token is: shown in auth/identity and in the log's entries")
@click.option("--tenant", "tenants", multiple=True, help="A tenant it may use (repeatable; default: every tenant)")
@click.option(
    "--database", "databases", multiple=True, help="A database it may use in those tenants (repeatable; default: all)"
)
@click.option("--read-only", is_flag=True, help="Reads only (default: read and write)")
@click.option("--admin", is_flag=True, help="Also the admin routes and reset")
@click.option(
    "--file",
    "token_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the entry to this token file (created readable by its owner only) instead of printing it",
)
def new(
    name: str,
    tenants: tuple[str, ...],
    databases: tuple[str, ...],
    read_only: bool,
    admin: bool,
    token_file: Path | None,
) -> None:
    """Mint a token: print it once, with the TOML entry that holds its hash."""
    secret = mint()
    entry = toml_entry(name, secret, tenants or (ALL,), databases or (ALL,), write=not read_only, admin=admin)
    try:
        parse_token_file(entry)
    except TokenFileError as exc:
        raise click.UsageError(str(exc).replace("token 1", "--name", 1)) from None
    if token_file is None:
        click.echo(secret)
        click.echo()
        click.echo("# The token above is shown once and is not kept anywhere. Add this entry to the token file")
        click.echo("# (auth_tokens_file), then send the gateway SIGHUP:")
        click.echo(entry, nl=False)
        return
    _append(token_file, entry)
    click.echo(secret)
    click.echo(f"# shown once; its entry '{name}' is in {token_file}: send the gateway SIGHUP to take it", err=True)


def _append(path: Path, entry: str) -> None:
    """Append `entry` to the file, refusing (file unchanged) when the result would not be a valid token file."""
    try:
        before = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"cannot read {path}: {exc}") from None
    joined = before + ("\n" if before and not before.endswith("\n") else "") + ("\n" if before else "") + entry
    try:
        parse_token_file(joined)
    except TokenFileError as exc:
        raise click.UsageError(f"{path} would not be a valid token file with this entry: {exc}") from None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write(joined[len(before) :])
