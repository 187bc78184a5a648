"""Score any token-classification model on a split of a CoNLL-style dataset (``nerforge score``).

Words are predicted with :class:`nerforge.predictor.Predictor` (the training loop's windows, so every
word is predicted exactly once) and scored with :func:`nerforge.metric.score` against the dataset's
gold tag of every word, exactly as the training loop's evaluation does. The model's labels are mapped
to the dataset's tag names by name (:func:`nerforge.metric.align_label_names`): a model whose
``id2label`` order differs from the dataset's, or whose labels are bare types (``PER``), still scores
right (bare labels are turned into IOB2 with :func:`nerforge.metric.prefix_bare_labels`).

The data options (``tagging_scheme``, ``columns``, ``label_names``, the split file names) come from the
export's ``training_config.yaml`` unless given (:func:`data_settings`), so an export scores as its
training run evaluated it. The data is read by ``conll2003_loader.load_splits``, as training reads it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from nerforge.config import DataConfig
from nerforge.metric import align_label_names, entity_type, prefix_bare_labels, score
from nerforge.predictor import Predictor

__all__ = ["predict_split", "score_split", "data_settings", "load_split", "words_and_documents"]


def data_settings(model: str, **given) -> DataConfig:
    """The data settings of a scoring command: those given (None: not given), else the export's training
    config's (tag scheme, columns, tag names, split file names), else the defaults. The source
    (``data_dir`` or ``dataset_path``) and ``cache_dir`` are always the ones given; with ``dataset_path`` the export's split
    file names are not used."""
    saved = Path(model) / "training_config.yaml"
    if saved.is_file():
        from nerforge.config import load_saved

        data = load_saved(saved).data
    else:
        data = DataConfig()
    unknown = set(given) - {f.name for f in dataclasses.fields(DataConfig)}
    if unknown:
        raise TypeError(f"unknown data settings: {', '.join(sorted(unknown))}")
    out = {k: given.get(k) for k in ("data_dir", "dataset_path", "cache_dir")}
    for name, value in given.items():
        if name not in out:
            out[name] = value if value is not None else getattr(data, name)
    for name in ("train_file", "validation_file", "test_file"):
        out[name] = None if out["dataset_path"] else (given.get(name) or getattr(data, name))
    return dataclasses.replace(data, **out)


def load_split(split: str, data: DataConfig):
    """One split of the data that ``data`` describes."""
    from conll2003_loader import load_splits

    ds = load_splits(**data.loader_kwargs())
    if split not in ds:
        raise ValueError(f"no split {split!r} (splits: {', '.join(ds)})")
    return ds[split]


def words_and_documents(split) -> tuple[list[list[str]], list[int]]:
    """A split's sentences (lists of words) and their document ids; without a ``document_id`` column every
    sentence is in one document, as in the training loop."""
    words = [list(s) for s in split["tokens"]]
    docs = list(split["document_id"]) if "document_id" in split.column_names else [0] * len(words)
    return words, docs


def predict_split(predictor: Predictor, split, label_column: str = "ner_tags") -> dict:
    """Every word of a dataset split predicted once: words, gold tags, predicted tags (the dataset's
    names; the model's labels mapped by name, bare labels prefixed), the probability of each predicted
    tag, the logits (first word piece), document ids and the model id -> dataset name mapping.

    Document context (when the predictor has one) uses the split's ``document_id`` column; without
    that column every sentence is in one document, as in the training loop."""
    names = list(split.features[label_column].feature.names)
    to_name = align_label_names(predictor.id2label, names)  # model id -> dataset tag name
    bare = any(entity_type(label) == label for label in predictor.id2label.values() if label != "O")
    words, docs = words_and_documents(split)
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
