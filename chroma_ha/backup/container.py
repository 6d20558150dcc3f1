"""Where a backup lives: a folder, or a single `.tar` / `.tar.gz` file made of one.

An archive file is built from a staging folder beside it (`<PATH>.partial.d`), which a re-run resumes, and is
written whole under a temporary name, then renamed: a `PATH` that exists is always a complete backup.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import BackupError

_GZIP = (".tar.gz", ".tgz")


def is_archive_file(path: Path) -> bool:
    return path.name.endswith((".tar", *_GZIP))


def staging(path: Path) -> Path:
    """The folder a backup is written into: PATH itself, or the staging folder of an archive file."""
    return path.with_name(path.name + ".partial.d") if is_archive_file(path) else path


def pack(folder: Path, path: Path) -> None:
    """The folder as the archive file `path` (its files at the archive's top), then the folder removed."""
    partial = path.with_name(path.name + ".partial")
    with tarfile.open(partial, "w:gz" if path.name.endswith(_GZIP) else "w") as tar:
        for item in sorted(folder.rglob("*")):
            if item.is_file():
                tar.add(item, arcname=str(item.relative_to(folder)))
    with partial.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, path)
    shutil.rmtree(folder)


@contextlib.contextmanager
def opened(path: Path) -> Iterator[Path]:
    """The backup at `path` as a folder: itself, or an archive file unpacked into a temporary one."""
    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise BackupError(f"{path}: no such backup")
    if not is_archive_file(path):
        raise BackupError(f"{path} is neither a backup folder nor a .tar / .tar.gz file")
    with tempfile.TemporaryDirectory(prefix="chroma-ha-restore-") as unpacked:
        try:
            with tarfile.open(path) as tar:
                tar.extractall(unpacked, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BackupError(f"{path} is corrupted: {exc}") from None
        yield Path(unpacked)
