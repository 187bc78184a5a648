"""What a pipeline("ner") user gets: entities (character spans) mapped back to words, documents fed whole,
scored against the gold words."""

from __future__ import annotations

from nerforge.pipeline_scores import entity_tags, group_documents, pipeline_scores, word_spans


def test_word_spans_and_entity_tags():
    words = ["AL-AIN", "beat", "Real", "Madrid"]
    spans = word_spans(words)
    assert spans == [(0, 6), (7, 11), (12, 16), (17, 23)]
    ents = [{"entity_group": "ORG", "start": 12, "end": 23}, {"entity_group": "LOC", "start": 3, "end": 6}]
    # an entity whose edge falls inside a word takes the whole word
    assert entity_tags(ents, spans) == ["B-LOC", "O", "B-ORG", "I-ORG"]
    assert entity_tags([], spans) == ["O"] * 4


def test_documents_are_runs_of_one_id_and_no_ids_means_sentences():
    assert group_documents([0, 0, 1, 1, 1, 2], 6) == [range(0, 2), range(2, 5), range(5, 6)]
    assert group_documents(None, 3) == [range(0, 1), range(1, 2), range(2, 3)]
    assert group_documents([7, 7, 7], 3) == [range(0, 1), range(1, 2), range(2, 3)]  # one document: none


class FakePipeline:
    """Tags 'Oslo' as LOC, and 'Zephyr' as PRODUCT only when the text holds more than one sentence'
    words (as a model that needs context would)."""

    def __init__(self):
        self.calls = []

    def __call__(self, texts, batch_size=1):
        out = []
        for text in texts:
            self.calls.append(text)
            ents, pos = [], 0
            for w in text.split(" "):
                if w == "Oslo" or (w == "Zephyr" and len(text.split()) > 3):
                    ents.append(
                        {"entity_group": "LOC" if w == "Oslo" else "PRODUCT", "start": pos, "end": pos + len(w)}
                    )
                pos += len(w) + 1
            out.append(ents)
        return out


def test_sentence_and_document_modes_feed_what_they_say_and_score_against_gold():
    sents = [["Zephyr", "sold"], ["in", "Oslo"], [], ["Zephyr", "!"]]
    gold = [["B-PRODUCT", "O"], ["O", "B-LOC"], [], ["B-PRODUCT", "O"]]
    ner = FakePipeline()
    got = pipeline_scores(ner, sents, gold, document_ids=[0, 0, 0, 1])
    assert ner.calls == ["Zephyr sold", "in Oslo", "Zephyr !", "Zephyr sold in Oslo", "Zephyr !"]
    assert got["sentence"]["f1"] == 0.5  # Oslo only: precision 1, recall 1/3
    assert round(got["document"]["recall"], 4) == round(2 / 3, 4) and got["document"]["precision"] == 1.0
    same = pipeline_scores(FakePipeline(), sents, gold, document_ids=None)
    assert same["sentence"] == same["document"]


def test_the_exports_input_limit_is_the_longest_training_window(tiny_tokenizer):
    from nerforge.features import WindowSettings
    from nerforge.training import training_window_length

    assert (
        training_window_length(WindowSettings(max_length=512, context_size=64, pack_length=128), tiny_tokenizer) == 258
    )
    assert (
        training_window_length(WindowSettings(max_length=200, context_size=64, pack_length=128), tiny_tokenizer) == 200
    )
    assert training_window_length(WindowSettings(max_length=512, context_size=64), tiny_tokenizer) == 512
