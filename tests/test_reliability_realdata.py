"""No word lost on the real CoNLL-2003 test set: words scored by evaluation (train_accelerate.py
--max_steps 0) and words tagged by `python -m nerforge.predict --conll` equal the gold words, at
max_length 32, 64 and 512. A tiny random BERT over the test set's own vocabulary (seconds on CPU)."""

from __future__ import annotations

import json

import pytest
from conftest import CONLL_DIR, NER, SAMPLE_DIR
from reliability_report import record
from test_train import run

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not (CONLL_DIR / "test.txt").is_file(), reason=f"{CONLL_DIR} is absent"),
]


def gold_counts():
    sentences, words, cur = 0, 0, 0
    for line in (CONLL_DIR / "test.txt").read_text(encoding="utf-8").split("\n"):
        line = line.strip()
        if not line or line.startswith("-DOCSTART-"):
            sentences += cur > 0
            cur = 0
            continue
        cur += 1
        words += 1
    return sentences + (cur > 0), words


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from nerforge.modeling import build_tiny_bert

    tmp = tmp_path_factory.mktemp("real")
    data = tmp / "data"
    data.mkdir()
    # the real test set; small made-up train/valid so that only the test set costs time
    (data / "train.txt").symlink_to(SAMPLE_DIR / "train.txt")
    (data / "valid.txt").symlink_to(SAMPLE_DIR / "valid.txt")
    (data / "test.txt").symlink_to(CONLL_DIR / "test.txt")
    words = [ln.split()[0] for ln in (CONLL_DIR / "test.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
    model = build_tiny_bert(words, NER, tmp / "tiny", seed=0)
    return tmp, data, model


LENGTHS = [32, pytest.param(64, marks=pytest.mark.slow), pytest.param(512, marks=pytest.mark.slow)]


@pytest.mark.parametrize("max_length", LENGTHS)
def test_evaluation_scores_every_gold_word(setup, max_length):
    tmp, data, model = setup
    out = tmp / f"eval{max_length}"
    run(
        "--data_dir",
        str(data),
        "--output_dir",
        str(out),
        "--model_name_or_path",
        str(model),
        "--max_steps",
        "0",
        "--max_length",
        str(max_length),
        "--stride",
        str(min(32, max_length // 4)),
        "--report_to",
        "none",
        "--per_device_eval_batch_size",
        "64",
        # pipeline('ner') on the 3,453 test sentences, twice, was 27 of each run's 31 s; these runs count words
        "--evaluate_pipeline",
        "false",
    )
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    sentences, words = gold_counts()
    assert (metrics["num_sentences"], metrics["num_words"]) == (sentences, words)
    record(
        "words",
        **{
            f"evaluation, max_length {max_length}": f"{metrics['num_words']} of {words} words "
            f"({metrics['num_sentences']} sentences)"
        },
    )


@pytest.mark.parametrize("max_length", LENGTHS)
def test_predict_command_tags_every_gold_word(setup, max_length, capsys):
    from nerforge.cli.predict import main

    tmp, data, model = setup
    out = tmp / f"pred{max_length}.txt"
    code = main(
        [
            "--model",
            str(model),
            "--conll",
            str(CONLL_DIR / "test.txt"),
            "--output",
            str(out),
            "--max-length",
            str(max_length),
            "--batch-size",
            "64",
            "--metrics-json",
            str(tmp / "m.json"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    src = (CONLL_DIR / "test.txt").read_text(encoding="utf-8").split("\n")
    res = out.read_text(encoding="utf-8").split("\n")
    assert len(res) == len(src)
    tagged = 0
    for a, b in zip(src, res):
        if a.strip() and not a.startswith("-DOCSTART-"):
            assert b.split()[:-1] == a.split() and b.split()[-1] in NER
            tagged += 1
        elif a.strip():
            assert b == a + " O"  # -DOCSTART- gets O: every non-blank line has 5 columns (conlleval)
        else:
            assert a == b
    sentences, words = gold_counts()
    m = json.loads((tmp / "m.json").read_text())
    assert tagged == words == m["num_words"] and m["num_sentences"] == sentences
    record(
        "words",
        **{
            f"predict --conll, max_length {max_length}": f"{tagged} of {words} words tagged, "
            f"{len(res)} of {len(src)} lines out"
        },
    )
