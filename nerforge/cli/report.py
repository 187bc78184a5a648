"""``nerforge report``: where a model fails, in one folder (scores, error kinds, confusions, slices,
confidence, the errors for annotators, corrected test sets side by side)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nerforge.cli.common import (
    OutputError,
    Progress,
    Timer,
    add_data_options,
    add_model_options,
    add_quiet,
    data_from_args,
    make_parser,
    predictor_from_args,
    run,
)

DESCRIPTION = """Write an error report of a model on a split into one folder, complete or not at all: report.json
and report.md (scores, error kinds, confusions, slices, confidence, score thresholds), errors.jsonl
(the most confident errors first: the likeliest gold-label errors), predictions.conll (conlleval's
layout) and figures. Each --extra-test file (e.g. CoNLL++) is scored alike, and the predictions wrong
under the main labels but right under its labels are counted."""

EXAMPLES = [
    "nerforge report --model outputs/quickstart/model --data-dir bundled:sample --output-dir report",
    "nerforge report --model outputs/minilm-cpu/model --data-dir data/conll2003 --extra-test data/conllpp/test.txt "
    "--output-dir report --update-card",
]


def build_parser(prog: str = "nerforge report") -> argparse.ArgumentParser:
    p = make_parser(prog, DESCRIPTION, EXAMPLES)
    add_model_options(p)
    add_data_options(p)
    p.add_argument(
        "--extra-test",
        nargs="+",
        default=[],
        metavar="FILE",
        help="more CoNLL files with the split's sentences and other labels (e.g. CoNLL++), scored alike",
    )
    p.add_argument("--output-dir", required=True, help="the report folder (replaced whole when complete)")
    p.add_argument(
        "--update-card",
        action="store_true",
        help="--model is an export folder: add the report's summary to its metrics.json and its card "
        '("Where it fails", extra test sets in the model-index)',
    )
    add_quiet(p)
    return p


def main(argv: list[str] | None = None, prog: str = "nerforge report") -> int:
    args = build_parser(prog).parse_args(argv)

    def body():
        from nerforge.analysis import make_report, update_card, write_report
        from nerforge.taxonomy import KINDS

        timer, progress = Timer(), Progress("predicting", args.quiet)
        if args.update_card and not (Path(args.model) / "training_config.yaml").is_file():
            raise ValueError(f"--update-card: {args.model} is not an export written by nerforge training")
        report, errors, main_pred = make_report(
            args.model, data_from_args(args), args.split, args.extra_test, lambda: predictor_from_args(args, progress)
        )
        progress.close()
        try:
            write_report(Path(args.output_dir), report, errors, main_pred)
        except OSError as e:
            raise OutputError(f"could not write the report {args.output_dir}: {e}") from e
        if args.update_card:
            update_card(Path(args.model), report)
        c = report["main"]["scores"]["conlleval"]
        k = report["errors"]["overall"]
        kinds = ", ".join(f"{x} {k[x]}" for x in KINDS)
        print(f"{args.output_dir}: F1 {100 * c['f1']:.2f} on {args.split}; {kinds} ({timer})")
        for name, extra in report["extra_tests"].items():
            print(f"  {name}: F1 {100 * extra['scores']['conlleval']['f1']:.2f}")

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
