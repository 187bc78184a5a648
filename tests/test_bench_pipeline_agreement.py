"""bench.pipeline_agreement's reading and counting, on a tiny export (offline)."""

from test_card import make_tiny_export

from bench.pipeline_agreement import agreement, main, read_documents

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O


German JJ B-NP B-MISC
.  . O O

-DOCSTART- -X- -X- O

Clara NNP B-NP B-PER
"""


def test_read_documents_groups_sentences_at_docstart(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(CONLL, encoding="utf-8")
    sentences, docs = read_documents(path)
    assert sentences == [["EU", "rejects"], ["German", "."], ["Clara"]]
    assert docs == [0, 0, 1]
    path.write_text("EU NNP B-NP B-ORG\n\nClara NNP B-NP B-PER", encoding="utf-8")  # no DOCSTART, no last newline
    assert read_documents(path) == ([["EU"], ["Clara"]], [0, 0])


def test_document_context_agreement_is_counted_only_when_asked(tmp_path):
    model = str(make_tiny_export(tmp_path / "m"))
    sentences = [["My", "name", "is", "Clara"], ["EU", "rejects", "German", "calls", "."], ["Berkeley"]]
    none = [set() for _ in sentences]
    alone = agreement(model, sentences, "first", ours=none)
    assert "agree_with_document_context" not in alone
    same = agreement(model, sentences, "first", ours=none, scored=none)
    assert same["agree_with_document_context"] == same["agree"] == alone["agree"]
    other = agreement(model, sentences, "first", ours=none, scored=[{("NOTATYPE", 0, 0)} for _ in sentences])
    assert other["agree_with_document_context"] == 0 and other["agree"] == alone["agree"]


def test_the_figures_file_holds_no_sentence_of_the_data_and_the_examples_file_every_disagreement(tmp_path):
    """A random tiny model on hyphenated words: the pipeline (BERT's tokenizer cuts them) disagrees."""
    import json

    from test_whole_words import SENTENCES, build_tiny

    model = str(build_tiny(tmp_path / "m"))
    conll = tmp_path / "t.txt"
    conll.write_text("\n\n".join("\n".join(f"{w} X X O" for w in s) for s in SENTENCES) + "\n", encoding="utf-8")
    out, ex = tmp_path / "figures.json", tmp_path / "examples.jsonl"
    assert main(["--model", model, "--conll", str(conll), "--output", str(out), "--examples", str(ex)]) == 0
    figures = json.loads(out.read_text())
    assert [r["strategy"] for r in figures["results"]] == ["first", "simple"]
    assert all("examples" not in r for r in figures["results"])
    assert not [w for s in SENTENCES for w in s if len(w) > 3 and w in out.read_text()]
    lines = [json.loads(line) for line in ex.read_text().splitlines()]
    disagreements = sum(r["sentences"] - r["agree"] for r in figures["results"])
    assert disagreements > 0 and len(lines) == disagreements
    assert {x["text"] for x in lines} <= {" ".join(s) for s in SENTENCES}
