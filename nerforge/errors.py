"""The library's error types that cross layers, so that no module has to import a higher one for them.

Each maps to one exit status of the commands (``nerforge.cli.common.EXIT_STATUS``): an :class:`ExportError`
(or a push or checkpoint failure) is 1, "could not write; earlier output intact".
"""

from __future__ import annotations


class ExportError(OSError):
    """An export (or a file beside it) could not be written or verified; the previous one is intact."""
