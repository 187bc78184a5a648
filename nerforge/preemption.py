"""Leaving in time when the machine is taken away: SIGTERM (spot/preemptible instances, `docker stop`,
Kubernetes), SIGUSR1 (Slurm's `--signal=USR1@seconds` before the time limit) and SIGINT (Ctrl-C).

While a `StopSignals` block is active the first such signal only sets a flag: the training loop finishes
the optimizer step in progress, writes a checkpoint and exits with `EXIT_PREEMPTED`. A second signal
aborts at once (exit 128 + its number) without finishing that checkpoint; checkpoints are written under a
temporary name and renamed when complete, so the previous one stays the one `latest` resumes from.

The same signal arriving again within `REPEAT_WINDOW_S` seconds counts as the first one: launchers
forward the Ctrl-C that the terminal already delivered to every process of the group (torchrun does).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

EXIT_PREEMPTED = 3
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
REPEAT_WINDOW_S = 2.0


class StopSignals:
    """Context manager: catch SIGNALS in the main thread, remember the first; restore the old handlers."""

    def __init__(self):
        self.received: int | None = None
        self._at = 0.0
        self._previous: dict = {}

    @property
    def name(self) -> str | None:
        return signal.Signals(self.received).name if self.received else None

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if self.received is None:
            self.received, self._at = signum, now
            os.write(
                2,
                f"\nreceived {signal.Signals(signum).name}: stopping after the optimizer step in progress, "
                f"with a checkpoint (a second signal aborts without it)\n".encode(),
            )
            return
        if signum == self.received and now - self._at < REPEAT_WINDOW_S:
            return  # the same signal forwarded by a launcher, not a second request
        os.write(2, f"\nreceived {signal.Signals(signum).name} while stopping: aborting now\n".encode())
        sys.stderr.flush()
        os._exit(128 + signum)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
