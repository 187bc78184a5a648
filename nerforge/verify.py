"""`python -m nerforge.verify`: the same as `nerforge verify` (nerforge/cli/verify.py)."""

import sys

from nerforge.cli.verify import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m nerforge.verify"))
