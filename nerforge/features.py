"""Word pieces, label alignment, windows, document context and length-grouped batches.

Everything here is a pure function of lists and ints except `build_features` (datasets glue) and
`collate` (torch glue). The rules, stated once:

* Labels: the first word piece of a word carries the word's label; other pieces and special tokens
  get -100. With `label_all_tokens` every piece is labelled and a continuation piece of a `B-X` word
  is labelled `I-X`. With `label_edge_punctuation` (`edge_punct` given) so is a later piece that is
  punctuation split off the word's edge (the `.` of `B.`): `pipeline("ner")` takes it as a word of its
  own, and untrained it cuts entities such as `B. Smith` in two. Scores are always taken from the first
  piece of each word.
* A word whose text yields no word piece (U+FE0F alone, a zero-width space, ...) is given the
  tokenizer's unknown token, so it is predicted like any other word and its neighbours keep their
  positions.
* Windows: a model sees at most `max_length` tokens. Each sentence is cut into *cores*: consecutive
  runs of whole words that fit. Every word lies in exactly one core, and it is trained on and predicted
  in that window only. Around its core, a window carries *context*: up to `stride` word pieces of the
  same sentence on each side when a long sentence had to be cut, and up to `context_size` pieces of the
  neighbouring sentences of the same document when document context is on. Context pieces are labelled
  -100 and never scored. A single word with more pieces than fit keeps its first pieces (its label and
  prediction sit on the first one).
* Packing (`pack_length` > 0): consecutive whole sentences of a document whose pieces sum to at most
  `pack_length` share one window and are labelled together, each seeing the others as context, with
  `context_size` pieces of the document on either side of the group. Every sentence still sees at
  least `context_size` pieces on each side (where the document has them), but the context is paid once
  per group instead of once per sentence: per-sentence context multiplies the pieces per epoch by
  (sentence + 2 x context_size) / sentence: 6.2x on CoNLL-2003 train at 64 with MiniLM's tokenizer,
  against 1.6x packed at pack_length 128. A packed window's
  `word_index` counts words from the start of its first sentence (`example_id`) across the group.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

IGNORE = -100


@dataclass(frozen=True)
class WindowSettings:
    """How sentences become model inputs, in word pieces: one object, made from the run's config
    (:meth:`from_config`) or read from an export (``nerforge.predictor.export_windows``), and passed
    whole from the training loop's evaluation to every predictor and command.

    max_length: longest input, special tokens included (None: the model's maximum capped at 512,
        decided by the predictor). stride: pieces of the same sentence kept as context on each side
        when a sentence is cut. context_size: pieces of document context on each side (0: none).
        pack_length: sentences of a document labelled together up to this many pieces (0: one per
        window). batch_size: windows per forward pass when predicting or evaluating.
    """

    max_length: int | None = None
    stride: int = 32
    context_size: int = 0
    pack_length: int = 0
    batch_size: int = 64

    @classmethod
    def from_config(cls, cfg) -> WindowSettings:
        """The windows of a run config (``nerforge.config.RunConfig``): its data section's, and the
        evaluation batch size."""
        d = cfg.data
        return cls(d.max_length, d.stride, d.context_size, d.pack_length, cfg.training.per_device_eval_batch_size)

    def override(self, **changes) -> WindowSettings:
        """A copy with the given settings changed; a None value keeps the current one (a flag not given)."""
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise TypeError(f"unknown window settings: {', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def alone(self) -> WindowSettings:
        """The same windows without document context: each sentence as pipeline('ner') sees it."""
        return replace(self, context_size=0, pack_length=0)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ----------------------------------------------------------------------------- pure functions


def continuation_label_map(label_names: Sequence[str]) -> list[int]:
    """For each label id, the id a continuation piece takes under `label_all_tokens` (B-X -> I-X)."""
    index = {name: i for i, name in enumerate(label_names)}
    out = []
    for i, name in enumerate(label_names):
        if name.startswith("B-") and "I-" + name[2:] in index:
            out.append(index["I-" + name[2:]])
        else:
            out.append(i)
    return out


def continuation_piece_label(
    label: int, label_all_tokens: bool, continuation: Sequence[int] | None, edge_punct: bool = False
) -> int:
    """The training label of one of a word's second and later pieces: -100, or the word's label (B-X
    mapped to I-X through `continuation`) with `label_all_tokens`, or where the piece is `edge_punct`
    (punctuation split off the word, with `label_edge_punctuation` on)."""
    if not (label_all_tokens or edge_punct):
        return IGNORE
    return continuation[label] if continuation is not None else label


def edge_punctuation_mask(tokenizer) -> list[bool]:
    """For each piece id of a WordPiece tokenizer, whether it is punctuation that starts a word of its
    own (no ``##`` piece, every character punctuation as BERT defines it): within a word, only what the
    pre-tokenizer split off its edges. `pipeline("ner")` takes such a piece as a word (its rule: a piece
    whose text is as long as the text it covers). What `label_edge_punctuation` labels."""
    from nerforge.modeling import _is_bert_punct, require_wordpiece

    vocab = require_wordpiece(tokenizer, "label_edge_punctuation").get_vocab()
    mask = [False] * (max(vocab.values()) + 1)
    for piece, i in vocab.items():
        mask[i] = not piece.startswith("##") and all(map(_is_bert_punct, piece))
    return mask


def check_pack_fits(pack_length: int, context_size: int, budget: int, max_length: int) -> None:
    """A packed group and its context on both sides must fit in one window of `budget` pieces."""
    if pack_length and pack_length + 2 * context_size > budget:
        raise ValueError(
            f"pack_length {pack_length} + 2 x context_size {context_size} does not fit in windows "
            f"of {budget} word pieces (max_length {max_length})"
        )


def fill_empty_words(pieces_per_word: list[list[int]], unk_id: int) -> list[list[int]]:
    """Give the unknown token to every word the tokenizer turned into nothing."""
    return [p if p else [unk_id] for p in pieces_per_word]


def group_pieces_by_word(input_ids: Sequence[int], word_ids: Sequence[int | None], n_words: int) -> list[list[int]]:
    """Turn a tokenizer's flat output (no special tokens) into one list of piece ids per word."""
    pieces: list[list[int]] = [[] for _ in range(n_words)]
    for tok, w in zip(input_ids, word_ids):
        if w is not None:
            pieces[w].append(tok)
    return pieces


def split_into_cores(piece_counts: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Greedily cut words into consecutive runs [start, end) whose piece counts sum to <= budget.

    A word longer than the budget forms a run of its own (its pieces are clipped later)."""
    if budget < 1:
        raise ValueError(f"window budget must be at least 1 word piece, got {budget}")
    cores, start, used = [], 0, 0
    for i, n in enumerate(piece_counts):
        if i > start and used + n > budget:
            cores.append((start, i))
            start, used = i, 0
        used += n
    if piece_counts:
        cores.append((start, len(piece_counts)))
    return cores


def pack_sentences(piece_counts: Sequence[int], document_ids: Sequence, pack_length: int) -> list[tuple[int, int]]:
    """Greedily group consecutive sentences [start, end) of the same document whose piece counts sum
    to <= pack_length. A sentence longer than pack_length is a group of its own (and gets windows)."""
    groups, start, used = [], 0, 0
    for i, n in enumerate(piece_counts):
        if i > start and (document_ids[i] != document_ids[start] or used + n > pack_length):
            groups.append((start, i))
            start, used = i, 0
        used += n
    if len(piece_counts):
        groups.append((start, len(piece_counts)))
    return groups


@dataclass(frozen=True)
class Window:
    """One model input: `pieces` (no special tokens), and for each piece the label to train on and
    the index of the word it predicts (-1 where nothing is scored)."""

    pieces: list[int]
    labels: list[int]
    word_index: list[int]


def make_windows(
    sentence_pieces: list[list[int]],
    sentence_labels: Sequence[int],
    budget: int,
    stride: int = 0,
    left_context: Sequence[int] = (),
    right_context: Sequence[int] = (),
    context_size: int = 0,
    label_all_tokens: bool = False,
    continuation: Sequence[int] | None = None,
    edge_punct: Sequence[bool] | None = None,
) -> list[Window]:
    """Windows for one sentence (see the module docstring for the rules).

    `budget` is the number of word pieces a window may hold (max_length minus special tokens).
    `edge_punct`: `edge_punctuation_mask` when `label_edge_punctuation` is on, else None.
    `left_context`/`right_context` are the pieces of the neighbouring sentences of the document,
    nearest last/first, used only when `context_size` > 0."""
    if len(sentence_pieces) != len(sentence_labels):
        raise ValueError(f"{len(sentence_pieces)} words but {len(sentence_labels)} labels")
    counts = [len(p) for p in sentence_pieces]
    if sum(counts) <= budget:
        cores = [(0, len(counts))]
    else:
        if 2 * stride >= budget:
            raise ValueError(f"stride {stride} leaves no room for words in a window of {budget} pieces")
        cores = split_into_cores(counts, budget - 2 * stride)
    first = [0]  # position of each word's first piece in the sentence
    for n in counts:
        first.append(first[-1] + n)
    flat: list[int] = []  # the sentence's pieces as one stream, needed only when it was cut

    windows = []
    for start, end in cores:
        # The core, word by word: the first piece carries the label.
        pieces, labels, word_index = [], [], []
        for w in range(start, end):
            word, lab = sentence_pieces[w], sentence_labels[w]
            pieces += word
            labels.append(lab)
            word_index.append(w)
            if len(word) > 1:
                labels += [
                    continuation_piece_label(
                        lab, label_all_tokens, continuation, edge_punct is not None and edge_punct[t]
                    )
                    for t in word[1:]
                ]
                word_index += [-1] * (len(word) - 1)
        del pieces[budget:], labels[budget:], word_index[budget:]  # clip a single over-long word
        free = budget - len(pieces)
        # Context inside the sentence (only when it had to be cut) ...
        left_in: list[int] = []
        right_in: list[int] = []
        if len(cores) > 1:
            flat = flat or [tok for p in sentence_pieces for tok in p]
            left_in = flat[max(0, first[start] - stride) : first[start]]
            right_in = flat[first[end] : first[end] + stride]
        # ... then from the neighbouring sentences of the document.
        left_doc = list(left_context[-context_size:]) if context_size and start == 0 else []
        right_doc = list(right_context[:context_size]) if context_size and end == len(counts) else []
        left = left_doc + left_in
        right = right_in + right_doc
        n_right = min(len(right), free // 2)
        n_left = min(len(left), free - n_right)
        n_right = min(len(right), free - n_left)
        left = left[len(left) - n_left :] if n_left else []
        right = right[:n_right]
        windows.append(
            Window(
                left + pieces + right,
                [IGNORE] * n_left + labels + [IGNORE] * n_right,
                [-1] * n_left + word_index + [-1] * n_right,
            )
        )
    return windows


def clear_truncation_and_padding(tokenizer):
    """The tokenizer's Rust backend, with any truncation or padding its tokenizer.json carried
    switched off (MiniLM's cuts at 128 pieces: words would be lost silently)."""
    backend = tokenizer.backend_tokenizer
    if backend.truncation is not None or backend.padding is not None:
        backend.no_truncation()
        backend.no_padding()
    return backend


def special_token_layout(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens a tokenizer puts before and after one sequence ([CLS] / [SEP] for BERT)."""
    enc = tokenizer(["a"], is_split_into_words=True, add_special_tokens=True)
    words = enc.word_ids()
    first = words.index(0)
    last = len(words) - 1 - words[::-1].index(0)
    return enc["input_ids"][:first], enc["input_ids"][last + 1 :]


# ----------------------------------------------------------------------------- datasets glue


def tokenize_and_window(
    batch: dict,
    indices: list[int],
    *,
    tokenizer,
    max_length: int,
    stride: int,
    label_all_tokens: bool,
    context_size: int,
    pack_length: int = 0,
    label_column: str = "ner_tags",
    continuation: Sequence[int] | None = None,
    edge_punct: Sequence[bool] | None = None,
    as_table: bool = False,
):
    """Batched `Dataset.map` function: sentences in, windows out (one row per window).

    With document context or packing the batch must hold whole documents (see `build_features`).
    `as_table`: where `one_window_table` applies, return its Arrow table (same rows) instead of the dict."""
    prefix, suffix = special_token_layout(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    check_pack_fits(pack_length, context_size, budget, max_length)
    words = batch["tokens"]
    # The Rust tokenizer directly: transformers' wrapper adds a per-sentence Python conversion that
    # profiled at ~16% of preprocessing.
    backend = clear_truncation_and_padding(tokenizer)
    encs = backend.encode_batch(words, is_pretokenized=True, add_special_tokens=False)
    if as_table and not context_size and not pack_length:
        table = one_window_table(
            encs, batch[label_column], indices, prefix, suffix, budget, label_all_tokens, continuation, edge_punct
        )
        if table is not None:
            return table
    unk = tokenizer.unk_token_id
    pieces = [fill_empty_words(group_pieces_by_word(e.ids, e.word_ids, len(w)), unk) for e, w in zip(encs, words)]
    flat = [[t for p in sent for t in p] for sent in pieces]
    docs = batch.get("document_id") or [0] * len(words)

    groups = (
        pack_sentences([len(f) for f in flat], docs, pack_length)
        if pack_length
        else [(i, i + 1) for i in range(len(words))]
    )
    out = {"input_ids": [], "labels": [], "word_index": [], "example_id": [], "length": []}
    for i, end in groups:
        left: list[int] = []
        right: list[int] = []
        if context_size:
            j = i - 1
            while j >= 0 and docs[j] == docs[i] and len(left) < context_size:
                left = flat[j] + left
                j -= 1
            j = end
            while j < len(words) and docs[j] == docs[i] and len(right) < context_size:
                right = right + flat[j]
                j += 1
        group_pieces = [p for k in range(i, end) for p in pieces[k]]
        group_labels = [lab for k in range(i, end) for lab in batch[label_column][k]]
        for win in make_windows(
            group_pieces,
            group_labels,
            budget,
            stride,
            left,
            right,
            context_size,
            label_all_tokens,
            continuation,
            edge_punct,
        ):
            ids = prefix + win.pieces + suffix
            out["input_ids"].append(ids)
            out["labels"].append([IGNORE] * len(prefix) + win.labels + [IGNORE] * len(suffix))
            out["word_index"].append([-1] * len(prefix) + win.word_index + [-1] * len(suffix))
            out["example_id"].append(indices[i])
            out["length"].append(len(ids))
    return out


def one_window_table(
    encs,
    word_labels,
    indices,
    prefix,
    suffix,
    budget: int,
    label_all_tokens: bool,
    continuation: Sequence[int] | None,
    edge_punct: Sequence[bool] | None = None,
):
    """The rows `tokenize_and_window` makes for a batch in which every sentence fits one window and
    every word has a word piece (no document context, no packing), computed over the whole batch at
    once with numpy and returned as an Arrow table; None when any sentence needs the general path.

    The labelling rule is the module's: a word's first piece carries its label, continuation pieces
    `continuation_piece_label`, specials -100. On CoNLL-2003 train this is every batch, and it spares
    the per-piece Python loops (tested equal to the general path)."""
    from itertools import chain

    import numpy as np
    import pyarrow as pa

    n = len(encs)
    n_pieces = np.fromiter((len(e.ids) for e in encs), np.int64, n)
    n_words = np.fromiter((len(lab) for lab in word_labels), np.int64, n)
    if n == 0 or n_pieces.min() == 0 or n_pieces.max() > budget:
        return None
    total = int(n_pieces.sum())
    ids = np.fromiter(chain.from_iterable(e.ids for e in encs), np.int64, total)
    wid = np.fromiter(chain.from_iterable(e.word_ids for e in encs), np.int64, total)
    starts = np.cumsum(n_pieces) - n_pieces
    first = np.ones(total, dtype=bool)  # the first piece of each word (word ids only grow within a sentence)
    first[1:] = wid[1:] != wid[:-1]
    first[starts] = True
    if not np.array_equal(np.add.reduceat(first, starts), n_words):
        return None  # a word with no piece: the general path gives it the unknown token
    labels_flat = np.fromiter(chain.from_iterable(word_labels), np.int64, int(n_words.sum()))
    word_label = labels_flat[wid + np.repeat(np.cumsum(n_words) - n_words, n_pieces)]
    rest = np.asarray(continuation, dtype=np.int64)[word_label] if continuation is not None else word_label
    if not label_all_tokens:
        labelled = np.asarray(edge_punct, dtype=bool)[ids] if edge_punct is not None else np.zeros(total, bool)
        rest = np.where(labelled, rest, IGNORE)
    labels = np.where(first, word_label, rest)
    word_index = np.where(first, wid, -1)

    # Specials around each sentence: rows are [prefix, pieces, suffix], laid end to end.
    n_pre, n_suf = len(prefix), len(suffix)
    lengths = n_pieces + n_pre + n_suf
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    dest = np.arange(total) + np.repeat(offsets[:-1] + n_pre - starts, n_pieces)

    def lay_out(values, pre_values, suf_values, dtype=np.int64):
        out = np.empty(int(offsets[-1]), dtype=dtype)
        out[dest] = values
        for k, v in enumerate(pre_values):
            out[offsets[:-1] + k] = v
        for k, v in enumerate(suf_values):
            out[offsets[1:] - n_suf + k] = v
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(out))

    return pa.table(
        {
            # int32 ids: the type datasets gives an `input_ids` column written from Python lists
            "input_ids": lay_out(ids, prefix, suffix, np.int32),
            "labels": lay_out(labels, [IGNORE] * n_pre, [IGNORE] * n_suf),
            "word_index": lay_out(word_index, [-1] * n_pre, [-1] * n_suf),
            "example_id": pa.array(np.asarray(indices, dtype=np.int64)),
            "length": pa.array(lengths),
        }
    )


def sentence_alone_mask(document_ids: Sequence, fraction: float, seed: int) -> list[bool]:
    """Which sentences are windowed alone: those of round(fraction x documents) documents drawn with
    `seed` (whole documents, so that the others keep all their context)."""
    docs = sorted(set(document_ids))
    alone = set(random.Random(seed).sample(docs, round(fraction * len(docs))))
    return [d in alone for d in document_ids]


def has_documents(document_ids: Sequence | None) -> bool:
    """Whether sentences are grouped into documents (CoNLL's -DOCSTART- lines): more than one document
    id. A corpus without them is one long document of unrelated sentences (None: no ids at all)."""
    return document_ids is not None and any(d != document_ids[0] for d in document_ids)


def build_features(
    dataset,
    tokenizer,
    windows: WindowSettings,
    *,
    label_all_tokens: bool,
    label_names: Sequence[str],
    num_proc: int | None = None,
    label_column: str = "ner_tags",
    label_edge_punctuation: bool = False,
):
    """Windows for a whole split, batched and cached by datasets' fingerprinting (``windows.max_length``
    must be set; ``windows.batch_size`` plays no part here)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("a fast tokenizer is required (word_ids() aligns labels to words)")
    if windows.max_length is None:
        raise ValueError("build_features needs windows.max_length")
    max_length, stride = windows.max_length, windows.stride
    context_size, pack_length = windows.context_size, windows.pack_length
    whole_documents = bool(context_size or pack_length)
    settings = dict(
        max_length=max_length,
        stride=stride,
        label_all_tokens=label_all_tokens,
        context_size=context_size,
        pack_length=pack_length,
        label_column=label_column,
        label_names=list(label_names),
        label_edge_punctuation=label_edge_punctuation,
    )
    return dataset.map(
        tokenize_and_window,
        batched=True,
        # Document context needs whole documents in one batch: take the split at once (CoNLL-2003's
        # train split is 14k sentences, a few seconds). Without context any batch size will do.
        batch_size=None if whole_documents else 1000,
        with_indices=True,
        remove_columns=dataset.column_names,
        num_proc=None if whole_documents else num_proc,
        fn_kwargs=dict(
            tokenizer=tokenizer,
            max_length=max_length,
            stride=stride,
            label_all_tokens=label_all_tokens,
            context_size=context_size,
            pack_length=pack_length,
            label_column=label_column,
            continuation=continuation_label_map(label_names),
            edge_punct=edge_punctuation_mask(tokenizer) if label_edge_punctuation and not label_all_tokens else None,
            as_table=True,
        ),
        desc="word pieces and windows",
        new_fingerprint=features_fingerprint(dataset._fingerprint, tokenizer, settings),
    )


def features_fingerprint(input_fingerprint: str, tokenizer, settings: dict) -> str:
    """The cache key of `build_features`. datasets would hash map's arguments by pickling them, the
    tokenizer included: ~0.3 s, most of a warm start. The same key computed directly: the input's
    fingerprint, the tokenizer's serialized form (after truncation and padding are cleared, as they are
    before use), the settings, and this module's source, so that a change of code invalidates the cache."""
    backend = clear_truncation_and_padding(tokenizer)
    h = hashlib.sha256()
    for part in (
        input_fingerprint,
        backend.to_str().encode(),
        special_token_layout(tokenizer),
        tokenizer.unk_token_id,
        json.dumps(settings, sort_keys=True),
        Path(__file__).read_bytes(),
    ):
        h.update(part if isinstance(part, bytes) else repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


# ----------------------------------------------------------------------------- batches


class LengthGroupedBatchSampler:
    """Batches of similar length, to pad little: shuffle, cut into mega-batches of `mega` batches,
    sort each by length, cut into batches, shuffle the batches. The order depends only on
    (seed, epoch), so every process computes the same one and a resumed run replays it."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, mega: int = 50):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.mega = mega
        self.epoch = 0
        self.drop_last = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        size = self.batch_size * self.mega
        batches = []
        for k in range(0, len(order), size):
            chunk = sorted(order[k : k + size], key=lambda i: -self.lengths[i])
            batches += [chunk[j : j + self.batch_size] for j in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def pad_multiple(device_type: str) -> int:
    """What to round a batch's width up to: 8 on CUDA, whose tensor cores like it; 1 (no rounding)
    elsewhere. On a CPU the rounding is pure extra work: MiniLM training steps at batch 16 took 1.12x
    as long in fp32 and 1.08x in bf16 with widths rounded to 8 (same batches, interleaved A/B)."""
    return 8 if device_type == "cuda" else 1


def collate(rows: list[dict], pad_id: int, multiple_of: int = 1):
    """Pad a batch to its longest row, rounded up to `multiple_of` (see `pad_multiple`)."""
    import torch

    longest = max(len(r["input_ids"]) for r in rows)
    width = int(math.ceil(longest / multiple_of) * multiple_of) if multiple_of else longest
    n = len(rows)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    labels = torch.full((n, width), IGNORE, dtype=torch.long)
    word_index = torch.full((n, width), -1, dtype=torch.long)
    for i, r in enumerate(rows):
        k = len(r["input_ids"])
        ids[i, :k] = torch.tensor(r["input_ids"])
        mask[i, :k] = 1
        labels[i, :k] = torch.tensor(r["labels"])
        word_index[i, :k] = torch.tensor(r["word_index"])
    example_id = torch.tensor([r["example_id"] for r in rows], dtype=torch.long)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "word_index": word_index,
        "example_id": example_id,
    }


def assemble_predictions(pred_ids, word_index, example_id, n_words: Sequence[int]) -> list[list[int]]:
    """Scatter per-token predictions back to words: one predicted id per word of every sentence.

    `pred_ids` and `word_index` are [windows, tokens] arrays, `example_id` is [windows]. A word index
    counts from the start of the window's sentence and may run on into the following sentences (a
    packed window). Raises if a word is predicted twice or never: a lost word must never pass unnoticed."""
    starts = [0]
    for n in n_words:
        starts.append(starts[-1] + n)
    flat: list[int | None] = [None] * starts[-1]

    def where(pos: int) -> str:
        s = bisect.bisect_right(starts, pos) - 1
        return f"word {pos - starts[s]} of sentence {s}"

    for row_pred, row_words, ex in zip(pred_ids, word_index, example_id):
        base = starts[int(ex)]
        for p, w in zip(row_pred, row_words):
            w = int(w)
            if w < 0:
                continue
            pos = base + w
            if pos >= len(flat):
                raise RuntimeError(f"word {w} of sentence {int(ex)} lies past the last sentence")
            if flat[pos] is not None:
                raise RuntimeError(f"{where(pos)} was predicted twice")
            flat[pos] = int(p)
    missing = [pos for pos, p in enumerate(flat) if p is None]
    if missing:
        raise RuntimeError(f"{len(missing)} words got no prediction, e.g. " + ", ".join(where(m) for m in missing[:5]))
    return [flat[starts[i] : starts[i + 1]] for i in range(len(n_words))]  # type: ignore[misc]
