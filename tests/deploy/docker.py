"""A Docker daemon and Compose for the deployment tests, installed and started when the machine has none.

`bash run.sh test` must set itself up on a fresh machine: Debian's `docker.io` and `docker-compose` are installed
when missing, and `dockerd` is started in the background when no daemon answers (and stopped at the end of the
session by whoever started it). The classic builder is used (`DOCKER_BUILDKIT=0`): it needs no plugin and no image
of its own from a registry.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

DOCKER_ENV = {**os.environ, "DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0"}
DAEMON_READY_S = 60.0


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, env=DOCKER_ENV, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def _apt_install(*packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env, stdout=subprocess.DEVNULL)


def _daemon_answers() -> bool:
    return shutil.which("docker") is not None and docker("info", check=False, timeout=30).returncode == 0


def compose_command() -> list[str]:
    """`docker compose` where the plugin exists, else Debian's `docker-compose`."""
    if shutil.which("docker") and docker("compose", "version", check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose") is None:
        _apt_install("docker-compose")
    return ["docker-compose"]


class Daemon:
    """The machine's Docker daemon: the one running, or one started here (stopped by `stop`)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.gettempdir()) / "chroma-ha-test-dockerd.log"

    def ensure(self) -> None:
        if _daemon_answers():
            return
        missing = [
            p for p, exe in (("docker.io", "dockerd"), ("docker-compose", "docker-compose")) if not shutil.which(exe)
        ]
        if missing:
            _apt_install(*missing)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["dockerd"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + DAEMON_READY_S
        while not _daemon_answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start; its log:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
