"""`chroma-ha bench`: start a local cluster, measure direct Chroma and the gateway side by side, report."""

from __future__ import annotations

import signal
from pathlib import Path

import click

from ..errors import SettingsError
from ..settings import definition


def _gateway_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.UsageError(f"bad setting gateway-setting: expected NAME=VALUE, got {pair!r}")
        try:
            env[definition(name.strip().lower()).variable] = value
        except SettingsError as exc:
            raise click.UsageError(f"bad setting gateway-setting: {exc}") from None
    return env


@click.command()
@click.option("--quick", is_flag=True, help="A smoke run of about ten seconds (tiny data, short windows)")
@click.option("--records", type=int, default=None, help="Records in the query collection [5000]")
@click.option("--dim", type=int, default=None, help="Embedding dimensions [128]")
@click.option(
    "--seconds",
    "throughput_seconds",
    type=float,
    default=None,
    help="Query throughput window per target and concurrency, in paired rounds of 0.25 s [10]",
)
@click.option(
    "--saturation-seconds",
    type=float,
    default=None,
    help="Closed-loop write window per side, in paired rounds of 1 s [8]",
)
@click.option("--lag-seconds", "paced_seconds", type=float, default=None, help="Paced write window for lag [12]")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the report as JSON to this file",
)
@click.option(
    "--dir",
    "work_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the cluster's data and logs in this folder (default: a temporary folder, removed)",
)
@click.option(
    "--gateway-setting",
    "gateway_settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="A gateway setting for this run, e.g. ack=all (becomes CHROMA_HA_ACK); repeatable",
)
@click.option(
    "--store",
    type=click.Choice(["sqlite", "postgres"]),
    default="sqlite",
    show_default=True,
    help="The log the gateways use: a SQLite file, or a PostgreSQL the run starts for itself (as the tests do)",
)
@click.option(
    "--gateways",
    type=click.IntRange(1, 8),
    default=1,
    show_default=True,
    help="Gateways on the one store, behind the bench's round-robin (more than one needs --store postgres); "
    "with several, reads of each other's writes are counted",
)
def bench(
    quick: bool,
    records: int | None,
    dim: int | None,
    throughput_seconds: float | None,
    saturation_seconds: float | None,
    paced_seconds: float | None,
    json_path: Path | None,
    work_dir: Path | None,
    gateway_settings: tuple[str, ...],
    store: str,
    gateways: int,
) -> None:
    """Benchmark the gateway against direct Chroma on a local 2-instance cluster; print PASS/MISS per target."""
    # Imported here: the load generator's dependencies (numpy, psutil) need not load for every other command.
    import orjson

    from ..bench import BenchConfig, render_table, run_bench
    from ..bench.prepare import BenchError

    try:
        config = (BenchConfig.quick() if quick else BenchConfig()).with_overrides(
            records=records,
            dim=dim,
            throughput_seconds=throughput_seconds,
            saturation_seconds=saturation_seconds,
            paced_seconds=paced_seconds,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if gateways > 1 and store != "postgres":
        raise click.UsageError("--gateways above 1 needs --store postgres: several gateways share only PostgreSQL")
    if work_dir is not None:
        work_dir = work_dir.resolve()
        work_dir.mkdir(parents=True, exist_ok=True)
    # SIGTERM stops the run as Ctrl-C does, so the cluster it started is stopped too, not left running.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        report = run_bench(
            config,
            work_dir,
            _gateway_env(gateway_settings),
            log=lambda m: click.echo(m, err=True),
            store=store,
            gateways=gateways,
        )
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render_table(report))
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        click.echo(f"JSON report: {json_path}", err=True)
