"""Shared fixtures: a tiny cased word-piece tokenizer and the bundled sample corpus.

Nothing here touches the network: HF_HUB_OFFLINE is set for the whole session."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CONLL_DIR = SHARED / "data" / "conll2003"
MINILM_DIR = SHARED / "models" / "all-minilm-l6-v2"
SAMPLE_DIR = ROOT / "nerforge" / "sample_data"
sys.path.insert(0, str(ROOT))

NER = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """BERT word-piece tokenizer over a small vocabulary: 'Washington' -> 'Wash', '##ing', '##ton'."""
    from transformers import BertTokenizerFast

    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "the",
        "The",
        "in",
        "of",
        "EU",
        "rejects",
        "German",
        "call",
        "to",
        "boycott",
        "British",
        "lamb",
        ".",
        ",",
        "Wash",
        "##ing",
        "##ton",
        "Peter",
        "Black",
        "##burn",
        "a",
        "b",
        "c",
        "##a",
        "##b",
        "##c",
    ]
    return BertTokenizerFast(vocab={tok: i for i, tok in enumerate(vocab)}, do_lower_case=False)


def read_tagged_conll(path):
    """Read a tagged CoNLL file the way the shared task's conlleval does: every non-blank line splits
    into the same number of columns (it stops otherwise), -DOCSTART- lines are skipped, the last two
    columns are the gold and the predicted tag, blank lines end sentences."""
    widths, gold, pred, g, p = set(), [], [], [], []
    for line in path.read_text(encoding="utf-8").split("\n"):
        fields = line.split()
        if not fields:
            if g:
                gold.append(g)
                pred.append(p)
            g, p = [], []
            continue
        widths.add(len(fields))
        if fields[0] == "-DOCSTART-":
            continue
        g.append(fields[-2])
        p.append(fields[-1])
    if g:
        gold.append(g)
        pred.append(p)
    return widths, gold, pred


@pytest.fixture(scope="session")
def quickstart_export(tmp_path_factory):
    """The quick start trained once for the session on the clean bundled sample (4 epochs, no pipeline
    figures): the export folder. Shared by the audit and demo tests. `nerforge train` in this process
    (tests/inprocess.py)."""
    from inprocess import run_nerforge

    out = tmp_path_factory.mktemp("quickstart_export") / "run"
    p = run_nerforge("train", "--config", "quickstart", "--output-dir", out, "--report-to", "none",
                     "--num-train-epochs", "4", "--evaluate-pipeline", "false")  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    return out / "model"
