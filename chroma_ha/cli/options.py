"""Flags shared by every command that talks to a deployment; each maps onto a `Settings` field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..errors import SettingsError
from ..settings import Settings

F = Callable[..., Any]


def deployment_options(fn: F) -> F:
    """--instance, --store: the deployment to act on (or CHROMA_HA_INSTANCES, CHROMA_HA_STORE)."""
    fn = click.option("--store", default=None, help="sqlite:///file.db or postgresql://... [CHROMA_HA_STORE]")(fn)
    fn = click.option(
        "--instance", "instances", multiple=True,
        help="A Chroma server URL; repeat for each instance [CHROMA_HA_INSTANCES, comma-separated]",
    )(fn)
    return fn


def load_settings(**overrides: Any) -> Settings:
    if overrides.get("instances"):
        overrides["instances"] = tuple(overrides["instances"])
    try:
        settings = Settings.load(overrides)
    except SettingsError as exc:
        raise click.UsageError(f"bad setting {exc}") from None
    if not settings.instances:
        raise click.UsageError("bad setting instances: give at least one --instance URL (or CHROMA_HA_INSTANCES)")
    return settings
