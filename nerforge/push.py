"""`python -m nerforge.push`: the same as `nerforge push` (nerforge/cli/push.py)."""

import sys

from nerforge.cli.push import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m nerforge.push"))
