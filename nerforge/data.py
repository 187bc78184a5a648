"""`python -m nerforge.data`: the same as `nerforge data` (nerforge/cli/data.py)."""

import sys

from nerforge.cli.data import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m nerforge.data"))
