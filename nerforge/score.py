"""Score any token-classification model on a split of a CoNLL-style dataset.

    python -m nerforge.score --model OUTPUT_DIR/model --data-dir RAW_DIR --split test
    python -m nerforge.score --model user/bert-conll --dataset-path ./conll2003_loader --split validation

Words are predicted with :class:`nerforge.predict.Predictor` (the training loop's windows, so every
word is predicted exactly once) and scored with :func:`nerforge.metric.score` against the dataset's
gold tag of every word, exactly as ``train_accelerate.evaluate`` does. The model's labels are mapped
to the dataset's tag names by name (:func:`nerforge.metric.align_label_names`): a model whose
``id2label`` order differs from the dataset's, or whose labels are bare types (``PER``), still scores
right (bare labels are turned into IOB2 with :func:`nerforge.metric.prefix_bare_labels`).

Unless given on the command line, ``--max-length``/``--stride``/``--document-context``/``--batch-size``
and the data options (``tagging_scheme``, ``columns``, ``label_names``) come from the export's
``training_config.yaml`` when it has one, so an export scores as its training run evaluated it.
Prints the metrics as JSON (and writes them to ``--output-json``). Exit status 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from nerforge.metric import align_label_names, entity_type, prefix_bare_labels, score
from nerforge.predict import Predictor

__all__ = ["score_split", "load_split", "main"]


def _saved_config(model: str):
    path = Path(model) / "training_config.yaml"
    if not path.is_file():
        return None
    from nerforge.config import load_saved

    return load_saved(path)


def load_split(
    split: str,
    *,
    data_dir: str | None = None,
    dataset_path: str | None = None,
    cache_dir: str | None = None,
    tagging_scheme: str = "iob2",
    columns: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
):
    """One split of raw CoNLL files (through conll2003_loader) or of a prepared dataset."""
    if dataset_path:
        from datasets import load_dataset, load_from_disk

        if (Path(dataset_path) / "dataset_dict.json").is_file():
            ds = load_from_disk(dataset_path)
        else:
            ds = load_dataset(dataset_path, cache_dir=cache_dir)
    else:
        from conll2003_loader import load_conll

        options: dict = {"tagging_scheme": tagging_scheme}
        if columns:
            options["columns"] = tuple(columns)
        if label_names:
            options["label_names"] = list(label_names)
        ds = load_conll(data_dir=data_dir, cache_dir=cache_dir, **options)
    if split not in ds:
        raise ValueError(f"no split {split!r} (splits: {', '.join(ds)})")
    return ds[split]


def score_split(predictor: Predictor, split, label_column: str = "ner_tags") -> dict:
    """Predict every word of a dataset split and score it against the split's gold tags.

    Document context (when the predictor has one) uses the split's ``document_id`` column; without
    that column every sentence is in one document, as in the training loop."""
    names = list(split.features[label_column].feature.names)
    mapping = align_label_names(predictor.id2label, names)  # model id -> dataset tag name
    to_dataset = {predictor.id2label[i]: name for i, name in mapping.items()}
    bare = any(entity_type(label) == label for label in predictor.id2label.values() if label != "O")

    sentences = split["tokens"]
    docs = split["document_id"] if "document_id" in split.column_names else [0] * len(sentences)
    pred = [[to_dataset[t] for t in sent] for sent in predictor.predict_words(sentences, docs)]
    if bare:
        pred = [prefix_bare_labels(sent) for sent in pred]
    gold = [[names[t] for t in tags] for tags in split[label_column]]
    return score(gold, pred)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nerforge.score", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="export folder or Hub id of a token-classification model")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data-dir", help="folder with raw CoNLL files (train/valid/test)")
    src.add_argument("--dataset-path", help="prepared dataset: build folder, save_to_disk folder or Hub id")
    p.add_argument("--split", default="test")
    p.add_argument(
        "--tagging-scheme",
        choices=["iob2", "iob1"],
        default=None,
        help="gold tags of --data-dir (default: the export's training config, else iob2)",
    )
    p.add_argument("--columns", nargs="+", default=None, help="column layout of --data-dir files")
    p.add_argument("--cache-dir", default=None, help="datasets cache folder")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--stride", type=int, default=None)
    p.add_argument("--document-context", type=int, default=None, metavar="N")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--device", default=None)
    p.add_argument("--output-json", default=None, help="also write the metrics JSON to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        saved = _saved_config(args.model)
        data = saved.data if saved is not None else None
        split = load_split(
            args.split,
            data_dir=args.data_dir,
            dataset_path=args.dataset_path,
            cache_dir=args.cache_dir,
            tagging_scheme=args.tagging_scheme or (data.tagging_scheme if data else "iob2"),
            columns=args.columns or (data.columns if data else None),
            label_names=data.label_names if data else None,
        )
        predictor = Predictor.from_pretrained(
            args.model,
            batch_size=args.batch_size,
            max_length=args.max_length,
            stride=args.stride,
            context_size=args.document_context,
            device=args.device,
            bf16=args.bf16,
        )
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
        "batch_size": predictor.batch_size,
    }
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.output_json:
        Path(args.output_json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
