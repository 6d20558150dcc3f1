"""A flag for every setting, generated from its definition (`chroma_ha.settings.DEFINITIONS`), for the commands that
run or act on a deployment: `serve`, `verify`, `repair`.

Every flag defaults to None, so a flag not given leaves its variable (`CHROMA_HA_<NAME>`) or the default in force:
flags over environment over defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..errors import SettingsError
from ..settings import DEFINITIONS, Definition, OneOf, Settings

F = Callable[..., Any]

_CLICK_TYPES: dict[Any, click.ParamType] = {int: click.INT, float: click.FLOAT, str: click.STRING}


def setting_options(fn: F) -> F:
    """--instance, --store, --health-interval, ...: one flag per setting, in the order of the definitions."""
    for d in reversed(DEFINITIONS):
        fn = setting_flag(d)(fn)
    return fn


def setting_flag(d: Definition) -> Callable[[F], F]:
    help_text = f"{d.help} [{d.variable}, default {d.shown_default}]"
    if d.kind is bool:
        name = d.flag.removeprefix("--")
        return click.option(f"--{name}/--no-{name}", d.name, default=None, help=help_text)
    if d.repeatable:
        return click.option(d.flag, d.name, multiple=True, help=help_text)
    if isinstance(d.rule, OneOf):
        return click.option(d.flag, d.name, type=click.Choice(d.rule.choices), default=None, help=help_text)
    if d.kind in _CLICK_TYPES:
        return click.option(d.flag, d.name, type=_CLICK_TYPES[d.kind], default=None, help=help_text)
    # a tuple: comma-separated, read as its variable is
    return click.option(d.flag, d.name, default=None, metavar="LIST", help=help_text)


def load_settings(**flags: Any) -> Settings:
    """The settings from the flags given, over `CHROMA_HA_*` variables, over defaults; a bad one is a usage error."""
    try:
        settings = Settings.load(flags)
    except SettingsError as exc:
        raise click.UsageError(f"bad setting {exc}") from None
    if not settings.instances:
        raise click.UsageError("bad setting instances: give at least one --instance URL (or CHROMA_HA_INSTANCES)")
    return settings
