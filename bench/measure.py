"""The measurements of the benchmarks, each in a process of its own, and how they are started.

    python -m bench.measure NAME CONFIG_JSON

runs one child (`CHILDREN[NAME]`), which prints one `BENCHJSON {...}` line with its result and its own
peak RSS (ru_maxrss of itself and of its waited-for children), so peaks never mix between measurements. `run_child` starts one from bench/run.py, bench/quality.py
or bench/ab.py with the same thread settings; `machine` describes the CPU; `recipe_args` are the
training settings of configs/minilm-cpu.yaml as the loop's flags.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
BATCH = 16
SEED = 42


def rss_mb() -> dict:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "peak_rss_mb": round(max(self_kb, child_kb) / 1024, 1),
        "rss_self_mb": round(self_kb / 1024, 1),
        "rss_children_mb": round(child_kb / 1024, 1),
    }


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def emit(result: dict) -> None:
    result.update(rss_mb())
    print("BENCHJSON " + json.dumps(result), flush=True)


def split_file(data_dir: Path, split: str) -> Path:
    names = {
        "train": ("train.txt", "eng.train"),
        "validation": ("valid.txt", "eng.testa"),
        "test": ("test.txt", "eng.testb"),
    }[split]
    for n in names:
        if (data_dir / n).is_file():
            return data_dir / n
    raise FileNotFoundError(f"no {split} file in {data_dir}")


# ============================================================================ shared by the children and bench.gpu


class PieceCounter:
    """Forward pre-hook summing real pieces and squared real lengths on the device (no host sync).
    `torch` is passed in: bench.gpu imports it late, on the machine it measures."""

    def __init__(self, torch, device):
        self.torch, self.device = torch, device
        self.reset()

    def reset(self):
        z = partial(self.torch.zeros, (), dtype=self.torch.long, device=self.device)
        self.pieces, self.sq, self.windows, self.padded = z(), z(), 0, 0

    def __call__(self, module, args, kwargs):
        m = kwargs["attention_mask"]
        n = m.sum(1)
        self.pieces += n.sum()
        self.sq += (n * n).sum()
        self.windows += int(m.shape[0])
        self.padded += int(m.numel())


def count_forward(pred, torch) -> PieceCounter:
    """Count the real pieces and squared lengths of every batch a predictor forwards (any backend)."""
    counter = PieceCounter(torch, torch.device("cpu"))
    inner = pred._forward

    def forward(input_ids, attention_mask):
        counter(None, (), {"attention_mask": attention_mask})
        return inner(input_ids, attention_mask)

    pred._forward = forward
    return counter


def recorded_windows(pred, sentences, docs) -> list[tuple]:
    """The padded batches (input_ids, attention_mask as NumPy copies, out of any inference mode) a predictor
    forwards for `sentences`: calibration input in the predictor's own windowing (bench/pt2e.py,
    bench/ort_static.py). The predictor's forward is restored afterwards."""
    batches, inner = [], pred._forward

    def forward(input_ids, attention_mask):
        batches.append((input_ids.numpy().copy(), attention_mask.numpy().copy()))
        return inner(input_ids, attention_mask)

    pred._forward = forward
    try:
        pred.predict_words(sentences, docs)
    finally:
        pred._forward = inner
    return batches


def calibration_sentences(cfg: dict) -> tuple[list, list]:
    """The first `calibration_sentences` (300) validation sentences and their document ids: what the static
    int8 rows calibrate on."""
    from bench import notebook_recipe as nb

    sents, _, docs = nb.read_conll_lines(split_file(Path(cfg["data_dir"]), "validation"))
    n = cfg.get("calibration_sentences", 300)
    return sents[:n], docs[:n]


def child_gemm(cfg: dict) -> dict:
    """Matrix-multiply peak (fp32 and bf16, best of several sizes) and a model FLOP count check."""
    import torch

    set_threads(cfg["threads"])
    budget = cfg["gemm_seconds"]

    def rate(dtype, n):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        t0, k = time.perf_counter(), 0
        while True:
            a @ b
            k += 1
            dt = time.perf_counter() - t0
            if dt > budget:
                break
        return 2 * n**3 * k / dt / 1e9

    fp32 = {n: round(rate(torch.float32, n), 2) for n in (512, 1024, 2048)}
    # Emulated bf16 (no AVX512-BF16/AMX) runs at ~2 GFLOP/s: large sizes would take minutes there.
    bf16 = {n: round(rate(torch.bfloat16, n), 2) for n in ((512, 1024, 2048) if cfg.get("native_bf16") else (256, 512))}

    int8 = int8_dynamic_rates(cfg, budget)

    # Model FLOPs: forward FLOPs counted by FlopCounterMode on one batch (16 x L, every token real),
    # x3 for forward + backward, vs the analytic 6 * N_non_embedding * tokens + 12 * layers * d * sum(L^2).
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(cfg["model"], num_labels=9)
    n_total = sum(p.numel() for p in model.parameters())
    n_emb = sum(p.numel() for n_, p in model.named_parameters() if "embeddings" in n_)
    c = model.config
    L = 32
    ids = torch.randint(1000, 2000, (BATCH, L))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    fwd = counter.get_total_flops()
    analytic = 6 * (n_total - n_emb) * BATCH * L + 12 * c.num_hidden_layers * c.hidden_size * BATCH * L * L
    return {
        "gemm_gflops_fp32": fp32,
        "gemm_gflops_bf16": bf16,
        "peak_fp32_gflops": max(fp32.values()),
        "peak_bf16_gflops": max(bf16.values()),
        **int8,
        "params_total": n_total,
        "params_non_embedding": n_total - n_emb,
        "num_layers": c.num_hidden_layers,
        "hidden": c.hidden_size,
        "flop_check": {
            "batch": [BATCH, L],
            "flopcounter_fwd_x3": 3 * fwd,
            "analytic_6N_plus_attn": analytic,
            "ratio": round(3 * fwd / analytic, 4),
        },
    }


def int8_dynamic_rates(cfg: dict, budget: float) -> dict:
    """The int8 counterpart of the GEMM peak, for the ONNX int8 rows: one MatMul quantized by
    ``nerforge.onnx_export.quantize`` with the model's settings (dynamic, int8 weights per channel, activations
    quantized at run time) and run in ``nerforge.onnx_runtime.session``, at the model's own shapes (2048 rows of
    hidden -> 4 hidden, 4 hidden -> hidden, hidden -> hidden), in fp32-equivalent GFLOP/s; {} without
    the onnx extra."""
    from nerforge.onnx_runtime import require_onnx, session

    try:
        require_onnx()
    except ValueError:
        return {}
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from transformers import AutoConfig

    from nerforge.onnx_export import INT8_SETTINGS, quantize

    d = AutoConfig.from_pretrained(cfg["model"]).hidden_size
    settings = dict(INT8_SETTINGS, keep_first_layer_fp32=False, keep_classifier_fp32=False)  # one layer
    rates, rng = {}, np.random.default_rng(SEED)
    with tempfile.TemporaryDirectory() as tmp:
        for k, n in ((d, 4 * d), (4 * d, d), (d, d)):
            w = numpy_helper.from_array((0.05 * rng.standard_normal((k, n))).astype(np.float32), "W")
            graph = helper.make_graph(
                [helper.make_node("MatMul", ["X", "W"], ["Y"])],
                "matmul",
                [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, k])],
                [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n])],
                [w],
            )
            fp32, q = Path(tmp) / "m.onnx", Path(tmp) / "q.onnx"
            onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
            quantize(fp32, q, settings)
            sess = session(q, threads=cfg["threads"])
            x = rng.standard_normal((2048, k)).astype(np.float32)
            sess.run(None, {"X": x})
            t0, reps = time.perf_counter(), 0
            while time.perf_counter() - t0 < budget:
                sess.run(None, {"X": x})
                reps += 1
            rates[f"{k}x{n}"] = round(2 * 2048 * k * n * reps / (time.perf_counter() - t0) / 1e9, 2)
    return {"gemm_gflops_int8_dynamic_onnx": rates, "peak_int8_dynamic_gflops": max(rates.values())}


def child_prep_notebook(cfg: dict) -> dict:
    t0 = time.perf_counter()
    from transformers import AutoTokenizer

    from bench.notebook_recipe import read_conll_lines, tokenize_notebook

    t1 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(cfg["model"])
    sents, tags, _ = read_conll_lines(split_file(Path(cfg["data_dir"]), "train"))
    rows = tokenize_notebook(tok, sents, tags, pad_to_max=True, max_length=120)
    t2 = time.perf_counter()
    return {
        "import_s": round(t1 - t0, 3),
        "work_s": round(t2 - t1, 3),
        "total_s": round(t2 - T_START, 3),
        "sentences": len(sents),
        "rows": len(rows),
    }


def _prep_ours(cfg: dict) -> dict:
    os.environ["HF_DATASETS_CACHE"] = str(Path(cfg["cache_dir"]) / "hf_home")
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    t0 = time.perf_counter()
    import datasets  # noqa: F401
    from transformers import AutoTokenizer

    from conll2003_loader import load_conll
    from nerforge.features import WindowSettings, build_features

    t1 = time.perf_counter()
    raw = load_conll(data_dir=cfg["data_dir"], cache_dir=str(Path(cfg["cache_dir"]) / "builder"))
    t2 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(cfg["model"], use_fast=True)
    names = raw["train"].features["ner_tags"].feature.names
    # our loop's defaults (nerforge/config.py): max_length 512, stride 32, no document context
    feats = build_features(raw["train"], tok, WindowSettings(max_length=512), label_all_tokens=False, label_names=names)
    t3 = time.perf_counter()
    return {
        "import_s": round(t1 - t0, 3),
        "work_s": round(t3 - t1, 3),
        "builder_s": round(t2 - t1, 3),
        "features_s": round(t3 - t2, 3),
        "total_s": round(t3 - T_START, 3),
        "sentences": len(raw["train"]),
        "rows": len(feats),
        "pieces": int(sum(feats["length"])),
        "sum_len_sq": int(sum(x * x for x in feats["length"])),
    }


def _trainer_run(cfg: dict, *, pad_to_max: bool, max_length: int, max_steps: int, epochs: float, out_dir: str):
    import torch
    from transformers import (
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainerCallback,
        default_data_collator,
    )

    from bench import notebook_recipe as nb

    set_threads(cfg["threads"])
    tok = AutoTokenizer.from_pretrained(cfg["model"])
    sents, tags, _ = nb.read_conll_lines(split_file(Path(cfg["data_dir"]), "train"))
    rows = nb.tokenize_notebook(tok, sents, tags, pad_to_max=pad_to_max, max_length=max_length)
    model = nb.load_model(cfg["model"])
    seen = {"sentences": 0, "pieces": 0, "padded": 0}

    def count(module, args, kwargs):  # exactly the batches the model trains on (no prefetch double count)
        if module.training:
            m = kwargs["attention_mask"]
            seen["sentences"] += int(m.shape[0])
            seen["pieces"] += int(m.sum())
            seen["padded"] += int(m.numel())

    model.register_forward_pre_hook(count, with_kwargs=True)
    times = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            times["begin"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.setdefault("steps", []).append(time.perf_counter())

        def on_train_end(self, args, state, control, **kw):
            times["end"] = time.perf_counter()

    collator = default_data_collator if pad_to_max else DataCollatorForTokenClassification(tok)
    args = nb.training_args(out_dir, max_steps=max_steps, num_train_epochs=epochs, seed=cfg.get("seed", SEED))
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator, callbacks=[Clock()])
    trainer.train()
    dt = times["end"] - times["begin"]
    res = {
        "steps": len(times.get("steps", [])),
        "train_time_s": round(dt, 3),
        "sentences_per_s": round(seen["sentences"] / dt, 2),
        "pieces_per_s": round(seen["pieces"] / dt, 1),
        "real_pieces": seen["pieces"],
        "padded_pieces": seen["padded"],
        "optim": str(args.optim),
        "torch_threads": torch.get_num_threads(),
    }
    st = times.get("steps", [])
    if len(st) > 2:  # steady state: from the end of step 1 to the end of the last step (batch 16 each)
        res["sentences_per_s_excl_first_step"] = round(BATCH * (len(st) - 1) / (st[-1] - st[0]), 2)
    return res, trainer, tok


def child_train_trainer(cfg: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        res, _, _ = _trainer_run(
            cfg,
            pad_to_max=cfg["variant"] == "notebook",
            max_length=120 if cfg["variant"] == "notebook" else 512,
            max_steps=cfg["steps"],
            epochs=5,
            out_dir=tmp,
        )
    res["variant"] = cfg["variant"]
    return res


def child_f1_notebook(cfg: dict) -> dict:
    """One epoch of the notebook recipe, scored on test (conlleval entity micro F1). Dynamic padding stands
    in for padding to 120 (the loss and gradients do not depend on padding: pads are masked and -100)."""
    from bench import notebook_recipe as nb
    from nerforge.metric import score

    with tempfile.TemporaryDirectory() as tmp:
        res, trainer, tok = _trainer_run(
            cfg,
            pad_to_max=False,
            max_length=120,
            max_steps=cfg.get("steps", -1),
            epochs=cfg.get("epochs", 1),
            out_dir=tmp,
        )
        sents, tags, _ = nb.read_conll_lines(split_file(Path(cfg["data_dir"]), "test"))
        pred, missing = nb.predict_words_trainer(trainer, tok, sents)
    s = score(tags, pred)
    res.update(
        f1=s["f1"],
        precision=s["precision"],
        recall=s["recall"],
        words_unpredicted=missing,
        padding="dynamic (stand-in for max_length padding to 120; same F1 up to float noise)",
    )
    return res


def child_train_ours(cfg: dict) -> dict:
    """train_accelerate.py as a subprocess, on the full training set; validation/test cut to a few
    sentences (prepared dataset folder) so the evaluation the loop does at the last step costs ~nothing.
    Throughput comes from the loop's metrics.json (training steps only)."""
    env = dict(os.environ, ACCELERATE_MIXED_PRECISION=cfg["precision"])
    out = Path(cfg["tmp"]) / f"ours_{cfg['precision']}_{cfg['tag']}"
    cmd = [
        sys.executable,
        str(ROOT / "train_accelerate.py"),
        "--model_name_or_path",
        cfg["model"],
        "--output_dir",
        str(out),
        "--overwrite_output_dir",
        "--report_to",
        "none",
        "--seed",
        str(cfg.get("seed", SEED)),
        "--context_size",
        str(cfg.get("context_size", 0)),
        "--cache_dir",
        str(Path(cfg["tmp"]) / "ours_cache"),
    ]
    if cfg.get("dataset_path"):
        cmd += ["--dataset_path", cfg["dataset_path"]]
    else:
        cmd += ["--data_dir", cfg["data_dir"]]
    cmd += [str(a) for a in cfg.get("extra_args", [])]  # e.g. --pack_length 128 (quality runs)
    if cfg.get("steps") is not None:
        cmd += ["--max_steps", str(cfg["steps"])]
    else:
        cmd += ["--num_train_epochs", str(cfg.get("epochs", 1))]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"train_accelerate.py failed ({p.returncode}):\n{p.stderr[-3000:]}")
    m = json.loads((out / "metrics.json").read_text())
    steps = m["history"][-1]["step"] if m["history"] else None
    res = {
        "precision": m["mixed_precision"],
        "steps": cfg.get("steps"),
        "sentences_per_s": m["train_windows_per_s"],
        "pieces_per_s": m["train_pieces_per_s"],
        "train_time_s": m["train_step_time_s"],
        "subprocess_wall_s": round(wall, 2),
        "command": " ".join(cmd),
        "last_logged_step": steps,
    }
    # With packed document context a window holds several sentences: sentences/s = windows/s x sentences
    # per window, and the time of one epoch = windows / (windows/s) (counts from metrics.json).
    sentences, windows = m["train_sentences"], m["train_windows"]
    res.update(
        train_sentences=sentences,
        train_windows=windows,
        windows_per_s=m["train_windows_per_s"],
        sentences_per_s=round(m["train_windows_per_s"] * sentences / windows, 2),
        epoch_time_s_estimated=round(windows / m["train_windows_per_s"], 1),
    )
    if (cfg.get("steps") is None and not cfg.get("time_only")) or cfg.get("full_eval"):  # a quality run
        res.update(
            f1=m["test"]["f1"],
            precision_test=m["test"]["precision"],
            recall_test=m["test"]["recall"],
            val_f1=m["validation"]["f1"],
            export=str(out / "model"),
        )
    return res


def child_make_dataset(cfg: dict) -> dict:
    """A prepared dataset folder: the full training split, validation/test cut to `n_eval` sentences."""
    os.environ["HF_DATASETS_CACHE"] = str(Path(cfg["tmp"]) / "hf_home")
    from conll2003_loader import load_conll

    raw = load_conll(data_dir=cfg["data_dir"], cache_dir=str(Path(cfg["tmp"]) / "mk_cache"))
    out = Path(cfg["out"])
    (out / "data").mkdir(parents=True, exist_ok=True)
    for split, ds in raw.items():
        if split != "train":
            ds = ds.select(range(min(cfg["n_eval"], len(ds))))
        ds.to_parquet(str(out / "data" / f"{split}-00000-of-00001.parquet"))
    return {"train": len(raw["train"])}


def child_make_model(cfg: dict) -> dict:
    """The encoder with a token-classification head (seeded init, untrained) for the inference speed test."""
    import torch
    from transformers import AutoTokenizer

    from bench import notebook_recipe as nb

    torch.manual_seed(0)
    nb.load_model(cfg["model"]).save_pretrained(cfg["out"])
    AutoTokenizer.from_pretrained(cfg["model"]).save_pretrained(cfg["out"])
    return {"saved": cfg["out"]}


def child_infer_pipeline(cfg: dict) -> dict:
    set_threads(cfg["threads"])
    from transformers import pipeline

    from bench import notebook_recipe as nb

    sents, _, _ = nb.read_conll_lines(split_file(Path(cfg["data_dir"]), "test"))
    if cfg.get("every"):  # a systematic sample: the test set's mix of lengths, not its first documents'
        sents = sents[:: cfg["every"]]
    ner = pipeline("ner", model=cfg["model_dir"], device=-1)
    ner("warm up")
    texts = [" ".join(words) for words in sents]
    batch = cfg.get("batch_size")
    # The pieces the pipeline's model forwards (the same counter as our rows), for its inference MFU.
    import torch

    counter = PieceCounter(torch, torch.device("cpu"))
    ner.model.register_forward_pre_hook(counter, with_kwargs=True)
    t0 = time.perf_counter()
    if batch:  # what an informed user does: the whole list, batched by the pipeline
        outs = ner(texts, batch_size=batch, ignore_labels=[])
    else:  # the notebook's way: one call per sentence
        outs = [ner(text, ignore_labels=[]) for text in texts]  # every token: covered words can be counted
    dt = time.perf_counter() - t0
    covered = 0
    for words, out in zip(sents, outs):
        starts, pos = set(), 0
        for w in words:
            starts.add(pos)
            pos += len(w) + 1
        covered += len({o["start"] for o in out if o["start"] in starts})
    return {
        "batch_size": batch or 1,
        "sentences": len(sents),
        "time_s": round(dt, 3),
        "sentences_per_s": round(len(sents) / dt, 2),
        "words_per_s": round(sum(map(len, sents)) / dt, 1),
        "words_gold": sum(map(len, sents)),
        "words_predicted": covered,
        "sample": f"every {cfg['every']}th sentence" if cfg.get("every") else "all",
        "pieces": int(counter.pieces),
        "sum_len_sq": int(counter.sq),
        "windows": counter.windows,
    }


def child_make_onnx(cfg: dict) -> dict:
    """A copy of the export with onnx/model.onnx and onnx/model_quantized.onnx, written and verified by
    `nerforge onnx` (the trained export itself is left alone)."""
    set_threads(cfg["threads"])
    from nerforge.cli.onnx import main as onnx_main

    src, dst = Path(cfg["model_dir"]), Path(cfg["out"])
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("onnx"))
    t0 = time.perf_counter()
    if onnx_main(["--model", str(dst)]) != 0:
        raise RuntimeError(f"nerforge onnx --model {dst} failed")
    verification = dst / "onnx" / "verification.json"
    return {
        "export_s": round(time.perf_counter() - t0, 1),
        "verification": json.loads(verification.read_text()) if verification.is_file() else None,
    }


def child_make_onnx_static(cfg: dict) -> dict:
    """A copy of an export with onnx/, its int8 file replaced by ONNX Runtime's static int8 (bench/ort_static.py),
    calibrated on the first validation sentences."""
    set_threads(cfg["threads"])
    from bench import ort_static

    return ort_static.write(
        Path(cfg["model_dir"]), Path(cfg["out"]), *calibration_sentences(cfg), attention=cfg["attention"]
    )


def child_make_int8_package(cfg: dict) -> dict:
    """A copy of the export with pt2/ built by ``nerforge quantize``'s function (the product's static int8
    package), calibrated on the first validation sentences as the PT2E rows are, checked on the next 200;
    its rest in bf16 where the CPU has native bf16, as the command's default. The export is left alone."""
    set_threads(cfg["threads"])
    from bench import notebook_recipe as nb
    from nerforge.backends import cpu_flags, native_bf16
    from nerforge.pt2_export import CHECK_SENTENCES, build_int8

    src, dst = Path(cfg["model_dir"]), Path(cfg["out"])
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("onnx", "pt2", "backends.json"))
    sents, _, docs = nb.read_conll_lines(split_file(Path(cfg["data_dir"]), "validation"))
    n = cfg.get("calibration_sentences", 300)
    flags = cpu_flags()
    t0 = time.perf_counter()
    build = build_int8(
        dst,
        (sents[:n], docs[:n]),
        (sents[n : n + CHECK_SENTENCES], docs[n : n + CHECK_SENTENCES]),
        bf16=native_bf16(flags),
        flags=flags,
    )
    return {"build_s": round(time.perf_counter() - t0, 1), "build": build}


def child_infer_ours(cfg: dict) -> dict:
    set_threads(cfg["threads"])
    from bench import notebook_recipe as nb
    from nerforge.metric import score
    from nerforge.predictor import Predictor

    sents, tags, docs = nb.read_conll_lines(split_file(Path(cfg["data_dir"]), "test"))
    if cfg.get("limit"):
        sents, tags, docs = sents[: cfg["limit"]], tags[: cfg["limit"]], docs[: cfg["limit"]]
    backend = cfg.get("backend", "torch")
    mdir = Path(cfg["model_dir"])
    t_load = time.perf_counter()
    if backend == "torch":
        pred = Predictor.from_pretrained(str(mdir), bf16=cfg.get("bf16", False), compile=cfg.get("compile", False))
        files = [mdir / "model.safetensors"]
    elif backend == "torch-int8":  # the package nerforge quantize builds (child_make_int8_package)
        from nerforge.backends import cpu_flags
        from nerforge.pt2_runtime import Pt2Predictor

        pred = Pt2Predictor.from_pretrained(str(mdir), flags=cpu_flags())
        files = [Path(pred.file)]
    else:
        from nerforge.onnx_runtime import OnnxPredictor

        pred = OnnxPredictor.from_pretrained(str(mdir), quantized=backend == "onnx-int8", threads=cfg["threads"])
        files = [p for p in Path(pred.file).parent.glob(Path(pred.file).name + "*")]  # + external data, if any
    quantized = None
    if cfg.get("pt2e"):  # static int8 through PyTorch 2 export quantization (bench/pt2e.py), calibrated on validation
        from bench import pt2e

        quantized = pt2e.install(pred, *calibration_sentences(cfg), bf16=cfg["pt2e"] == "int8-bf16")
    # Warm-up on 32 real sentences (a batch of several windows: a compiled model compiles its one dynamic-shape
    # graph here, not on a batch of one, whose sizes torch.compile would specialize on): the start-up cost.
    pred.predict_words(sents[:32], docs[:32])
    startup_s = time.perf_counter() - t_load
    # Real (non-pad) pieces and the sum of squared real window lengths, for the forward FLOPs: summed per
    # batch around the forward pass, inside the timing.
    import torch

    counter = count_forward(pred, torch)
    t0 = time.perf_counter()
    out = pred.predict_words(sents, docs)
    dt = time.perf_counter() - t0
    counted = {"pieces": int(counter.pieces), "sum_len_sq": int(counter.sq), "windows": counter.windows}
    res = {
        "backend": backend,
        "intra_op_threads": getattr(pred, "intra_op_threads", None) or cfg["threads"],
        "model_file_mb": round(sum(f.stat().st_size for f in files) / 2**20, 1),
        "pieces_per_s": round(counted["pieces"] / dt, 1),
        **counted,
        "sentences": len(sents),
        "time_s": round(dt, 3),
        "sentences_per_s": round(len(sents) / dt, 2),
        "words_per_s": round(sum(map(len, sents)) / dt, 1),
        "words_gold": sum(map(len, sents)),
        "words_predicted": sum(map(len, out)),
        "bf16": cfg.get("bf16", False),
        "compile": cfg.get("compile", False),
        "startup_s": round(startup_s, 2),
        "pt2e": quantized,
        "batch_size": pred.batch_size,
        "max_length": pred.max_length,
    }
    if cfg.get("trained"):
        res["f1"] = score(tags, out)["f1"]
    if cfg.get("save_tags"):
        Path(cfg["save_tags"]).write_text(json.dumps(out))
    if cfg.get("compare_tags"):
        ref = json.loads(Path(cfg["compare_tags"]).read_text())[: len(out)]
        same = sum(a == b for r, o in zip(ref, out) for a, b in zip(r, o))
        res["tag_agreement_vs_fp32"] = round(same / max(1, res["words_predicted"]), 5)
    return res


CHILDREN = {
    "gemm": child_gemm,
    "prep_notebook": child_prep_notebook,
    "prep_ours": _prep_ours,
    "train_trainer": child_train_trainer,
    "train_ours": child_train_ours,
    "f1_notebook": child_f1_notebook,
    "make_dataset": child_make_dataset,
    "make_model": child_make_model,
    "infer_pipeline": child_infer_pipeline,
    "infer_ours": child_infer_ours,
    "make_onnx": child_make_onnx,
    "make_onnx_static": child_make_onnx_static,
    "make_int8_package": child_make_int8_package,
}


# ============================================================================ the parent's side


def run_child(name: str, cfg: dict, threads: int, log) -> dict:
    # The same thread budget for every measurement, torch's and the Rust tokenizer's alike (a batched
    # encode may use it; the notebook's one-sentence calls cannot).
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TOKENIZERS_PARALLELISM="true",
        RAYON_RS_NUM_CPUS=str(threads),
        RAYON_NUM_THREADS=str(threads),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PYTHONHASHSEED="0",
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        TRANSFORMERS_VERBOSITY="error",
    )
    cfg = dict(cfg, threads=threads)
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    p = subprocess.run(
        [sys.executable, "-m", "bench.measure", name, json.dumps(cfg)],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("BENCHJSON ")]
    if p.returncode != 0 or not lines:
        log(f"  !! {name} failed (exit {p.returncode}):\n{p.stderr[-4000:]}")
        return {"error": p.stderr[-2000:], "wall_s": round(wall, 2)}
    res = json.loads(lines[-1][len("BENCHJSON ") :])
    res["wall_s"] = round(wall, 2)
    res["loadavg_1min_start_end"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    log(
        f"  {name} {cfg.get('variant', cfg.get('precision', cfg.get('tag', '')))}: "
        f"{json.dumps({k: v for k, v in res.items() if k not in ('command', 'error')})[:400]}"
    )
    return res


def machine() -> dict:
    cpu = "unknown"
    flags = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    versions = {}
    for mod in ("torch", "transformers", "datasets", "accelerate", "tokenizers"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            versions[mod] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "avx512": " avx512f" in flags,
        "amx": " amx_tile" in flags,
        "avx512_bf16": " avx512_bf16" in flags,
        "python": platform.python_version(),
        "versions": versions,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


RECIPE = ROOT / "configs" / "minilm-cpu.yaml"


def recipe_settings(path: Path = RECIPE) -> dict:
    """The training settings chosen on validation for MiniLM on CPU (bench/quality.py), as the loop reads
    them from configs/minilm-cpu.yaml (keys it leaves out take the loop's defaults)."""
    from nerforge.config import load_saved

    cfg = load_saved(path)
    return {
        "learning_rate": cfg.training.learning_rate,
        "warmup_ratio": cfg.training.warmup_ratio,
        "lr_scheduler_type": cfg.training.lr_scheduler_type,
        "tagging_scheme": cfg.data.tagging_scheme,
        "label_all_tokens": cfg.data.label_all_tokens,
        "sparse_embedding_updates": cfg.training.sparse_embedding_updates,
        "keep_words_whole": cfg.model.keep_words_whole,
    }


def recipe_args(settings: dict | None = None) -> list[str]:
    """Those settings as the loop's command-line flags."""
    return [a for k, v in (settings or recipe_settings()).items() for a in (f"--{k}", str(v))]


def main(argv=None) -> int:
    name, cfg = argv or sys.argv[1:]
    emit(CHILDREN[name](json.loads(cfg)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
