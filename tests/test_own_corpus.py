"""Your own corpus: 2 columns, unusual file names, its own labels, no -DOCSTART- lines. The card names it
and says nothing of CoNLL-2003; document context is turned off with a notice, or refused when asked for
on the command line."""

from __future__ import annotations

import random

import pytest
import yaml
from inprocess import run_training

TYPES = ["GEO", "PRODUCT"]


def write_corpus(folder):
    rng = random.Random(0)
    words = ["new", "phone", "from", "Oslo", "Zephyr", "X2", "is", "out", "in", "Lima", "today", "!"]
    folder.mkdir()
    for name, n in (("tr.tsv", 120), ("dv.tsv", 30), ("te.tsv", 30)):
        lines = []
        for _ in range(n):
            for w in rng.sample(words, 6):
                tag = "O"
                if w in ("Oslo", "Lima"):
                    tag = "B-GEO"
                elif w == "Zephyr":
                    tag = "B-PRODUCT"
                lines.append(f"{w}\t{tag}")
            lines.append("")
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def run(args, cwd):
    """train_accelerate.py ARGS run from `cwd`, in this process (tests/inprocess.py)."""
    return run_training(*args, cwd=cwd)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("data") / "my-tweets")


def data_args(corpus):
    return [
        "--data-dir",
        str(corpus),
        "--train-file",
        "tr.tsv",
        "--validation-file",
        "dv.tsv",
        "--test-file",
        "te.tsv",
        "--columns",
        "tokens",
        "ner_tags",
    ]


def test_document_context_asked_for_on_the_command_line_is_refused(corpus, tmp_path):
    p = run(["--tiny-model", *data_args(corpus), "--output-dir", str(tmp_path / "o"), "--context-size", "16"], tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1] == (
        "error: --context-size: the training data has no document boundaries (no -DOCSTART- lines), so "
        "document context would join unrelated sentences; leave it out for this corpus"
    )
    assert not list((tmp_path / "o").glob("checkpoints/step-*")) and not (tmp_path / "o" / "model").exists()


def test_a_config_with_document_context_trains_without_it_and_the_card_names_the_corpus(corpus, tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({"data": {"context_size": 16, "pack_length": 32, "max_length": 128}}))
    out = tmp_path / "run"
    args = ["--config", str(config), "--tiny-model", *data_args(corpus), "--output-dir", str(out)]
    p = run([*args, "--max-steps", "6", "--report-to", "none", "--learning-rate", "3e-3"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "the training data has no document boundaries (no -DOCSTART- lines): document context" in p.stdout
    saved = yaml.safe_load((out / "model" / "training_config.yaml").read_text())
    assert saved["data"]["context_size"] == 0 and saved["data"]["pack_length"] == 0
    card = (out / "model" / "README.md").read_text()
    assert "my-tweets" in card
    for conll_only in ("Reuters", "label noise", "CrossWeigh", "CoNLL++", "1996"):  # the CoNLL-2003 paragraphs
        assert conll_only not in card, conll_only
    front = yaml.safe_load(card.split("---")[1])
    assert "my-tweets" in front["tags"] and "conll2003" not in front["tags"]
    assert front["model-index"][0]["results"][0]["dataset"]["name"] == "my-tweets"
    labels = [
        v
        for _, v in sorted(
            (
                (int(k), v)
                for k, v in __import__("json").loads((out / "model" / "config.json").read_text())["id2label"].items()
            )
        )
    ]
    assert labels == ["O", "B-GEO", "I-GEO", "B-PRODUCT", "I-PRODUCT"]
