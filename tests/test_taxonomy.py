"""nerforge.taxonomy on hand-worked sentences: error kinds, the counting identities, confusions, slices."""

import random

import pytest

from nerforge.taxonomy import (
    KINDS,
    classify,
    confusion,
    count_kinds,
    entities,
    is_headline,
    length_bucket,
    slice_scores,
)


def kinds(gold_tags, pred_tags):
    return sorted(r["kind"] for r in classify(entities(gold_tags), entities(pred_tags)))


@pytest.mark.parametrize(
    "gold, pred, expected",
    [
        # same span and type
        (["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"], ["correct"]),
        # same span, other type
        (["B-PER", "I-PER", "O"], ["B-ORG", "I-ORG", "O"], ["type"]),
        # overlap, same type (prediction too short)
        (["B-LOC", "I-LOC", "O"], ["B-LOC", "O", "O"], ["boundary"]),
        # overlap, other type (prediction too long)
        (["B-LOC", "O", "O"], ["B-ORG", "I-ORG", "O"], ["boundary_type"]),
        # nothing predicted / nothing there
        (["O", "B-MISC", "O"], ["O", "O", "O"], ["missed"]),
        (["O", "O", "O"], ["O", "B-MISC", "O"], ["spurious"]),
        # one prediction over two gold entities: one boundary, the other gold entity missed
        (["B-ORG", "I-ORG", "B-ORG"], ["B-ORG", "I-ORG", "I-ORG"], ["boundary", "missed"]),
        # two predictions inside one gold entity: one boundary, the other prediction spurious
        (["B-PER", "I-PER", "I-PER"], ["B-PER", "B-PER", "O"], ["boundary", "spurious"]),
        # the same-type overlap is preferred to a larger other-type one
        (["B-LOC", "I-LOC", "I-LOC", "O"], ["B-ORG", "I-ORG", "B-LOC", "O"], ["boundary", "spurious"]),
        # IOB1 input reads as conlleval does
        (["I-PER", "I-PER", "B-PER"], ["B-PER", "I-PER", "B-PER"], ["correct", "correct"]),
    ],
)
def test_hand_worked_kinds(gold, pred, expected):
    assert kinds(gold, pred) == sorted(expected)


def test_records_name_their_entities():
    (r,) = classify(entities(["B-PER", "I-PER"]), entities(["B-ORG", "I-ORG"]))
    assert r == {"kind": "type", "gold": ("PER", 0, 1), "pred": ("ORG", 0, 1)}


def random_tags(rng, n):
    tags, types = [], ["PER", "ORG", "LOC"]
    for _ in range(n):
        r = rng.random()
        tags.append("O" if r < 0.5 else ("B-" if r < 0.75 else "I-") + rng.choice(types))
    return tags


def test_counting_identities_hold_on_random_sentences():
    rng = random.Random(0)
    all_records, n_gold, n_pred = [], 0, 0
    for _ in range(2000):
        n = rng.randint(1, 12)
        g, p = entities(random_tags(rng, n)), entities(random_tags(rng, n))
        records = classify(g, p)
        c = count_kinds(records)["overall"]
        assert c["correct"] + c["type"] + c["boundary"] + c["boundary_type"] + c["missed"] == len(g)
        assert c["correct"] + c["type"] + c["boundary"] + c["boundary_type"] + c["spurious"] == len(p)
        all_records += records
        n_gold, n_pred = n_gold + len(g), n_pred + len(p)
    counts = count_kinds(all_records)
    total = counts["overall"]
    assert sum(total[k] for k in KINDS if k != "spurious") == n_gold
    assert sum(total[k] for k in KINDS if k != "missed") == n_pred
    assert all(total[k] > 0 for k in KINDS)  # the random sentences exercise every kind
    gold_per_type = {}
    for r in all_records:
        if r["gold"]:
            gold_per_type[r["gold"][0]] = gold_per_type.get(r["gold"][0], 0) + 1
    for typ, c in counts["per_type"].items():
        assert sum(c[k] for k in KINDS if k != "spurious") == gold_per_type.get(typ, 0)


def test_confusion_table():
    records = classify(entities(["B-PER", "O", "B-LOC", "O"]), entities(["B-ORG", "O", "O", "B-MISC"]))
    assert confusion(records) == {"PER": {"ORG": 1}, "LOC": {"none": 1}, "none": {"MISC": 1}}


def test_slices_by_length_and_headlines():
    sents = [["EU", "rejects", "German", "call"], ["SOCCER", "-", "JAPAN", "WIN"]]
    gold = [entities(["B-ORG", "O", "B-MISC", "O"]), entities(["O", "O", "B-LOC", "O"])]
    pred = [entities(["B-ORG", "O", "B-MISC", "I-MISC"]), entities(["O", "O", "B-LOC", "O"])]
    by_length = slice_scores(sents, gold, pred, lambda i, e: length_bucket(e))
    assert by_length["1"] == {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3, "predicted": 2}
    assert by_length["2"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 1}
    caps = slice_scores(sents, gold, pred, lambda i, e: "headline" if is_headline(sents[i]) else "rest")
    assert caps["headline"]["f1"] == 1.0 and caps["rest"]["support"] == 2
    assert is_headline(["SOCCER", "-", "JAPAN"]) and not is_headline(["EU", "rejects"]) and not is_headline(["-"])
