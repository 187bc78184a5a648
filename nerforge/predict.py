"""`python -m nerforge.predict`: the same as `nerforge predict` (nerforge/cli/predict.py)."""

import sys

from nerforge.cli.predict import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m nerforge.predict"))
