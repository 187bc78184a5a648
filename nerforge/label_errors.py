"""Likely gold-label errors of a split, ranked best first (``nerforge audit``).

A model's out-of-sample word probabilities (a model that never trained on the split: the test split for
an ordinary export, or K models trained on the other folds for the train split, see
:mod:`nerforge.cross_fit`) are handed to confident learning, cleanlab's token-classification
functions: ``find_label_issues`` flags the words whose gold label the model contradicts beyond its
per-class confidence thresholds, ``get_label_quality_scores`` scores every word and sentence. Flagged
sentences come first, lowest sentence score first; within a sentence the flagged spans are ranked the
same way. The plain baseline (``method="disagreement"``: the model's probability of the gold label,
lowest first, no thresholds) is kept beside it, so the benchmark can say what confident learning adds.

By default the classes are entity types (``O``, ``LOC``, ``PER``...: a word's B- and I- probabilities
summed), as cleanlab's token-classification tutorial does: a B-/I- boundary slip is rarely what an
annotator needs to re-check. ``classes="tags"`` keeps the tag set as it is.

Everything here is pure except :func:`rank` (cleanlab, an extra: ``pip install 'nerforge[audit]'``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nerforge.metric import entities, entity_type

__all__ = [
    "METHODS",
    "CLASSES",
    "class_probabilities",
    "rank",
    "sentence_spans",
    "audit_records",
    "differing_sentences",
    "precision_at",
    "recall_at",
    "markdown",
]

METHODS = ("confident-learning", "disagreement")
CLASSES = ("types", "tags")


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def class_probabilities(
    logits: Sequence, to_name: dict[int, str], gold: Sequence[Sequence[str]], classes: str = "types"
) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(gold class ids per sentence, probabilities [words, classes] per sentence, class names) from the
    per-word logits of :func:`nerforge.scoring.predict_split` (columns in the model's id order,
    ``to_name`` mapping a model id to the dataset's tag name) and the gold tag names.

    ``classes="types"``: ``O`` then the entity types in sorted order, a type's probability the sum of its
    tags'. ``classes="tags"``: the dataset's tag names as the model names them (sorted, ``O`` first)."""
    if classes not in CLASSES:
        raise ValueError(f"classes must be one of {CLASSES}, not {classes!r}")
    model_names = [to_name[i] for i in range(len(to_name))]
    if classes == "types":
        key = [entity_type(n) or "O" for n in model_names]
        gold_key = [[entity_type(t) or "O" for t in s] for s in gold]
    else:
        if len(set(model_names)) != len(model_names):
            raise ValueError(f"classes='tags' needs one model label per tag name; got {model_names}")
        key, gold_key = model_names, [list(s) for s in gold]
    names = ["O"] + sorted({k for k in key if k != "O"})
    index = {n: j for j, n in enumerate(names)}
    # [model labels, classes] 0/1 matrix: a class's probability is the sum of its model labels'.
    merge = np.zeros((len(model_names), len(names)), dtype=np.float64)
    for i, k in enumerate(key):
        merge[i, index[k]] = 1.0
    labels, probs = [], []
    for z, g in zip(logits, gold_key):
        z = np.asarray(z, dtype=np.float64)
        if len(z) != len(g):
            raise ValueError(f"{len(z)} words predicted but {len(g)} gold tags")
        unknown = sorted({t for t in g if t not in index})
        if unknown:
            raise ValueError(f"gold labels {unknown} are not among the model's classes {names}")
        probs.append(_softmax(z) @ merge if len(z) else np.zeros((0, len(names))))
        labels.append(np.array([index[t] for t in g], dtype=np.int64))
    return labels, probs, names


def rank(labels: list[np.ndarray], probs: list[np.ndarray], method: str = "confident-learning") -> dict:
    """Rank the sentences by how likely their gold labels are wrong.

    Returns ``order`` (sentence indices, likeliest first), ``sentence_scores`` (lower: likelier wrong),
    ``word_scores`` (one array per sentence) and ``flagged`` (sentence -> flagged word indices).
    Sentences without words score 1 and are never flagged."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    n = len(labels)
    live = [i for i in range(n) if len(labels[i])]
    sentence_scores = np.ones(n)
    word_scores = [np.ones(len(labels[i])) for i in range(n)]
    flagged: dict[int, list[int]] = {}
    if live:
        lab = [labels[i] for i in live]
        pr = [probs[i] for i in live]
        if method == "confident-learning":
            from cleanlab.token_classification.filter import find_label_issues
            from cleanlab.token_classification.rank import get_label_quality_scores

            scores, token_info = get_label_quality_scores(lab, pr)
            for k, i in enumerate(live):
                sentence_scores[i] = float(scores[k])
                word_scores[i] = np.asarray(token_info[k], dtype=np.float64)
            for k, j in find_label_issues(lab, pr):
                flagged.setdefault(live[k], []).append(int(j))
        else:  # the model's probability of the gold label; flagged where it prefers another class
            for i, y, p in zip(live, lab, pr):
                s = p[np.arange(len(y)), y]
                word_scores[i] = s
                sentence_scores[i] = float(s.min())
                wrong = np.flatnonzero(p.argmax(-1) != y)
                if len(wrong):
                    flagged[i] = [int(j) for j in wrong]
    for i in flagged:
        flagged[i] = sorted(set(flagged[i]))
    # Flagged sentences first, then the rest; lowest score first in each; ties by position (stable).
    order = sorted(range(n), key=lambda i: (i not in flagged, sentence_scores[i], i))
    return {"order": order, "sentence_scores": sentence_scores, "word_scores": word_scores, "flagged": flagged}


def _covering(spans: list[tuple[str, int, int]], j: int) -> tuple[str, int, int] | None:
    for s in spans:
        if s[1] <= j <= s[2]:
            return s
    return None


def _span(words: Sequence[str], s: tuple[str, int, int] | None) -> dict | None:
    if s is None:
        return None
    typ, first, last = s
    return {"type": typ, "start": first, "end": last + 1, "text": " ".join(words[first : last + 1])}


def sentence_spans(
    words: Sequence[str], gold: Sequence[str], pred: Sequence[str], flagged: Sequence[int], word_scores
) -> list[dict]:
    """The spans to re-check in one sentence: for every flagged word, the gold entity that covers it
    (None: gold says no entity there) and the model's entity that covers it (None: the model sees no
    entity). Each pair once, scored by the lowest score of the flagged words that led to it, lowest first."""
    gold_spans, pred_spans = entities(gold), entities(pred)
    seen: dict[tuple, dict] = {}
    for j in flagged:
        g, p = _covering(gold_spans, j), _covering(pred_spans, j)
        if g is None and p is None:  # the word alone (a B-/I- slip inside no entity on either side)
            continue
        key = (g, p)
        score = float(word_scores[j])
        if key not in seen or score < seen[key]["score"]:
            seen[key] = {"gold": _span(words, g), "suggested": _span(words, p), "score": score}
    return sorted(seen.values(), key=lambda r: (r["score"], (r["gold"] or r["suggested"])["start"]))


def audit_records(pred: dict, ranking: dict) -> list[dict]:
    """One record per flagged span, in ranking order: ``rank`` (of its sentence, from 1), ``sentence``
    (index in the split), ``document``, ``words``, ``gold`` and ``suggested`` spans (``type``, ``start``,
    ``end`` exclusive, ``text``; None where that side has no entity), ``score`` (the span's, lower is
    likelier wrong) and ``sentence_score``. ``pred`` is :func:`nerforge.scoring.predict_split`'s."""
    out = []
    r = 0
    for i in ranking["order"]:
        if i not in ranking["flagged"]:
            break
        spans = sentence_spans(
            pred["words"][i], pred["gold"][i], pred["pred"][i], ranking["flagged"][i], ranking["word_scores"][i]
        )
        if not spans:
            continue
        r += 1
        for s in spans:
            out.append(
                {
                    "rank": r,
                    "sentence": int(i),
                    "document": int(pred["docs"][i]),
                    "words": list(pred["words"][i]),
                    "gold": s["gold"],
                    "suggested": s["suggested"],
                    "score": round(s["score"], 6),
                    "sentence_score": round(float(ranking["sentence_scores"][i]), 6),
                }
            )
    return out


# ---------------------------------------------------------------------------------------------- evaluation


def differing_sentences(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]]) -> set[int]:
    """Indices of the sentences whose entities (type and words) differ between two labellings of the
    same sentences (IOB1 and IOB2 spellings of one entity are equal)."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} sentences against {len(b)}")
    for i, (x, y) in enumerate(zip(a, b)):
        if len(x) != len(y):
            raise ValueError(f"sentence {i}: {len(x)} tags against {len(y)}")
    return {i for i, (x, y) in enumerate(zip(a, b)) if entities(x) != entities(y)}


def precision_at(order: Sequence[int], truth: set[int], k: int) -> float:
    """Share of the first ``k`` ranked sentences that are in ``truth``."""
    top = list(order)[:k]
    return sum(i in truth for i in top) / len(top) if top else 0.0


def recall_at(order: Sequence[int], truth: set[int], k: int) -> float:
    """Share of ``truth`` found in the first ``k`` ranked sentences."""
    return sum(i in truth for i in list(order)[:k]) / len(truth) if truth else 0.0


# ---------------------------------------------------------------------------------------------- output


def _marked(words: Sequence[str], s: dict | None) -> str:
    if s is None:
        return " ".join(words)
    w = list(words)
    return " ".join(w[: s["start"]] + ["[" + " ".join(w[s["start"] : s["end"]]) + "]" + s["type"]] + w[s["end"] :])


def markdown(
    records: list[dict], summary: dict, sentences: Sequence[Sequence[str]], docs: Sequence, top: int = 50
) -> str:
    """``audit.md``: the summary and the first ``top`` spans, each with the sentences before and after it
    in the same document as context."""
    lines = [
        f"# Label audit: {summary['split']} split",
        "",
        f"Model `{summary['model']}`, {summary['method']} over {summary['classes']}; "
        f"{summary['flagged_sentences']} of {summary['sentences']} sentences flagged "
        f"({summary['flagged_spans']} spans). Lower score: likelier a gold-label error.",
        "",
        f"Command: `{summary['command']}`",
        "",
    ]
    for n, r in enumerate(records[:top], 1):
        i = r["sentence"]
        gold = f'{r["gold"]["type"]} "{r["gold"]["text"]}"' if r["gold"] else "no entity"
        sug = f'{r["suggested"]["type"]} "{r["suggested"]["text"]}"' if r["suggested"] else "no entity"
        lines += [f"## {n}. sentence {i} (document {r['document']}), score {r['score']:.4f}", ""]
        lines.append(f"gold: {gold}; suggested: {sug}")
        lines.append("")
        if i > 0 and docs[i - 1] == docs[i] and sentences[i - 1]:
            lines.append(f"> {' '.join(sentences[i - 1])}")
        lines.append(f"> **gold:** {_marked(r['words'], r['gold'])}")
        lines.append(f"> **suggested:** {_marked(r['words'], r['suggested'])}")
        if i + 1 < len(sentences) and docs[i + 1] == docs[i] and sentences[i + 1]:
            lines.append(f"> {' '.join(sentences[i + 1])}")
        lines.append("")
    return "\n".join(lines)
