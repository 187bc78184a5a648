"""GPU check: training and prediction throughput of bert-base-cased and bert-large-cased on one GPU.

    python -m bench.gpu [--output bench/results/gpu.json] [--budget-s 420] [--row-seconds 10]
    python -m bench.gpu --smoke [--output F]     # the same code on CPU: a 2-layer width-32 BERT, a few steps
    python -m bench.gpu --write-shapes           # bench/conll2003_shapes.json again, from ../shared
    bash bench/gpu_check.sh                       # on a GPU machine: finds a Python with CUDA torch, runs this

Run from the repository root. The two *architectures* (BertConfig with their sizes, vocabulary 28996,
9 labels) with random weights, so no Hub download; CoNLL-2003-shaped batches: the real training split's
windows (``conll2003_loader.load_splits`` + ``nerforge.features.build_features``, with the shared MiniLM
tokenizer, ids taken modulo the vocabulary) where ``../shared`` is there (``--smoke``: only with
``--lengths real``), else random ids with the
window lengths of bench/conll2003_shapes.json (the same windows' lengths, computed once from the real
data), else synthetic lengths. Batches come from the loop's own ``nerforge.training.train_loader``
(configs/bert-*.yaml's windows, packed document context, and batch size; length-grouped, padded to
``pad_multiple(device)``, 8 on CUDA; pinned memory on CUDA); the step is the loop's own
``nerforge.training.training_step`` (forward under bf16 autocast when asked, backward, clipping, the
AdamW that ``nerforge.modeling.build_optimizers`` makes), plus one host sync per step as the loop's
stop-signal check does.

Rows, each in try/except, each written to the JSON as soon as it is done (a partial file is valid):
the GEMM peaks (bf16, TF32, fp32, one large matrix product each); training in fp32, TF32 and bf16
autocast (sentences/s, real pieces/s, MFU against the measured bf16 GEMM peak, peak GPU memory); our
Predictor (inference, fp32 and bf16, on synthetic words shaped like the test split's); the ONNX model
(``nerforge.onnx_export``'s verified export and ``nerforge.onnx_runtime.OnnxPredictor``) under
onnxruntime's CUDA provider where that is installed (else a row saying so). A global ``--budget-s``
skips the rows that no longer fit. Nothing here
asserts on speed: it measures and reports.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import os
import random
import resource
import sys
import tempfile
import time
import traceback
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

from bench.measure import PieceCounter, count_forward

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "gpu.json"
SMOKE_OUTPUT = ROOT / "bench" / "results" / "tmp" / "gpu_smoke.json"
SHAPES_FILE = ROOT / "bench" / "conll2003_shapes.json"
SHARED = ROOT.parent / "shared"
DATA_DIR = SHARED / "data" / "conll2003"
TOKENIZER_DIR = SHARED / "models" / "all-minilm-l6-v2"
SCHEMA = "nerforge-gpu-check/1"

VOCAB = 28996  # bert-base-cased's and bert-large-cased's vocabulary
NUM_LABELS = 9
SEED = 42
ARCHS = {
    "bert-base-cased": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "bert-large-cased": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}
SMOKE_ARCHS = {"smoke-2x32": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)}
CONFIG_FILE = {"bert-base-cased": "bert-base-cased.yaml", "bert-large-cased": "bert-large-cased.yaml"}

# Window settings and batch sizes. "packed": configs/bert-*.yaml (packed document context, 4 windows a
# batch); "sentences": one sentence per window, batch 16 (the configs' comment: "Set context_size 0,
# pack_length 0, batch 16 for single sentences"). Read from the configs when they parse (see `shapes`).
SHAPES = {
    "packed": dict(max_length=512, stride=32, context_size=64, pack_length=128, batch_size=4),
    "sentences": dict(max_length=512, stride=32, context_size=0, pack_length=0, batch_size=16),
}
PREDICT = dict(batch_size=64, max_length=512, stride=32, context_size=64, pack_length=128)

TRAIN_FLOPS = (
    "6 * params_non_embedding * real_pieces + 12 * num_layers * hidden * sum(real_length**2 per window) "
    "(forward 2N per piece + attention QK^T and AV 4*d*L^2 per layer, backward twice the forward); "
    "params_non_embedding = all parameters less the embeddings (word, position, token type, their "
    "LayerNorm); real = non-pad pieces (context pieces included, padding excluded)"
)
INFER_FLOPS = "2 * params_non_embedding * real_pieces + 4 * num_layers * hidden * sum(real_length**2 per window)"


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T_START:7.1f}s] {msg}", flush=True)


def write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- data shapes


def shapes(smoke: bool) -> dict:
    """Window settings and batch size per shape; "packed" from configs/bert-large-cased.yaml when it parses."""
    out = {k: dict(v) for k, v in SHAPES.items()}
    try:
        from nerforge.config import load_saved

        c = load_saved(ROOT / "configs" / CONFIG_FILE["bert-large-cased"])
        out["packed"].update(
            max_length=c.data.max_length,
            stride=c.data.stride,
            context_size=c.data.context_size,
            pack_length=c.data.pack_length,
            batch_size=c.training.per_device_train_batch_size,
        )
        out["packed"]["from"] = "configs/" + CONFIG_FILE["bert-large-cased"]
    except Exception as e:  # noqa: BLE001  (yaml missing on a bare machine: the defaults above are the same)
        out["packed"]["from"] = f"bench/gpu.py defaults ({type(e).__name__} reading the config)"
    if smoke:
        out["packed"]["batch_size"], out["sentences"]["batch_size"] = 2, 4
    return out


def _hist(values) -> dict:
    return {str(k): v for k, v in sorted(Counter(int(x) for x in values).items())}


def _expand(hist: dict) -> list[int]:
    return [int(k) for k, n in hist.items() for _ in range(int(n))]


def write_shapes(data_dir: Path, tokenizer_dir: Path, out: Path = SHAPES_FILE) -> dict:
    """Lengths only (no text): the training split's windows per shape, and the test split's words per
    sentence, pieces per word and sentences per document, with the MiniLM tokenizer."""
    from transformers import AutoTokenizer

    raw, tok = _real_splits(data_dir, tokenizer_dir)
    res = {
        "source": "CoNLL-2003 (English) train and test, eng.train/eng.testb; lengths only",
        "tokenizer": f"{tokenizer_dir.name} (uncased WordPiece, vocabulary 30522; bert-base-cased's cased "
        "vocabulary splits words somewhat differently)",
        "train": {},
    }
    for name, s in SHAPES.items():
        feats = _features(raw["train"], tok, s)
        res["train"][name] = {
            "settings": {k: s[k] for k in ("max_length", "stride", "context_size", "pack_length")},
            "sentences": len(raw["train"]),
            "windows": len(feats),
            "pieces": int(sum(feats["length"])),
            "length_histogram": _hist(feats["length"]),
        }
    test = raw["test"]
    words, pieces, per_doc = [], [], Counter()
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), use_fast=True)
    for sent, doc in zip(test["tokens"], test["document_id"]):
        per_doc[doc] += 1
        if not sent:
            continue
        words.append(len(sent))
        enc = tok(sent, is_split_into_words=True, add_special_tokens=False)
        per_word = Counter(w for w in enc.word_ids() if w is not None)
        pieces += [per_word.get(i, 1) for i in range(len(sent))]  # a word of no piece gets [UNK]: 1
    res["test"] = {
        "sentences": len(test),
        "words_per_sentence": _hist(words),
        "pieces_per_word": _hist(pieces),
        "sentences_per_document": _hist(per_doc.values()),
    }
    write_json_atomic(out, res)
    return res


def _real_splits(data_dir: Path, tokenizer_dir: Path):
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    from transformers import AutoTokenizer

    from conll2003_loader import load_splits

    cache = ROOT / "bench" / "results" / "tmp" / "gpu_cache"
    raw = load_splits(data_dir=str(data_dir), cache_dir=str(cache))
    return raw, AutoTokenizer.from_pretrained(str(tokenizer_dir), use_fast=True)


def _features(split, tok, s: dict):
    from nerforge.features import WindowSettings, build_features

    names = split.features["ner_tags"].feature.names
    windows = WindowSettings(s["max_length"], s["stride"], s["context_size"], s["pack_length"])
    return build_features(split, tok, windows, label_all_tokens=False, label_names=names)


class SyntheticWindows:
    """Map-style dataset: window i has `lengths[i]` pieces ([CLS] ... [SEP]) with random ids and labels,
    drawn from a generator seeded by i (the same window every epoch, no memory held)."""

    def __init__(self, lengths: list[int]):
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> dict:
        rng = random.Random(SEED * 1_000_003 + i)
        n = self.lengths[i]
        inner = max(0, n - 2)
        return {
            "input_ids": [101] + [rng.randrange(1000, VOCAB) for _ in range(inner)] + [102],
            "labels": [-100] + [rng.randrange(NUM_LABELS) for _ in range(inner)] + [-100],
            "word_index": [-1] + list(range(inner)) + [-1],
            "example_id": i,
        }


def _synthetic_lengths(shape: dict, n: int, seed: int = SEED) -> list[int]:
    """Lengths like CoNLL-2003's when no statistics are at hand: sentences ~ 2 + lognormal (median ~15
    pieces), a packed window ~ 2 x context + up to pack_length pieces of sentences."""
    rng = random.Random(seed)
    cap = shape["max_length"]
    out = []
    for _ in range(n):
        if shape["pack_length"]:
            out.append(
                min(cap, 2 + 2 * shape["context_size"] + rng.randint(shape["pack_length"] // 3, shape["pack_length"]))
            )
        else:
            out.append(min(cap, 2 + max(1, round(rng.lognormvariate(2.7, 0.75)))))
    return out


class Data:
    """Training windows per shape and the test sentences for the predictor, from the best source there is."""

    def __init__(self, mode: str, smoke: bool, data_dir: Path, tokenizer_dir: Path):
        self.smoke = smoke
        self.shapes = shapes(smoke)
        self.stats = json.loads(SHAPES_FILE.read_text()) if SHAPES_FILE.is_file() else None
        self.raw = self.tok = None
        if mode in ("auto", "real"):
            why = self._why_not_real(data_dir, tokenizer_dir)
            if why is None and not (smoke and mode == "auto"):
                self.raw, self.tok = _real_splits(data_dir, tokenizer_dir)
                mode = "real"
            elif mode == "real":
                raise SystemExit(f"--lengths real: {why or 'not in --smoke auto mode'}")
            else:
                self.why_not_real = why or "--smoke uses the stored lengths unless --lengths real"
                mode = "stats" if self.stats else "synthetic"
        if mode == "stats" and not self.stats:
            raise SystemExit(f"--lengths stats: {SHAPES_FILE} is missing (python -m bench.gpu --write-shapes)")
        self.mode = mode
        self._cache: dict = {}

    @staticmethod
    def _why_not_real(data_dir: Path, tokenizer_dir: Path) -> str | None:
        if not (data_dir / "train.txt").is_file() and not (data_dir / "eng.train").is_file():
            return f"no CoNLL-2003 training file in {data_dir}"
        if not (tokenizer_dir / "tokenizer.json").is_file():
            return f"no tokenizer in {tokenizer_dir}"
        try:
            import datasets  # noqa: F401
        except ImportError:
            return "the datasets package is not installed"
        return None

    def describe(self) -> dict:
        d = {"source": self.mode, "shapes": self.shapes}
        if self.mode == "real":
            d["detail"] = (
                "the real training split's windows (conll2003_loader.load_splits + nerforge.features."
                f"build_features) with the {TOKENIZER_DIR.name} tokenizer, input ids modulo {VOCAB}"
            )
        elif self.mode == "stats":
            d["detail"] = (
                f"random ids with the real training windows' lengths from {SHAPES_FILE.relative_to(ROOT)} "
                f"({self.stats.get('tokenizer', '')})"
            )
            d["why_not_real"] = getattr(self, "why_not_real", "asked for")
        else:
            d["detail"] = "random ids, synthetic CoNLL-like lengths (no statistics file)"
            d["why_not_real"] = getattr(self, "why_not_real", "asked for")
        d["predictor_input"] = (
            "synthetic words of a word-level WordPiece vocabulary of 28996 entries, with the real test split's "
            "words per sentence, pieces per word and sentences per document"
            if self.stats
            else "synthetic words, 14 per sentence, 1-2 pieces each"
        )
        return d

    def train_set(self, shape: str):
        """(dataset, lengths, sentences per window, id transform or None)."""
        if shape in self._cache:
            return self._cache[shape]
        s = self.shapes[shape]
        if self.mode == "real":
            feats = _features(self.raw["train"], self.tok, s)
            lengths = list(feats["length"])
            per_window = len(self.raw["train"]) / len(feats)
            res = (feats, lengths, per_window, True)
        else:
            if self.mode == "stats":
                st = self.stats["train"][shape]
                lengths = _expand(st["length_histogram"])
                per_window = st["sentences"] / st["windows"]
            else:
                lengths = _synthetic_lengths(s, 14041 if not s["pack_length"] else 2566)
                per_window = 1.0 if not s["pack_length"] else 14041 / 2566
            random.Random(SEED).shuffle(lengths)  # the sampler shuffles too; this only spreads a subset
            res = (SyntheticWindows(lengths), lengths, per_window, False)
        if self.smoke:
            n = 64 if shape == "packed" else 128
            ds, lengths = res[0], res[1][:n]
            ds = ds.select(range(n)) if self.mode == "real" else SyntheticWindows(lengths)
            res = (ds, lengths, res[2], res[3])
        self._cache[shape] = res
        return res

    def test_sentences(self) -> tuple[list[list[str]], list[int]]:
        """Words of the word-level tokenizer (`word_tokenizer`): a word of k pieces is a{i}b{j}...b{j'}."""
        rng = random.Random(SEED)
        if self.stats:
            st = self.stats["test"]
            n_sent = st["sentences"]
            wps, ppw, spd = (
                _expand(st[k]) for k in ("words_per_sentence", "pieces_per_word", "sentences_per_document")
            )
        else:
            n_sent, wps, ppw, spd = 3453, [14], [1, 1, 1, 2], [15]
        if self.smoke:
            n_sent = 60
        sentences, docs, doc, left = [], [], -1, 0
        k_first = VOCAB - 5 - 100
        for _ in range(n_sent):
            if left == 0:
                doc, left = doc + 1, rng.choice(spd)
            left -= 1
            words = []
            for _ in range(rng.choice(wps)):
                w = f"a{rng.randrange(k_first)}" + "".join(f"b{rng.randrange(100)}" for _ in range(rng.choice(ppw) - 1))
                words.append(w)
            sentences.append(words)
            docs.append(doc)
        return sentences, docs


def word_tokenizer():
    """A fast BERT WordPiece tokenizer of exactly VOCAB entries: specials, a0..aK (first pieces) and
    ##b0..##b99 (continuations), so that "a12b3b7" is three pieces: a12 ##b3 ##b7."""
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [f"a{i}" for i in range(VOCAB - len(vocab) - 100)] + [f"##b{j}" for j in range(100)]
    return BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=False)


# ----------------------------------------------------------------------------- the machine


def machine_info(torch, device) -> dict:
    from bench.measure import machine

    info = machine()
    for mod in ("onnxruntime", "onnx", "onnxscript"):
        try:
            info["versions"][mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            info["versions"][mod] = None
    info["device"] = str(device)
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info["gpu"] = {
            "name": p.name,
            "capability": f"{p.major}.{p.minor}",
            "multiprocessors": p.multi_processor_count,
            "memory_gib": round(p.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "count": torch.cuda.device_count(),
        }
    return info


def sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_precision(torch, precision: str) -> None:
    """fp32: IEEE fp32 matrix products; tf32: TF32 for fp32 matrix products and convolutions; bf16: fp32
    weights, bf16 autocast (TF32 off, as the loop leaves it)."""
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    torch.backends.cudnn.allow_tf32 = precision == "tf32"


def tf32_on(torch, device) -> bool:
    return device.type == "cuda" and torch.get_float32_matmul_precision() != "highest"


def reset_memory(torch, device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(torch, device) -> dict:
    if device.type == "cuda":
        return {
            "peak_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
            "peak_memory_kind": "torch.cuda.max_memory_allocated",
            "peak_reserved_mb": round(torch.cuda.max_memory_reserved(device) / 2**20, 1),
        }
    return {
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_memory_kind": "process peak RSS (CPU run: not per row)",
    }


# ----------------------------------------------------------------------------- rows


def gemm_row(ctx) -> dict:
    """One large square matrix product per precision, best of the sizes, random data (never zeros)."""
    torch, dev = ctx.torch, ctx.device
    sizes = [128] if ctx.smoke else [4096, 8192]
    seconds = 0.2 if ctx.smoke else 1.0
    res = {"sizes": sizes}
    for name, dtype, prec in (
        ("bf16", torch.bfloat16, "fp32"),
        ("tf32", torch.float32, "tf32"),
        ("fp32", torch.float32, "fp32"),
    ):
        set_precision(torch, prec)
        best = 0.0
        for n in sizes:
            g = torch.Generator(device=dev).manual_seed(SEED)
            a = torch.randn(n, n, device=dev, dtype=dtype, generator=g)
            b = torch.randn(n, n, device=dev, dtype=dtype, generator=g)
            for _ in range(3):
                a @ b
            sync(torch, dev)
            k, t0 = 0, time.perf_counter()
            while True:
                for _ in range(10):
                    a @ b
                k += 10
                sync(torch, dev)
                dt = time.perf_counter() - t0
                if dt > seconds:
                    break
            tflops = 2 * n**3 * k / dt / 1e12
            res[f"{name}_tflops_n{n}"] = round(tflops, 4 if ctx.smoke else 1)
            best = max(best, tflops)
            del a, b
        res[f"peak_{name}_tflops"] = round(best, 4 if ctx.smoke else 1)
    set_precision(torch, "fp32")
    ctx.peaks = {k: res[f"peak_{k}_tflops"] for k in ("bf16", "tf32", "fp32")}
    return res


def make_model(ctx, arch: str):
    """Random weights (seeded), initialised directly on the device (no host copy of bert-large)."""
    torch = ctx.torch
    from transformers import BertConfig, BertForTokenClassification

    cfg = BertConfig(vocab_size=VOCAB, num_labels=NUM_LABELS, max_position_embeddings=512, **ctx.archs[arch])
    torch.manual_seed(SEED)
    with torch.device(ctx.device):
        model = BertForTokenClassification(cfg)
    return model


def param_counts(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    emb = sum(p.numel() for n, p in model.named_parameters() if ".embeddings." in f".{n}")
    c = model.config
    return {
        "params_total": total,
        "params_non_embedding": total - emb,
        "num_layers": c.num_hidden_layers,
        "hidden": c.hidden_size,
    }


def _predict_figures(ctx, counts: dict, counter, sentences, n_words: int, dt: float) -> dict:
    """The throughput figures every predictor row reports (torch and ONNX alike)."""
    pieces, sq = int(counter.pieces), int(counter.sq)
    return {
        "sentences": len(sentences),
        "words": n_words,
        "time_s": round(dt, 3),
        "sentences_per_s": round(len(sentences) / dt, 2),
        "words_per_s": round(n_words / dt, 1),
        "windows": counter.windows,
        "real_pieces_per_s": round(pieces / dt, 1),
        "padding_fraction": round(1 - pieces / max(1, counter.padded), 4),
        **_rates(ctx, counts, pieces, sq, dt, train=False),
        **counts,
    }


def _sig(x: float, digits: int) -> float:
    """x to `digits` significant figures: a smoke run's tiny rates on a busy CPU must not round to 0."""
    return float(f"{x:.{digits}g}")


def _rates(ctx, counts: dict, pieces: int, sq: int, dt: float, *, train: bool) -> dict:
    n, layers, d = counts["params_non_embedding"], counts["num_layers"], counts["hidden"]
    flops = (6 if train else 2) * n * pieces + (12 if train else 4) * layers * d * sq
    achieved = flops / dt / 1e12
    out = {"model_tflops_per_s": _sig(achieved, 4), "flops": flops}
    if ctx.peaks.get("bf16"):
        out["mfu_vs_bf16_peak"] = _sig(achieved / ctx.peaks["bf16"], 4)
    return out


def train_row(ctx, arch: str, precision: str, shape: str, *, loop_sync: bool = True) -> dict:
    torch, dev = ctx.torch, ctx.device
    from nerforge.features import pad_multiple
    from nerforge.modeling import build_optimizers
    from nerforge.training import train_loader, training_step

    s = ctx.data.shapes[shape]
    dataset, lengths, per_window, mod_ids = ctx.data.train_set(shape)
    reset_memory(torch, dev)
    set_precision(torch, precision)
    model = make_model(ctx, arch)
    model.train()
    counts = param_counts(model)
    # configs/bert-*.yaml's learning rate and weight decay; the rate does not change the speed.
    (optimizer,) = build_optimizers(model, 2e-5, 0.01)
    # the training loop's own loader: length-grouped batches, padding multiple, pinned memory on CUDA
    sampler, loader = train_loader(
        dataset,
        lengths,
        s["batch_size"],
        seed=SEED,
        pad_id=0,
        device_type=dev.type,
        transform=(lambda b: _mod_ids(b, torch)) if mod_ids else None,
    )
    pin = loader.pin_memory
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()

    def forward(**kw):  # accelerate wraps the model's forward in autocast; backward runs outside it
        with autocast:
            return model(**kw)

    counter = PieceCounter(torch, dev)
    loss_sum = torch.zeros((), device=dev)

    def batches():
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    it = batches()

    def step():
        nonlocal loss_sum
        batch = next(it)
        # accelerate's default send_to_device (non_blocking=False); pinned pages make the copy direct
        b = {k: batch[k].to(dev) for k in ("input_ids", "attention_mask", "labels")}
        # the loop's own step; its clipping is clip_grad_norm_ (max_grad_norm 1.0) on one process
        loss = training_step(
            forward,
            b,
            [optimizer],
            backward=lambda loss: loss.backward(),
            clip=lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0),
        )
        n = b["attention_mask"].sum(1)
        counter.pieces += n.sum()
        counter.sq += (n * n).sum()
        counter.windows += int(n.shape[0])
        counter.padded += int(b["attention_mask"].numel())
        loss_sum = loss_sum + loss
        if loop_sync:  # nerforge/training.py: received = torch.tensor(..., device); bool(received.item())
            torch.tensor(0, device=dev).item()

    warmup = 1 if ctx.smoke else 5
    t_build = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(torch, dev)
    warm_s = time.perf_counter() - t_build
    counter.reset()
    loss_sum = torch.zeros((), device=dev)
    seconds = ctx.row_seconds
    min_steps, max_steps = (4, 4) if ctx.smoke else (20, 100_000)
    steps, t0 = 0, time.perf_counter()
    while steps < max_steps:
        step()
        steps += 1
        if steps >= min_steps and time.perf_counter() - t0 >= seconds and steps % 5 == 0:
            break
    sync(torch, dev)
    dt = time.perf_counter() - t0
    pieces, sq = int(counter.pieces), int(counter.sq)
    loss = float(loss_sum) / steps
    state = next(iter(optimizer.state.values()))
    windows_per_s = counter.windows / dt
    n_windows = len(ctx.data.train_set(shape)[1]) if not ctx.smoke else None
    row = {
        "arch": arch,
        "precision": precision,
        "shape": shape,
        "batch_size": s["batch_size"],
        "steps": steps,
        "warmup_steps": warmup,
        "warmup_s": round(warm_s, 2),
        "time_s": round(dt, 3),
        "step_ms": round(1000 * dt / steps, 2),
        "windows_per_s": round(windows_per_s, 2),
        "sentences_per_window": round(per_window, 3),
        "sentences_per_s": round(windows_per_s * per_window, 2),
        "real_pieces_per_s": round(pieces / dt, 1),
        "padded_pieces_per_s": round(counter.padded / dt, 1),
        "padding_fraction": round(1 - pieces / max(1, counter.padded), 4),
        "loss_mean": round(loss, 4),
        **_rates(ctx, counts, pieces, sq, dt, train=True),
        **counts,
        **peak_memory(torch, dev),
        "settings": {
            "autocast": "bf16" if precision == "bf16" else None,
            "tf32": tf32_on(torch, dev),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "attn_implementation": model.config._attn_implementation,
            "fused_adamw": bool(optimizer.param_groups[0].get("fused")),
            "optimizer_state_device": str(state["exp_avg"].device),
            "pad_multiple": pad_multiple(dev.type),
            "pin_memory": pin,
            "host_sync_per_step": loop_sync,
            "dataloader_workers": 0,
        },
    }
    if ctx.peaks.get(precision):
        row["mfu_vs_same_precision_peak"] = _sig(row["model_tflops_per_s"] / ctx.peaks[precision], 4)
    if n_windows:
        row["epoch_s_estimated"] = round(n_windows / windows_per_s, 1)
    if not math.isfinite(loss):
        row["warning"] = "loss not finite"
    set_precision(torch, "fp32")
    # the row's model, optimizer and batches go with this frame; the next row's reset_memory frees them
    return row


def _mod_ids(batch: dict, torch) -> dict:
    batch["input_ids"] = torch.remainder(batch["input_ids"], VOCAB)
    return batch


def fused_check_row(ctx) -> dict:
    """The loop's order: optimizer built while the model is on the CPU, the model moved afterwards
    (accelerator.prepare); fused AdamW's device check runs at the first step, on the moved parameters."""
    torch, dev = ctx.torch, ctx.device
    from transformers import BertConfig, BertForTokenClassification

    from nerforge.modeling import build_optimizers

    torch.manual_seed(SEED)
    model = BertForTokenClassification(
        BertConfig(vocab_size=100, num_labels=NUM_LABELS, **SMOKE_ARCHS["smoke-2x32"])
    )  # on the CPU
    (opt,) = build_optimizers(model, 1e-3, 0.01)
    model.to(dev)
    ids = torch.randint(5, 100, (2, 8), device=dev)
    model(input_ids=ids, labels=torch.zeros_like(ids)).loss.backward()
    opt.step()
    state = next(iter(opt.state.values()))
    return {
        "fused": bool(opt.param_groups[0].get("fused")),
        "param_device": str(next(model.parameters()).device),
        "state_device": str(state["exp_avg"].device),
        "torch": torch.__version__,
        "what": "build_optimizers on CPU parameters, model.to(device), one step: fused AdamW runs on the device",
    }


def predict_row(ctx, arch: str, precision: str) -> dict:
    torch, dev = ctx.torch, ctx.device
    from nerforge.features import WindowSettings
    from nerforge.predictor import Predictor

    sentences, docs = ctx.sentences
    reset_memory(torch, dev)
    set_precision(torch, "fp32")
    model = make_model(ctx, arch).eval()
    counts = param_counts(model)
    pred = Predictor(model, ctx.tokenizer, WindowSettings(**PREDICT), device=dev, bf16=precision == "bf16")
    counter = PieceCounter(torch, dev)
    h = model.register_forward_pre_hook(counter, with_kwargs=True)
    pred.predict_words(sentences[:200], docs[:200])  # warm up
    sync(torch, dev)
    counter.reset()
    t0 = time.perf_counter()
    out = pred.predict_words(sentences, docs)
    sync(torch, dev)
    dt = time.perf_counter() - t0
    h.remove()
    n_words = sum(map(len, sentences))
    assert sum(map(len, out)) == n_words, "a word was lost"
    row = {
        "arch": arch,
        "precision": precision,
        **_predict_figures(ctx, counts, counter, sentences, n_words, dt),
        **peak_memory(torch, dev),
        "settings": {
            **PREDICT,
            "autocast": "bf16" if precision == "bf16" else None,
            "attn_implementation": model.config._attn_implementation,
            "pad_multiple": __import__("nerforge.features", fromlist=["pad_multiple"]).pad_multiple(dev.type),
            "what": "Predictor.predict_words end to end: word pieces, windows, forward, words back",
        },
    }
    # the row's model, optimizer and batches go with this frame; the next row's reset_memory frees them
    return row


def onnx_row(ctx, arch: str) -> dict:
    """fp32 ONNX under onnxruntime (the CUDA provider on a GPU): nerforge.onnx_export's export (verified against
    torch) and its OnnxPredictor, predict_words end to end on the same sentences as the predict rows;
    skipped, with the reason, where onnxruntime, its provider or the onnx extra is missing."""
    torch, dev = ctx.torch, ctx.device
    try:
        import onnxruntime as ort
    except ImportError:
        return {
            "status": "skipped",
            "reason": "onnxruntime not installed (pip install onnxruntime-gpu for the CUDA provider)",
        }
    providers = ort.get_available_providers()
    want = "CUDAExecutionProvider" if dev.type == "cuda" else "CPUExecutionProvider"
    if want not in providers:
        return {
            "status": "skipped",
            "reason": f"onnxruntime {ort.__version__} has no {want} (providers: {providers}); "
            "install onnxruntime-gpu (it replaces onnxruntime) for the CUDA provider",
        }
    import nerforge.onnx_export as nxe
    import nerforge.onnx_runtime as nx
    from nerforge.features import WindowSettings

    try:
        nx.require_onnx()  # the exporter needs onnx and onnxscript besides onnxruntime
    except ValueError as e:
        return {"status": "skipped", "reason": str(e)}
    sentences, docs = ctx.sentences
    reset_memory(torch, dev)
    free0 = torch.cuda.mem_get_info(dev)[0] if dev.type == "cuda" else None
    torch.manual_seed(SEED)
    from transformers import BertConfig, BertForTokenClassification

    cfg = BertConfig(vocab_size=VOCAB, num_labels=NUM_LABELS, max_position_embeddings=512, **ctx.archs[arch])
    model = BertForTokenClassification(cfg).eval()  # on the CPU in fp32: what export_onnx takes
    counts = param_counts(model)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        verification = nxe.export_onnx(model, ctx.tokenizer, tmp)
        export_s = time.perf_counter() - t0
        path = Path(tmp) / nx.FP32_FILE
        size_mb = round(path.stat().st_size / 2**20, 1)
        sess = nx.session(path, providers=[want])
        pred = nx.OnnxPredictor(sess, model.config, ctx.tokenizer, WindowSettings(**PREDICT))
        counter = count_forward(pred, torch)
        pred.predict_words(sentences[:200], docs[:200])  # warm up
        counter.reset()
        t0 = time.perf_counter()
        out = pred.predict_words(sentences, docs)
        dt = time.perf_counter() - t0
    n_words = sum(map(len, sentences))
    assert sum(map(len, out)) == n_words, "a word was lost"
    row = {
        "arch": arch,
        "precision": "fp32",
        "provider": want,
        "providers_used": sess.get_providers(),
        "export": "nerforge.onnx_export.export_onnx",
        "export_s": round(export_s, 1),
        "verification": {k: verification.get(k) for k in ("fp32", "opset", "sample")},
        "model_mb": size_mb,
        **_predict_figures(ctx, counts, counter, sentences, n_words, dt),
        "settings": {**PREDICT, "intra_op_threads": pred.intra_op_threads},
        "what": "OnnxPredictor.predict_words end to end (host arrays in and out of the session per batch)",
    }
    if free0 is not None:
        row["peak_memory_mb"] = round((free0 - torch.cuda.mem_get_info(dev)[0]) / 2**20, 1)
        row["peak_memory_kind"] = "device free-memory drop after the run (onnxruntime's arena; not torch's counter)"
    else:
        row.update(peak_memory(torch, dev))
    # the row's model, optimizer and batches go with this frame; the next row's reset_memory frees them
    return row


class Ctx:
    """What the rows share; the predictor's tokenizer and sentences are made by the first row that needs
    them (a failure there is that row's error, not the run's)."""

    _predict_inputs = None

    @property
    def tokenizer(self):
        return self.predict_inputs()[0]

    @property
    def sentences(self):
        return self.predict_inputs()[1]

    def predict_inputs(self):
        if self._predict_inputs is None:
            self._predict_inputs = (word_tokenizer(), self.data.test_sentences())
        return self._predict_inputs


def loop_facts(ctx) -> dict:
    """What the training loop (nerforge.training) does on CUDA, asked of its own functions."""
    from nerforge.features import pad_multiple
    from nerforge.training import train_loader

    pin = train_loader([], [], 1, seed=0, pad_id=0, device_type="cuda")[1].pin_memory

    return {
        "bf16_autocast": "with --mixed_precision bf16 (accelerate's autocast around the forward)",
        "tf32": "not set by the loop (fp32 matrix products stay IEEE unless the environment asks, e.g. "
        "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1); the tf32 rows show what it would give",
        "sdpa": "transformers' default attention for BERT (config._attn_implementation, in every row)",
        "fused_adamw": "nerforge.modeling.build_optimizers: AdamW(fused=True) (see fused_adamw_check)",
        "pad_multiple_cuda": pad_multiple("cuda"),
        "pin_memory_on_cuda": pin,
        "host_sync_per_step": "yes: the stop-signal check reads a device tensor every step",
    }


def plan(ctx) -> list:
    rows: list = [("gemm", {}, 20, gemm_row), ("fused_adamw_check", {}, 10, fused_check_row)]
    archs = list(ctx.archs)
    t = ctx.row_seconds + (5 if ctx.smoke else 20)
    if "train" in ctx.only:
        for prec in ("bf16", "tf32", "fp32"):
            for a in archs:
                rows.append(("train", dict(arch=a, precision=prec, shape="packed"), t, train_row))
    if "predict" in ctx.only:
        for a in archs:
            for prec in ("bf16", "fp32"):
                rows.append(("predict", dict(arch=a, precision=prec), 30, predict_row))
    if "train" in ctx.only:
        for a in archs:
            rows.append(("train", dict(arch=a, precision="bf16", shape="sentences"), t, train_row))
        rows.append(("train", dict(arch=archs[0], precision="bf16", shape="packed", loop_sync=False), t, train_row))
    if "onnx" in ctx.only:
        rows.append(("onnx", dict(arch=archs[0]), 90, onnx_row))
    return [r for r in rows if r[0] in ctx.only or r[0] in ("gemm", "fused_adamw_check")]


def summarize(rows: list) -> dict:
    out = {}
    for r in rows:
        if r.get("status") != "ok":
            continue
        if r["kind"] == "train" and r["shape"] == "packed" and r["settings"]["host_sync_per_step"]:
            k = f"train_{r['arch']}_{r['precision']}"
            out[k] = {
                "sentences_per_s": r["sentences_per_s"],
                "real_pieces_per_s": r["real_pieces_per_s"],
                "mfu_vs_bf16_peak": r.get("mfu_vs_bf16_peak"),
                "peak_memory_mb": r["peak_memory_mb"],
            }
        elif r["kind"] == "predict":
            out[f"predict_{r['arch']}_{r['precision']}"] = {
                "sentences_per_s": r["sentences_per_s"],
                "real_pieces_per_s": r["real_pieces_per_s"],
                "peak_memory_mb": r["peak_memory_mb"],
            }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--output",
        help=f"JSON file (default {DEFAULT_OUTPUT.relative_to(ROOT)}; --smoke: {SMOKE_OUTPUT.relative_to(ROOT)})",
    )
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop starting rows after this many seconds")
    ap.add_argument(
        "--row-seconds", type=float, default=None, help="timed seconds per training row (default 10; smoke 0)"
    )
    ap.add_argument("--smoke", action="store_true", help="the same code on CPU: a 2-layer width-32 BERT, a few steps")
    ap.add_argument("--device", default=None, help="cuda (default when there is one) or cpu")
    ap.add_argument("--lengths", choices=("auto", "real", "stats", "synthetic"), default="auto")
    ap.add_argument("--data-dir", default=str(DATA_DIR))
    ap.add_argument("--tokenizer", default=str(TOKENIZER_DIR))
    ap.add_argument("--models", default=None, help="comma-separated subset of " + ",".join(ARCHS))
    ap.add_argument("--only", default="train,predict,onnx", help="row kinds: train,predict,onnx")
    ap.add_argument("--write-shapes", action="store_true", help=f"recompute {SHAPES_FILE.relative_to(ROOT)} and exit")
    args = ap.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.write_shapes:
        res = write_shapes(Path(args.data_dir), Path(args.tokenizer))
        print(json.dumps({k: {s: v.get("windows") for s, v in res["train"].items()} for k in ("train",)}))
        return 0

    import torch

    if args.device:
        device = torch.device(args.device)
    else:
        device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.type != "cuda" and not args.smoke and not args.device:
        print(
            "error: no CUDA device (torch.cuda.is_available() is False); --smoke runs the code on CPU", file=sys.stderr
        )
        return 2
    out_path = Path(args.output) if args.output else (SMOKE_OUTPUT if args.smoke else DEFAULT_OUTPUT)
    ctx = Ctx()
    ctx.torch, ctx.device, ctx.smoke = torch, device, args.smoke
    ctx.row_seconds = args.row_seconds if args.row_seconds is not None else (0.0 if args.smoke else 10.0)
    ctx.archs = SMOKE_ARCHS if args.smoke else {k: ARCHS[k] for k in (args.models.split(",") if args.models else ARCHS)}
    ctx.only = set(args.only.split(","))
    ctx.peaks = {}
    if args.smoke:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    deadline = T_START + args.budget_s

    R: dict = {
        "schema": SCHEMA,
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python -m bench.gpu " + " ".join(argv if argv is not None else sys.argv[1:]),
        "smoke": args.smoke,
        "budget_s": args.budget_s,
        "row_seconds": ctx.row_seconds,
        "complete": False,
        "machine": machine_info(torch, device),
        "flops": {
            "train": TRAIN_FLOPS,
            "inference": INFER_FLOPS,
            "mfu": "model FLOP/s over peak_bf16_tflops of the gemm row",
        },
        "archs": {k: dict(v, vocab_size=VOCAB, num_labels=NUM_LABELS) for k, v in ctx.archs.items()},
        "rows": [],
    }
    log(f"bench.gpu on {device} ({R['machine'].get('gpu', {}).get('name', R['machine']['cpu'])}), writing {out_path}")

    def save():
        R["elapsed_s"] = round(time.perf_counter() - T_START, 1)
        write_json_atomic(out_path, R)

    try:
        ctx.data = Data(args.lengths, args.smoke, Path(args.data_dir), Path(args.tokenizer))
        R["data"] = ctx.data.describe()
        R["loop_on_cuda"] = loop_facts(ctx)
    except Exception as e:  # noqa: BLE001
        R["error"] = f"setup failed: {type(e).__name__}: {e}"
        R["traceback"] = traceback.format_exc()[-3000:]
        save()
        log(R["error"])
        return 1
    save()

    for kind, kw, estimate, fn in plan(ctx):
        label = " ".join(str(v) for k, v in kw.items() if k != "loop_sync") + (
            " no-host-sync" if kw.get("loop_sync") is False else ""
        )
        row = {"kind": kind, **kw}
        left = deadline - time.perf_counter()
        if left < estimate and not args.smoke:
            row.update(status="skipped", reason=f"budget: {left:.0f}s left, row needs ~{estimate}s")
            R["rows"].append(row)
            save()
            log(f"{kind} {label}: skipped (budget)")
            continue
        t0 = time.perf_counter()
        try:
            res = fn(ctx, **kw)
            row.update(res)
            row.setdefault("status", "ok")
        except Exception as e:  # noqa: BLE001  a failed row is recorded, the rest still run
            row.update(
                status="error", error=f"{type(e).__name__}: {str(e)[:1000]}", traceback=traceback.format_exc()[-2000:]
            )
            try:
                set_precision(torch, "fp32")
                reset_memory(torch, device)
            except Exception:  # noqa: BLE001
                pass
        row["row_wall_s"] = round(time.perf_counter() - t0, 1)
        if kind == "gemm" and row["status"] == "ok":
            R["gemm"] = row
        elif kind == "fused_adamw_check":
            R["fused_adamw_check"] = row
        R["rows"].append(row)
        R["summary"] = summarize(R["rows"])
        save()
        log(f"{kind} {label}: {_brief(row)}")
    R["complete"] = True
    R["summary"] = summarize(R["rows"])
    save()
    print(json.dumps(R["summary"], indent=1))
    log(f"done; wrote {out_path}")
    return 0


def _brief(row: dict) -> str:
    if row["status"] != "ok":
        return f"{row['status']}: {row.get('reason') or row.get('error')}"
    keys = (
        "peak_bf16_tflops",
        "peak_tf32_tflops",
        "peak_fp32_tflops",
        "fused",
        "state_device",
        "sentences_per_s",
        "real_pieces_per_s",
        "step_ms",
        "mfu_vs_bf16_peak",
        "peak_memory_mb",
        "onnx_real_pieces_per_s",
        "torch_real_pieces_per_s",
        "max_abs_logit_diff",
    )
    return ", ".join(f"{k} {row[k]}" for k in keys if k in row) + f" ({row['row_wall_s']}s)"


if __name__ == "__main__":
    sys.exit(main())
