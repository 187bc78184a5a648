"""The library's error types that cross layers, so that no module has to import a higher one for them.

Each maps to one exit status of the commands (``nerforge.cli.common.EXIT_STATUS``): an :class:`ExportError`
or a :class:`CheckpointError` (or a push failure) is 1, "could not write; earlier output intact"; a
:class:`RunError` is 2.
"""

from __future__ import annotations


class ExportError(OSError):
    """An export (or a file beside it) could not be written or verified; the previous one is intact."""


class RunError(Exception):
    """Bad input or settings found while starting a training run: one line on stderr, exit status 2."""


class CheckpointError(Exception):
    """A checkpoint could not be written (e.g. a full disk): one line on stderr, exit status 1."""
