"""The backup format: a folder (or a `.tar` / `.tar.gz` of one) holding a manifest and data files.

Layout:

    manifest.json                 what the backup holds, every data file's sha256, and a checksum of itself
    records/<c>/<p>.json          page <p> of collection number <c>: {"ids", "embeddings", "metadatas", ...}
    log/<first>-<last>.jsonl      the log entries after the snapshot's start seq, one JSON object a line
    work/                         only while the backup is incomplete: the ids listed, for a re-run to resume

Embeddings are stored as base64 of little-endian float32 (what Chroma holds), every other column as Chroma's
`get` answers it. An entry line keeps the logged request as it came (method, path with canonical collection ids,
query, the logged headers, the body) with its seq and the time it was logged; entries never hold a credential
(the gateway logs only the content type and tenant headers, and the name of the token that wrote it).

Invariant: a file the manifest lists is whole and unchanged when its sha256 matches, and the manifest is the one
written when its own `checksum` (sha256 of its canonical JSON without that key) matches; `check` refuses any
backup where either fails, naming the file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from array import array
from pathlib import Path
from typing import Any

import orjson

from ..catalog.inventory import ALL_FIELDS, Records
from ..errors import BackupError
from ..store import Entry

FORMAT = "chroma-ha-backup"
VERSION = 1
MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Whole or not at all: a process killed mid-write leaves the previous file (or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def _canonical(document: dict[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in document.items() if k != "checksum"}, option=orjson.OPT_SORT_KEYS)


def write_checked(path: Path, document: dict[str, Any]) -> None:
    """A manifest written whole, with the checksum of the rest of it."""
    document["checksum"] = hashlib.sha256(_canonical(document)).hexdigest()
    write_atomic(path, orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def read_checked(path: Path, kind: str) -> dict[str, Any]:
    """A manifest of format `kind`, refused with the reason when it is not JSON, of another kind, or altered."""
    try:
        document = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        raise BackupError(f"{path} is corrupted: it is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != kind:
        raise BackupError(f"{path} is not a {kind} manifest")
    if document.get("checksum") != hashlib.sha256(_canonical(document)).hexdigest():
        raise BackupError(f"{path} is corrupted: its checksum does not match its content")
    return document


def save_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    write_checked(folder / MANIFEST, manifest)


def load_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.exists():
        raise BackupError(f"{folder} is not a backup: it has no {MANIFEST}")
    manifest = read_checked(path, FORMAT)
    if manifest.get("version") != VERSION:
        raise BackupError(f"{path} has format version {manifest.get('version')}; this gateway reads {VERSION}")
    return manifest


def record_file(manifest: dict[str, Any], folder: Path, relative: str, count: int) -> None:
    """Add a written data file to the manifest's list, with its checksum, size and record or entry count."""
    path = folder / relative
    manifest["files"][relative] = {"sha256": sha256_file(path), "bytes": path.stat().st_size, "count": count}


def check_files(folder: Path, manifest: dict[str, Any]) -> int:
    """Every listed file present and matching its sha256; the number checked. BackupError names the first bad one."""
    for relative, expected in sorted(manifest["files"].items()):
        path = folder / relative
        if not path.is_file():
            raise BackupError(f"{path} is missing from the backup")
        if sha256_file(path) != expected["sha256"]:
            raise BackupError(f"{path} is corrupted: its sha256 does not match the manifest")
    return len(manifest["files"])


# --- records ---------------------------------------------------------------------------------------------------


def _pack(vector: list[float] | None) -> str | None:
    if vector is None:
        return None
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def encode_records(records: Records) -> bytes:
    columns: dict[str, Any] = {name: getattr(records, name) for name in ALL_FIELDS}
    columns["embeddings"] = [_pack(v) for v in records.embeddings]
    return orjson.dumps({"ids": records.ids, **columns})


def add_payload(data: bytes) -> tuple[bytes, int]:
    """The body of an `add` of a stored page, embeddings left as base64 float32 (as the official client sends
    them: Chroma decodes them itself), columns that are all null left out; and its number of records."""
    page = orjson.loads(data)
    body = {name: values for name, values in page.items() if any(v is not None for v in values)}
    return orjson.dumps({"ids": page["ids"], **body}), len(page["ids"])


# --- log entries -----------------------------------------------------------------------------------------------


def encode_entry(entry: Entry) -> bytes:
    """One line: the logged request and where it sits in the log; the body as text (it is JSON), else base64."""
    line: dict[str, Any] = {
        "seq": entry.seq,
        "created_at": entry.created_at,
        "op": entry.op,
        "method": entry.method,
        "path": entry.path,
        "query": entry.query,
        "headers": entry.headers,
        "collection_id": entry.collection_id,
        "scope": entry.scope,
        "extra": entry.extra,
        "author": entry.author,
        "outcome": entry.outcome.status if entry.outcome is not None else None,
    }
    try:
        line["body"] = entry.body.decode("utf-8")
    except UnicodeDecodeError:
        line["body_b64"] = base64.b64encode(entry.body).decode("ascii")
    return orjson.dumps(line) + b"\n"


def entry_body(line: dict[str, Any]) -> bytes:
    if "body_b64" in line:
        return base64.b64decode(line["body_b64"])
    return str(line.get("body", "")).encode("utf-8")
