"""nerforge audit end to end on the quick-start model: label errors planted in the sample corpus are
ranked first, the files are what the help says, the card gains its line, and --folds cross-fits the
train split (resumable per fold)."""

import json
import shutil

import pytest
from conftest import SAMPLE_DIR

from nerforge.cli.audit import main

pytest.importorskip("cleanlab", reason="nerforge audit needs cleanlab: pip install 'nerforge[audit]'")

PLANTED = {"test": 4, "train": 6}


def plant(path, n):
    """Relabel the first PER entity of n sentences (every 5th sentence with one) as LOC: their indices."""
    lines = path.read_text(encoding="utf-8").split("\n")
    sentence_of, sentence, open_ = [], -1, False
    for line in lines:
        f = line.split()
        if f and f[0] != "-DOCSTART-" and not open_:
            sentence, open_ = sentence + 1, True
        elif not f or f[0] == "-DOCSTART-":
            open_ = False
        sentence_of.append(sentence if f and f[0] != "-DOCSTART-" else None)
    with_per = sorted({s for s, line in zip(sentence_of, lines) if s is not None and line.endswith("-PER")})
    planted = with_per[::5][:n]
    assert len(planted) == n
    for s in planted:  # the sample is IOB1: an entity's words end in -PER, its first is I- or B-
        k = sentence_of.index(s)
        while not lines[k].endswith("-PER"):
            k += 1
        while k < len(lines) and sentence_of[k] == s and lines[k].endswith("-PER"):
            lines[k] = lines[k][: -len("PER")] + "LOC"
            k += 1
    path.write_text("\n".join(lines), encoding="utf-8")
    return planted


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    data = tmp_path_factory.mktemp("planted")
    for name in ("train.txt", "valid.txt", "test.txt"):
        shutil.copy(SAMPLE_DIR / name, data / name)
    return data, {split: plant(data / f"{split}.txt", n) for split, n in PLANTED.items()}


@pytest.fixture(scope="module")
def export(quickstart_export):
    """The quick start trained on the clean sample (its train split is not the planted one)."""
    return quickstart_export


def audit(capsys, *args):
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, *capsys.readouterr()


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_planted_test_errors_rank_first(export, corpus, tmp_path, capsys):
    data, planted = corpus
    out = tmp_path / "audit"
    code, _, err = audit(capsys, "--model", export, "--data-dir", data, "--output-dir", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["audit.jsonl", "audit.md", "summary.json"]
    records = read_jsonl(out / "audit.jsonl")
    first = list(dict.fromkeys(r["sentence"] for r in records))[: PLANTED["test"]]
    assert sorted(first) == sorted(planted["test"])
    top = next(r for r in records if r["sentence"] == first[0])
    assert top["gold"]["type"] == "LOC" and top["suggested"]["type"] == "PER"
    assert top["gold"]["text"] == " ".join(top["words"][top["gold"]["start"] : top["gold"]["end"]])
    assert [r["rank"] for r in records] == sorted(r["rank"] for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["flagged_spans"] == len(records) and summary["sentences"] == 120
    assert summary["flagged_sentences"] == len({r["sentence"] for r in records})
    assert summary["command"].startswith("nerforge audit --model ")
    md = (out / "audit.md").read_text()
    assert "## 1. sentence" in md and f"{top['gold']['text']}]LOC" in md and f"{top['gold']['text']}]PER" in md
    assert f"{summary['flagged_sentences']} of 120 test sentences flagged" in err

    # The plain baseline finds them too; the card of a copy gains one line with the command.
    code, _, err = audit(capsys, "--model", export, "--data-dir", data, "--output-dir", out, "--method", "disagreement")
    assert code == 0, err
    assert sorted(list(dict.fromkeys(r["sentence"] for r in read_jsonl(out / "audit.jsonl")))[:4]) == sorted(
        planted["test"]
    )
    copy = tmp_path / "export"
    shutil.copytree(export, copy)
    code, _, err = audit(capsys, "--model", copy, "--data-dir", data, "--output-dir", out, "--update-card")
    assert code == 0, err
    card = (copy / "README.md").read_text()
    assert f"Label audit: {summary['flagged_sentences']} of the 120 test sentences flagged" in card
    assert "from `nerforge audit --model" in card
    assert json.loads((copy / "metrics.json").read_text())["audit"]["flagged_spans"] == summary["flagged_spans"]


def test_the_train_split_needs_folds(export, corpus, tmp_path, capsys):
    data, _ = corpus
    code, _, err = audit(capsys, "--model", export, "--data-dir", data, "--split", "train", "--output-dir", tmp_path)
    assert code == 2 and "pass --folds K" in err
    assert not list(tmp_path.iterdir())


def test_folds_cross_fit_the_train_split_and_resume(export, corpus, tmp_path, capsys):
    data, planted = corpus
    out = tmp_path / "audit"
    args = ["--model", export, "--data-dir", data, "--split", "train", "--folds", "2", "--output-dir", out]
    code, _, err = audit(capsys, *args)
    assert code == 0, err
    assert "fold 1/2: training on" in err and "fold 2/2: training on" in err
    for i in range(2):
        assert (out / "folds" / f"fold-{i}" / "heldout.npz").is_file()
        assert (out / "folds" / f"fold-{i}" / "run" / "model" / "model.safetensors").is_file()
    records = read_jsonl(out / "audit.jsonl")
    ranked = list(dict.fromkeys(r["sentence"] for r in records))
    found = set(ranked[: 2 * PLANTED["train"]]) & set(planted["train"])
    # Random ranking would find 1% of them; cross-fitted confident learning puts planted errors first.
    assert set(ranked[:3]) <= set(planted["train"]) and len(found) >= PLANTED["train"] - 2, (ranked, planted)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["folds"] == 2 and summary["sentences"] == 600

    # Run again: both folds are done, nothing trains, the same ranking comes out.
    code, _, err = audit(capsys, *args)
    assert code == 0, err
    assert "fold 1/2: done before" in err and "training on" not in err
    assert read_jsonl(out / "audit.jsonl") == records
