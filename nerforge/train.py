"""`python -m nerforge.train`: the same as `nerforge train` (nerforge/cli/train.py)."""

import sys

from nerforge.cli.train import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m nerforge.train"))
