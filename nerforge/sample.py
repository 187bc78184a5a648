"""`python -m nerforge.sample OUT_DIR`: the same as `nerforge data sample OUT_DIR`."""

import sys

from nerforge.cli.data import main

if __name__ == "__main__":
    sys.exit(main(["sample", *sys.argv[1:]], prog="python -m nerforge.sample"))
