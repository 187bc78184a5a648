"""Counts on the real CoNLL-2003 files (skipped when ../shared/data/conll2003 is absent)."""

from collections import Counter
from pathlib import Path

import pytest

from conll2003_loader import load_conll

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"
pytestmark = [pytest.mark.realdata, pytest.mark.skipif(not RAW.is_dir(), reason=f"{RAW} not found")]


def _entities(names):
    return Counter(t[2:] for t in names if t.startswith("B-"))


def test_real_conll2003_counts(tmp_path):
    ds = load_conll(data_dir=RAW, cache_dir=tmp_path / "cache")
    expected = {"train": (14041, 946), "validation": (3250, 216), "test": (3453, 231)}
    files = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
    entities = {}
    for split, (n_sent, n_doc) in expected.items():
        d = ds[split]
        assert len(d) == n_sent and len(set(d["document_id"])) == n_doc == max(d["document_id"]) + 1
        lines = (RAW / files[split]).read_text().split("\n")
        token_lines = sum(1 for x in lines if x.strip() and not x.startswith("-DOCSTART-"))
        assert sum(map(len, d["tokens"])) == token_lines
        int2str = d.features["ner_tags"].feature.int2str
        counts = Counter()
        for ids in d["ner_tags"]:
            tags = int2str(ids)
            for prev, tag in zip(["O"] + tags, tags):
                assert not tag.startswith("I-") or prev[2:] == tag[2:], (prev, tag)
            counts += _entities(tags)
        entities[split] = counts
    assert entities["train"] == {"PER": 6600, "LOC": 7140, "ORG": 6321, "MISC": 3438}
    assert entities["test"] == {"PER": 1617, "LOC": 1668, "ORG": 1661, "MISC": 702}


def test_our_chunks_are_seqevals_on_the_raw_files():
    """nerforge.metric.entities against seqeval's get_entities on every sentence of the real files as
    they are written: CoNLL-2003 in IOB1, CoNLL++ in IOB2, WNUT-17 in IOB2 (gold tags, last column)."""
    from seqeval.metrics.sequence_labeling import get_entities

    from nerforge.metric import entities

    wnut = RAW.parent / "wnut17"
    files = [RAW / "train.txt", RAW / "valid.txt", RAW / "test.txt", RAW.parent / "conllpp" / "test.txt"]
    files += [wnut / "wnut17train.conll", wnut / "emerging.dev.conll", wnut / "emerging.test.annotated"]
    checked = chunks = 0
    for f in (f for f in files if f.is_file()):
        sentence: list[str] = []
        for line in [*f.read_text(encoding="utf-8").split("\n"), ""]:
            fields = line.split()
            if fields and fields[0] != "-DOCSTART-":
                sentence.append(fields[-1])
            elif sentence:
                ours = entities(sentence)
                assert ours == [(t, int(a), int(b)) for t, a, b in get_entities(sentence)], (f, sentence)
                checked, chunks, sentence = checked + 1, chunks + len(ours), []
    assert checked > 20_000 and chunks > 30_000
