"""Score any token-classification model on a split of a CoNLL-style dataset.

    python -m nerforge.score --model OUTPUT_DIR/model --data-dir RAW_DIR --split test
    python -m nerforge.score --model user/bert-conll --dataset-path ./conll2003_loader --split validation

Words are predicted with :class:`nerforge.predict.Predictor` (the training loop's windows, so every
word is predicted exactly once) and scored with :func:`nerforge.metric.score` against the dataset's
gold tag of every word, exactly as ``train_accelerate.evaluate`` does. The model's labels are mapped
to the dataset's tag names by name (:func:`nerforge.metric.align_label_names`): a model whose
``id2label`` order differs from the dataset's, or whose labels are bare types (``PER``), still scores
right (bare labels are turned into IOB2 with :func:`nerforge.metric.prefix_bare_labels`).

Unless given on the command line, ``--max-length``/``--stride``/``--document-context``/``--pack-length``/
``--batch-size`` and the data options (``tagging_scheme``, ``columns``, ``label_names``, the split file
names) come from the export's ``training_config.yaml`` when it has one, so an export scores as its
training run evaluated it. The data is read by ``conll2003_loader.load_splits``, as training reads it.
``--backend onnx``/``onnx-int8`` runs the export's ONNX graph instead of torch (:mod:`nerforge.onnx`).
Prints the metrics as JSON (and writes them to ``--output-json``); ``settings.backend`` says what ran
the model and on how many threads. Exit status 2 on bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from nerforge.config import DataConfig
from nerforge.metric import align_label_names, entity_type, prefix_bare_labels, score
from nerforge.predict import Predictor, add_predictor_arguments, describe_line, predictor_from_args

__all__ = ["predict_split", "score_split", "data_settings", "add_data_arguments", "main"]


def data_settings(args: argparse.Namespace) -> DataConfig:
    """The data settings of a scoring command: the command line's, else the export's training config's
    (tag scheme, columns, tag names, split file names), else the defaults. The source (``--data-dir``
    or ``--dataset-path``) is always the command line's."""
    saved = Path(args.model) / "training_config.yaml"
    if saved.is_file():
        from nerforge.config import load_saved

        data = load_saved(saved).data
    else:
        data = DataConfig()
    given = {
        "data_dir": args.data_dir,
        "dataset_path": args.dataset_path,
        "cache_dir": args.cache_dir,
        "tagging_scheme": args.tagging_scheme or data.tagging_scheme,
        "columns": args.columns or data.columns,
    }
    for name in ("train_file", "validation_file", "test_file"):
        given[name] = None if args.dataset_path else getattr(args, name) or getattr(data, name)
    return dataclasses.replace(data, **given)


def load_split(split: str, data: DataConfig):
    """One split of the data that ``data`` describes."""
    from conll2003_loader import load_splits

    ds = load_splits(**data.loader_kwargs())
    if split not in ds:
        raise ValueError(f"no split {split!r} (splits: {', '.join(ds)})")
    return ds[split]


def predict_split(predictor: Predictor, split, label_column: str = "ner_tags") -> dict:
    """Every word of a dataset split predicted once: words, gold tags, predicted tags (the dataset's
    names; the model's labels mapped by name, bare labels prefixed), the probability of each predicted
    tag, the logits (first word piece), document ids and the model id -> dataset name mapping.

    Document context (when the predictor has one) uses the split's ``document_id`` column; without
    that column every sentence is in one document, as in the training loop."""
    names = list(split.features[label_column].feature.names)
    to_name = align_label_names(predictor.id2label, names)  # model id -> dataset tag name
    bare = any(entity_type(label) == label for label in predictor.id2label.values() if label != "O")
    words = [list(s) for s in split["tokens"]]
    docs = split["document_id"] if "document_id" in split.column_names else [0] * len(words)
    logits = predictor.predict_logits(words, docs)
    pred, probs = [], []
    for z in logits:
        ids = z.argmax(-1)
        tags = [to_name[int(i)] for i in ids]
        pred.append(prefix_bare_labels(tags) if bare else tags)
        probs.append(z.softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1).tolist())
    unscored = sum(len(w) for w in words) - sum(len(p) for p in pred)
    if unscored:
        raise ValueError(f"{unscored} words were not predicted")
    gold = [[names[t] for t in tags] for tags in split[label_column]]
    return {
        "words": words,
        "gold": gold,
        "pred": pred,
        "probs": probs,
        "logits": logits,
        "docs": list(docs),
        "to_name": to_name,
    }


def score_split(predictor: Predictor, split, label_column: str = "ner_tags") -> dict:
    """Predict every word of a dataset split and score it against the split's gold tags."""
    p = predict_split(predictor, split, label_column)
    return score(p["gold"], p["pred"])


def add_data_arguments(p: argparse.ArgumentParser, split: bool = True) -> None:
    """Where the gold data comes from: the flags shared by score, calibrate and the report."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data-dir", help="folder with raw CoNLL files (train/valid/test)")
    src.add_argument("--dataset-path", help="prepared dataset: build folder, save_to_disk folder or Hub id")
    if split:
        p.add_argument("--split", default="test")
    for split, example in (("train", "wnut17train.conll"), ("validation", "emerging.dev.conll"), ("test", None)):
        p.add_argument(
            f"--{split}-file",
            default=None,
            help=f"{split} file: a name in --data-dir or a path" + (f" (e.g. {example})" if example else ""),
        )
    p.add_argument(
        "--tagging-scheme",
        choices=["iob2", "iob1"],
        default=None,
        help="gold tags of --data-dir (default: the export's training config, else iob2)",
    )
    p.add_argument("--columns", nargs="+", default=None, help="column layout of --data-dir files")
    p.add_argument("--cache-dir", default=None, help="datasets cache folder")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nerforge.score", description=__doc__.split("\n\n")[0])
    add_data_arguments(p)
    add_predictor_arguments(p)
    p.add_argument("--output-json", default=None, help="also write the metrics JSON to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        split = load_split(args.split, data_settings(args))
        predictor = predictor_from_args(args)
        print(describe_line(predictor), file=sys.stderr)
        metrics = score_split(predictor, split)
    except (ValueError, OSError) as e:  # ConllFormatError is a ValueError naming file and line
        print(f"error: {e}", file=sys.stderr)
        return 2
    metrics["settings"] = {
        "model": args.model,
        "split": args.split,
        "max_length": predictor.max_length,
        "stride": predictor.stride,
        "context_size": predictor.context_size,
        "pack_length": predictor.pack_length,
        "batch_size": predictor.batch_size,
        "backend": predictor.describe(),
    }
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.output_json:
        Path(args.output_json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
