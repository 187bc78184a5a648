"""`python -m nerforge.demo`: the same as `nerforge demo` (nerforge/cli/demo.py)."""

import sys

from nerforge.cli.demo import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m nerforge.demo"))
