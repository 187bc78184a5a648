"""`python -m nerforge.score`: the same as `nerforge score` (nerforge/cli/score.py)."""

import sys

from nerforge.cli.score import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m nerforge.score"))
