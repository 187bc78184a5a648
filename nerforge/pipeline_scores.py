"""What a `pipeline("ner")` user gets: entity scores of a model run through transformers' own pipeline.

Two ways to feed it, both scored against the gold words with :func:`nerforge.metric.score`:

* ``sentence``: one sentence per call (its words joined by single spaces), as most users do;
* ``document``: one document per call (all its sentences' words joined by single spaces), long
  documents cut by the pipeline itself into overlapping chunks (``stride`` pieces of overlap), so that
  the model sees the context it was trained with. A split without documents (no ``document_id``, or
  one document id for everything) is fed sentence by sentence in both modes: the two figures are equal.

The pipeline's entities are character spans; each is mapped back to the words it covers (an entity
whose edges fall inside a word takes the whole word): its first word ``B-TYPE``, the rest ``I-TYPE``.
"""

from __future__ import annotations

from collections.abc import Sequence

from nerforge.features import has_documents
from nerforge.metric import score

# Pieces of overlap between the pipeline's chunks of a long document: 32 scored 0.26 F1 above 64 with
# chunks as long as the training windows (BENCHMARKS.md, "What a pipeline user gets").
DOCUMENT_STRIDE = 32

__all__ = ["DOCUMENT_STRIDE", "word_spans", "entity_tags", "group_documents", "pipeline_scores"]


def word_spans(words: Sequence[str]) -> list[tuple[int, int]]:
    """Character [start, end) of each word in ``" ".join(words)``."""
    spans, pos = [], 0
    for w in words:
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    return spans


def entity_tags(entities: list[dict], spans: list[tuple[int, int]]) -> list[str]:
    """IOB2 word tags from the pipeline's aggregated entities (``entity_group``, ``start``, ``end``)."""
    tags = ["O"] * len(spans)
    for ent in sorted(entities, key=lambda e: e["start"]):
        covered = [k for k, (s, e) in enumerate(spans) if s < ent["end"] and ent["start"] < e]
        for i, k in enumerate(covered):
            if tags[k] == "O":
                tags[k] = ("B-" if i == 0 else "I-") + ent["entity_group"]
    return tags


def group_documents(document_ids: Sequence[int] | None, n: int) -> list[range]:
    """Consecutive sentences with the same document id, as ranges; every sentence alone when the ids say
    nothing (None, or one id for all)."""
    if not has_documents(document_ids):
        return [range(i, i + 1) for i in range(n)]
    groups, start = [], 0
    for i in range(1, n + 1):
        if i == n or document_ids[i] != document_ids[i - 1]:
            groups.append(range(start, i))
            start = i
    return groups


def _tag(ner, texts: list[list[list[str]]], batch_size: int) -> list[list[str]]:
    """Word tags of every sentence, each text being a list of sentences fed as one call."""
    joined = [" ".join(" ".join(s) for s in sents) for sents in texts]
    out = []
    for sents, ents in zip(texts, ner(joined, batch_size=batch_size)):
        words = [w for s in sents for w in s]
        tags = entity_tags(ents, word_spans(words))
        k = 0
        for s in sents:
            out.append(tags[k : k + len(s)])
            k += len(s)
    return out


def pipeline_scores(ner, sentences: list[list[str]], gold: list[list[str]], document_ids=None, batch_size=32) -> dict:
    """``{"sentence": scores, "document": scores}`` (precision, recall, f1) of a token-classification
    pipeline (made with an aggregation strategy and, for long documents, a ``stride``)."""
    keep = [i for i, s in enumerate(sentences) if s]  # the pipeline has nothing to say about empty ones
    sents = [sentences[i] for i in keep]
    gold = [gold[i] for i in keep]
    docs = [document_ids[i] for i in keep] if document_ids is not None else None
    result = {}
    for mode, groups in (
        ("sentence", group_documents(None, len(sents))),
        ("document", group_documents(docs, len(sents))),
    ):
        pred = _tag(ner, [[sents[i] for i in g] for g in groups], batch_size)
        m = score(gold, pred)
        result[mode] = {k: m[k] for k in ("precision", "recall", "f1")}
    return result
