"""Fixtures of the deployment tests: a Docker daemon (started when none runs), and the images, built once a session
on a local Debian base (tests/deploy/images.py) and found again by their content hash in later sessions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version

import pytest

from tests.deploy import images
from tests.deploy.docker import Daemon


@pytest.fixture(scope="session")
def docker_daemon() -> Iterator[Daemon]:
    daemon = Daemon()
    daemon.ensure()
    yield daemon
    daemon.stop()


@dataclass(frozen=True)
class Images:
    base: str
    gateway: str
    chroma: str
    postgres: str
    haproxy: str


@pytest.fixture(scope="session")
def base_image(docker_daemon: Daemon) -> str:
    return images.base_image()


@pytest.fixture(scope="session")
def gateway_image(base_image: str) -> str:
    started = time.monotonic()
    built = images.gateway_image(base_image)
    if built.built:
        print(f"built {built.tag} in {time.monotonic() - started:.0f} s")
    return built.tag


@pytest.fixture(scope="session")
def stack_images(base_image: str, gateway_image: str) -> Images:
    """The gateway's image and stand-ins for the images deploy/compose.yaml names (same Chroma version)."""
    return Images(
        base=base_image,
        gateway=gateway_image,
        chroma=images.stand_in("chroma", base_image, CHROMADB_VERSION=version("chromadb")).tag,
        postgres=images.stand_in("postgres", base_image).tag,
        haproxy=images.stand_in("haproxy", base_image).tag,
    )
