"""`python -m nerforge.onnx`: the same as `nerforge onnx` (nerforge/cli/onnx.py)."""

import sys

from nerforge.cli.onnx import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m nerforge.onnx"))
