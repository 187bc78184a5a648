"""One run per output folder.

The run's main process holds an exclusive `flock` on `OUTPUT_DIR/.nerforge.lock` for as long as it runs;
the file says who holds it (host, pid, start time). A second run on the same folder (an easy mistake
with job arrays) finds the lock taken and stops at once, naming the folder and the holder. The kernel
drops the lock when its process dies, even by SIGKILL: the file a killed run leaves behind is then stale,
and the next run takes it over with a warning.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = ".nerforge.lock"


class LockedError(Exception):
    """Another live run holds the folder."""


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"host {info['host']}, pid {info['pid']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "an unknown process"


class RunLock:
    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock; returns a warning when a stale lock (a dead run's) was taken over."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 4096, 0).decode(errors="replace")
                os.close(fd)
                raise LockedError(
                    f"{self.path.parent} is in use by another run ({_holder(text)}); wait for it to finish, "
                    f"or use another --output_dir"
                ) from None
            except OSError as e:  # a file system without flock (some network mounts): run unguarded
                os.close(fd)
                return f"cannot lock {self.path} ({e.strerror}): nothing stops a second run on this folder"
            # The holder may have removed the file between our open and our flock: then we locked an
            # orphan inode, and must try again on the file that is there now.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = os.pread(fd, 4096, 0).decode(errors="replace")
        info = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        if previous.strip():
            return f"took over a stale lock on {self.path.parent} (left by {_holder(previous)}, no longer running)"
        return None

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still locked: no one can be holding it
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None
