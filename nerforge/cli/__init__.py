"""The ``nerforge`` command: one subcommand per job, each a module of this package.

    nerforge train --config quickstart
    nerforge predict --model outputs/quickstart/model sentences.txt

Each subcommand is also ``python -m nerforge.<name>``; ``nerforge <name> --help`` shows its options,
defaults and examples. Exit statuses are the same in every subcommand (``nerforge.cli.common``).
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from nerforge.cli.common import EXIT_BAD_INPUT, EXIT_STATUS_TEXT, HelpFormatter

# name -> (module, one line for `nerforge --help`)
COMMANDS = {
    "train": ("nerforge.cli.train", "fine-tune an encoder from a config (bundled or your own), export it, push it"),
    "predict": ("nerforge.cli.predict", "tag raw text (JSON lines) or a CoNLL file with a model"),
    "score": ("nerforge.cli.score", "entity-level scores of any model on a split, as training scores"),
    "report": ("nerforge.cli.report", "where a model fails: error kinds, confusions, slices, corrected test sets"),
    "audit": (
        "nerforge.cli.audit",
        "rank a split's likeliest gold-label errors (confident learning; --folds for train)",
    ),
    "calibrate": ("nerforge.cli.calibrate", "fold a fitted temperature into an export: calibrated scores"),
    "onnx": ("nerforge.cli.onnx", "add verified fp32 and int8 ONNX graphs to an export"),
    "quantize": (
        "nerforge.cli.quantize",
        "build a static int8 package of an export for this CPU (calibrated, compiled once, checked)",
    ),
    "verify": (
        "nerforge.cli.verify",
        "score every CPU path (fp32, bf16, ONNX, int8) so --backend auto picks the fastest safe one",
    ),
    "demo": ("nerforge.cli.demo", "a local web page over a model (Gradio), or a Hugging Face Space folder for it"),
    "push": ("nerforge.cli.push", "upload an export to the Hugging Face Hub"),
    "data": ("nerforge.cli.data", "build a load_dataset folder from raw CoNLL files, or write the sample corpus"),
}


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("nerforge")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser (for --help and --version); each subcommand parses its own options."""
    p = argparse.ArgumentParser(
        prog="nerforge",
        description="Fine-tune transformer encoders for named entity recognition, score them right, publish them.",
        epilog="examples:\n  nerforge train --config quickstart\n  nerforge predict --model outputs/quickstart/model "
        "sentences.txt\n  nerforge train --help\n\n" + EXIT_STATUS_TEXT,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"nerforge {version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_, line) in COMMANDS.items():
        sub.add_parser(name, help=line, add_help=False)
    return p


def command_parser(name: str) -> argparse.ArgumentParser:
    """A subcommand's own parser (used by the convention test and the docs)."""
    module = import_module(COMMANDS[name][0])
    return module.build_parser(f"nerforge {name}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:
        name = argv[0]
        return import_module(COMMANDS[name][0]).main(argv[1:], prog=f"nerforge {name}")
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    parser.parse_args(argv)  # --help, --version, or an unknown command (exit 2 with argparse's message)
    return EXIT_BAD_INPUT
