"""`python -m nerforge.audit`: the same as `nerforge audit` (nerforge/cli/audit.py)."""

import sys

from nerforge.cli.audit import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m nerforge.audit"))
