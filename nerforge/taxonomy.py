"""Where a model fails: entity errors by kind, confusions between types, scores by slice. Pure functions
of word tags; ``nerforge report`` runs them on a model's predictions.

Entities are conlleval's chunks of a sentence's tags (``nerforge.metric.entities``), as
``(type, first word, last word)``.

**Error kinds** (the categories of SemEval-2013 task 9.1, as the ``nervaluate`` package names them):

* ``correct``: a prediction with the gold entity's span and type;
* ``type``: the same span, another type;
* ``boundary``: overlapping spans, not the same, the same type;
* ``boundary_type``: overlapping spans, not the same, another type;
* ``missed``: a gold entity left without a prediction;
* ``spurious``: a prediction left without a gold entity.

**Counting one-to-many overlaps.** Gold and predicted entities are matched one to one: first the
pairs with the same span, then overlapping pairs, greedily, preferring the same type, then the larger
overlap, then the leftmost. A gold entity whose overlapping predictions are all matched to other gold
entities counts as ``missed``; a prediction whose overlapping gold entities are all taken counts as
``spurious``. (Example: gold ``[New York] [Mets]`` against the prediction ``[New York Mets]`` gives one
``boundary`` and one ``missed``.) So, for every sentence and in total:

    correct + type + boundary + boundary_type + missed   = gold entities
    correct + type + boundary + boundary_type + spurious = predicted entities

Per type, the first four kinds and ``missed`` are counted under the gold entity's type and
``spurious`` under the predicted type: the first identity holds per type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from nerforge.metric import entities

KINDS = ("correct", "type", "boundary", "boundary_type", "missed", "spurious")
MATCHED = ("correct", "type", "boundary", "boundary_type")
NONE = "none"

Entity = tuple[str, int, int]

__all__ = [
    "KINDS",
    "entities",
    "classify",
    "count_kinds",
    "confusion",
    "slice_scores",
    "length_bucket",
    "sentence_length_bucket",
    "is_headline",
    "surface",
]


def _overlap(a: Entity, b: Entity) -> int:
    return max(0, min(a[2], b[2]) - max(a[1], b[1]) + 1)


def classify(gold: Sequence[Entity], pred: Sequence[Entity]) -> list[dict]:
    """One record per gold entity and per prediction left unmatched: ``{"kind", "gold", "pred"}``
    (``gold``/``pred`` an entity or None), matched one to one as the module docstring says."""
    records = []
    gold_left, pred_left = list(gold), list(pred)
    by_span = {(p[1], p[2]): p for p in pred_left}
    for g in list(gold_left):
        p = by_span.get((g[1], g[2]))
        if p is not None and p in pred_left:
            records.append({"kind": "correct" if p[0] == g[0] else "type", "gold": g, "pred": p})
            gold_left.remove(g)
            pred_left.remove(p)
    pairs = [(g, p) for g in gold_left for p in pred_left if _overlap(g, p)]
    pairs.sort(key=lambda gp: (gp[0][0] != gp[1][0], -_overlap(*gp), gp[0][1], gp[1][1]))
    for g, p in pairs:
        if g in gold_left and p in pred_left:
            records.append({"kind": "boundary" if p[0] == g[0] else "boundary_type", "gold": g, "pred": p})
            gold_left.remove(g)
            pred_left.remove(p)
    records += [{"kind": "missed", "gold": g, "pred": None} for g in gold_left]
    records += [{"kind": "spurious", "gold": None, "pred": p} for p in pred_left]
    return records


def count_kinds(records: Sequence[dict]) -> dict:
    """``{"overall": {kind: n}, "per_type": {type: {kind: n}}}`` (see the module docstring)."""
    overall = Counter({k: 0 for k in KINDS})
    per_type: dict[str, Counter] = {}
    for r in records:
        overall[r["kind"]] += 1
        typ = (r["gold"] or r["pred"])[0]
        per_type.setdefault(typ, Counter({k: 0 for k in KINDS}))[r["kind"]] += 1
    return {"overall": dict(overall), "per_type": {t: dict(c) for t, c in sorted(per_type.items())}}


def confusion(records: Sequence[dict]) -> dict:
    """Gold type x predicted type over the records, ``none`` for a missed or spurious side:
    ``{gold type: {predicted type: n}}``."""
    table: dict[str, Counter] = {}
    for r in records:
        g = r["gold"][0] if r["gold"] else NONE
        p = r["pred"][0] if r["pred"] else NONE
        table.setdefault(g, Counter())[p] += 1
    return {g: dict(c) for g, c in table.items()}


def surface(words: Sequence[str], e: Entity) -> str:
    return " ".join(words[e[1] : e[2] + 1])


def length_bucket(e: Entity) -> str:
    n = e[2] - e[1] + 1
    return str(n) if n < 4 else "4+"


def sentence_length_bucket(n_words: int) -> str:
    for hi, name in ((10, "1-10"), (20, "11-20"), (40, "21-40")):
        if n_words <= hi:
            return name
    return "41+"


def is_headline(words: Sequence[str]) -> bool:
    """All capitals: every word with a letter is upper case (CoNLL-2003's headlines and datelines)."""
    cased = [w for w in words if any(c.isalpha() for c in w)]
    return bool(cased) and all(w.isupper() for w in cased)


def slice_scores(
    sentences: Sequence[Sequence[str]],
    gold: Sequence[Sequence[Entity]],
    pred: Sequence[Sequence[Entity]],
    key: Callable[[int, Entity], str],
) -> dict:
    """Entity-level precision, recall, F1 and support per slice: ``key(sentence index, entity)``
    names the slice of a gold or predicted entity (a right prediction has its gold entity's slice,
    for every key that depends on the span and the sentence only)."""
    stats: dict[str, Counter] = {}
    for i, (g, p) in enumerate(zip(gold, pred)):
        right = set(g) & set(p)
        for e in g:
            stats.setdefault(key(i, e), Counter())["gold"] += 1
        for e in p:
            c = stats.setdefault(key(i, e), Counter())
            c["pred"] += 1
            c["tp"] += e in right
    out = {}
    for name, c in sorted(stats.items()):
        precision = c["tp"] / c["pred"] if c["pred"] else 0.0
        recall = c["tp"] / c["gold"] if c["gold"] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[name] = {"precision": precision, "recall": recall, "f1": f1, "support": c["gold"], "predicted": c["pred"]}
    return out
