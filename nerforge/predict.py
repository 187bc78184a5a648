"""Batch prediction with a token-classification model: words in, one tag (and its probability) per word out.

    python -m nerforge.predict --model OUTPUT_DIR/model [TEXT_FILE]          # raw text -> JSON lines
    python -m nerforge.predict --model OUTPUT_DIR/model --conll FILE [--output OUT] [--metrics-json M]

Word pieces, windows and document context come from :mod:`nerforge.features` (the same code the
training loop evaluates with), so a sentence longer than ``max_length`` is cut into windows and every
word is predicted exactly once: never truncated, never twice. A word's tag is the argmax over the
logits of its first word piece; its score is the softmax probability of that tag.

Rules stated once:

* **Raw text**: words are ``re.finditer(r"\\w+(?:[-'.]\\w+)*|[^\\w\\s]", line)`` -- runs of word
  characters joined by single ``-``, ``'`` or ``.`` (``2-1``, ``O'Neil``, ``U.S``), and every other
  non-space character alone. Each word keeps its ``[start, end)`` character offsets into the line.
  Each input line is one sentence; blank lines separate paragraphs, which are the documents that
  ``--document-context`` draws context from.
* **Entities** are read from the word tags the way conlleval reads chunks: ``B-X`` starts an entity,
  ``I-X`` continues an ``X`` entity and starts one after ``O`` or another type (so IOB1 and IOB2
  both work, and a bare label ``X`` is read as ``I-X``). An entity spans from its first word's start to
  its last word's end; its score is the mean probability of the predicted tag over its words.
* **CoNLL files**: every line is written back with one extra last column, joined with the line's own
  separator (a tab if the line has one, else a space): the predicted tag on token lines, ``O`` on
  ``-DOCSTART-`` lines, so every non-blank line has the same number of columns and the shared task's
  ``conlleval`` reads the file as it is; blank lines are kept byte for byte.
* **Defaults** for ``max_length``/``stride``/``context_size``/``pack_length`` come from the export's
  ``training_config.yaml`` when the model folder has one, else ``min(model max, 512)`` / 32 / 0 / 0.
* **Backends**: ``--backend torch`` (default) runs the model in PyTorch; ``onnx`` and ``onnx-int8`` run
  the export's ``onnx/model.onnx`` / ``onnx/model_quantized.onnx`` with ONNX Runtime
  (:class:`nerforge.onnx.OnnxPredictor`: the same windows, batches and sorting; as many intra-op threads
  as torch would use). The first stderr line says which backend ran and on how many threads.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from nerforge.features import assemble_predictions, collate, pad_multiple, tokenize_and_window
from nerforge.metric import entities, entity_type, prefix_bare_labels, score
from nerforge.modeling import load_model_and_tokenizer, position_limit

__all__ = [
    "Predictor",
    "entities_from_tags",
    "split_words",
    "add_predictor_arguments",
    "predictor_from_args",
    "describe_line",
    "BACKENDS",
    "WORD_RE",
    "MAX_LENGTH_CAP",
    "main",
]

logger = logging.getLogger(__name__)

WORD_RE = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]")
MAX_LENGTH_CAP = 512
BACKENDS = ("torch", "onnx", "onnx-int8")  # --backend: torch, onnx/model.onnx, onnx/model_quantized.onnx
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


def _training_defaults(name_or_path: str) -> dict:
    """max_length / stride / context_size (and the evaluation batch size, so that batches and padding
    match the training loop's evaluation) from an export's training_config.yaml, if it has one."""
    path = Path(name_or_path) / "training_config.yaml"
    if Path(name_or_path).exists() and not path.is_file():
        return {}
    if not path.is_file():
        try:  # a Hub id: the file is in the repo (or the local cache when offline)
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(name_or_path, "training_config.yaml"))
        except Exception:  # noqa: BLE001 - no such file, no such repo, offline: plain defaults
            return {}
    from nerforge.config import load_saved

    cfg = load_saved(path)
    return {
        "max_length": cfg.data.max_length,
        "stride": cfg.data.stride,
        "context_size": cfg.data.context_size,
        "pack_length": cfg.data.pack_length,
        "batch_size": cfg.training.per_device_eval_batch_size,
    }


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
        batch_size: windows per forward pass.
        max_length: longest model input in word pieces, special tokens included (None: the model's
            maximum, capped at 512). Longer sentences are windowed, never truncated.
        stride: word pieces of context on each side of a window when a sentence is cut (lowered to a
            quarter of the window, with a warning, when twice it would fill the window).
        context_size: word pieces of document context on each side of a sentence (0: none).
        pack_length: label consecutive sentences of a document together in one window, up to this many
            word pieces (0: one sentence per window); see :mod:`nerforge.features`.
        device: torch device (None: cuda if available, else cpu).
        bf16: run the forward pass under bfloat16 autocast.

    :class:`nerforge.onnx.OnnxPredictor` is the same with the forward pass done by ONNX Runtime.
    """

    backend = "torch"
    file = None
    # Windows per forward pass are also capped by padded pieces (batch x longest window): on a CPU a batch
    # of 64 long windows spills out of the caches (BENCHMARKS.md, "ONNX and int8"). None: no cap (GPUs).
    max_batch_pieces: int | None = CPU_BATCH_PIECES

    def __init__(
        self,
        model,
        tokenizer,
        *,
        batch_size: int = 64,
        max_length: int | None = None,
        stride: int = 32,
        context_size: int = 0,
        pack_length: int = 0,
        device=None,
        bf16: bool = False,
    ):
        import torch

        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.bf16 = bf16
        if self.device.type != "cpu":
            self.max_batch_pieces = None
        self._configure(
            model.config,
            tokenizer,
            batch_size=batch_size,
            max_length=max_length,
            stride=stride,
            context_size=context_size,
            pack_length=pack_length,
        )

    def _configure(self, config, tokenizer, *, batch_size, max_length, stride, context_size, pack_length) -> None:
        """Checks and windowing settings shared by every backend (`config`: the model's config)."""
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("a fast tokenizer is required (word_ids() aligns predictions to words)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if stride < 0 or context_size < 0 or pack_length < 0:
            raise ValueError("stride, context_size and pack_length must be >= 0")
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = int(max_length) if max_length else _model_max_length(config, tokenizer)
        limit = position_limit(config)
        if limit is not None and self.max_length > limit:
            raise ValueError(f"max_length {self.max_length} is longer than the model's {limit} positions")
        from nerforge.features import check_pack_fits, special_token_layout

        prefix, suffix = special_token_layout(tokenizer)
        budget = self.max_length - len(prefix) - len(suffix)
        if budget < 1:
            raise ValueError(f"max_length {self.max_length} leaves no room for words")
        if 2 * stride >= budget:  # such a stride could not cut a long sentence at all
            new = (budget - 1) // 4
            logger.warning("stride %d is too large for windows of %d pieces; using %d", stride, budget, new)
            stride = new
        check_pack_fits(pack_length, context_size, budget, self.max_length)
        self.stride = stride
        self.context_size = context_size
        self.pack_length = pack_length
        self.id2label = {int(k): str(v) for k, v in config.id2label.items()}

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, *, revision: str | None = None, trust_remote_code: bool = False, **kw
    ) -> Predictor:
        """Load an export folder or Hub id. ``batch_size``/``max_length``/``stride``/``context_size`` not
        given (or None) default to the values in the export's ``training_config.yaml`` when present."""
        name_or_path = str(name_or_path)
        model, tokenizer = load_model_and_tokenizer(
            name_or_path, revision=revision, trust_remote_code=trust_remote_code
        )
        for key, value in _training_defaults(name_or_path).items():
            if kw.get(key) is None:
                kw[key] = value
        kw = {k: v for k, v in kw.items() if v is not None}
        return cls(model, tokenizer, **kw)

    @property
    def intra_op_threads(self) -> int:
        """Threads one forward pass may use (torch's intra-op threads; the session's for ONNX)."""
        import torch

        return int(torch.get_num_threads())

    def describe(self) -> dict:
        """What runs the model: ``{"backend", "precision", "device", "intra_op_threads", "file"}``."""
        precision = {"onnx": "fp32", "onnx-int8": "int8 weights (dynamic)"}.get(
            self.backend, "bf16 autocast" if self.bf16 else "fp32"
        )
        return {
            "backend": self.backend,
            "precision": precision,
            "device": str(self.device) if self.backend == "torch" else "cpu",
            "intra_op_threads": self.intra_op_threads,
            "file": self.file,
        }

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
        step that differs between backends (see :class:`nerforge.onnx.OnnxPredictor`)."""
        import torch

        autocast = torch.autocast(device_type=self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with autocast:
            out = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device))
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


# ---------------------------------------------------------------------------------------------- CLI


def drop_low_entities(tags: list[str], probs: list[float], min_score: float) -> list[str]:
    """The tags with every entity whose score (the mean probability of its words' tags) is under
    `min_score` turned into O."""
    out = list(tags)
    for _, first, last in entities(tags):
        if sum(probs[first : last + 1]) / (last - first + 1) < min_score:
            out[first : last + 1] = ["O"] * (last - first + 1)
    return out


def _needs_prefixing(tags_seen: set) -> bool:
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


def _format_metrics(m: dict) -> str:
    rows = [
        f"processed {m['num_words']} words in {m['num_sentences']} sentences; accuracy {100 * m['accuracy']:.2f}%",
        f"entity micro: precision {100 * m['precision']:.2f}%  recall {100 * m['recall']:.2f}%  F1 {100 * m['f1']:.2f}",
    ]
    for typ, r in m["per_type"].items():
        rows.append(
            f"  {typ:>8s}: precision {100 * r['precision']:6.2f}%  recall {100 * r['recall']:6.2f}%  "
            f"F1 {100 * r['f1']:6.2f}  ({r['support']})"
        )
    return "\n".join(rows)


def _read_conll(args):
    """Parse (and so validate) the CoNLL file: its sentences, its raw lines and a leading BOM."""
    from conll2003_loader import ConllFormatError, read_conll

    path = Path(args.conll)
    sentences = list(read_conll(path, tuple(args.columns), args.separator, args.encoding))
    decoded = path.read_bytes().decode(args.encoding)  # read_conll has checked the encoding
    bom = "\ufeff" if decoded.startswith("\ufeff") else ""
    raw = decoded[len(bom) :].split("\n")  # split as read_conll does: line numbers agree
    for s in sentences:  # a sentence's token lines are consecutive from its first line
        for k, tok in enumerate(s.tokens):
            if tok not in raw[s.line - 1 + k]:
                raise ConllFormatError(path, s.line + k, "token line does not match the parsed sentence")
    return sentences, raw, bom


def _run_conll(args, predictor: Predictor, parsed) -> None:
    from conll2003_loader import iob1_to_iob2

    sentences, raw, bom = parsed
    words = [s.tokens for s in sentences]
    pred, probs = predictor.predict_words_with_scores(words, [s.document_index for s in sentences])
    if _needs_prefixing({t for s in pred for t in s}):
        pred = [prefix_bare_labels(s) for s in pred]
    if args.min_score is not None:
        pred = [drop_low_entities(t, p, args.min_score) for t, p in zip(pred, probs)]
    text = bom + "\n".join(conll_output_lines(raw, sentences, pred))
    if args.output:
        Path(args.output).write_text(text, encoding=args.encoding, newline="")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if "ner_tags" in args.columns:
        gold = [s.tags["ner_tags"] for s in sentences]
        metrics = score(gold, pred)
        if any(g != c for s in gold for g, c in zip(s, iob1_to_iob2(s))):
            print(
                "note: the gold tags are IOB1 and the predictions IOB2: tag accuracy counts B-/I- "
                "differences, entity scores (conlleval chunks) do not",
                file=sys.stderr,
            )
        if args.metrics_json:
            Path(args.metrics_json).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        print(_format_metrics(metrics), file=sys.stderr)


def _read_text(args) -> list[str]:
    if args.input and args.input != "-":
        path = Path(args.input)
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        data = path.read_bytes()
        try:
            text = data.decode(args.encoding)
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            raise ValueError(f"{path}:{line}: bytes not valid {args.encoding}: {data[err.start : err.end]!r}") from None
    else:
        text = sys.stdin.read()
    text = text.removeprefix("\ufeff")
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n") if text else []


def _run_text(args, predictor: Predictor, lines: list[str]) -> None:
    results = predictor.tag_text(lines, paragraphs=True)
    if args.min_score is not None:
        for r in results:
            r["entities"] = [e for e in r["entities"] if e["score"] >= args.min_score]
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for r in results:
            for e in r["entities"]:
                e["score"] = round(e["score"], 4)
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
    finally:
        if args.output:
            out.close()
        else:
            out.flush()


def add_predictor_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that choose the model and how it is run, shared by predict, score and the report."""
    p.add_argument("--model", required=True, help="export folder or Hub id of a token-classification model")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="windows per forward pass (default: training_config.yaml's eval batch size, else 64)",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="word pieces per window (default: training_config.yaml, else model max capped at 512)",
    )
    p.add_argument("--stride", type=int, default=None, help="word pieces of context when a sentence is cut")
    p.add_argument(
        "--document-context",
        type=int,
        default=None,
        metavar="N",
        help="word pieces of document context (CoNLL: -DOCSTART- groups; text: paragraphs)",
    )
    p.add_argument(
        "--pack-length",
        type=int,
        default=None,
        metavar="N",
        help="label sentences of a document together, up to N word pieces per window "
        "(default: training_config.yaml, else 0)",
    )
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (torch backend)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="what runs the model: torch (default), onnx (the export's onnx/model.onnx) or onnx-int8 "
        "(onnx/model_quantized.onnx); written by python -m nerforge.onnx, needs the onnx extra. "
        "Same windows and batches; intra-op threads as torch's",
    )


def describe_line(predictor: Predictor) -> str:
    """One line saying what runs the model, e.g. ``backend onnx-int8 (...), 2 intra-op threads``."""
    d = predictor.describe()
    where = f", {d['file']}" if d["file"] else ""
    n = d["intra_op_threads"]
    return f"backend {d['backend']} ({d['precision']}, {d['device']}{where}), {n} intra-op thread{'s' * (n != 1)}"


def predictor_from_args(args: argparse.Namespace) -> Predictor:
    """The predictor that :func:`add_predictor_arguments`' flags describe (:class:`Predictor`, or
    :class:`nerforge.onnx.OnnxPredictor` for ``--backend onnx``/``onnx-int8``)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    settings = {
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "stride": args.stride,
        "context_size": args.document_context,
        "pack_length": args.pack_length,
    }
    backend = getattr(args, "backend", "torch")
    if backend == "torch":
        return Predictor.from_pretrained(args.model, device=args.device, bf16=args.bf16, **settings)
    if args.bf16:
        raise ValueError(f"--bf16 is for --backend torch; --backend {backend} runs the ONNX graph as it is")
    if args.device not in (None, "cpu"):
        raise ValueError(
            f"--backend {backend} runs on the CPU (onnxruntime's CPU provider); drop --device {args.device}"
        )
    from nerforge.onnx import OnnxPredictor, require_onnx

    try:
        require_onnx()
    except ValueError as e:  # the onnx extra is missing: say which to install
        raise ValueError(f"--backend {backend}: {e}") from None
    return OnnxPredictor.from_pretrained(args.model, quantized=backend == "onnx-int8", **settings)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nerforge.predict",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", nargs="?", default=None, help="raw text file, one sentence a line (default: stdin)")
    p.add_argument("--conll", default=None, help="CoNLL column file to tag (instead of raw text)")
    p.add_argument(
        "--columns",
        nargs="+",
        default=["tokens", "pos_tags", "chunk_tags", "ner_tags"],
        help="column names of --conll (tokens, pos_tags, chunk_tags, ner_tags or _); "
        "ner_tags, when present, is the gold column",
    )
    p.add_argument("--separator", default=None, help="column separator of --conll (default: spaces/tabs)")
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--output", default=None, help="output file (default: stdout)")
    p.add_argument("--metrics-json", default=None, help="write the scores (CoNLL with gold tags) to this file")
    p.add_argument(
        "--min-score",
        type=float,
        default=None,
        metavar="S",
        help="drop entities scoring under S (CoNLL: their words get O); nerforge.report lists precision and "
        "recall per threshold",
    )
    add_predictor_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # The input is read and checked first: bad input fails fast, before the model loads.
        parsed = _read_conll(args) if args.conll else _read_text(args)
        predictor = predictor_from_args(args)
        print(describe_line(predictor), file=sys.stderr)
        if args.conll:
            _run_conll(args, predictor, parsed)
        else:
            _run_text(args, predictor, parsed)
    except (ValueError, OSError) as e:  # ConllFormatError is a ValueError naming file and line
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
