"""nerforge.score: any token-classification model scored on a dataset split, labels mapped by name,
every word predicted once, and (slow) the same test F1 as the training loop's own evaluation."""

import json
import os
import subprocess
import sys

import pytest
from conftest import NER, ROOT, SAMPLE_DIR
from inprocess import run_training

from nerforge.cli.score import main
from nerforge.metric import prefix_bare_labels, score
from nerforge.predictor import Predictor, export_windows

BARE = ["O", "PER", "ORG", "LOC", "MISC"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("hf_cache")


@pytest.fixture(scope="session")
def sample(cache_dir):
    from conll2003_loader import load_conll

    return load_conll(data_dir=str(SAMPLE_DIR), cache_dir=str(cache_dir))


@pytest.fixture(scope="session")
def models(tmp_path_factory, sample):
    """A tiny random BERT, the same model with its labels permuted, and one with bare labels."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from nerforge.modeling import build_tiny_bert

    root = tmp_path_factory.mktemp("models")
    words = {w for split in sample.values() for sent in split["tokens"] for w in sent}
    plain = build_tiny_bert(words, NER, root / "plain", seed=1)
    bare = build_tiny_bert(words, BARE, root / "bare", seed=2)

    model = AutoModelForTokenClassification.from_pretrained(plain)
    perm = [4, 0, 7, 2, 8, 1, 6, 3, 5]  # new id k is old id perm[k]
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight[perm].clone())
        model.classifier.bias.copy_(model.classifier.bias[perm].clone())
    model.config.id2label = {k: NER[old] for k, old in enumerate(perm)}
    model.config.label2id = {name: k for k, name in model.config.id2label.items()}
    permuted = root / "permuted"
    model.save_pretrained(permuted)
    AutoTokenizer.from_pretrained(plain).save_pretrained(permuted)
    return {"plain": plain, "permuted": permuted, "bare": bare}


def run_score(capsys, *args):
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def by_hand(model_dir, split, bare=False, **kw):
    p = Predictor.from_pretrained(model_dir, export_windows(model_dir).override(**kw), device="cpu")
    pred = p.predict_words(split["tokens"], split["document_id"])
    if bare:
        pred = [prefix_bare_labels([t if t == "O" else "I-" + t for t in s]) for s in pred]
    names = split.features["ner_tags"].feature.names
    return score([[names[t] for t in s] for s in split["ner_tags"]], pred)


def without_settings(metrics):
    return {k: v for k, v in metrics.items() if k != "settings"}


def test_score_equals_scoring_the_predictions_by_hand(capsys, models, sample, cache_dir, tmp_path):
    out_json = tmp_path / "m.json"
    code, out, err = run_score(
        capsys,
        "--model",
        models["plain"],
        "--data-dir",
        SAMPLE_DIR,
        "--cache-dir",
        cache_dir,
        "--split",
        "test",
        "--max-length",
        16,
        "--output-json",
        out_json,
    )
    assert code == 0, err
    printed = json.loads(out)
    assert json.loads(out_json.read_text()) == printed
    assert printed["settings"]["max_length"] == 16 and printed["settings"]["split"] == "test"
    expected = by_hand(models["plain"], sample["test"], max_length=16)
    assert without_settings(printed) == expected
    # no word lost to windowing at max_length 16
    assert printed["num_words"] == sum(len(s) for s in sample["test"]["tokens"])
    assert printed["num_sentences"] == len(sample["test"])


def test_permuted_id2label_scores_the_same(capsys, models, cache_dir):
    results = []
    for name in ("plain", "permuted"):
        code, out, err = run_score(
            capsys,
            "--model",
            models[name],
            "--data-dir",
            SAMPLE_DIR,
            "--cache-dir",
            cache_dir,
            "--split",
            "validation",
            "--max-length",
            24,
        )
        assert code == 0, err
        results.append(without_settings(json.loads(out)))
    assert results[0]["f1"] > 0  # random weights still predict some entities
    assert results[0] == results[1]


def test_bare_labels_are_prefixed(capsys, models, sample, cache_dir):
    code, out, err = run_score(
        capsys, "--model", models["bare"], "--data-dir", SAMPLE_DIR, "--cache-dir", cache_dir, "--split", "test"
    )
    assert code == 0, err
    got = without_settings(json.loads(out))
    assert got == by_hand(models["bare"], sample["test"], bare=True)
    assert set(got["per_type"]) <= {"PER", "ORG", "LOC", "MISC"}


def test_document_context_predicts_every_word_once(capsys, models, sample, cache_dir):
    code, out, err = run_score(
        capsys,
        "--model",
        models["plain"],
        "--data-dir",
        SAMPLE_DIR,
        "--cache-dir",
        cache_dir,
        "--split",
        "test",
        "--max-length",
        16,
        "--document-context",
        12,
        "--batch-size",
        7,
    )
    assert code == 0, err
    got = json.loads(out)
    assert got["settings"]["context_size"] == 12
    assert got["num_words"] == sum(len(s) for s in sample["test"]["tokens"])
    assert without_settings(got) == by_hand(models["plain"], sample["test"], max_length=16, context_size=12)


def test_prepared_dataset_without_document_ids(capsys, models, sample, tmp_path):
    from datasets import DatasetDict

    path = tmp_path / "prepared"
    DatasetDict({"test": sample["test"].remove_columns(["document_id"])}).save_to_disk(path)
    code, out, err = run_score(
        capsys, "--model", models["plain"], "--dataset-path", path, "--split", "test", "--max-length", 16
    )
    assert code == 0, err
    assert without_settings(json.loads(out)) == by_hand(models["plain"], sample["test"], max_length=16)
    code, out, err = run_score(capsys, "--model", models["plain"], "--dataset-path", path, "--split", "train")
    assert code == 2 and "no split 'train'" in err


def test_errors_exit_2_without_traceback(capsys, models, cache_dir, tmp_path):
    from nerforge.modeling import build_tiny_bert

    generic = build_tiny_bert(["a"], [f"LABEL_{i}" for i in range(9)], tmp_path / "generic")
    code, out, err = run_score(capsys, "--model", generic, "--data-dir", SAMPLE_DIR, "--cache-dir", cache_dir)
    assert code == 2 and "generic names" in err and out == ""

    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("train.txt", "valid.txt"):
        (bad / name).write_text((SAMPLE_DIR / name).read_text(encoding="utf-8"), encoding="utf-8")
    (bad / "test.txt").write_text("Mara NNP I-NP B-PER\nEllis NNP I-LOC\n", encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "nerforge.score",
            "--model",
            str(models["plain"]),
            "--data-dir",
            str(bad),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert res.returncode == 2
    assert f"{bad / 'test.txt'}:2:" in res.stderr
    assert "Traceback" not in res.stderr


# ------------------------------------------------------------------ end to end (trains a model)


@pytest.mark.slow
@pytest.mark.parametrize("context_size", [0, pytest.param(16, marks=pytest.mark.release)])
def test_quickstart_export_scores_like_the_training_loop(capsys, tmp_path, context_size):
    """score.py on the quick-start export gives the training loop's own test F1 (metrics.json)."""
    out_dir = tmp_path / "run"
    res = run_training("--config", "configs/quickstart.yaml", "--output_dir", out_dir, "--report_to", "none",
                       "--evaluate_pipeline", "false", "--max_steps", "30", "--example_text", "",
                       "--context_size", context_size, "--cache_dir", tmp_path / "cache")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    trained = json.loads((out_dir / "metrics.json").read_text())
    for split in ("test", "validation"):
        code, out, err = run_score(
            capsys,
            "--model",
            out_dir / "model",
            "--data-dir",
            SAMPLE_DIR,
            "--split",
            split,
            "--cache-dir",
            tmp_path / "cache",
        )
        assert code == 0, err
        got = json.loads(out)
        assert got["settings"]["context_size"] == context_size and got["settings"]["max_length"] == 64
        assert trained[split]["f1"] > 0.1
        assert got["f1"] == pytest.approx(trained[split]["f1"], abs=1e-6)
        for key in ("precision", "recall", "accuracy", "num_words"):
            assert got[key] == pytest.approx(trained[split][key], abs=1e-6)


def test_pack_length_and_a_named_test_file(capsys, models, sample, cache_dir, tmp_path):
    """score takes predict's model flags (--pack-length among them) and per-split file names."""
    d = tmp_path / "renamed"
    d.mkdir()
    (d / "final.conll").write_text((SAMPLE_DIR / "test.txt").read_text())
    (d / "train.conll").write_text((SAMPLE_DIR / "train.txt").read_text())
    args = ["--model", models["plain"], "--data-dir", d, "--cache-dir", cache_dir, "--train-file", "train.conll"]
    args += ["--test-file", "final.conll", "--document-context", 8, "--pack-length", 24, "--max-length", 48]
    code, out, err = run_score(capsys, *args)
    assert code == 0, err
    printed = json.loads(out)
    assert printed["settings"]["pack_length"] == 24 and printed["settings"]["context_size"] == 8
    expected = by_hand(models["plain"], sample["test"], context_size=8, pack_length=24, max_length=48)
    assert without_settings(printed) == expected
    assert printed["num_words"] == sum(len(s) for s in sample["test"]["tokens"])
