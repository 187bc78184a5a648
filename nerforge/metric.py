"""The single scoring function of nerforge, plus label-name alignment helpers.

Every number nerforge reports (training-time evaluation, ``nerforge predict``
scoring, the ``metrics/conll_ner`` evaluate module, the model card) comes from
:func:`score`.  It wraps ``seqeval`` in its *default* mode, which reproduces the
lenient chunking rules of the original ``conlleval`` Perl script:

* a chunk starts at ``B-X``, or at ``I-X`` when the previous tag is ``O`` or of a
  different type (so IOB1 and IOB2 encodings of the same entities score the same);
* a predicted chunk is correct only when its start, end and type all match a gold
  chunk.

``precision``/``recall``/``f1`` are entity-level micro averages (the CoNLL-2003
shared-task numbers).  ``accuracy`` is per-word tag accuracy (exact tag string
match, as conlleval computes it).  ``weighted_f1`` is the support-weighted mean of
per-type F1 from ``seqeval.metrics.classification_report``; it is *not* the
CoNLL number and is only kept to compare with older notebook results.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence

__all__ = ["score", "align_label_names", "prefix_bare_labels", "entity_type", "entities"]


def _check_inputs(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"y_true has {len(y_true)} sentences but y_pred has {len(y_pred)}; "
            "every gold sentence needs exactly one predicted sentence"
        )
    for i, (gold, pred) in enumerate(zip(y_true, y_pred)):
        if isinstance(gold, str) or isinstance(pred, str):
            raise TypeError(f"sentence {i}: expected a list of tags, got a string")
        if len(gold) != len(pred):
            raise ValueError(
                f"sentence {i}: gold has {len(gold)} words but the prediction has {len(pred)}; "
                "refusing to score a truncated or padded sentence"
            )


def score(y_true: list[list[str]], y_pred: list[list[str]]) -> dict:
    """Score predicted tag sequences against gold ones (conlleval-compatible).

    Args:
        y_true: gold tags, one list of word-level tags per sentence (IOB1 or IOB2).
        y_pred: predicted tags, same shape as ``y_true``.

    Returns:
        ``{"precision", "recall", "f1", "accuracy", "weighted_f1", "per_type",
        "num_sentences", "num_words"}`` where ``per_type`` maps every entity type
        seen in gold *or* predictions to ``{"precision", "recall", "f1",
        "support"}``.  Floats are plain Python floats, ``support`` and counts ints.
        With no entity anywhere, every precision/recall/F1 is ``0.0``.

    Raises:
        ValueError: if the number of sentences differs, or if a predicted
            sentence does not have the same number of words as its gold sentence
            (the message names the sentence index).
    """
    from seqeval.metrics import (
        accuracy_score,
        classification_report,
        f1_score,
        precision_score,
        recall_score,
    )
    from seqeval.metrics.sequence_labeling import get_entities

    _check_inputs(y_true, y_pred)
    y_true = [list(s) for s in y_true]
    y_pred = [list(s) for s in y_pred]
    num_words = sum(len(s) for s in y_true)

    result: dict = {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "accuracy": 0.0,
        "weighted_f1": 0.0,
        "per_type": {},
        "num_sentences": len(y_true),
        "num_words": int(num_words),
    }
    if num_words == 0:
        return result

    with warnings.catch_warnings():
        # seqeval (via sklearn) warns when a ratio is 0/0; we define those as 0.0.
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        result["accuracy"] = float(accuracy_score(y_true, y_pred))
        has_entities = bool(get_entities(y_true)) or bool(get_entities(y_pred))
        if not has_entities:
            return result
        result["precision"] = float(precision_score(y_true, y_pred, zero_division=0))
        result["recall"] = float(recall_score(y_true, y_pred, zero_division=0))
        result["f1"] = float(f1_score(y_true, y_pred, zero_division=0))
        report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)

    averages = {"micro avg", "macro avg", "weighted avg"}
    result["weighted_f1"] = float(report["weighted avg"]["f1-score"])
    result["per_type"] = {
        name: {
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1-score"]),
            "support": int(row["support"]),
        }
        for name, row in sorted(report.items())
        if name not in averages
    }
    return result


# ---------------------------------------------------------------------------
# Label alignment
# ---------------------------------------------------------------------------

_PREFIX_RE = re.compile(r"^([BIES])-(.+)$")
_GENERIC_RE = re.compile(r"^LABEL_\d+$")


def entity_type(tag: str) -> str | None:
    """Return the entity type of a tag (``"B-PER"`` -> ``"PER"``, ``"PER"`` -> ``"PER"``,
    ``"O"`` -> ``None``)."""
    if tag == "O":
        return None
    m = _PREFIX_RE.match(tag)
    return m.group(2) if m else tag


def prefix_bare_labels(tags: Sequence[str]) -> list[str]:
    """Turn one sentence of word labels into IOB2 tags.

    Rule for a word whose label is the bare type ``X`` (e.g. ``"PER"``): it becomes
    ``B-X`` if the previous word's label was not of type ``X``, otherwise ``I-X``.
    So ``["PER", "PER", "O", "LOC"]`` -> ``["B-PER", "I-PER", "O", "B-LOC"]``.
    Two adjacent entities of the same type cannot be told apart with bare labels
    and are merged; that is a limit of such models, not of this function.

    ``"O"`` stays ``"O"``; tags that already carry a ``B-``/``I-`` prefix are kept
    as they are (they still count as "type X" for the following word).  Because
    :func:`align_label_names` maps bare labels to ``I-X``, an ``I-X`` that follows
    a word of another type is also turned into ``B-X``; this is the same chunk
    conlleval reads, so entity-level scores do not change.
    """
    out: list[str] = []
    prev_type: str | None = None
    for tag in tags:
        typ = entity_type(tag)
        if typ is None:
            out.append("O")
        elif tag == typ or tag.startswith("I-"):
            out.append(("I-" if prev_type == typ else "B-") + typ)
        else:
            out.append(tag)
        prev_type = typ
    return out


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """conlleval's chunks of one sentence's tags, as seqeval reads them when it scores:
    ``[(type, first word, last word)]``. IOB1, IOB2 and IOBES all work; a bare label ``X`` is read as
    ``I-X``.

    conlleval's rules, read left to right (a chunk ends before it, or starts at it): a chunk ends after an
    ``E-`` or ``S-`` tag, at a ``B-``, ``S-`` or ``O`` that follows a ``B-``/``I-``, and wherever the type
    changes; a chunk starts at ``B-`` and ``S-``, at an ``I-``/``E-`` after ``O``, ``E-`` or ``S-``, and
    wherever the type changes. (Written here rather than calling seqeval's ``get_entities``: importing
    seqeval imports scikit-learn, 1.8 s of every ``nerforge predict``; tests/test_metric.py holds the two
    equal on random tag sequences.)"""
    tags = list(tags)
    if any(t != "O" and entity_type(t) == t for t in tags):
        tags = prefix_bare_labels(tags)
    chunks: list[tuple[str, int, int]] = []
    begin, prev, prev_type = 0, "O", None
    for i, tag in enumerate([*tags, "O"]):  # the "O" after the last word ends a chunk still open
        if tag == "O":
            prefix, typ = "O", None
        else:
            prefix, typ = _PREFIX_RE.match(tag).groups()
        if prev in ("E", "S") or (prev != "O" and (prefix in ("B", "S", "O") or typ != prev_type)):
            chunks.append((prev_type, begin, i - 1))
        if prefix in ("B", "S") or (prefix != "O" and (prev in ("O", "E", "S") or typ != prev_type)):
            begin = i
        prev, prev_type = prefix, typ
    return chunks


def align_label_names(model_id2label: Mapping[int, str], dataset_names: Sequence[str]) -> dict[int, str]:
    """Map a model's label ids to the dataset's tag names.

    * Labels are matched **by name**, never by position, so a model whose
      ``id2label`` order differs from the dataset's ``names`` still maps right.
    * Labels without a ``B-``/``I-`` prefix (``"PER"``, ``"LOC"``, ``"O"``) map
      to the dataset's ``I-X`` tag (``B-X`` if the dataset has no ``I-X``).
      Predictions decoded this way are valid IOB1 and score exactly like the
      IOB2 version under conlleval rules; to get IOB2 tags apply
      :func:`prefix_bare_labels` to each decoded sentence (bare ``X`` -> ``B-X``
      if the previous word's label was not ``X``, else ``I-X``).
    * Generic names (``LABEL_0``, ``LABEL_1``...) carry no meaning; a
      ``ValueError`` asks for a model whose config has real label names.
    * A label absent from the dataset raises ``ValueError`` listing them.

    Keys may be ints or numeric strings (as they come out of ``config.json``).
    """
    names = list(dataset_names)
    name_set = set(names)
    id2label = {int(k): str(v) for k, v in dict(model_id2label).items()}
    if not id2label:
        raise ValueError("model id2label is empty")

    generic = sorted(v for v in id2label.values() if _GENERIC_RE.match(v))
    if generic:
        raise ValueError(
            f"the model's labels are generic names ({', '.join(generic[:4])}...): "
            "they do not say which entity each id is. Use a model whose config.json has "
            "real id2label names (e.g. 'B-PER'), or set config.id2label before evaluating."
        )

    mapping: dict[int, str] = {}
    unknown: list[str] = []
    for idx, label in sorted(id2label.items()):
        if label in name_set:
            mapping[idx] = label
            continue
        if not _PREFIX_RE.match(label):
            # bare type name
            for candidate in (f"I-{label}", f"B-{label}"):
                if candidate in name_set:
                    mapping[idx] = candidate
                    break
            else:
                unknown.append(label)
            continue
        unknown.append(label)
    if unknown:
        raise ValueError(f"model labels {unknown} have no counterpart among the dataset tags {names}")
    return mapping
