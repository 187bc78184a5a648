"""``nerforge score``: a model's entity-level scores on a split of a CoNLL-style dataset, as training scores."""

from __future__ import annotations

import argparse
import json
import sys

from nerforge.cli.common import (
    Progress,
    Timer,
    add_alias,
    add_data_options,
    add_model_options,
    add_quiet,
    data_from_args,
    make_parser,
    predictor_from_args,
    run,
    write_text,
)

DESCRIPTION = """Score a token-classification model on a split: entity-level micro precision, recall and F1 as
conlleval computes them, per type, and seqeval's weighted F1, printed as JSON (settings.backend says
what ran the model). Every word is predicted once with the training loop's windows; the model's labels
are mapped to the dataset's by name, so any Hub model scores right. Data settings (tag scheme, columns,
file names) and windows are the export's own unless given."""

EXAMPLES = [
    "nerforge score --model outputs/quickstart/model --data-dir bundled:sample --split test",
    "nerforge score --model outputs/bert-large-cased/model --data-dir data/conll2003 --backend onnx-int8",
    "nerforge score --model dslim/bert-base-NER --dataset-path ./conll2003_loader --split validation --metrics-json m.json",
]


def build_parser(prog: str = "nerforge score") -> argparse.ArgumentParser:
    p = make_parser(prog, DESCRIPTION, EXAMPLES)
    add_model_options(p)
    add_data_options(p)
    p.add_argument("--metrics-json", default=None, help="also write the metrics JSON to this file")
    add_alias(p, "metrics_json", "--output-json")  # its name before 0.2
    add_quiet(p)
    return p


def main(argv: list[str] | None = None, prog: str = "nerforge score") -> int:
    args = build_parser(prog).parse_args(argv)

    def body():
        from nerforge.scoring import load_split, score_split

        timer, progress = Timer(), Progress("scoring", args.quiet)
        split = load_split(args.split, data_from_args(args))
        predictor = predictor_from_args(args, progress)
        metrics = score_split(predictor, split)
        progress.close()
        metrics["settings"] = {"model": args.model, "split": args.split, **predictor.settings()}
        text = json.dumps(metrics, indent=2)
        if args.metrics_json:
            write_text(args.metrics_json, text + "\n")
        print(text)
        print(f"{args.split}: F1 {100 * metrics['f1']:.2f} on {len(split)} sentences in {timer}", file=sys.stderr)

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
