"""``nerforge train``: the training loop (nerforge.training) from a config file plus command-line overrides.

Also reached as ``accelerate launch train_accelerate.py ...``, ``accelerate launch -m nerforge.train ...``
and ``python -m nerforge.train ...``: the same parser and the same loop.
"""

from __future__ import annotations

import argparse
import os
import sys

from nerforge.cli.common import EXIT_STATUS_TEXT, HelpFormatter, quiet_transformers_bars, run
from nerforge.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
    bundled_config_names,
    read_yaml,
    validate,
)

DESCRIPTION = """Fine-tune a transformer encoder for named entity recognition: config -> data -> model -> windows
-> training loop (accumulation, evaluation, atomic checkpoints) -> the best model scored on validation
and test -> an export folder (safetensors weights, tokenizer, model card, metrics, figures; optionally
ONNX) -> optionally pushed to the Hub. Options override the --config file's values. Processes,
precision and nodes are accelerate's: run `accelerate launch [--num_processes N] [--mixed_precision bf16]
-m nerforge.train ...` (or `accelerate launch train_accelerate.py ...`) for several GPUs."""

EXAMPLES = [
    "nerforge train --config quickstart",
    "accelerate launch -m nerforge.train --config bert-large-cased --data-dir data/conll2003",
    "nerforge train --config minilm-cpu --data-dir data/conll2003 --output-dir outputs/minilm --seed 1",
    "nerforge train --config bert-base-cased --data-dir data/wnut17 --train-file wnut17train.conll "
    "--validation-file emerging.dev.conll --test-file emerging.test.annotated --columns tokens ner_tags",
    "nerforge train --config outputs/run/model/training_config.yaml --resume-from-checkpoint latest",
]


def build_parser(prog: str = "nerforge train"):
    """HfArgumentParser over the three config sections, with --config; kebab-case options shown, their
    snake_case spellings (the YAML keys) accepted."""
    from transformers import HfArgumentParser

    epilog = (
        f"bundled configs (--config NAME): {', '.join(bundled_config_names())}\n\nexamples:\n"
        + "\n".join(f"  {e}" for e in EXAMPLES)
        + f"\n\n{EXIT_STATUS_TEXT}"
    )
    parser = HfArgumentParser(
        (ModelConfig, DataConfig, TrainingConfig),
        prog=prog,
        description=DESCRIPTION,
        epilog=epilog,
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE_OR_NAME",
        help="YAML config (sections model, data, training), a path or a bundled config's name",
    )
    for action in parser._actions:
        # kebab-case first (the shown one); HfArgumentParser lists the field's own name first
        action.option_strings.sort(key=lambda o: "_" in o)
        if isinstance(action, argparse._StoreFalseAction):  # --no-calibrate: say what it turns off
            action.help = f"turn off --{action.dest.replace('_', '-')}"
    return parser


def parse_config(argv: list[str] | None = None) -> RunConfig:
    """``--config FILE`` plus ``--field value`` overrides -> a validated RunConfig."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    parser = build_parser()
    if known.config:
        parser.set_defaults(**read_yaml(known.config))
    *sections, unknown = parser.parse_args_into_dataclasses(
        argv, look_for_args_file=False, return_remaining_strings=True
    )
    if unknown:
        raise ConfigError(f"unknown command-line arguments: {' '.join(unknown)}")
    model, data, training = sections[:3]  # a fourth, the namespace left, holds --config
    cfg = validate(RunConfig(model, data, training))
    if cfg.training.export_onnx:  # before training, not at the export (a saved config is read without it)
        from nerforge.onnx_runtime import require_onnx

        try:
            require_onnx()
        except ValueError as e:
            raise ConfigError(f"training.export_onnx: {e}") from None
    return cfg


def command_line_fields(argv: list[str]) -> frozenset:
    """The config fields given on the command line (either spelling), e.g. {'context_size'}."""
    return frozenset(a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--"))


def main(argv: list[str] | None = None, prog: str = "nerforge train") -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:
        build_parser(prog).print_help()
        return 0

    def body():
        from nerforge.training import train

        quiet_transformers_bars()
        return train(parse_config(argv), explicit=command_line_fields(argv))

    # Every process of a multi-process run raises the same error: the first one says it.
    return run(body, announce=int(os.environ.get("RANK", "0")) == 0)


if __name__ == "__main__":
    sys.exit(main())
