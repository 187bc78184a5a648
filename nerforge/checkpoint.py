"""Checkpoint folders: which one to resume from, and whether its files are the ones that were written.

A checkpoint `OUT/checkpoints/step-NNNNNN/` is complete when it carries `trainer_state.json` and
`manifest.json`, the size and sha256 of every other file in it, written last (then the folder is renamed
from its temporary name). `--resume-from-checkpoint latest` takes the newest checkpoint whose files
match their manifest and warns about each newer one it skips (a truncated or bit-flipped file, a file
missing); a checkpoint named explicitly must verify, or the run stops (exit 2).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

from nerforge.atomic import write_json_atomic

STATE_FILE = "trainer_state.json"
MANIFEST_FILE = "manifest.json"
_CHUNK = 1 << 20


class CheckpointInvalid(Exception):
    """A checkpoint folder whose files do not match its manifest (the message names the file)."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)


def write_manifest(folder: Path) -> dict:
    """Record the size and sha256 of every file in `folder` in `folder/manifest.json`."""
    files = {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": sha256_of(p)} for p in _files(folder)
    }
    manifest = {"format": 1, "files": files}
    write_json_atomic(folder / MANIFEST_FILE, manifest)
    return manifest


def verify(folder: Path) -> None:
    """Raise CheckpointInvalid naming the first file that is missing, of the wrong size or content."""
    folder = Path(folder)
    if not (folder / STATE_FILE).is_file():
        raise CheckpointInvalid(f"{folder}: not a complete checkpoint (no {STATE_FILE})")
    try:
        files = json.loads((folder / MANIFEST_FILE).read_text())["files"]
    except FileNotFoundError:
        raise CheckpointInvalid(f"{folder}: not a complete checkpoint (no {MANIFEST_FILE})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointInvalid(f"{folder / MANIFEST_FILE}: unreadable manifest ({e})") from None
    # Sizes first: a truncated file is found without reading gigabytes.
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointInvalid(f"{path}: missing (listed in {MANIFEST_FILE})")
        size = path.stat().st_size
        if size != entry["size"]:
            raise CheckpointInvalid(f"{path}: {size} bytes, the manifest says {entry['size']} (truncated?)")
    for name, entry in files.items():
        if sha256_of(folder / name) != entry["sha256"]:
            raise CheckpointInvalid(f"{folder / name}: sha256 differs from {MANIFEST_FILE} (corrupted)")


def _warn(message: str) -> None:
    logging.getLogger(__name__).warning(message)


def find_checkpoint(ckpt_dir: Path, spec: str, warn: Callable[[str], None] = _warn) -> Path | None:
    """The checkpoint to resume from: `spec` itself (it must verify), or for 'latest' the newest one that
    verifies (None when there is none yet). Half-written folders (`.tmp-step-*`) never match."""
    if spec != "latest":
        verify(Path(spec))  # CheckpointInvalid: the caller turns it into a one-line error
        return Path(spec)
    for path in sorted(Path(ckpt_dir).glob("step-*"), reverse=True):
        if not path.is_dir():
            continue
        try:
            verify(path)
        except CheckpointInvalid as e:
            warn(f"skipping checkpoint {path.name}: {e}")
            continue
        return path
    return None
