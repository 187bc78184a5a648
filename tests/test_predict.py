"""nerforge.predict: every word predicted once (windows, document context), entities with character
offsets, the CoNLL round trip, and clean errors. Tiny random-weight BERTs only: fast and offline."""

import io
import json
import os
import random
import subprocess
import sys

import pytest
from conftest import NER, ROOT, SAMPLE_DIR, read_tagged_conll

from nerforge.features import tokenize_and_window
from nerforge.metric import score
from nerforge.predictor import Predictor, WindowSettings, entities_from_tags, export_windows, split_words, top_label

WORDS = [
    "Mara",
    "Lindqvist",
    "said",
    "Northwind",
    "Bank",
    "would",
    "open",
    "an",
    "office",
    "in",
    "Port",
    "Ellis",
    ".",
    ",",
    "Oren",
    "Shalev",
    "the",
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from nerforge.modeling import build_tiny_bert

    return build_tiny_bert(WORDS, NER, tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def predictor(tiny_model_dir):
    return Predictor.from_pretrained(tiny_model_dir, device="cpu")


def run_cli(*args, stdin=None):
    """`python -m nerforge.predict ARGS` in a fresh process (slow: imports torch; used once)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "nerforge.predict", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


@pytest.fixture
def cli(capsys, monkeypatch):
    """The command's main() in this process: (exit status, stdout, stderr)."""
    from nerforge.cli.predict import main

    def run(*args, stdin=None):
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def random_sentences(seed, lengths):
    rng = random.Random(seed)
    return [[rng.choice(WORDS + ["Washingtonian", "\ufe0f", "xyzzy"]) for _ in range(n)] for n in lengths]


# ------------------------------------------------------------------ words and entities


def test_split_words_keeps_offsets():
    text = "  Mara O'Neil-Lindqvist (U.S.) paid $3.50, ok?"
    words, spans = split_words(text)
    assert words == ["Mara", "O'Neil-Lindqvist", "(", "U.S", ".", ")", "paid", "$", "3.50", ",", "ok", "?"]
    assert [text[s:e] for s, e in spans] == words


def test_top_label_is_the_argmax_and_its_softmax_probability():
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((3, 7, 9)) * 6).astype(np.float32)
    logits[0, 0] = 0.0  # a tie: the first label, probability 1/9
    logits[1, 1] += 500.0  # large logits: no overflow
    pred, prob = top_label(logits)
    ref = torch.from_numpy(logits).softmax(-1)
    assert pred.shape == prob.shape == (3, 7)
    assert pred.tolist() == ref.argmax(-1).tolist() and pred[0, 0] == 0
    assert np.allclose(prob, ref.max(-1).values.numpy(), atol=1e-6) and abs(prob[0, 0] - 1 / 9) < 1e-6


def test_entities_follow_conlleval_chunks_iob1_and_iob2():
    text = "Mara Lindqvist met Oren Shalev in Port Ellis"
    words, spans = split_words(text)
    iob2 = ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    iob1 = ["I-PER", "I-PER", "O", "I-PER", "I-PER", "O", "I-LOC", "I-LOC"]
    scores = [0.9, 0.7, 1.0, 0.5, 0.5, 1.0, 0.8, 0.6]
    for tags in (iob2, iob1):
        ents = entities_from_tags(words, spans, tags, scores, text=text)
        assert [(e["type"], e["text"]) for e in ents] == [
            ("PER", "Mara Lindqvist"),
            ("PER", "Oren Shalev"),
            ("LOC", "Port Ellis"),
        ]
        assert all(text[e["start"] : e["end"]] == e["text"] for e in ents)
        assert ents[0]["score"] == pytest.approx(0.8)
    # B- splits touching entities of one type; I-X after another type starts an entity.
    ents = entities_from_tags(words[:2], spans[:2], ["I-PER", "B-PER"], None)
    assert [e["text"] for e in ents] == ["Mara", "Lindqvist"]
    ents = entities_from_tags(words[:2], spans[:2], ["B-ORG", "I-PER"], None)
    assert [(e["type"], e["text"]) for e in ents] == [("ORG", "Mara"), ("PER", "Lindqvist")]
    # without the original line the text is rebuilt from the offsets
    assert entities_from_tags(["a", "b"], [(0, 1), (3, 4)], ["B-LOC", "I-LOC"], None)[0]["text"] == "a  b"


# ------------------------------------------------------------------ every word exactly once


@pytest.mark.parametrize("context_size", [0, 5])
def test_no_word_lost_at_max_length_16(tiny_model_dir, context_size):
    windows = WindowSettings(max_length=16, stride=3, context_size=context_size, batch_size=3)
    p = Predictor.from_pretrained(tiny_model_dir, windows, device="cpu")
    sents = random_sentences(1, [1, 3, 40, 0, 100, 7, 15])
    docs = [0, 0, 0, 1, 1, 1, 2]
    tags, probs = p.predict_words_with_scores(sents, docs)
    assert [len(t) for t in tags] == [len(s) for s in sents]
    assert [len(x) for x in probs] == [len(s) for s in sents]
    assert all(t in NER for s in tags for t in s)
    assert all(0.0 < x <= 1.0 for s in probs for x in s)
    # windowing really happened: the long sentences do not fit in one window
    assert p.max_length == 16


def test_batching_and_sorting_do_not_change_predictions(tiny_model_dir, predictor):
    sents = random_sentences(2, [5, 30, 2, 12, 1, 60])
    small = Predictor.from_pretrained(tiny_model_dir, WindowSettings(batch_size=1), device="cpu")
    assert small.predict_words(sents) == predictor.predict_words(sents)
    # one sentence at a time gives the same tags as all together
    assert [predictor.predict_words([s])[0] for s in sents] == predictor.predict_words(sents)


def test_document_context_changes_windows_not_word_count(tiny_model_dir):
    p = Predictor.from_pretrained(tiny_model_dir, WindowSettings(max_length=32, stride=4, context_size=8), device="cpu")
    sents = random_sentences(3, [4, 6, 50, 3, 9])
    docs = [0, 0, 0, 1, 1]
    feats = p._windows(sents, docs)
    # the first sentence's window carries pieces of the next sentence of its document
    enc = p.tokenizer(sents[0], is_split_into_words=True, add_special_tokens=False)
    assert len(feats["input_ids"][0]) > len(enc["input_ids"]) + 2
    # the same windows as the training code builds over the whole split at once
    batch = {"tokens": sents, "ner_tags": [[0] * len(s) for s in sents], "document_id": docs}
    ref = tokenize_and_window(
        batch,
        list(range(len(sents))),
        tokenizer=p.tokenizer,
        max_length=32,
        stride=4,
        label_all_tokens=False,
        context_size=8,
    )
    assert feats["input_ids"] == ref["input_ids"] and feats["word_index"] == ref["word_index"]
    tags = p.predict_words(sents, docs)
    assert [len(t) for t in tags] == [len(s) for s in sents]


def test_packed_document_context_predicts_every_word_once(tiny_model_dir):
    windows = WindowSettings(max_length=32, stride=4, context_size=4, pack_length=20)
    p = Predictor.from_pretrained(tiny_model_dir, windows, device="cpu")
    sents = random_sentences(4, [4, 6, 50, 3, 9, 2, 2])
    docs = [0, 0, 0, 1, 1, 1, 2]
    feats = p._windows(sents, docs)
    assert len(set(feats["example_id"])) < len(sents)  # some windows do hold several sentences
    tags, probs = p.predict_words_with_scores(sents, docs)
    assert [len(t) for t in tags] == [len(s) for s in sents] == [len(x) for x in probs]
    with pytest.raises(ValueError, match="does not fit"):
        Predictor.from_pretrained(
            tiny_model_dir, WindowSettings(max_length=32, context_size=8, pack_length=20), device="cpu"
        )


def test_default_max_length_is_capped_and_read_from_training_config(tiny_model_dir, predictor, tmp_path):
    assert predictor.max_length == 512 and predictor.stride == 32 and predictor.context_size == 0
    import shutil

    from nerforge.config import DataConfig, ModelConfig, RunConfig, TrainingConfig

    export = tmp_path / "export"
    shutil.copytree(tiny_model_dir, export)
    RunConfig(
        ModelConfig(), DataConfig(max_length=24, stride=5, context_size=7), TrainingConfig(per_device_eval_batch_size=5)
    ).save(export / "training_config.yaml")
    p = Predictor.from_pretrained(export, device="cpu")
    assert (p.max_length, p.stride, p.context_size, p.batch_size) == (24, 5, 7, 5)
    p = Predictor.from_pretrained(export, export_windows(export).override(max_length=20, context_size=0), device="cpu")
    assert (p.max_length, p.stride, p.context_size) == (20, 5, 0)


def test_bf16_autocast_and_too_long_max_length(tiny_model_dir):
    p = Predictor.from_pretrained(tiny_model_dir, WindowSettings(max_length=16), bf16=True, device="cpu")
    sents = random_sentences(4, [3, 40])
    tags, probs = p.predict_words_with_scores(sents)
    assert [len(t) for t in tags] == [3, 40] and all(0 < x <= 1 for s in probs for x in s)
    with pytest.raises(ValueError, match="longer than the model's 512 positions"):
        Predictor.from_pretrained(tiny_model_dir, WindowSettings(max_length=1024), device="cpu")


# ------------------------------------------------------------------ raw text


def test_tag_text_offsets_point_into_the_line(predictor):
    lines = [
        "Mara Lindqvist said Northwind Bank would open an office in Port Ellis.",
        "  Oren   Shalev , the office\t(Port Ellis)!",
        "",
        "Mara",
    ]
    out = predictor.tag_text(lines, paragraphs=True)
    assert [r["text"] for r in out] == lines
    assert out[2]["entities"] == []
    n_entities = 0
    for r in out:
        for e in r["entities"]:
            n_entities += 1
            assert r["text"][e["start"] : e["end"]] == e["text"]
            assert set(e) == {"type", "text", "start", "end", "score"} and 0 < e["score"] <= 1
    assert n_entities > 0  # random weights tag plenty of words


def test_cli_raw_text_to_json_lines(cli, tiny_model_dir, tmp_path):
    lines = ["Mara Lindqvist said Northwind Bank would open an office .", "", "Oren Shalev , the office in Port Ellis"]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = cli("--model", tiny_model_dir, src, "--max-length", 16, "--document-context", 4, "--batch-size", 2)
    assert code == 0, err
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["text"] for r in rows] == lines
    for r in rows:
        for e in r["entities"]:
            assert r["text"][e["start"] : e["end"]] == e["text"]
    # stdin works too and gives the same output
    code2, out2, err2 = cli(
        "--model",
        tiny_model_dir,
        "--max-length",
        16,
        "--document-context",
        4,
        "--batch-size",
        2,
        stdin="\n".join(lines) + "\n",
    )
    assert code2 == 0 and out2 == out


# ------------------------------------------------------------------ CoNLL files


def test_cli_conll_round_trip(cli, tiny_model_dir, tmp_path):
    src = SAMPLE_DIR / "test.txt"
    out = tmp_path / "pred.txt"
    metrics = tmp_path / "m.json"
    code, _, err = cli(
        "--model",
        tiny_model_dir,
        "--conll",
        src,
        "--output",
        out,
        "--metrics-json",
        metrics,
        "--max-length",
        16,
        "--document-context",
        6,
    )
    assert code == 0, err
    before = src.read_text(encoding="utf-8").split("\n")
    after = out.read_text(encoding="utf-8").split("\n")
    assert len(after) == len(before)
    gold, pred = [], []
    for a, b in zip(before, after):
        if not a.strip():
            assert b == a  # blank lines untouched
            continue
        if a.startswith("-DOCSTART-"):
            assert b == a + " O"  # the same number of columns as token lines (conlleval)
            continue
        head, tag = b.rsplit(" ", 1)
        assert head == a and tag in NER  # original columns untouched, one extra column
        gold.append(a.split()[-1])
        pred.append(tag)
    m = json.loads(metrics.read_text())
    assert m["num_words"] == len(gold) and set(m) >= {"precision", "recall", "f1", "per_type"}
    assert m["accuracy"] == pytest.approx(sum(g == p for g, p in zip(gold, pred)) / len(gold))
    assert "F1" in err


def test_conll_output_is_read_by_conlleval_rules_and_scores_as_the_run_did(cli, tiny_model_dir, tmp_path):
    out, metrics = tmp_path / "pred.txt", tmp_path / "m.json"
    args = ["--model", tiny_model_dir, "--conll", SAMPLE_DIR / "test.txt", "--output", out, "--metrics-json", metrics]
    code, _, err = cli(*args)
    assert code == 0, err
    widths, gold, pred = read_tagged_conll(out)
    assert widths == {5}  # word POS chunk gold predicted, -DOCSTART- lines included
    assert score(gold, pred) == json.loads(metrics.read_text())


def test_cli_conll_other_columns_to_stdout(cli, tiny_model_dir, tmp_path):
    src = tmp_path / "two.txt"
    text = "-DOCSTART-\tO\n\nMara\tB-PER\nLindqvist\tI-PER\nsaid\tO\n\nPort\tB-LOC\nEllis\tI-LOC\n"
    src.write_text(text, encoding="utf-8")
    code, stdout, err = cli("--model", tiny_model_dir, "--conll", src, "--columns", "tokens", "ner_tags")
    assert code == 0, err
    out = stdout.split("\n")
    assert len(out) == len(text.split("\n"))
    assert out[:2] == ["-DOCSTART-\tO\tO", ""]
    assert all(
        o.startswith(i + "\t") and o.count("\t") == 2
        for i, o in zip(text.split("\n"), out)
        if "\t" in i and not i.startswith("-DOCSTART-")
    )
    # tokens only: no gold, nothing scored
    src.write_text("Mara\nLindqvist\n\nPort\n", encoding="utf-8")
    code, stdout, err = cli("--model", tiny_model_dir, "--conll", src, "--columns", "tokens")
    assert code == 0, err
    assert [len(x.split()) for x in stdout.split("\n")] == [2, 2, 0, 2, 0]
    assert "F1" not in err


def test_command_bad_conll_exits_2_with_file_and_line(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("-DOCSTART- -X- -X- O\n\nMara NNP I-NP B-PER\nLindqvist NNP I-PER\n", encoding="utf-8")
    res = run_cli("--model", tiny_model_dir, "--conll", bad)
    assert res.returncode == 2
    assert f"{bad}:4:" in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and res.stdout == ""


def test_tagging_text_imports_neither_seqeval_nor_scikit_learn(tiny_model_dir):
    """seqeval imports scikit-learn: 1.8 s of a one-line `nerforge predict` here, for nothing it needs
    (its entities come from nerforge.metric.entities)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nerforge", "predict", "--model", str(tiny_model_dir)],
        input="Mara Lindqvist visited Port Ellis .\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert p.returncode == 0 and p.stdout.startswith('{"text": "Mara'), p.stderr[-2000:]
    imported = {x.split("|")[-1].strip() for x in p.stderr.splitlines() if x.startswith("import time:")}
    assert "torch" in imported and not {m for m in imported if m.split(".")[0] in ("seqeval", "sklearn")}


@pytest.mark.parametrize(
    "content, line",
    [
        ("Mara NNP I-NP B-PER\n\nLindqvist NNP I-NP X-PER\n", 3),  # not an IOB tag
        (b"Mara NNP I-NP B-PER\nLind\xffqvist NNP I-NP I-PER\n", 2),  # not UTF-8
        ("Mara\x00 NNP I-NP B-PER\n", 1),  # binary
    ],
)
def test_cli_bad_input_names_file_and_line(cli, tiny_model_dir, tmp_path, content, line):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out, err = cli("--model", tiny_model_dir, "--conll", bad)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {bad}:{line}:") and len(err.strip().splitlines()) == 1
    code, out, err = cli("--model", tiny_model_dir, "--conll", tmp_path / "missing.txt")
    assert code == 2 and "missing.txt" in err
    bad.write_bytes(b"fine\nnot \xff utf-8\n")
    code, out, err = cli("--model", tiny_model_dir, bad)  # raw text mode
    assert code == 2 and err.startswith(f"error: {bad}:2:")


def test_min_score_drops_low_entities(cli, tiny_model_dir, tmp_path):
    from nerforge.predictor import drop_low_entities

    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-ORG"]
    probs = [0.9, 0.5, 0.99, 0.6, 0.95]
    assert drop_low_entities(tags, probs, 0.7) == ["B-PER", "I-PER", "O", "O", "B-ORG"]  # PER: mean 0.7 kept
    assert drop_low_entities(tags, probs, 0.0) == tags
    src = tmp_path / "in.txt"
    src.write_text("EU rejects German call to boycott British lamb .\nPeter Blackburn\n", encoding="utf-8")
    code, out_all, err = cli("--model", tiny_model_dir, src)
    assert code == 0, err
    scores = [e["score"] for line in out_all.splitlines() for e in json.loads(line)["entities"]]
    assert scores  # the untrained model tags something
    distinct = sorted(set(scores))
    assert len(distinct) >= 2
    cut = (distinct[len(distinct) // 2 - 1] + distinct[len(distinct) // 2]) / 2  # between two scores
    code, out_cut, err = cli("--model", tiny_model_dir, src, "--min-score", cut)
    kept = [e["score"] for line in out_cut.splitlines() for e in json.loads(line)["entities"]]
    assert code == 0 and kept == [s for s in scores if s >= cut]


def test_length_batches_cap_windows_and_padded_pieces():
    from nerforge.predictor import length_batches

    lengths = [3, 5, 8, 8, 10, 40, 41, 100]  # sorted, shortest first
    assert [list(b) for b in length_batches(lengths, 64, None)] == [list(range(8))]
    assert [list(b) for b in length_batches(lengths, 3, None)] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    # at most 32 padded pieces: 4 x 8 fits, a fifth window of 10 would make 50; 40 > 32 goes alone
    assert [list(b) for b in length_batches(lengths, 64, 32)] == [[0, 1, 2, 3], [4], [5], [6], [7]]
    batches = length_batches(lengths, 2, 80)
    assert [i for b in batches for i in b] == list(range(8))  # every window once, in order
    assert all(len(b) <= 2 and (len(b) == 1 or len(b) * lengths[b[-1]] <= 80) for b in batches)
    assert length_batches([], 4, 10) == []


def test_the_summary_line_counts_in_english(cli, tiny_model_dir, tmp_path):
    code, _, err = cli("--model", tiny_model_dir, stdin="Mara Lindqvist visited Port Ellis .\n")
    assert code == 0 and "tagged 1 line: " in err, err
    code, _, err = cli("--model", tiny_model_dir, stdin="Mara .\nPort Ellis .\n")
    assert code == 0 and "tagged 2 lines: " in err, err
    src = tmp_path / "one.conll"
    src.write_text("Mara B-PER\n", encoding="utf-8")
    code, _, err = cli("--model", tiny_model_dir, "--conll", src, "--columns", "tokens", "ner_tags")
    assert code == 0 and "tagged 1 word in 1 sentence (" in err, err
