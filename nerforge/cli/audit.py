"""``nerforge audit``: the sentences and spans of a split whose gold labels are likeliest wrong, ranked."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
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

DESCRIPTION = """Rank a split's sentences, and the spans within each, by how likely their gold labels are wrong, from
the model's out-of-sample word probabilities and confident learning (cleanlab: pip install
'nerforge[audit]'). Writes into --output-dir: audit.jsonl (one line per flagged span: sentence, document,
words, gold span, suggested span and type, score; likeliest first), audit.md (the first --top with their
context) and summary.json. A model cannot judge the labels it learnt: for the split it trained on pass
--folds K, which trains K models with the export's training config on the other folds (resumable per
fold: run the same command again) and asks each about its own fold."""

EXAMPLES = [
    "nerforge audit --model outputs/minilm-cpu/model --data-dir data/conll2003 --split test --output-dir audit",
    "nerforge audit --model outputs/quickstart/model --data-dir bundled:sample --split train --folds 2 --output-dir audit",
]


def build_parser(prog: str = "nerforge audit") -> argparse.ArgumentParser:
    from nerforge.label_errors import CLASSES, METHODS

    p = make_parser(prog, DESCRIPTION, EXAMPLES)
    add_model_options(p)
    add_data_options(p)
    p.add_argument("--output-dir", required=True, help="the audit folder (its files replaced when complete)")
    p.add_argument(
        "--method",
        choices=METHODS,
        default=METHODS[0],
        help="confident learning (cleanlab), or the plain baseline: the model's probability of the gold label",
    )
    p.add_argument(
        "--classes",
        choices=CLASSES,
        default=CLASSES[0],
        help="types: a word's B-/I- probabilities summed per entity type; tags: the tag set as it is",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        metavar="K",
        help="cross-fit K models on the other folds (needed for the split the model trained on)",
    )
    p.add_argument("--work-dir", default=None, help="where the fold runs live (default: OUTPUT_DIR/folds)")
    p.add_argument("--seed", type=int, default=0, help="seed of the documents' assignment to folds")
    p.add_argument("--top", type=int, default=50, metavar="N", help="spans shown in audit.md")
    p.add_argument(
        "--update-card",
        action="store_true",
        help="--model is an export folder: add the audit's figures and command to its metrics.json and card",
    )
    add_quiet(p)
    return p


def _train_fold(cfg) -> int:
    from nerforge.training import train

    return train(cfg)


def main(argv: list[str] | None = None, prog: str = "nerforge audit") -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(prog).parse_args(argv)

    def body():
        from importlib.metadata import version

        from nerforge.atomic import atomic_write_text, write_json_atomic
        from nerforge.label_errors import audit_records, class_probabilities, markdown, rank
        from nerforge.scoring import load_split, predict_split, words_and_documents

        try:
            import cleanlab  # noqa: F401
        except ImportError:
            if args.method == "confident-learning":
                raise ValueError(
                    "nerforge audit needs cleanlab for confident learning: pip install 'nerforge[audit]' "
                    "(or --method disagreement)"
                ) from None
        timer, progress = Timer(), Progress("predicting", args.quiet)
        export = Path(args.model) / "training_config.yaml"
        if (args.folds is not None or args.update_card) and not export.is_file():
            raise ValueError(f"--folds and --update-card need an export written by nerforge training: no {export}")
        data = data_from_args(args)
        if args.folds is None:
            if args.split == "train":
                raise ValueError(
                    "the model learnt the train split's labels and cannot judge them: pass --folds K "
                    "(K models trained on the other folds)"
                )
            split = load_split(args.split, data)
            pred = predict_split(predictor_from_args(args, progress), split)
            logits, to_name, folds = pred["logits"], pred["to_name"], None
        else:
            from conll2003_loader import load_splits
            from nerforge.config import load_saved
            from nerforge.cross_fit import cross_fit

            splits = load_splits(**data.loader_kwargs())
            if args.split not in splits or "validation" not in splits:
                raise ValueError(f"--folds needs the {args.split} and validation splits; got {', '.join(splits)}")
            split = splits[args.split]
            work = Path(args.work_dir or Path(args.output_dir) / "folds")
            work.mkdir(parents=True, exist_ok=True)

            def load_fold_predictor(path):  # the fold's export, with the options given for --model
                return predictor_from_args(argparse.Namespace(**{**vars(args), "model": path}), progress)

            logits, to_name, folds = cross_fit(
                load_saved(export),
                splits,
                args.split,
                work,
                args.folds,
                _train_fold,
                load_fold_predictor,
                seed=args.seed,
                log=lambda s: print(s, file=sys.stderr, flush=True),
            )
        progress.close()
        names = list(split.features["ner_tags"].feature.names)
        gold = [[names[t] for t in s] for s in split["ner_tags"]]
        words, docs = words_and_documents(split)
        # The model's tags at every word (argmax, mapped to the dataset's names) for the suggested spans.
        pred_tags = [[to_name[int(i)] for i in z.argmax(-1)] for z in logits]
        labels, probs, classes = class_probabilities(logits, to_name, gold, args.classes)
        ranking = rank(labels, probs, args.method)
        pred = {"words": words, "gold": gold, "pred": pred_tags, "docs": docs}
        records = audit_records(pred, ranking)
        summary = {
            "model": args.model,
            "split": args.split,
            "method": args.method,
            "classes": args.classes,
            "class_names": classes,
            "folds": args.folds,
            "sentences": len(words),
            "flagged_sentences": len({r["sentence"] for r in records}),
            "flagged_spans": len(records),
            "seconds": round(time.perf_counter() - timer.start, 1),
            "command": "nerforge audit " + shlex.join(argv),
            "cleanlab": version("cleanlab") if args.method == "confident-learning" else None,
        }
        out = Path(args.output_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "audit.jsonl", "".join(json.dumps(r) + "\n" for r in records))
            atomic_write_text(out / "audit.md", markdown(records, summary, words, docs, args.top))
            write_json_atomic(out / "summary.json", summary)
        except OSError as e:
            raise OutputError(f"could not write the audit {out}: {e}") from e
        if args.update_card:
            from nerforge.export import update_metrics

            update_metrics(args.model, "audit", {k: v for k, v in summary.items() if k != "class_names"})
        print(
            f"{out}: {summary['flagged_sentences']} of {len(words)} {args.split} sentences flagged "
            f"({len(records)} spans) in {timer}",
            file=sys.stderr,
        )

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
