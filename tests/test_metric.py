"""Tests for nerforge.metric: hand-computed scores and an independent conlleval check."""

from __future__ import annotations

import random
import warnings

import pytest

from nerforge.metric import align_label_names, entity_type, prefix_bare_labels, score

CONLL_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


# --- a tiny independent implementation of conlleval's chunk rule -------------


def _chunks(tags):
    """Set of (start, end_exclusive, type) chunks following conlleval's rule."""
    found = set()
    start, typ = None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, t = tag.partition("-")
        if tag == "O":
            prefix, t = "O", None
        begins = prefix == "B" or (prefix == "I" and t != typ)
        if start is not None and (tag == "O" or begins):
            found.add((start, i, typ))
            start, typ = None, None
        if begins:
            start, typ = i, t
    return found


def _reference_prf(y_true, y_pred):
    gold, pred = set(), set()
    for s, (g, p) in enumerate(zip(y_true, y_pred)):
        gold |= {(s,) + c for c in _chunks(g)}
        pred |= {(s,) + c for c in _chunks(p)}
    correct = len(gold & pred)
    p = correct / len(pred) if pred else 0.0
    r = correct / len(gold) if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def _to_iob1(tags):
    """IOB2 -> IOB1: B-X only when the previous word is of the same type."""
    out = []
    prev = None
    for tag in tags:
        if tag.startswith("B-") and prev != tag[2:]:
            out.append("I-" + tag[2:])
        else:
            out.append(tag)
        prev = None if tag == "O" else tag[2:]
    return out


# --- hand-computed cases -----------------------------------------------------


def test_three_gold_two_pred_one_right():
    y_true = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"]]
    y_pred = [["B-PER", "I-PER", "O", "O", "O", "B-LOC"]]
    s = score(y_true, y_pred)
    assert s["precision"] == pytest.approx(0.5)
    assert s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["num_sentences"] == 1 and s["num_words"] == 6
    assert set(s["per_type"]) == {"PER", "LOC", "ORG"}
    assert s["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    # LOC: one gold (missed), one predicted (wrong span) -> 0/0/0, support 1
    assert s["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert s["per_type"]["ORG"]["support"] == 1 and s["per_type"]["ORG"]["recall"] == 0.0
    # weighted F1 = mean of per-type F1 weighted by support (1, 1, 1)
    assert s["weighted_f1"] == pytest.approx(1 / 3)


def test_boundary_error_counts_as_wrong():
    y_true = [["B-ORG", "I-ORG", "I-ORG", "O"]]
    y_pred = [["B-ORG", "I-ORG", "O", "O"]]
    s = score(y_true, y_pred)
    assert s["precision"] == 0.0 and s["recall"] == 0.0 and s["f1"] == 0.0
    assert s["accuracy"] == pytest.approx(3 / 4)


def test_per_type_includes_types_only_predicted():
    s = score([["O", "B-PER"]], [["B-MISC", "B-PER"]])
    assert set(s["per_type"]) == {"PER", "MISC"}
    assert s["per_type"]["MISC"]["support"] == 0
    assert s["per_type"]["MISC"]["precision"] == 0.0
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == 1.0


def test_types_and_values_are_plain_python():
    s = score([["B-PER", "O"], ["B-LOC"]], [["B-PER", "O"], ["O"]])
    for key in ("precision", "recall", "f1", "accuracy", "weighted_f1"):
        assert type(s[key]) is float and 0.0 <= s[key] <= 1.0
    for row in s["per_type"].values():
        assert type(row["support"]) is int
        assert all(type(row[k]) is float for k in ("precision", "recall", "f1"))
    assert type(s["num_words"]) is int and type(s["num_sentences"]) is int


def test_iob1_and_iob2_score_identically():
    y_true = [["B-PER", "I-PER", "B-PER", "O", "B-LOC", "I-LOC"], ["O", "B-ORG", "B-MISC", "I-MISC"]]
    y_pred = [["B-PER", "I-PER", "I-PER", "O", "B-LOC", "O"], ["O", "B-ORG", "B-MISC", "I-MISC"]]
    iob1_true = [_to_iob1(s) for s in y_true]
    iob1_pred = [_to_iob1(s) for s in y_pred]
    assert iob1_true[0] == ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-LOC"]
    a, b = score(y_true, y_pred), score(iob1_true, iob1_pred)
    for key in ("precision", "recall", "f1", "per_type"):
        assert a[key] == b[key]


def test_length_mismatch_names_sentence():
    with pytest.raises(ValueError, match="sentence 1"):
        score([["O"], ["B-PER", "O"]], [["O"], ["B-PER"]])
    with pytest.raises(ValueError, match="sentences"):
        score([["O"], ["O"]], [["O"]])


def test_no_entities_returns_zeros_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = score([["O", "O"], ["O"]], [["O", "O"], ["O"]])
    assert s["precision"] == s["recall"] == s["f1"] == s["weighted_f1"] == 0.0
    assert s["accuracy"] == 1.0
    assert s["per_type"] == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = score([["O"]], [["B-PER"]])  # predictions only
        assert s["precision"] == 0.0 and s["per_type"]["PER"]["support"] == 0
        s = score([["B-PER"]], [["O"]])  # gold only
        assert s["recall"] == 0.0 and s["per_type"]["PER"]["support"] == 1
    assert score([], [])["num_sentences"] == 0


def test_matches_independent_conlleval_on_random_sequences():
    rng = random.Random(1234)
    tags = CONLL_NAMES + ["O"] * 6  # mostly O, like real data
    for trial in range(100):
        y_true, y_pred = [], []
        for _ in range(rng.randint(1, 8)):
            n = rng.randint(1, 12)
            y_true.append([rng.choice(tags) for _ in range(n)])
            # predictions: mostly copy gold, sometimes corrupt
            y_pred.append([t if rng.random() < 0.7 else rng.choice(tags) for t in y_true[-1]])
        p, r, f = _reference_prf(y_true, y_pred)
        s = score(y_true, y_pred)
        assert s["precision"] == pytest.approx(p, abs=1e-12), (trial, y_true, y_pred)
        assert s["recall"] == pytest.approx(r, abs=1e-12), (trial, y_true, y_pred)
        assert s["f1"] == pytest.approx(f, abs=1e-12), (trial, y_true, y_pred)


# --- label alignment ---------------------------------------------------------


def test_align_identity_and_reordered():
    same = dict(enumerate(CONLL_NAMES))
    assert align_label_names(same, CONLL_NAMES) == same
    shuffled = ["B-LOC", "O", "I-MISC", "B-PER", "I-PER", "B-ORG", "I-ORG", "I-LOC", "B-MISC"]
    mapping = align_label_names({str(i): n for i, n in enumerate(shuffled)}, CONLL_NAMES)
    assert mapping == dict(enumerate(shuffled))
    assert mapping[0] == "B-LOC" and mapping[1] == "O"


def test_align_bare_labels_and_prefix_rule():
    mapping = align_label_names({0: "O", 1: "PER", 2: "LOC", 3: "ORG", 4: "MISC"}, CONLL_NAMES)
    assert mapping == {0: "O", 1: "I-PER", 2: "I-LOC", 3: "I-ORG", 4: "I-MISC"}
    ids = [1, 1, 0, 2, 3, 3, 1]
    bare = ["PER", "PER", "O", "LOC", "ORG", "ORG", "PER"]
    expected = ["B-PER", "I-PER", "O", "B-LOC", "B-ORG", "I-ORG", "B-PER"]
    assert prefix_bare_labels(bare) == expected
    assert prefix_bare_labels([mapping[i] for i in ids]) == expected
    # scoring the I-X decoding and the IOB2 decoding gives the same entity scores
    gold = [["B-PER", "I-PER", "O", "B-LOC", "B-ORG", "I-ORG", "B-PER"]]
    a = score(gold, [[mapping[i] for i in ids]])
    b = score(gold, [expected])
    assert a["f1"] == b["f1"] == 1.0


def test_prefix_keeps_prefixed_tags():
    assert prefix_bare_labels(["B-PER", "PER", "B-PER", "O", "O"]) == ["B-PER", "I-PER", "B-PER", "O", "O"]
    assert entity_type("B-MISC") == "MISC" and entity_type("O") is None and entity_type("LOC") == "LOC"


def test_align_rejects_generic_and_unknown_labels():
    with pytest.raises(ValueError, match="generic"):
        align_label_names({0: "LABEL_0", 1: "LABEL_1"}, CONLL_NAMES)
    with pytest.raises(ValueError, match="B-DATE"):
        align_label_names({0: "O", 1: "B-DATE"}, CONLL_NAMES)


# --- the offline `evaluate` module -------------------------------------------

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
METRIC_DIR = REPO_ROOT / "metrics" / "conll_ner"
EXAMPLE_REFS = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"], ["B-MISC", "O"], ["O"]]
EXAMPLE_PREDS = [["B-PER", "I-PER", "O", "O", "O", "B-LOC"], ["B-MISC", "O"], ["B-PER"]]


def test_evaluate_module_matches_score(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    evaluate = pytest.importorskip("evaluate")
    metric = evaluate.load(str(METRIC_DIR))
    got = metric.compute(predictions=EXAMPLE_PREDS, references=EXAMPLE_REFS)
    assert got == score(EXAMPLE_REFS, EXAMPLE_PREDS)
    # batch-wise accumulation gives the same result
    for p, r in zip(EXAMPLE_PREDS, EXAMPLE_REFS):
        metric.add(predictions=p, references=r)
    assert metric.compute() == score(EXAMPLE_REFS, EXAMPLE_PREDS)
    with pytest.raises(ValueError, match="sentence 0"):
        metric.compute(predictions=[["O"]], references=[["O", "O"]])


def test_evaluate_module_loads_offline_from_another_directory(tmp_path):
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        HF_HOME=str(tmp_path / "hf_home"),
        # nerforge must be importable; an editable install makes this redundant
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]),
    )
    code = (
        "import json, sys, evaluate\n"
        f"m = evaluate.load({str(METRIC_DIR)!r})\n"
        f"print(json.dumps(m.compute(predictions={EXAMPLE_PREDS!r}, references={EXAMPLE_REFS!r})))\n"
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == score(EXAMPLE_REFS, EXAMPLE_PREDS)


def test_evaluate_module_has_no_scoring_code_of_its_own():
    source = (METRIC_DIR / "conll_ner.py").read_text()
    assert "from nerforge.metric import score" in source
    assert "seqeval.metrics" not in source and "f1_score" not in source


# --- entities(): conlleval's chunks without importing seqeval -----------------

TAG_ALPHABET = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "PER", "LOC", "B-A-B"]


def test_entities_are_seqevals_chunks_on_random_tag_sequences():
    """nerforge.metric.entities (its own loop) against seqeval's get_entities, the reference the scores
    come from, on IOB1, IOB2, IOBES and bare-label sequences, valid or not (20,000 random sentences)."""
    from seqeval.metrics.sequence_labeling import get_entities

    from nerforge.metric import entities

    rng = random.Random(11)
    for n in range(20_000):
        tags = [rng.choice(TAG_ALPHABET[: 4 + n % 9]) for _ in range(rng.randint(0, 9))]
        prefixed = prefix_bare_labels(tags) if any(t in ("PER", "LOC") for t in tags) else tags
        assert entities(tags) == [(t, int(a), int(b)) for t, a, b in get_entities(prefixed)], tags
    assert entities(["I-PER", "I-PER", "B-PER", "O", "S-LOC", "E-LOC"]) == [
        ("PER", 0, 1),
        ("PER", 2, 2),
        ("LOC", 4, 4),
        ("LOC", 5, 5),
    ]
