"""nerforge.label_errors and nerforge.cross_fit's pure parts: class probabilities, ranking, the spans to
re-check, the CoNLL++ yardstick, folds of whole documents."""

import numpy as np
import pytest

from nerforge.cross_fit import document_folds
from nerforge.label_errors import (
    audit_records,
    class_probabilities,
    differing_sentences,
    precision_at,
    rank,
    recall_at,
    sentence_spans,
)

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TO_NAME = dict(enumerate(TAGS))


def logits_for(tags, confidence=6.0):
    """Logits that put most of the mass on the given tags."""
    z = np.zeros((len(tags), len(TAGS)))
    for j, t in enumerate(tags):
        z[j, TAGS.index(t)] = confidence
    return z


def test_types_sum_their_tags_probabilities():
    z = np.log(np.array([[0.1, 0.3, 0.2, 0.25, 0.15]]))
    labels, probs, names = class_probabilities([z], TO_NAME, [["I-PER"]], "types")
    assert names == ["O", "LOC", "PER"]
    np.testing.assert_allclose(probs[0], [[0.1, 0.4, 0.5]])
    assert labels[0].tolist() == [2]
    labels, probs, names = class_probabilities([z], TO_NAME, [["I-PER"]], "tags")
    assert names == ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
    np.testing.assert_allclose(probs[0], [[0.1, 0.25, 0.3, 0.15, 0.2]])
    assert labels[0].tolist() == [4]


def test_class_probabilities_rejects_what_does_not_fit():
    with pytest.raises(ValueError, match="2 words predicted but 1 gold"):
        class_probabilities([np.zeros((2, 5))], TO_NAME, [["O"]])
    with pytest.raises(ValueError, match="MISC"):
        class_probabilities([np.zeros((1, 5))], TO_NAME, [["B-MISC"]])
    with pytest.raises(ValueError, match="classes must be"):
        class_probabilities([np.zeros((1, 5))], TO_NAME, [["O"]], "spans")


def corpus():
    """Six sentences; sentence 2's gold says LOC where the model is sure of PER, sentence 4's gold misses
    a PER the model is sure of; the rest agree."""
    gold = [
        ["B-PER", "I-PER", "O"],
        ["O", "B-LOC"],
        ["B-LOC", "O", "O"],
        ["O", "O"],
        ["O", "O", "O"],
        ["B-PER", "O"],
    ]
    model = [
        ["B-PER", "I-PER", "O"],
        ["O", "B-LOC"],
        ["B-PER", "O", "O"],
        ["O", "O"],
        ["B-PER", "O", "O"],
        ["B-PER", "O"],
    ]
    return gold, model


@pytest.mark.parametrize("method", ["confident-learning", "disagreement"])
def test_contradicted_sentences_rank_first_with_their_spans(method):
    pytest.importorskip("cleanlab") if method == "confident-learning" else None
    gold, model = corpus()
    logits = [logits_for(m) for m in model]
    labels, probs, _ = class_probabilities(logits, TO_NAME, gold)
    r = rank(labels, probs, method)
    assert set(r["order"][:2]) == {2, 4}
    assert set(r["flagged"]) == {2, 4}
    words = [[f"w{i}{j}" for j in range(len(g))] for i, g in enumerate(gold)]
    records = audit_records({"words": words, "gold": gold, "pred": model, "docs": [0, 0, 1, 1, 1, 2]}, r)
    by_sentence = {x["sentence"]: x for x in records}
    assert set(by_sentence) == {2, 4}
    assert by_sentence[2]["gold"] == {"type": "LOC", "start": 0, "end": 1, "text": "w20"}
    assert by_sentence[2]["suggested"] == {"type": "PER", "start": 0, "end": 1, "text": "w20"}
    assert by_sentence[4]["gold"] is None and by_sentence[4]["suggested"]["type"] == "PER"
    assert [x["rank"] for x in records] == [1, 2] and by_sentence[4]["document"] == 1


def test_disagreement_scores_are_the_gold_label_probability():
    gold, model = corpus()
    labels, probs, _ = class_probabilities([logits_for(m, 2.0) for m in model], TO_NAME, gold)
    r = rank(labels, probs, "disagreement")
    for i in range(len(gold)):
        np.testing.assert_allclose(r["word_scores"][i], probs[i][np.arange(len(labels[i])), labels[i]])
        assert r["sentence_scores"][i] == pytest.approx(r["word_scores"][i].min())
    assert r["order"][-1] != 2


def test_empty_sentences_are_never_flagged():
    labels, probs, _ = class_probabilities([np.zeros((0, 5)), logits_for(["B-PER"])], TO_NAME, [[], ["O"]])
    r = rank(labels, probs, "disagreement")
    assert r["order"] == [1, 0] and r["sentence_scores"][0] == 1.0 and 0 not in r["flagged"]


def test_spans_pair_gold_and_model_entities_once():
    words = ["New", "York", "Times", "said"]
    gold = ["B-LOC", "I-LOC", "O", "O"]
    pred = ["B-ORG", "I-ORG", "I-ORG", "O"]
    spans = sentence_spans(words, gold, pred, [0, 1, 2], np.array([0.2, 0.3, 0.1, 0.9]))
    # words 0 and 1 are in the same (gold LOC, model ORG) pair; word 2 is outside the gold entity
    assert len(spans) == 2
    assert spans[0]["gold"] is None and spans[0]["suggested"]["text"] == "New York Times"
    assert spans[0]["score"] == pytest.approx(0.1)
    assert spans[1]["gold"]["text"] == "New York" and spans[1]["suggested"]["type"] == "ORG"
    # a flagged word with no entity on either side gives no span
    assert sentence_spans(["a"], ["O"], ["O"], [0], np.array([0.4])) == []


def test_differing_sentences_ignores_the_iob_spelling():
    iob1 = [["I-LOC", "O"], ["I-PER", "I-PER"], ["O"]]
    iob2 = [["B-LOC", "O"], ["B-PER", "B-PER"], ["B-ORG"]]
    assert differing_sentences(iob1, iob2) == {1, 2}
    with pytest.raises(ValueError, match="sentence 0"):
        differing_sentences([["O"]], [["O", "O"]])


def test_precision_and_recall_at_k():
    order, truth = [5, 1, 7, 2, 9], {1, 2, 3, 4}
    assert precision_at(order, truth, 2) == 0.5
    assert precision_at(order, truth, 4) == 0.5
    assert recall_at(order, truth, 4) == 0.5
    assert recall_at(order, set(), 3) == 0.0


def test_folds_keep_documents_whole_and_balanced():
    docs = [d for d in range(10) for _ in range(d % 3 + 1)]
    folds = document_folds(docs, 3, seed=1)
    assert folds == document_folds(docs, 3, seed=1)
    for d in set(docs):
        assert len({f for f, x in zip(folds, docs) if x == d}) == 1
    per_fold = [len({x for f, x in zip(folds, docs) if f == k}) for k in range(3)]
    assert sorted(per_fold) == [3, 3, 4]
    assert folds != document_folds(docs, 3, seed=2)
    with pytest.raises(ValueError, match="at least 2"):
        document_folds(docs, 1)
    with pytest.raises(ValueError, match="4 folds need at least 4 documents"):
        document_folds([0, 0, 1, 2], 4)
