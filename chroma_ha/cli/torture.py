"""`chroma-ha torture`: a recorded history under faults, checked; exits 1 on any anomaly."""

from __future__ import annotations

import shutil
import signal
import tempfile
from pathlib import Path

import click

from ..errors import SettingsError
from ..settings import definition


def _settings(pairs: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise click.UsageError(f"bad gateway-setting: expected NAME=VALUE, got {pair!r}")
        try:
            definition(name)
        except SettingsError as exc:
            raise click.UsageError(f"bad gateway-setting: {exc}") from None
        found[name] = value
    return found


@click.command()
@click.option("--duration", type=click.FloatRange(min=1), default=120.0, show_default=True, help="Seconds of load")
@click.option("--seed", type=int, default=None, help="Replay this seed's schedule (default: a fresh one, printed)")
@click.option(
    "--store",
    type=click.Choice(["sqlite", "postgres"]),
    default="sqlite",
    show_default=True,
    help="The log: a SQLite file, or a throwaway PostgreSQL started for the run",
)
@click.option("--gateways", type=click.IntRange(min=1), default=1, show_default=True, help="Gateway processes")
@click.option("--instances", type=click.IntRange(min=2), default=2, show_default=True, help="Chroma servers")
@click.option("--writers", type=click.IntRange(min=1), default=4, show_default=True, help="Writer threads")
@click.option("--readers", type=click.IntRange(min=1), default=4, show_default=True, help="Reader threads")
@click.option("--no-faults", is_flag=True, help="The workload alone, without the nemesis")
@click.option(
    "--gateway-setting",
    "gateway_settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="A gateway setting for this run, e.g. unsafe_reads_ignore_freshness=true; repeatable",
)
@click.option(
    "--dir",
    "work_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the cluster's data, logs and the history in this folder (default: a temporary folder; the history "
    "is kept when anomalies are found)",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the report as JSON to this file",
)
@click.option(
    "--check",
    "check_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Check a recorded history file again, offline, instead of running",
)
def torture(
    duration: float,
    seed: int | None,
    store: str,
    gateways: int,
    instances: int,
    writers: int,
    readers: int,
    no_faults: bool,
    gateway_settings: tuple[str, ...],
    work_dir: Path | None,
    json_path: Path | None,
    check_path: Path | None,
) -> None:
    """Writers and readers through the gateways while a seeded nemesis kills, wipes, freezes and cuts off
    instances, gateways and the store; every operation recorded and checked."""
    import orjson

    from ..torture import TortureConfig, check, load, run_torture
    from ..torture.report import as_dict, render

    if check_path is not None:
        report = check(load(check_path))
    else:
        config = TortureConfig(
            duration=duration,
            seed=seed,
            store=store,
            gateways=gateways,
            instances=instances,
            writers=writers,
            readers=readers,
            faults=() if no_faults else None,
            gateway_settings=_settings(gateway_settings),
        )
        own_dir = work_dir is None
        folder = Path(tempfile.mkdtemp(prefix="chroma-ha-torture-")) if own_dir else work_dir.resolve()  # type: ignore[union-attr]
        # SIGTERM stops the run as Ctrl-C does, so the cluster it started is stopped too, not left running.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        report = run_torture(config, folder, say=lambda m: click.echo(m, err=True))
        if own_dir and report.ok:
            shutil.rmtree(folder, ignore_errors=True)
            report.notes["history"] = None
    click.echo(render(report))
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(as_dict(report), option=orjson.OPT_INDENT_2) + b"\n")
        click.echo(f"JSON report: {json_path}", err=True)
    if not report.ok:
        raise SystemExit(1)
