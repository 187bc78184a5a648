"""conll2003_loader: pure parsing, IOB conversion, strict errors, builder features, HTTP download."""

import functools
import hashlib
import http.server
import threading

import datasets
import pytest
from loader_fixtures import TRAIN, write_corpus

from conll2003_loader import (
    NER_TAGS,
    Conll2003Config,
    ConllFormatError,
    infer_label_names,
    iob1_to_iob2,
    load_conll,
    read_conll,
)
from conll2003_loader.parsing import CHUNK_TAGS, POS_TAGS, is_iob_tag

FIXED = {"pos_tags": POS_TAGS, "chunk_tags": CHUNK_TAGS, "ner_tags": NER_TAGS}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def _file(tmp_path, data, name="train.txt"):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


# --- pure functions -----------------------------------------------------------------------------


def test_iob1_to_iob2():
    assert iob1_to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG", "I-MISC"]) == [
        "B-PER",
        "I-PER",
        "O",
        "B-LOC",
        "B-LOC",
        "B-ORG",
        "B-MISC",
    ]
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]
    assert iob1_to_iob2(iob2) == iob2
    assert iob1_to_iob2([]) == []


def test_tag_syntax_and_inferred_labels():
    assert all(map(is_iob_tag, ["O", "B-X", "I-LONG_TYPE"]))
    assert not any(map(is_iob_tag, ["", "B-", "X-PER", "PER", "B PER", "o"]))
    assert infer_label_names({"I-PER", "O", "B-LOC", "I-LOC"}) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_tag_sets():
    assert NER_TAGS == ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
    assert len(POS_TAGS) == 47 and len(set(POS_TAGS)) == 47 and "NN|SYM" in POS_TAGS
    assert CHUNK_TAGS[0] == "O" and {"B-NP", "I-NP", "I-LST", "B-SBAR"} <= set(CHUNK_TAGS)


def test_read_conll_documents_and_sentences(tmp_path):
    sents = list(read_conll(_file(tmp_path, TRAIN), label_names=FIXED))
    assert [(s.document_index, s.sentence_index) for s in sents] == [(0, 0), (0, 1), (1, 0)]
    assert sents[0].tokens == ["Alice", "Smith", "visited", "Paris", "."]
    assert sents[0].tags["ner_tags"] == ["I-PER", "I-PER", "O", "I-LOC", "O"]
    assert sents[0].line == 3 and sents[2].line == 16


def test_no_docstart_is_one_document_and_lenient_layout(tmp_path):
    text = "\ufeffa DT I-NP O\r\nb NN I-NP O\r\n\r\n\n \t\n\t\nc NN I-NP I-PER"  # BOM, CRLF, blank runs, no final \n
    sents = list(read_conll(_file(tmp_path, text), label_names=FIXED))
    assert [s.tokens for s in sents] == [["a", "b"], ["c"]]
    assert {s.document_index for s in sents} == {0}


def test_invisible_and_unicode_space_tokens_are_kept(tmp_path):
    text = "\ufe0f O\n\u200b O\nA\u00a0B O\nx\u2028y I-PER\n"
    sents = list(read_conll(_file(tmp_path, text), columns=("tokens", "ner_tags")))
    assert sents[0].tokens == ["\ufe0f", "\u200b", "A\u00a0B", "x\u2028y"]


def test_long_sentence_and_huge_token(tmp_path):
    big = "x" * 1_000_000
    text = "".join(f"w{i} O\n" for i in range(10_000)) + "\n" + big + " O\n"
    sents = list(read_conll(_file(tmp_path, text), columns=("tokens", "ner_tags")))
    assert len(sents[0].tokens) == 10_000 and sents[1].tokens == [big]


def test_separator_tab_and_ignored_column(tmp_path):
    text = "New York\tLOC-ish\tI-LOC\nis\tx\tO\n"
    sents = list(read_conll(_file(tmp_path, text), columns=("tokens", "_", "ner_tags"), separator="\t"))
    assert sents[0].tokens == ["New York", "is"] and sents[0].tags == {"ner_tags": ["I-LOC", "O"]}


# --- one test per error kind: file name and line number in the message --------------------------


@pytest.mark.parametrize(
    "data, line, needle",
    [
        (
            "a DT I-NP O\nEU NNP I-NP\n",
            2,
            "expected 4 columns (tokens pos_tags chunk_tags ner_tags), found 3: 'EU NNP I-NP'",
        ),
        ("a DT I-NP O\nb NN I-NP I-PERSON\n", 2, "unknown ner_tags tag 'I-PERSON'"),
        ("a XX I-NP O\n", 1, "unknown pos_tags tag 'XX'"),
        ("a DT I-NP O\n\nb NN I-NP PER\n", 3, "'PER' is not O, B-X or I-X"),
        (b"a DT I-NP O\nb\xff NN I-NP O\n", 2, "not valid utf-8"),
        (b"a DT I-NP O\n\nb\x00 NN I-NP O\n", 3, "NUL byte"),
        (b"a DT I-NP O\n\x01\x02PNG x y z\n", 2, "binary data"),
        ("-DOCSTART- -X- O O\n\n\n", 3, "no sentences found"),
        ("", 1, "no sentences found"),
    ],
)
def test_format_errors(tmp_path, data, line, needle):
    path = _file(tmp_path, data)
    with pytest.raises(ConllFormatError) as info:
        list(read_conll(path, label_names=FIXED))
    assert info.value.path == str(path) and info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ") and needle in str(info.value)


def test_declared_encoding_is_used(tmp_path):
    path = _file(tmp_path, "caf\u00e9 NN I-NP O\n".encode("latin-1"))
    with pytest.raises(ConllFormatError, match=r":1: bytes not valid utf-8"):
        list(read_conll(path, label_names=FIXED))
    assert list(read_conll(path, encoding="latin-1", label_names=FIXED))[0].tokens == ["caf\u00e9"]


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ConllFormatError, match="nope.txt: file not found"):
        list(read_conll(tmp_path / "nope.txt"))
    (tmp_path / "adir").mkdir()
    with pytest.raises(ConllFormatError, match="adir: expected a file, found a directory"):
        list(read_conll(tmp_path / "adir"))


# --- builder ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("naming", ["txt", "eng"])
def test_builder_features_and_sizes(tmp_path, naming):
    ds = load_conll(data_dir=write_corpus(tmp_path / "raw", naming), cache_dir=tmp_path / "cache")
    assert {k: len(v) for k, v in ds.items()} == {"train": 3, "validation": 1, "test": 2}
    feats = ds["train"].features
    assert list(feats) == ["id", "document_id", "sentence_index", "tokens", "pos_tags", "chunk_tags", "ner_tags"]
    assert feats["ner_tags"].feature.names == list(NER_TAGS) and feats["pos_tags"].feature.names == list(POS_TAGS)
    assert feats["document_id"] == datasets.Value("int32") and feats["id"] == datasets.Value("string")
    row = ds["train"][1]
    names = feats["ner_tags"].feature.int2str
    assert row["id"] == "1" and (row["document_id"], row["sentence_index"]) == (0, 1)
    assert names(row["ner_tags"]) == ["B-ORG", "I-ORG", "B-ORG", "O"]  # IOB1 -> IOB2
    assert feats["chunk_tags"].feature.int2str(row["chunk_tags"]) == ["B-NP", "I-NP", "B-NP", "O"]
    assert ds["train"][2]["document_id"] == 1 and ds["test"]["document_id"] == [0, 0]


def test_builder_iob1_keeps_original(tmp_path):
    ds = load_conll(data_dir=write_corpus(tmp_path / "raw"), cache_dir=tmp_path / "cache", tagging_scheme="iob1")
    names = ds["train"].features["ner_tags"].feature
    assert names.names == list(NER_TAGS)
    assert names.int2str(ds["train"][1]["ner_tags"]) == ["I-ORG", "I-ORG", "B-ORG", "O"]


def test_two_column_corpus_with_inferred_labels(tmp_path):
    raw = write_corpus(tmp_path / "raw", texts=("a\tI-ORG\nb\tO\n\nc\tI-PER\n", "d\tB-PER\n", "e\tO\n"))
    ds = load_conll(data_dir=raw, cache_dir=tmp_path / "cache", columns=("tokens", "ner_tags"), separator="\t")
    feats = ds["train"].features
    assert list(feats) == ["id", "document_id", "sentence_index", "tokens", "ner_tags"]
    assert feats["ner_tags"].feature.names == ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert ds["train"]["document_id"] == [0, 0] and ds["train"]["sentence_index"] == [0, 1]
    assert feats["ner_tags"].feature.int2str(ds["validation"][0]["ner_tags"]) == ["B-PER"]


def test_two_column_unknown_type_outside_train_is_an_error(tmp_path):
    raw = write_corpus(tmp_path / "raw", texts=("a O\nb I-PER\n", "c I-LOC\n", "d O\n"))
    with pytest.raises(ConllFormatError, match=r"valid.txt:1: unknown ner_tags tag 'I-LOC'"):
        load_conll(data_dir=raw, cache_dir=tmp_path / "cache", columns=("tokens", "ner_tags"))


def test_given_label_names(tmp_path):
    raw = write_corpus(tmp_path / "raw", texts=("a O\nb I-PER\n", "c O\n", "d O\n"))
    ds = load_conll(
        data_dir=raw,
        cache_dir=tmp_path / "c",
        columns=("tokens", "ner_tags"),
        label_names=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    )
    assert ds["test"].features["ner_tags"].feature.names == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_missing_split_file_names_accepted_names(tmp_path):
    raw = write_corpus(tmp_path / "raw")
    (raw / "test.txt").unlink()
    with pytest.raises(ConllFormatError) as info:
        load_conll(data_dir=raw, cache_dir=tmp_path / "cache")
    assert "eng.testb" in str(info.value) and "test.txt" in str(info.value) and str(raw) in str(info.value)


def test_split_file_is_a_directory(tmp_path):
    raw = write_corpus(tmp_path / "raw")
    (raw / "valid.txt").unlink()
    (raw / "valid.txt").mkdir()
    with pytest.raises(ConllFormatError, match="valid.txt: expected a file, found a directory"):
        load_conll(data_dir=raw, cache_dir=tmp_path / "cache")


def test_bad_config_values():
    with pytest.raises(ValueError, match="tagging_scheme"):
        Conll2003Config(tagging_scheme="bio")
    with pytest.raises(ValueError, match="columns"):
        Conll2003Config(columns=("word", "ner_tags"))


# --- HTTP download through datasets' download manager, against 127.0.0.1 ----------------------------


@pytest.fixture
def http_root(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    root = write_corpus(tmp_path / "served", "eng")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_over_http(tmp_path, http_root):
    root, base = http_root
    urls = {"train": f"{base}/eng.train", "validation": f"{base}/eng.testa", "test": f"{base}/eng.testb"}
    sha = {
        s: hashlib.sha256((root / n).read_bytes()).hexdigest()
        for s, n in zip(urls, ("eng.train", "eng.testa", "eng.testb"))
    }
    ds = load_conll(cache_dir=tmp_path / "cache", urls=urls, sha256=sha)
    assert {k: len(v) for k, v in ds.items()} == {"train": 3, "validation": 1, "test": 2}
    assert list((tmp_path / "cache" / "downloads").glob("*"))  # went through the download cache
    bad = dict(sha, train="0" * 64)
    with pytest.raises(ConllFormatError, match="eng.train: sha256"):
        load_conll(cache_dir=tmp_path / "cache2", urls=urls, sha256=bad)


def test_default_urls_carry_checksums():
    config = Conll2003Config()
    assert set(config.urls) == set(config.sha256) == {"train", "validation", "test"}
    assert Conll2003Config(urls={"train": "http://127.0.0.1/x"}).sha256 is None
