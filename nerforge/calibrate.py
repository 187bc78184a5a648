"""`python -m nerforge.calibrate`: the same as `nerforge calibrate` (nerforge/cli/calibrate.py)."""

import sys

from nerforge.cli.calibrate import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m nerforge.calibrate"))
