"""Writing files and folders all or nothing: a reader (or a resumed run) sees the old version or the
new one, never a half-written file, whatever kills the writer.

Files go through a temporary file in the same folder and ``os.replace``; folders are assembled under a
temporary name beside their final one and swapped in with ``os.replace`` once complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "write_json_atomic",
    "fresh_tmp",
    "swap_in",
    "usual_modes",
]


def _umask() -> int:
    mask = os.umask(0o022)  # read it: os.umask returns the old value, put back at once
    os.umask(mask)
    return mask


def usual_modes(folder: Path) -> None:
    """Give every file (and folder) under `folder` the mode a plain open() (mkdir) would have given it
    under the process's umask (0644 / 0755 with the usual 022): temporary files are created owner-only
    (mkstemp: 0600), which must not outlive the rename, or an export copied to a cluster file system or
    into a container running as another user could not be read."""
    mask = _umask()
    for path in [folder, *Path(folder).rglob("*")]:
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync'd, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp's 0600 -> what open() would give
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """:func:`atomic_write_bytes` for text."""
    atomic_write_bytes(path, text.encode(encoding))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """``json.dump`` (indented, UTF-8) with the same all-or-nothing guarantee."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def fresh_tmp(final: Path) -> Path:
    """An empty temporary folder beside ``final`` (``.NAME.tmp``), left-overs of a killed run removed."""
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` by the complete folder ``tmp``; the old folder survives until the new one is in place."""
    usual_modes(tmp)
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
