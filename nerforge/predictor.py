"""Batch prediction with a token-classification model: words in, one tag (and its probability) per word out.

    nerforge predict --model OUTPUT_DIR/model [TEXT_FILE]          # raw text -> JSON lines
    nerforge predict --model OUTPUT_DIR/model --conll FILE [--output OUT] [--metrics-json M]

Word pieces, windows and document context come from :mod:`nerforge.features` (the same code the
training loop evaluates with), so a sentence longer than ``max_length`` is cut into windows and every
word is predicted exactly once: never truncated, never twice. A word's tag is the argmax over the
logits of its first word piece; its score is the softmax probability of that tag.

Rules stated once:

* **Raw text**: words are ``re.finditer(r"\\w+(?:[-'.]\\w+)*|[^\\w\\s]", line)`` -- runs of word
  characters joined by single ``-``, ``'`` or ``.`` (``2-1``, ``O'Neil``, ``U.S``), and every other
  non-space character alone. Each word keeps its ``[start, end)`` character offsets into the line.
  Each input line is one sentence; blank lines separate paragraphs, which are the documents that
  ``--context-size`` draws context from.
* **Entities** are read from the word tags the way conlleval reads chunks: ``B-X`` starts an entity,
  ``I-X`` continues an ``X`` entity and starts one after ``O`` or another type (so IOB1 and IOB2
  both work, and a bare label ``X`` is read as ``I-X``). An entity spans from its first word's start to
  its last word's end; its score is the mean probability of the predicted tag over its words.
* **CoNLL files**: every line is written back with one extra last column, joined with the line's own
  separator (a tab if the line has one, else a space): the predicted tag on token lines, ``O`` on
  ``-DOCSTART-`` lines, so every non-blank line has the same number of columns and the shared task's
  ``conlleval`` reads the file as it is; blank lines are kept byte for byte.
* **Windows** (:class:`nerforge.features.WindowSettings`) come from the export's ``training_config.yaml``
  when the model folder has one (:func:`export_windows`), else ``min(model max, 512)`` / 32 / 0 / 0.
* **Backends**: :mod:`nerforge.backends` (torch, or the export's ONNX graphs under ONNX Runtime).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

from nerforge.features import WindowSettings, assemble_predictions, collate, pad_multiple, tokenize_and_window
from nerforge.metric import entities, entity_type
from nerforge.modeling import load_model_and_tokenizer, position_limit

__all__ = [
    "Predictor",
    "WindowSettings",
    "export_windows",
    "entities_from_tags",
    "split_words",
    "describe_line",
    "WORD_RE",
    "MAX_LENGTH_CAP",
]

logger = logging.getLogger(__name__)

WORD_RE = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]")
MAX_LENGTH_CAP = 512
_CHUNK_SENTENCES = 2000  # sentences tokenized at a time (cut at document boundaries)


def split_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Words of a raw text line and their [start, end) character offsets (see the module docstring)."""
    words, spans = [], []
    for m in WORD_RE.finditer(text):
        words.append(m.group())
        spans.append((m.start(), m.end()))
    return words, spans


def entities_from_tags(
    words: Sequence[str],
    spans: Sequence[tuple[int, int]],
    tags: Sequence[str],
    scores: Sequence[float] | None = None,
    text: str | None = None,
) -> list[dict]:
    """Entities of one sentence from its word tags (conlleval chunk rules, IOB1 or IOB2).

    Returns ``[{"type", "text", "start", "end", "score"}]``: ``text`` is ``text[start:end]`` when the
    original line is given, else the words joined by as many spaces as their offsets are apart;
    ``score`` is the mean of ``scores`` over the entity's words (1.0 when no scores are given)."""
    if not (len(words) == len(spans) == len(tags)) or (scores is not None and len(scores) != len(tags)):
        raise ValueError(
            f"{len(words)} words, {len(spans)} spans, {len(tags)} tags"
            + (f", {len(scores)} scores" if scores is not None else "")
        )
    chunks = entities(tags)  # conlleval's chunks, as the scorer reads them

    out = []
    for typ, first, last in chunks:
        start, end = spans[first][0], spans[last][1]
        if text is not None:
            surface = text[start:end]
        else:
            surface = words[first]
            for k in range(first + 1, last + 1):
                surface += " " * max(0, spans[k][0] - spans[k - 1][1]) + words[k]
        probs = [float(scores[k]) for k in range(first, last + 1)] if scores is not None else [1.0]
        out.append(
            {"type": typ, "text": surface, "start": int(start), "end": int(end), "score": sum(probs) / len(probs)}
        )
    return out


def export_windows(name_or_path: str) -> WindowSettings:
    """The windows an export was trained and evaluated with (its ``training_config.yaml``: max_length,
    stride, context_size, pack_length, evaluation batch size), or the defaults for a model without one."""
    path = Path(name_or_path) / "training_config.yaml"
    if Path(name_or_path).exists() and not path.is_file():
        return WindowSettings()
    if not path.is_file():
        try:  # a Hub id: the file is in the repo (or the local cache when offline)
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(name_or_path, "training_config.yaml"))
        except Exception:  # noqa: BLE001 - no such file, no such repo, offline: plain defaults
            return WindowSettings()
    from nerforge.config import load_saved

    return WindowSettings.from_config(load_saved(path))


def _model_max_length(config, tokenizer) -> int:
    limits = [MAX_LENGTH_CAP]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 100_000:
        limits.append(tok_max)
    if position_limit(config) is not None:
        limits.append(position_limit(config))
    return min(limits)


CPU_BATCH_PIECES = 2048


def length_batches(lengths: Sequence[int], batch_size: int, max_pieces: int | None) -> list[range]:
    """Consecutive batches over windows sorted by length (shortest first): at most `batch_size` windows
    and, with `max_pieces`, at most that many padded pieces (windows x the longest), but never fewer than
    one window."""
    batches, start = [], 0
    for k, length in enumerate(lengths):
        full = k - start >= batch_size or (max_pieces is not None and (k - start + 1) * length > max_pieces)
        if k > start and full:
            batches.append(range(start, k))
            start = k
    if start < len(lengths):
        batches.append(range(start, len(lengths)))
    return batches


def top_label(logits):
    """The best label of every piece and its softmax probability, from float logits [..., labels] (a
    NumPy array): ``exp(0) / sum(exp(logits - max))``, the softmax at the argmax without the rest of it.

    NumPy, one thread: on a 2-core CPU torch's multi-threaded softmax of each batch's logits, run just
    after an ONNX Runtime call whose threads still spin, made the int8 predictor 1.09x slower over the
    CoNLL-2003 test set (2.92 s against 2.67 s, three turns each)."""
    import numpy as np

    pred = logits.argmax(-1)
    prob = 1.0 / np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)
    return pred, prob


class Predictor:
    """Tag pre-split sentences with a token-classification model, batched, windowed, length-sorted.

    Args:
        model, tokenizer: a ``*ForTokenClassification`` model and its *fast* tokenizer.
        windows: how sentences become inputs (:class:`nerforge.features.WindowSettings`: max_length,
            stride, context_size, pack_length, batch_size; default: its defaults). ``max_length`` None
            is the model's maximum capped at 512; a stride that would fill a window is lowered to a
            quarter of it, with a warning. Longer sentences are windowed, never truncated.
        device: torch device (None: cuda if available, else cpu).
        bf16: run the forward pass under bfloat16 autocast.
        compile: run it through ``torch.compile`` (inductor, weights frozen); the first call compiles.

    ``on_batch``, when set, is called after every forward pass with (windows done, windows in all):
    the commands hang a progress bar on it. :class:`nerforge.onnx_runtime.OnnxPredictor` is the same
    with the forward pass done by ONNX Runtime.
    """

    backend = "torch"
    file = None
    # Windows per forward pass are also capped by padded pieces (batch x longest window): on a CPU a batch
    # of 64 long windows spills out of the caches (BENCHMARKS.md, "ONNX and int8"). None: no cap (GPUs).
    max_batch_pieces: int | None = CPU_BATCH_PIECES
    on_batch: Callable[[int, int], None] | None = None
    choice = None  # set by nerforge.backends.load_predictor: the backend resolved and why
    compiled = False  # the forward pass goes through torch.compile (torch backend only)

    def __init__(
        self,
        model,
        tokenizer,
        windows: WindowSettings | None = None,
        *,
        device=None,
        bf16: bool = False,
        compile: bool = False,
    ):
        import torch

        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.bf16 = bf16
        self.compiled = compile
        # torch.compile (inductor) with freezing: weights become constants, so on a CPU oneDNN prepacks them
        # for AMX/AVX-512 and element-wise work is fused. Shapes are dynamic (one graph for every batch
        # width); the first call pays the compile, tens of seconds (BENCHMARKS.md, "bf16 and int8 on the CPU").
        self._run = torch.compile(self.model, dynamic=True, options={"freezing": True}) if compile else self.model
        if self.device.type != "cpu":
            self.max_batch_pieces = None
        self._configure(model.config, tokenizer, windows or WindowSettings())

    def _configure(self, config, tokenizer, windows: WindowSettings) -> None:
        """Checks and windowing settings shared by every backend (`config`: the model's config)."""
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("a fast tokenizer is required (word_ids() aligns predictions to words)")
        if windows.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {windows.batch_size}")
        if windows.stride < 0 or windows.context_size < 0 or windows.pack_length < 0:
            raise ValueError("stride, context_size and pack_length must be >= 0")
        self.tokenizer = tokenizer
        max_length = int(windows.max_length) if windows.max_length else _model_max_length(config, tokenizer)
        limit = position_limit(config)
        if limit is not None and max_length > limit:
            raise ValueError(f"max_length {max_length} is longer than the model's {limit} positions")
        from nerforge.features import check_pack_fits, special_token_layout

        prefix, suffix = special_token_layout(tokenizer)
        budget = max_length - len(prefix) - len(suffix)
        if budget < 1:
            raise ValueError(f"max_length {max_length} leaves no room for words")
        stride = windows.stride
        if 2 * stride >= budget:  # such a stride could not cut a long sentence at all
            new = (budget - 1) // 4
            logger.warning("stride %d is too large for windows of %d pieces; using %d", stride, budget, new)
            stride = new
        check_pack_fits(windows.pack_length, windows.context_size, budget, max_length)
        self.windows = windows.override(max_length=max_length, stride=stride)
        self.id2label = {int(k): str(v) for k, v in config.id2label.items()}

    # The settings in use, read from `windows` (the one place they are kept).
    max_length = property(lambda self: self.windows.max_length)
    stride = property(lambda self: self.windows.stride)
    context_size = property(lambda self: self.windows.context_size)
    pack_length = property(lambda self: self.windows.pack_length)
    batch_size = property(lambda self: self.windows.batch_size)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        windows: WindowSettings | None = None,
        *,
        revision: str | None = None,
        trust_remote_code: bool = False,
        **kw,
    ) -> Predictor:
        """Load an export folder or Hub id; ``windows`` None: the export's own (:func:`export_windows`)."""
        name_or_path = str(name_or_path)
        model, tokenizer = load_model_and_tokenizer(
            name_or_path, revision=revision, trust_remote_code=trust_remote_code
        )
        return cls(model, tokenizer, windows if windows is not None else export_windows(name_or_path), **kw)

    @property
    def intra_op_threads(self) -> int:
        """Threads one forward pass may use (torch's intra-op threads; the session's for ONNX)."""
        import torch

        return int(torch.get_num_threads())

    def describe(self) -> dict:
        """What runs the model: ``{"backend", "precision", "device", "intra_op_threads", "file"}``, plus
        ``chosen`` (why) when :func:`nerforge.backends.load_predictor` resolved it."""
        precision = {"onnx": "fp32", "onnx-int8": "int8 weights (dynamic)"}.get(
            self.backend, "bf16 autocast" if self.bf16 else "fp32"
        )
        if self.compiled:
            precision += ", torch.compile"
        out = {
            "backend": self.backend,
            "precision": precision,
            "device": str(self.device) if self.backend == "torch" else "cpu",
            "intra_op_threads": self.intra_op_threads,
            "file": self.file,
        }
        if self.choice is not None:
            out["chosen"] = self.choice.reason
        return out

    def settings(self) -> dict:
        """The windows in use and what runs the model, as the commands record them."""
        return {**self.windows.as_dict(), "backend": self.describe()}

    # ------------------------------------------------------------------ core

    def _windows(self, sentences: list[list[str]], document_ids: list[int]) -> dict:
        """Windows for all sentences, tokenized in chunks cut at document boundaries (context never
        crosses a document, so the result equals one call over everything)."""
        feats = {"input_ids": [], "labels": [], "word_index": [], "example_id": [], "length": []}
        n, start = len(sentences), 0
        while start < n:
            end = min(n, start + _CHUNK_SENTENCES)
            if self.context_size or self.pack_length:
                while end < n and document_ids[end] == document_ids[end - 1]:
                    end += 1
            batch = {
                "tokens": sentences[start:end],
                "ner_tags": [[0] * len(s) for s in sentences[start:end]],
                "document_id": document_ids[start:end],
            }
            part = tokenize_and_window(
                batch,
                list(range(start, end)),
                tokenizer=self.tokenizer,
                max_length=self.max_length,
                stride=self.stride,
                label_all_tokens=False,
                context_size=self.context_size,
                pack_length=self.pack_length,
            )
            for key in feats:
                feats[key] += part[key]
            start = end
        return feats

    def _forward(self, input_ids, attention_mask):
        """Float logits [windows, pieces, labels] of one padded batch (CPU int64 tensors in): the one
        step that differs between backends (see :class:`nerforge.onnx_runtime.OnnxPredictor`)."""
        import torch

        autocast = torch.autocast(device_type=self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with autocast:
            out = self._run(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device))
        return out.logits.float()

    def _predict_ids(self, sentences: list[list[str]], document_ids: list[int] | None, with_logits: bool = False):
        """(tag ids, probabilities, logits or None) per word of every sentence: a word's logits are
        those of its first word piece (a float tensor [words, labels] per sentence)."""
        import torch

        sentences = [list(s) for s in sentences]
        if document_ids is None:
            document_ids = list(range(len(sentences)))  # every sentence its own document
        document_ids = [int(d) for d in document_ids]
        if len(document_ids) != len(sentences):
            raise ValueError(f"{len(sentences)} sentences but {len(document_ids)} document ids")
        # Sentences without words are left out (they add no context either) and get [] back.
        keep = [i for i, s in enumerate(sentences) if s]
        words = [sentences[i] for i in keep]
        feats = self._windows(words, [document_ids[i] for i in keep])

        # Sorted by length (stable, shortest first, like the training loop's `.sort("length")`): little padding.
        order = sorted(range(len(feats["length"])), key=lambda k: feats["length"][k])
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        multiple_of = pad_multiple(self.device.type)
        pred_rows, prob_rows, index_rows, word_rows, example_rows, logit_rows = [], [], [], [], [], []
        flat = 0
        done, total = 0, len(order)
        with torch.inference_mode():
            for members in length_batches([feats["length"][k] for k in order], self.batch_size, self.max_batch_pieces):
                rows = [
                    {key: feats[key][order[m]] for key in ("input_ids", "labels", "word_index", "example_id")}
                    for m in members
                ]
                batch = collate(rows, pad_id=pad, multiple_of=multiple_of)
                logits = self._forward(batch["input_ids"], batch["attention_mask"]).cpu()  # one copy off a GPU
                pred, prob = top_label(logits.numpy())
                width = pred.shape[1]
                pred_rows += pred.tolist()
                prob_rows += prob.tolist()
                if with_logits:
                    logit_rows.append(logits.reshape(-1, logits.shape[-1]))
                # A running position per token: assemble_predictions scatters it to words, and both
                # the tag id and the probability are looked up from it.
                index_rows += [list(range(flat + r * width, flat + (r + 1) * width)) for r in range(len(rows))]
                flat += len(rows) * width
                word_rows += batch["word_index"].tolist()
                example_rows += [int(e) for e in batch["example_id"]]
                done += len(rows)
                if self.on_batch is not None:
                    self.on_batch(done, total)
        flat_pred = [p for row in pred_rows for p in row]
        flat_prob = [p for row in prob_rows for p in row]
        # example_id is the position in `words`; scatter back, every word exactly once (else it raises).
        positions = assemble_predictions(index_rows, word_rows, example_rows, [len(s) for s in words])
        n_read = sum(len(s) for s in sentences)
        n_pred = sum(len(p) for p in positions)
        assert n_pred == n_read, f"{n_read} words read but {n_pred} predicted"
        ids: list[list[int]] = [[] for _ in sentences]
        probs: list[list[float]] = [[] for _ in sentences]
        for i, pos in zip(keep, positions):
            ids[i] = [int(flat_pred[p]) for p in pos]
            probs[i] = [float(flat_prob[p]) for p in pos]
        if not with_logits:
            return ids, probs, None
        n_labels = len(self.id2label)
        flat_logits = torch.cat(logit_rows) if logit_rows else torch.zeros(0, n_labels)
        logits = [torch.zeros(0, n_labels) for _ in sentences]
        for i, pos in zip(keep, positions):
            logits[i] = flat_logits[torch.tensor(pos, dtype=torch.long)]
        return ids, probs, logits

    # ------------------------------------------------------------------ public API

    entities_from_tags = staticmethod(entities_from_tags)

    def predict_words_with_scores(
        self, sentences: list[list[str]], document_ids: list[int] | None = None
    ) -> tuple[list[list[str]], list[list[float]]]:
        """Tags (names from ``model.config.id2label``) and their softmax probabilities, one per word.

        ``document_ids`` (one per sentence) group consecutive sentences into documents for
        ``context_size``; None makes every sentence its own document."""
        ids, probs, _ = self._predict_ids(sentences, document_ids)
        return [[self.id2label[i] for i in sent] for sent in ids], probs

    def predict_logits(self, sentences: list[list[str]], document_ids: list[int] | None = None) -> list:
        """The logits of every word (its first word piece, as scored): one float tensor
        [words, labels] per sentence, columns in ``model.config.id2label`` order."""
        return self._predict_ids(sentences, document_ids, with_logits=True)[2]

    def predict_words(self, sentences: list[list[str]], document_ids: list[int] | None = None) -> list[list[str]]:
        """One tag name (from ``model.config.id2label``) per word of every sentence."""
        return self.predict_words_with_scores(sentences, document_ids)[0]

    def tag_text(self, lines: list[str], paragraphs: bool = False) -> list[dict]:
        """Raw text lines -> ``[{"text": line, "entities": [...]}]``, one dict per line (see the module
        docstring for the word rule). With ``paragraphs`` blank-line separated paragraphs are the
        documents that document context is drawn from; otherwise every line stands alone."""
        texts = [line.rstrip("\r\n") for line in lines]
        split = [split_words(t) for t in texts]
        doc_ids, doc = [], 0
        for i, t in enumerate(texts):
            if paragraphs:
                if not t.strip() and i and texts[i - 1].strip():
                    doc += 1
            else:
                doc = i
            doc_ids.append(doc)
        tags, probs = self.predict_words_with_scores([w for w, _ in split], doc_ids)
        return [
            {"text": t, "entities": entities_from_tags(w, s, tg, pr, text=t)}
            for t, (w, s), tg, pr in zip(texts, split, tags, probs)
        ]


# ---------------------------------------------------------------------------------------------- output helpers


def drop_low_entities(tags: list[str], probs: list[float], min_score: float) -> list[str]:
    """The tags with every entity whose score (the mean probability of its words' tags) is under
    `min_score` turned into O."""
    out = list(tags)
    for _, first, last in entities(tags):
        if sum(probs[first : last + 1]) / (last - first + 1) < min_score:
            out[first : last + 1] = ["O"] * (last - first + 1)
    return out


def needs_prefixing(tags_seen: set) -> bool:
    """Whether a model's tags are bare types (``PER``) that need IOB prefixes to be read as entities."""
    return any(t != "O" and entity_type(t) == t for t in tags_seen)


def _with_column(line: str, value: str) -> str:
    """`line` with `value` as one more last column, joined with the line's own separator."""
    ending = "\r" if line.endswith("\r") else ""
    body = line[: len(line) - len(ending)].rstrip(" \t")
    return body + ("\t" if "\t" in body else " ") + value + ending


def conll_output_lines(raw_lines: list[str], sentences, predictions: list[list[str]]) -> list[str]:
    """The input lines with the predicted tag appended to every token line and ``O`` to every other
    non-blank line (``-DOCSTART-``), so that every non-blank line has the same number of columns, as
    conlleval requires; blank lines stay as they are."""
    out = list(raw_lines)
    tagged = set()
    for sent, tags in zip(sentences, predictions):
        for k, tag in enumerate(tags):
            i = sent.line - 1 + k
            out[i] = _with_column(out[i], tag)
            tagged.add(i)
    for i, line in enumerate(out):
        if i not in tagged and line.strip(" \t\r"):
            out[i] = _with_column(line, "O")
    return out


def describe_line(predictor: Predictor) -> str:
    """One line saying what runs the model, e.g. ``backend onnx-int8 (...), 2 intra-op threads``."""
    d = predictor.describe()
    where = f", {d['file']}" if d["file"] else ""
    n = d["intra_op_threads"]
    return f"backend {d['backend']} ({d['precision']}, {d['device']}{where}), {n} intra-op thread{'s' * (n != 1)}"
