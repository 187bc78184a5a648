"""`python -m nerforge`: the same as the `nerforge` command (nerforge/cli/__init__.py)."""

import sys

from nerforge.cli import main

sys.exit(main())
