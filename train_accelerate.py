"""Fine-tune a transformer encoder for named entity recognition with 🤗 Accelerate.

    accelerate launch train_accelerate.py --config configs/bert-large-cased.yaml [--learning-rate 3e-5 ...]

The same as `nerforge train` and `accelerate launch -m nerforge.train`: the loop lives in the package
(nerforge/training.py), its options in nerforge/cli/train.py. `--help` lists them.
"""

import sys

from nerforge.cli.train import main

if __name__ == "__main__":
    sys.exit(main(prog="train_accelerate.py"))
