"""Container images for the deployment tests, built here: no registry of images is reachable from this machine.

One base for every image: Debian's `debootstrap --variant=minbase` of the host's own release, from the host's own
apt mirror (read from its apt sources at run time, never written in the project), with python3 and the host's CA
bundle, brought in by `docker import`. On it: the project's own Dockerfile (`--build-arg BASE=...`), and stand-ins
for the images `deploy/compose.yaml` names, each from Debian's package or from the pip package of the same version.

Each image is tagged with a hash of everything it is made of, so a run that finds its tag reuses it: a second run
(and every test of one session) builds nothing. pip inside a build gets the host's index settings as build arguments
of the build stage, never part of an image's final stage or of a file of the project.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tests.deploy.docker import DOCKER_ENV, docker

ROOT = Path(__file__).resolve().parents[2]
RECIPES = Path(__file__).resolve().parent / "images"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
RECIPE_VERSION = "1"  # bump to rebuild every image when the way they are made changes
PREFIX = "chroma-ha-test"


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:16]


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def host_release() -> str:
    """The host's Debian codename (bookworm, trixie): the base is the same release."""
    text = Path("/etc/os-release").read_text()
    found = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", text, re.M)
    if found is None:
        raise RuntimeError("the host's /etc/os-release names no VERSION_CODENAME: not a Debian release")
    return found.group(1)


def host_debian_mirror() -> str:
    """The first Debian archive the host's apt uses (deb822 `.sources` files or one-line `sources.list`)."""
    candidates: list[str] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                (k.strip().lower(), v.strip())
                for k, _, v in (line.partition(":") for line in stanza.splitlines() if not line.startswith("#"))
                if v
            )
            if "deb" in fields.get("types", "").split() and "main" in fields.get("components", "").split():
                candidates += fields.get("uris", "").split()
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                words = line.split()
                if len(words) >= 4 and words[0] == "deb" and "main" in words[3:]:
                    candidates.append(next(w for w in words[1:] if not w.startswith("[")))
    for uri in candidates:
        if "security" not in uri:
            return uri
    raise RuntimeError("no Debian archive found in the host's apt sources")


def pip_build_args() -> dict[str, str]:
    """The host's pip index settings (config files and PIP_* variables, as pip itself reads them) as build args.

    Local folders and file: indexes stay out: a build cannot see the host's disk. pip's CA bundle is the host's,
    which the base holds at the same path."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    values: dict[str, str] = {}
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        values[key.rsplit(".", 1)[-1]] = value.strip().strip("'\"")
    args: dict[str, str] = {}
    for key, arg in (("index-url", "PIP_INDEX_URL"), ("extra-index-url", "PIP_EXTRA_INDEX_URL")):
        urls = [u for u in values.get(key, "").split() if u.startswith(("http://", "https://"))]
        if urls:
            args[arg] = " ".join(urls)
    if values.get("trusted-host"):
        args["PIP_TRUSTED_HOST"] = values["trusted-host"]
    args["PIP_CERT"] = str(HOST_CA_BUNDLE)
    return args


def ensure_debootstrap() -> str:
    found = shutil.which("debootstrap")
    if found is None:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "debootstrap"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            stdout=subprocess.DEVNULL,
        )
        found = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    return found


def base_image() -> str:
    """The Debian base every test image is built on; built once, then found by its tag."""
    release, mirror = host_release(), host_debian_mirror()
    ca = HOST_CA_BUNDLE.read_bytes()
    tag = f"{PREFIX}/base:{_digest(RECIPE_VERSION, release, mirror, ' '.join(BASE_PACKAGES), ca)}"
    if image_exists(tag):
        return tag
    debootstrap = ensure_debootstrap()
    with tempfile.TemporaryDirectory(prefix="chroma-ha-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", release, str(rootfs), mirror],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # the host's certificate authorities: pip and apt inside the builds must trust what the host trusts
        (rootfs / "etc/ssl/certs/ca-certificates.crt").write_bytes(ca)
        for debs in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            debs.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "-", tag], stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL, env=DOCKER_ENV
        )
        assert tar.wait() == 0
    forget_older(tag)
    return tag


def _tree_digest(root: Path, files: Iterable[Path]) -> list[str]:
    return [f"{p.relative_to(root)}:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in sorted(files)]


def project_files() -> list[Path]:
    """What the project's .dockerignore lets into the build: the image changes when one of these does."""
    code = [p for p in (ROOT / "chroma_ha").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return [ROOT / "Dockerfile", ROOT / ".dockerignore", ROOT / "pyproject.toml", ROOT / "README.md", *code]


@dataclass(frozen=True)
class Built:
    tag: str
    built: bool  # False when an image of the same content was found


def build(name: str, context: Path, files: list[Path], args: dict[str, str]) -> Built:
    """`docker build` of `context` with `args`, tagged by the hash of its files and args; reused when present."""
    pip = pip_build_args()
    hashed = sorted(f"{k}={v}" for k, v in args.items())
    tag = f"{PREFIX}/{name}:{_digest(RECIPE_VERSION, *hashed, *_tree_digest(context, files))}"
    if image_exists(tag):
        return Built(tag, built=False)
    build_args = [x for k, v in {**pip, **args}.items() for x in ("--build-arg", f"{k}={v}")]
    result = docker("build", "--quiet", "--force-rm", "-t", tag, *build_args, str(context), check=False, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"docker build of {name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    forget_older(tag)
    return Built(tag, built=True)


def forget_older(tag: str) -> None:
    """Untag the other versions of this image (each change of the code makes one), so runs do not fill the disk."""
    repository = tag.rsplit(":", 1)[0]
    listed = docker("images", repository, "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
    for old in listed:
        if old != tag:
            docker("rmi", old, check=False)


def gateway_image(base: str) -> Built:
    """The project's own Dockerfile on the local base."""
    return build("gateway", ROOT, project_files(), {"BASE": base})


def stand_in(name: str, base: str, **args: str) -> Built:
    """A stand-in for one of compose's images: tests/deploy/images/<name>/ on the local base."""
    context = RECIPES / name
    files = [p for p in context.rglob("*") if p.is_file()]
    return build(name, context, files, {"BASE": base, **args})


def image_size_mb(tag: str) -> float:
    size = docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip()
    return int(size) / 1e6


def inspect(name: str) -> dict[str, Any]:
    """`docker inspect` of an image or a container."""
    found: list[dict[str, Any]] = orjson.loads(docker("inspect", name).stdout)
    return found[0]
