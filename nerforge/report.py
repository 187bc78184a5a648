"""`python -m nerforge.report`: the same as `nerforge report` (nerforge/cli/report.py)."""

import sys

from nerforge.cli.report import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m nerforge.report"))
