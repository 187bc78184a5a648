"""`python -m nerforge.quantize`: the same as `nerforge quantize` (nerforge/cli/quantize.py)."""

import sys

from nerforge.cli.quantize import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m nerforge.quantize"))
