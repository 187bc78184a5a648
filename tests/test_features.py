import random

import pytest
from conftest import NER

from nerforge.features import (
    IGNORE,
    LengthGroupedBatchSampler,
    assemble_predictions,
    collate,
    continuation_label_map,
    edge_punctuation_mask,
    make_windows,
    pack_sentences,
    pad_multiple,
    split_into_cores,
    tokenize_and_window,
)

L = {n: i for i, n in enumerate(NER)}


def windows_for(tok, sentences, labels, **kw):
    batch = {"tokens": sentences, "ner_tags": labels, "document_id": kw.pop("docs", [0] * len(sentences))}
    opts = dict(
        max_length=512, stride=4, label_all_tokens=False, context_size=0, continuation=continuation_label_map(NER)
    )
    opts.update(kw)
    return tokenize_and_window(batch, list(range(len(sentences))), tokenizer=tok, **opts)


def test_first_piece_carries_the_label(tiny_tokenizer):
    out = windows_for(
        tiny_tokenizer, [["Peter", "Blackburn", "in", "Washington"]], [[L["B-PER"], L["I-PER"], L["O"], L["B-LOC"]]]
    )
    pieces = tiny_tokenizer.convert_ids_to_tokens(out["input_ids"][0])
    assert pieces == ["[CLS]", "Peter", "Black", "##burn", "in", "Wash", "##ing", "##ton", "[SEP]"]
    assert out["labels"][0] == [IGNORE, L["B-PER"], L["I-PER"], IGNORE, L["O"], L["B-LOC"], IGNORE, IGNORE, IGNORE]
    assert out["word_index"][0] == [-1, 0, 1, -1, 2, 3, -1, -1, -1]


def test_label_all_tokens_turns_b_into_i_on_continuations(tiny_tokenizer):
    out = windows_for(tiny_tokenizer, [["Washington", "Blackburn"]], [[L["B-LOC"], L["I-LOC"]]], label_all_tokens=True)
    assert out["labels"][0] == [IGNORE, L["B-LOC"], L["I-LOC"], L["I-LOC"], L["I-LOC"], L["I-LOC"], IGNORE]
    # scores still come from the first piece of each word only
    assert out["word_index"][0] == [-1, 0, -1, -1, 1, -1, -1]


def test_label_edge_punctuation_labels_split_off_punctuation_but_no_other_later_piece(tiny_tokenizer):
    # BERT's pre-tokenizer cuts 'Washington.' into the pipeline words 'Washington' and '.': the '.' piece
    # is labelled I-LOC (the pipeline joins it to the entity); '##ing'/'##ton' and the 'Peter' of ',Peter'
    # (a later piece, but no punctuation) stay unlabelled.
    mask = edge_punctuation_mask(tiny_tokenizer)
    words, tags = [["Washington.", ",Peter"]], [[L["B-LOC"], L["B-PER"]]]
    out = windows_for(tiny_tokenizer, words, tags, edge_punct=mask)
    pieces = tiny_tokenizer.convert_ids_to_tokens(out["input_ids"][0])
    assert pieces == ["[CLS]", "Wash", "##ing", "##ton", ".", ",", "Peter", "[SEP]"]
    assert out["labels"][0] == [IGNORE, L["B-LOC"], IGNORE, IGNORE, L["I-LOC"], L["B-PER"], IGNORE, IGNORE]
    assert out["word_index"][0] == [-1, 0, -1, -1, -1, 1, -1, -1]
    # without it, the '.' is unlabelled; with label_all_tokens every piece is
    assert windows_for(tiny_tokenizer, words, tags)["labels"][0][4] == IGNORE
    assert windows_for(tiny_tokenizer, words, tags, label_all_tokens=True)["labels"][0][2:5] == [L["I-LOC"]] * 3


def test_edge_punctuation_mask_marks_punctuation_pieces_only_and_refuses_other_models(tiny_tokenizer):
    from tokenizers import Tokenizer, models
    from transformers import BertTokenizerFast, PreTrainedTokenizerFast

    vocab = dict(tiny_tokenizer.get_vocab())
    for piece in ("##.", "$", "\u2014", "a.", "[UNK]"):  # '##.' is a continuation; the em dash is punctuation
        vocab.setdefault(piece, len(vocab))
    mask = edge_punctuation_mask(BertTokenizerFast(vocab=vocab, do_lower_case=False))
    assert mask[vocab["."]] and mask[vocab[","]] and mask[vocab["$"]] and mask[vocab["\u2014"]]
    assert not any(mask[vocab[p]] for p in ("##.", "a.", "Wash", "##ing", "[UNK]", "[CLS]"))
    bpe = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE(vocab={"a": 0}, merges=[])))
    with pytest.raises(ValueError, match="label_edge_punctuation needs a WordPiece tokenizer.*BPE"):
        edge_punctuation_mask(bpe)


def test_pieceless_words_get_unk_and_keep_neighbours_aligned(tiny_tokenizer):
    words = ["EU", "\ufe0f", "rejects", "\u200b", "German", "\u200d\ufe0f"]
    tags = [L["B-ORG"], L["O"], L["O"], L["O"], L["B-MISC"], L["O"]]
    out = windows_for(tiny_tokenizer, [words], [tags])
    pieces = tiny_tokenizer.convert_ids_to_tokens(out["input_ids"][0])
    assert pieces == ["[CLS]", "EU", "[UNK]", "rejects", "[UNK]", "German", "[UNK]", "[SEP]"]
    assert [w for w in out["word_index"][0] if w >= 0] == list(range(6))
    assert [lab for lab in out["labels"][0] if lab != IGNORE] == tags


@pytest.mark.parametrize("max_length", [16, 32, 512])
@pytest.mark.parametrize("context_size, pack_length", [(0, 0), (6, 0), (0, 4), (3, 8)])
def test_every_word_predicted_exactly_once(tiny_tokenizer, max_length, context_size, pack_length):
    rng = random.Random(max_length)
    vocab = ["Washington", "Blackburn", "the", "EU", "lamb", "abc", "\ufe0f", "."]
    sents = [[rng.choice(vocab) for _ in range(n)] for n in (1, 5, 40, 300, 7)]
    tags = [[rng.randrange(len(NER)) for _ in s] for s in sents]
    out = windows_for(
        tiny_tokenizer,
        sents,
        tags,
        max_length=max_length,
        context_size=context_size,
        pack_length=pack_length,
        docs=[0, 0, 0, 1, 1],
    )
    assert all(len(ids) <= max_length for ids in out["input_ids"])
    if max_length < 512:
        assert len(out["input_ids"]) > len(sents)  # the long sentences really were cut
    # A "model" that predicts the training label: assembling must give back every gold tag once.
    assembled = assemble_predictions(out["labels"], out["word_index"], out["example_id"], [len(s) for s in sents])
    assert assembled == tags


def test_context_comes_from_the_same_document_and_is_never_labelled(tiny_tokenizer):
    sents = [["the", "EU"], ["German", "lamb"], ["British", "call"]]
    tags = [[0, 3], [7, 0], [7, 0]]
    out = windows_for(tiny_tokenizer, sents, tags, context_size=8, docs=[0, 0, 1])
    toks = [tiny_tokenizer.convert_ids_to_tokens(ids) for ids in out["input_ids"]]
    assert toks[0] == ["[CLS]", "the", "EU", "German", "lamb", "[SEP]"]
    assert toks[1] == ["[CLS]", "the", "EU", "German", "lamb", "[SEP]"]
    assert toks[2] == ["[CLS]", "British", "call", "[SEP]"]  # other document: no context
    assert out["labels"][1] == [IGNORE, IGNORE, IGNORE, 7, 0, IGNORE]
    assert out["word_index"][0] == [-1, 0, 1, -1, -1, -1]


def test_a_word_longer_than_a_window_is_clipped_but_predicted():
    wins = make_windows([[5] * 3, [6] * 20, [7]], [1, 2, 0], budget=8, stride=2)
    assert all(len(w.pieces) <= 8 for w in wins)
    scored = [(w.word_index[i], w.labels[i]) for w in wins for i in range(len(w.pieces)) if w.word_index[i] >= 0]
    assert sorted(scored) == [(0, 1), (1, 2), (2, 0)]


def test_split_into_cores_and_impossible_stride():
    assert split_into_cores([2, 2, 2, 5, 1], 4) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    with pytest.raises(ValueError, match="stride"):
        make_windows([[1]] * 10, [0] * 10, budget=6, stride=3)


def test_length_grouped_batches_cover_everything_and_are_reproducible():
    lengths = [random.Random(i).randrange(5, 120) for i in range(1000)]
    s = LengthGroupedBatchSampler(lengths, batch_size=16, seed=3, mega=4)
    first = s.batches()
    assert sorted(i for b in first for i in b) == list(range(1000))
    assert len(first) == len(s) == 63
    assert LengthGroupedBatchSampler(lengths, 16, seed=3, mega=4).batches() == first
    s.set_epoch(1)
    assert s.batches() != first
    # grouped: the spread of lengths inside a batch is far below the spread of random batches
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first) / len(first)
    assert spread < 30


def test_collate_pads_to_the_longest_row_rounded_only_when_asked():
    rows = [
        {"input_ids": [2, 5, 3], "labels": [IGNORE, 1, IGNORE], "word_index": [-1, 0, -1], "example_id": 4},
        {"input_ids": [2] * 9, "labels": [0] * 9, "word_index": [0] * 9, "example_id": 7},
    ]
    assert collate(rows, pad_id=0)["input_ids"].shape == (2, 9)
    b = collate(rows, pad_id=0, multiple_of=8)
    assert b["input_ids"].shape == (2, 16)
    assert b["attention_mask"][0].tolist() == [1, 1, 1] + [0] * 13
    assert b["labels"][0, 3:].eq(IGNORE).all() and b["word_index"][0, 3:].eq(-1).all()
    assert b["example_id"].tolist() == [4, 7]


def test_pad_multiple_rounds_for_cuda_only():
    assert pad_multiple("cuda") == 8
    assert pad_multiple("cpu") == 1 and pad_multiple("mps") == 1


def test_assemble_refuses_lost_or_duplicated_words():
    with pytest.raises(RuntimeError, match="no prediction"):
        assemble_predictions([[1, 2]], [[0, -1]], [0], [2])
    with pytest.raises(RuntimeError, match="twice"):
        assemble_predictions([[1], [2]], [[0], [0]], [0, 0], [1])


# ------------------------------------------------------------------ packing sentences of a document


def test_pack_sentences_respects_documents_and_budget():
    #              doc 0 ----------  doc 1 ------
    counts = [3, 4, 2, 9, 1, 2, 2, 20, 1]
    docs = [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert pack_sentences(counts, docs, 9) == [(0, 3), (3, 4), (4, 5), (5, 7), (7, 8), (8, 9)]
    assert pack_sentences(counts, docs, 100) == [(0, 5), (5, 9)]
    assert pack_sentences([], [], 8) == []


def test_packed_window_labels_whole_sentences_with_context_around_the_group(tiny_tokenizer):
    sents = [["the", "EU"], ["German", "lamb"], ["British", "call"], ["Peter"], ["call"]]
    tags = [[0, 3], [7, 0], [7, 0], [1], [5]]
    out = windows_for(tiny_tokenizer, sents, tags, context_size=1, pack_length=4, docs=[0, 0, 0, 0, 1])
    toks = [tiny_tokenizer.convert_ids_to_tokens(ids) for ids in out["input_ids"]]
    # sentences 0+1 packed (4 pieces), then 2+3 (3), each with one piece of context; doc 1 alone
    assert toks[0] == ["[CLS]", "the", "EU", "German", "lamb", "British", "[SEP]"]
    assert toks[1] == ["[CLS]", "lamb", "British", "call", "Peter", "[SEP]"]
    assert toks[2] == ["[CLS]", "call", "[SEP]"]
    assert out["example_id"] == [0, 2, 4]
    # word indices run on from the group's first sentence; context is never labelled
    assert out["word_index"][0] == [-1, 0, 1, 2, 3, -1, -1]
    assert out["labels"][1] == [IGNORE, IGNORE, 7, 0, 1, IGNORE]
    assert assemble_predictions(out["labels"], out["word_index"], out["example_id"], [2, 2, 2, 1, 1]) == tags


def test_packing_costs_fewer_pieces_than_per_sentence_context(tiny_tokenizer):
    rng = random.Random(0)
    vocab = ["Washington", "Blackburn", "the", "EU", "lamb", "abc", "."]
    sents = [[rng.choice(vocab) for _ in range(rng.randrange(3, 12))] for _ in range(60)]
    tags = [[0] * len(s) for s in sents]
    docs = [i // 15 for i in range(60)]
    per_sentence = windows_for(tiny_tokenizer, sents, tags, context_size=16, docs=docs)
    packed = windows_for(tiny_tokenizer, sents, tags, context_size=16, pack_length=48, docs=docs)
    assert sum(packed["length"]) < 0.5 * sum(per_sentence["length"])
    for out in (per_sentence, packed):  # and still every word once
        assert (
            assemble_predictions(out["labels"], out["word_index"], out["example_id"], [len(s) for s in sents]) == tags
        )
    with pytest.raises(ValueError, match="pack_length 40 \\+ 2 x context_size 16"):
        windows_for(tiny_tokenizer, sents, tags, context_size=16, pack_length=40, max_length=64, docs=docs)


def test_assemble_refuses_word_index_past_the_last_sentence():
    with pytest.raises(RuntimeError, match="past the last sentence"):
        assemble_predictions([[1, 2, 3]], [[0, 1, 2]], [1], [1, 2])


def test_features_are_cached_under_a_key_of_input_tokenizer_and_settings(tiny_tokenizer, tmp_path):
    from datasets import Dataset, load_from_disk
    from transformers import BertTokenizerFast

    from nerforge.features import WindowSettings, build_features, features_fingerprint

    Dataset.from_dict(
        {"tokens": [["the", "EU"], ["German", "lamb"]], "ner_tags": [[0, 3], [7, 0]], "document_id": [0, 0]}
    ).save_to_disk(tmp_path / "ds")
    ds = load_from_disk(tmp_path / "ds")  # file-backed, so map writes and reuses cache files
    windows = WindowSettings(max_length=32, stride=4, context_size=0)
    kw = dict(label_all_tokens=False, label_names=NER)
    first = build_features(ds, tiny_tokenizer, windows, **kw)
    again = build_features(ds, tiny_tokenizer, windows, **kw)
    assert first.cache_files == again.cache_files and first["input_ids"] == again["input_ids"]
    other = build_features(ds, tiny_tokenizer, windows.override(context_size=2), **kw)
    assert other.cache_files != first.cache_files and other["input_ids"] != first["input_ids"]
    starts = build_features(ds, tiny_tokenizer, windows, label_edge_punctuation=True, **kw)
    assert starts.cache_files != first.cache_files

    settings = dict(max_length=32)
    key = features_fingerprint("abc", tiny_tokenizer, settings)
    assert key == features_fingerprint("abc", tiny_tokenizer, dict(settings))
    assert key != features_fingerprint("abd", tiny_tokenizer, settings)
    assert key != features_fingerprint("abc", tiny_tokenizer, dict(max_length=33))
    vocab = dict(tiny_tokenizer.get_vocab())
    vocab["zzz-new-word"] = len(vocab)
    assert key != features_fingerprint("abc", BertTokenizerFast(vocab=vocab, do_lower_case=False), settings)
    same = dict(tiny_tokenizer.get_vocab())
    assert key == features_fingerprint("abc", BertTokenizerFast(vocab=same, do_lower_case=False), settings)
    assert key != features_fingerprint("abc", BertTokenizerFast(vocab=same, do_lower_case=True), settings)
    tiny_tokenizer.backend_tokenizer.enable_truncation(8)  # cleared before use, so not part of the key
    assert key == features_fingerprint("abc", tiny_tokenizer, settings)
    tiny_tokenizer.backend_tokenizer.no_truncation()


def _one_window_rows(tok, sentences, labels, max_length=512, **kw):
    """The rows of the batch-at-once path, or None where the batch took the general path."""
    import pyarrow as pa

    out = windows_for(tok, sentences, labels, max_length=max_length, as_table=True, **kw)
    return out.to_pydict() if isinstance(out, pa.Table) else None


@pytest.mark.parametrize("label_all_tokens, edge_punct", [(False, False), (True, False), (False, True)])
def test_batch_at_once_path_makes_the_rows_of_the_general_path(tiny_tokenizer, label_all_tokens, edge_punct):
    rng = random.Random(int(label_all_tokens) + 2 * int(edge_punct))
    vocab = ["Washington", "Blackburn", "the", "EU", "lamb", "abc", ".", "Peter", "Peter.", ",Washington."]
    sents = [[rng.choice(vocab) for _ in range(rng.randint(1, 30))] for _ in range(50)]
    tags = [[rng.randrange(len(NER)) for _ in s] for s in sents]
    kw = dict(
        label_all_tokens=label_all_tokens, edge_punct=edge_punctuation_mask(tiny_tokenizer) if edge_punct else None
    )
    fast = _one_window_rows(tiny_tokenizer, sents, tags, **kw)
    general = windows_for(tiny_tokenizer, sents, tags, **kw)
    assert fast is not None and fast == general
    if edge_punct:  # the split-off punctuation pieces did get labels the first-piece rule leaves out
        first_only = windows_for(tiny_tokenizer, sents, tags)
        assert sum(x != IGNORE for r in general["labels"] for x in r) > sum(
            x != IGNORE for r in first_only["labels"] for x in r
        )


@pytest.mark.parametrize("sentence", [["EU", "\u200b", "rejects"], ["Washington"] * 20])
def test_batch_at_once_path_declines_what_needs_the_general_path(tiny_tokenizer, sentence):
    # a pieceless word (needs [UNK]) or a sentence cut into windows at max_length 16
    batch = [["the", "EU"], sentence]
    assert _one_window_rows(tiny_tokenizer, batch, [[0] * len(s) for s in batch], max_length=16) is None
    assert _one_window_rows(tiny_tokenizer, batch[:1], [[0, 3]], max_length=16) is not None


@pytest.mark.realdata
def test_real_train_split_windows_equal_with_and_without_the_batch_path(tmp_path, monkeypatch):
    from conftest import CONLL_DIR, MINILM_DIR

    if not (CONLL_DIR.is_dir() and MINILM_DIR.is_dir()):
        pytest.skip("../shared data or model not found")
    import datasets
    from transformers import AutoTokenizer

    import nerforge.features as F
    from conll2003_loader import load_conll

    train = load_conll(data_dir=str(CONLL_DIR), cache_dir=str(tmp_path))["train"]
    tok = AutoTokenizer.from_pretrained(MINILM_DIR)
    names = train.features["ner_tags"].feature.names
    datasets.disable_caching()  # both builds share a fingerprint: the second must not read the first's cache
    try:
        fast = F.build_features(train, tok, F.WindowSettings(max_length=512), label_all_tokens=False, label_names=names)
        monkeypatch.setattr(F, "one_window_table", lambda *a, **k: None)
        general = F.build_features(
            train, tok, F.WindowSettings(max_length=512), label_all_tokens=False, label_names=names
        )
    finally:
        datasets.enable_caching()
    assert fast.features == general.features
    assert fast.to_dict() == general.to_dict()


def test_sentence_alone_mask_takes_whole_documents_by_seed():
    from nerforge.features import sentence_alone_mask

    docs = [0, 0, 0, 1, 1, 2, 3, 3, 3, 3]
    mask = sentence_alone_mask(docs, 0.5, seed=1)
    alone_docs = {d for d, a in zip(docs, mask) if a}
    assert len(alone_docs) == 2  # half of the 4 documents
    assert all(a == (d in alone_docs) for d, a in zip(docs, mask))  # a document is all alone or not at all
    assert sentence_alone_mask(docs, 0.5, seed=1) == mask  # the seed decides
    assert {frozenset(d for d, a in zip(docs, sentence_alone_mask(docs, 0.5, seed=k)) if a) for k in range(20)} != {
        frozenset(alone_docs)
    }
    assert not any(sentence_alone_mask(docs, 0.0, seed=1)) and all(sentence_alone_mask(docs, 1.0, seed=1))
