"""keep_words_whole: a WordPiece tokenizer whose words are the text's whitespace-separated words (edge
punctuation split off), saved so that AutoTokenizer and pipeline("ner") read it back as it is."""

import json
import re

import pytest

from nerforge.modeling import build_tiny_bert, keep_words_whole, save_tokenizer

LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
# Words with punctuation inside them, as in CoNLL-2003 (words with punctuation at an edge, like U.S. or
# 's, are the pipeline's words minus that punctuation: not in these sentences).
SENTENCES = [
    ["AL-AIN", "beat", "Poul-Erik", "Hoyer-Larsen", "in", "Abu", "Dhabi", "on", "1996-08-30"],
    ["Real", "Madrid-Barcelona", "derby", "ends", "3-0", "for", "Bre-X"],
    ["Australia-West", "Indies", "match", "restarts", "in", "Ange-Felix", "Patasse", "home", "town"],
    ["He", "said", "they", "don't", "know", "Jean-Marie", "Le", "Pen"],
]


def pieces(tokenizer, text):
    return tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])


def build_tiny(folder, extra: str = ""):
    """A random 2-layer BERT whose vocabulary holds the words of SENTENCES (and `extra`) as BERT cuts them at
    punctuation, and every character as a ## piece."""
    words = re.findall(r"\w+|[^\w\s]", " ".join(w for s in SENTENCES for w in s) + extra)
    return build_tiny_bert(words, LABELS, folder, seed=3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("tiny") / "m", " ( Reuters ) U.S.")


def test_punctuation_inside_a_word_becomes_continuation_pieces_and_edges_are_cut(tiny):
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(tiny)
    whole = keep_words_whole(plain)
    assert pieces(plain, "AL-AIN") == ["AL", "-", "AIN"]  # BERT cuts at '-'
    got = pieces(whole, "AL-AIN (Reuters) U.S.")
    assert "##-" in got and "-" not in got
    assert got[got.index("##-") + 1].startswith("##")  # AIN continues the word
    assert got.count("(") == 1 and got.count(")") == 1 and got[-1] == "."  # edges are words of their own
    assert "##." in got  # the dot inside U.S stays in the word
    # each data word is one word id, pre-split or not
    enc = whole(SENTENCES[0], is_split_into_words=True)
    assert max(i for i in enc.word_ids() if i is not None) == len(SENTENCES[0]) - 1


def test_punctuation_without_a_continuation_piece_is_cut_anywhere():
    """A vocabulary without '##'' must not turn don't into [UNK]: the apostrophe is cut as BERT cuts it."""
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "don", "'", "t", "AL", "-", "##-", "AIN", "##AIN"]
    whole = keep_words_whole(BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=False))
    assert pieces(whole, "don't AL-AIN") == ["don", "'", "t", "AL", "##-", "##AIN"]


def test_saved_and_read_back_by_autotokenizer_under_a_class_name_transformers_4_knows(tiny, tmp_path):
    from transformers import AutoTokenizer

    whole = keep_words_whole(AutoTokenizer.from_pretrained(tiny))
    save_tokenizer(whole, tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and config["do_lower_case"] is False
    back = AutoTokenizer.from_pretrained(tmp_path)
    for s in SENTENCES:
        text = " ".join(s)
        assert pieces(back, text) == pieces(whole, text)
    assert back.model_input_names == whole.model_input_names
    assert back.cls_token == "[CLS]" and back.pad_token_id == whole.pad_token_id


def test_other_tokenizers_are_refused_by_name(tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    bpe = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE(vocab={"a": 0, "b": 1}, merges=[])))
    with pytest.raises(ValueError, match="WordPiece.*BPE"):
        keep_words_whole(bpe)


def test_a_vocabulary_without_any_punctuation_piece_is_refused_rather_than_ignored():
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "AL", "-", "AIN"]
    with pytest.raises(ValueError, match="no '##' piece for any punctuation"):
        keep_words_whole(BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}))


def test_the_pipeline_returns_our_entities_only_when_words_are_kept_whole(tiny, tmp_path):
    """A random tiny model labels the pieces after a hyphen anyhow; `first` then agrees with our
    predictor only where the pipeline's words are the data's words."""
    import shutil

    from transformers import AutoTokenizer

    from bench.pipeline_agreement import agreement

    cut = agreement(str(tiny), SENTENCES, "first")
    kept_dir = tmp_path / "kept"
    shutil.copytree(tiny, kept_dir)
    save_tokenizer(keep_words_whole(AutoTokenizer.from_pretrained(tiny)), kept_dir)
    kept = agreement(str(kept_dir), SENTENCES, "first")
    assert kept["agree"] == len(SENTENCES) and kept["entities_inside_a_word"] == 0
    assert cut["agree"] < len(SENTENCES) and cut["entities_inside_a_word"] > 0


def test_a_cased_vocabulary_with_every_punctuation_piece_keeps_conll_words_whole(tmp_path):
    """The BERT configs keep words whole: bert-base/large-cased's vocab.txt has a ## piece for each of the 32
    ASCII punctuation characters. A cased vocabulary written the same way keeps AL-AIN, Madrid-Barcelona and
    AT&T as one word each, saved and read back, and pipeline('ner', 'first') returns the data's words."""
    import string

    from transformers import AutoTokenizer, BertTokenizerFast

    from bench.pipeline_agreement import agreement

    words = ["AL", "AIN", "Real", "Madrid", "Barcelona", "AT", "T", "said", "in", "the", "derby"]
    letters = string.ascii_letters + string.digits
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *letters, *string.punctuation]
    vocab += [f"##{c}" for c in letters + string.punctuation] + [f"##{w}" for w in words]
    plain = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=False)
    whole = keep_words_whole(plain)
    text = ["AL-AIN", "said", "Real", "Madrid-Barcelona", "derby", "in", "AT&T"]
    enc = whole(text, is_split_into_words=True, add_special_tokens=False)
    assert enc.word_ids() == [0, 0, 0, 1, 2, 3, 3, 3, 4, 5, 6, 6, 6]
    assert pieces(whole, "AL-AIN AT&T") == ["AL", "##-", "##AIN", "AT", "##&", "##T"]
    assert pieces(plain, "AT&T") == ["AT", "&", "T"]  # without it the pipeline sees three words

    from transformers import AutoModelForTokenClassification

    model_dir = build_tiny_bert(words, LABELS, tmp_path / "m", seed=5)
    model = AutoModelForTokenClassification.from_pretrained(model_dir)
    model.resize_token_embeddings(len(vocab))  # this vocabulary's ids
    model.save_pretrained(model_dir)
    save_tokenizer(whole, model_dir)
    back = AutoTokenizer.from_pretrained(model_dir)
    assert pieces(back, "AL-AIN AT&T") == pieces(whole, "AL-AIN AT&T")
    got = agreement(str(model_dir), [text, ["AT&T", "said", "AL-AIN"]], "first")
    assert got["agree"] == 2 and got["entities_inside_a_word"] == 0
