"""End-to-end benchmark: the notebook recipe vs nerforge, same machine, model and data, one process tree.

    python bench/run.py --data-dir ../shared/data/conll2003 --model ../shared/models/all-minilm-l6-v2 [--quick]

Every measurement runs in its own subprocess (`bench/run.py --_child NAME`), which prints one JSON
line and its own peak RSS (ru_maxrss of itself and of its waited-for children), so peaks never mix.
All subprocesses get the same thread settings (OMP/MKL threads and torch.set_num_threads = --threads).
Writes bench/results/latest.json and regenerates the section of BENCHMARKS.md between the markers.
Nothing here asserts on time: it measures and reports.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MARK_BEGIN = "<!-- bench/run.py:begin (generated; edit outside the markers) -->"
MARK_END = "<!-- bench/run.py:end -->"
BATCH = 16
SEED = 42


# ============================================================================ helpers (both sides)


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


# ============================================================================ children


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


def best_gemm(runs: list[dict]) -> dict:
    """The matrix-multiply peak from several measurements of the same run: the best rate per size,
    then the best size. Interference only slows a GEMM down, so the highest rate is the closest to
    what the machine can do, and the highest peak gives the lowest (most conservative) MFU."""
    g = dict(runs[0])
    for key in ("gemm_gflops_fp32", "gemm_gflops_bf16"):
        g[key] = {n: max(r[key][n] for r in runs) for n in runs[0][key]}
    g["peak_fp32_gflops"] = max(g["gemm_gflops_fp32"].values())
    g["peak_bf16_gflops"] = max(g["gemm_gflops_bf16"].values())
    g["peak_measurements"] = [{"fp32": r["peak_fp32_gflops"], "bf16": r["peak_bf16_gflops"]} for r in runs]
    return g


def child_prep_notebook(cfg: dict) -> dict:
    t0 = time.perf_counter()
    from transformers import AutoTokenizer

    sys.path.insert(0, str(ROOT / "bench"))
    from notebook_recipe import read_conll_lines, tokenize_notebook

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

    sys.path.insert(0, str(ROOT))
    from conll2003_loader import load_conll
    from nerforge.features import build_features

    t1 = time.perf_counter()
    raw = load_conll(data_dir=cfg["data_dir"], cache_dir=str(Path(cfg["cache_dir"]) / "builder"))
    t2 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(cfg["model"], use_fast=True)
    names = raw["train"].features["ner_tags"].feature.names
    # our loop's defaults (nerforge/config.py): max_length 512, stride 32, no document context
    feats = build_features(
        raw["train"], tok, max_length=512, stride=32, label_all_tokens=False, context_size=0, label_names=names
    )
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

    sys.path.insert(0, str(ROOT / "bench"))
    import notebook_recipe as nb

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
    sys.path.insert(0, str(ROOT / "bench"))
    sys.path.insert(0, str(ROOT))
    import notebook_recipe as nb

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
    # The startup summary says how many training windows hold how many sentences: with packed document
    # context a window holds several, so sentences/s = windows/s x sentences per window, and the time of
    # one epoch = windows / (windows/s).
    summary = re.search(r"sentences train/validation/test: (\d+) .*?training windows: (\d+)", p.stdout, re.S)
    if summary:
        sentences, windows = int(summary.group(1)), int(summary.group(2))
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
    sys.path.insert(0, str(ROOT))
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

    sys.path.insert(0, str(ROOT / "bench"))
    import notebook_recipe as nb
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    nb.load_model(cfg["model"]).save_pretrained(cfg["out"])
    AutoTokenizer.from_pretrained(cfg["model"]).save_pretrained(cfg["out"])
    return {"saved": cfg["out"]}


def child_infer_pipeline(cfg: dict) -> dict:
    set_threads(cfg["threads"])
    sys.path.insert(0, str(ROOT / "bench"))
    import notebook_recipe as nb
    from transformers import pipeline

    sents, _, _ = nb.read_conll_lines(split_file(Path(cfg["data_dir"]), "test"))
    if cfg.get("every"):  # a systematic sample: the test set's mix of lengths, not its first documents'
        sents = sents[:: cfg["every"]]
    ner = pipeline("ner", model=cfg["model_dir"], device=-1)
    ner("warm up")
    covered = 0
    t0 = time.perf_counter()
    for words in sents:  # the notebook's way: one call per sentence
        text = " ".join(words)
        out = ner(text, ignore_labels=[])  # every token, so that covered words can be counted
        starts, pos = set(), 0
        for w in words:
            starts.add(pos)
            pos += len(w) + 1
        covered += len({o["start"] for o in out if o["start"] in starts})
    dt = time.perf_counter() - t0
    return {
        "sentences": len(sents),
        "time_s": round(dt, 3),
        "sentences_per_s": round(len(sents) / dt, 2),
        "words_per_s": round(sum(map(len, sents)) / dt, 1),
        "words_gold": sum(map(len, sents)),
        "words_predicted": covered,
        "sample": f"every {cfg['every']}th sentence" if cfg.get("every") else "all",
    }


def child_infer_ours(cfg: dict) -> dict:
    set_threads(cfg["threads"])
    sys.path.insert(0, str(ROOT / "bench"))
    sys.path.insert(0, str(ROOT))
    import notebook_recipe as nb

    from nerforge.metric import score
    from nerforge.predict import Predictor

    sents, tags, docs = nb.read_conll_lines(split_file(Path(cfg["data_dir"]), "test"))
    if cfg.get("limit"):
        sents, tags, docs = sents[: cfg["limit"]], tags[: cfg["limit"]], docs[: cfg["limit"]]
    pred = Predictor.from_pretrained(cfg["model_dir"], bf16=cfg.get("bf16", False))
    pred.predict_words([["warm", "up"]])
    t0 = time.perf_counter()
    out = pred.predict_words(sents, docs)
    dt = time.perf_counter() - t0
    res = {
        "sentences": len(sents),
        "time_s": round(dt, 3),
        "sentences_per_s": round(len(sents) / dt, 2),
        "words_per_s": round(sum(map(len, sents)) / dt, 1),
        "words_gold": sum(map(len, sents)),
        "words_predicted": sum(map(len, out)),
        "bf16": cfg.get("bf16", False),
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
}


# ============================================================================ parent


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
        [sys.executable, str(Path(__file__).resolve()), "--_child", name, "--_cfg", json.dumps(cfg)],
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


def scaled_data_dir(src: Path, k: int, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    text = split_file(src, "train").read_text(encoding="utf-8")
    if not text.endswith("\n\n"):
        text = text.rstrip("\n") + "\n\n"
    (dst / "train.txt").write_text(text * k, encoding="utf-8")
    for split, name in (("validation", "valid.txt"), ("test", "test.txt")):
        shutil.copyfile(split_file(src, split), dst / name)
    return dst


def ratio(a, b):
    try:
        return round(a / b, 3) if a is not None and b else None
    except TypeError:
        return None


def linfit(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys) or 1e-12
    return {"slope_s_per_1x": round(slope, 3), "intercept_s": round(intercept, 3), "r2": round(1 - ss_res / ss_tot, 4)}


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
    sys.path.insert(0, str(ROOT))
    from nerforge.config import load_saved

    cfg = load_saved(path)
    return {
        "learning_rate": cfg.training.learning_rate,
        "warmup_ratio": cfg.training.warmup_ratio,
        "lr_scheduler_type": cfg.training.lr_scheduler_type,
        "tagging_scheme": cfg.data.tagging_scheme,
        "label_all_tokens": cfg.data.label_all_tokens,
        "sparse_embedding_updates": cfg.training.sparse_embedding_updates,
    }


def recipe_args(settings: dict | None = None) -> list[str]:
    """Those settings as the loop's command-line flags."""
    return [a for k, v in (settings or recipe_settings()).items() for a in (f"--{k}", str(v))]


def model_flops(pieces: float, sum_len_sq_per_piece: float, g: dict) -> float:
    """6 * N_non_embedding * real tokens + attention 12 * layers * d * sum(L^2) (L real length; the
    sum estimated as pieces * E[L^2]/E[L] over the training windows)."""
    return 6 * g["params_non_embedding"] * pieces + 12 * g["num_layers"] * g["hidden"] * pieces * sum_len_sq_per_piece


def main_parent(args) -> int:
    quick = args.quick
    if args.epoch_scaling is None:
        args.epoch_scaling = "estimate" if quick else "measure"
    data_dir = Path(args.data_dir).resolve()
    model = str(Path(args.model).resolve())
    steps = args.steps or (20 if quick else 100)
    steps_nb = args.steps or (8 if quick else 60)
    info = machine()
    native_bf16 = info["avx512_bf16"] or info["amx"]
    # Where bf16 is emulated a step takes ~10x fp32's: a couple of steps say enough.
    steps_bf16 = args.bf16_steps or (steps if native_bf16 else 2 if quick else 6)
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_lines: list[str] = []

    def log(msg):
        print(msg, flush=True)
        log_lines.append(msg)

    cmd = "python bench/run.py " + " ".join(sys.argv[1:])
    log(f"bench: {cmd}\n  {info}")
    R: dict = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": cmd,
        "mode": "quick" if quick else "full",
        "machine": info,
        "threads": args.threads,
        "batch_size": BATCH,
        "seed": SEED,
        "model": args.model,
        "data_dir": args.data_dir,
    }
    only = set(args.only.split(",")) if args.only else None

    def want(k):
        return only is None or k in only

    th = args.threads
    with tempfile.TemporaryDirectory(prefix="nerforge-bench-") as tmp_s:
        tmp = Path(tmp_s)
        base = {"model": model, "data_dir": str(data_dir), "tmp": str(tmp)}
        g = {}
        if want("gemm") or want("train"):
            log("== matrix-multiply peak and FLOP count check")
            gemm_cfg = dict(base, gemm_seconds=1.0 if quick else 2.0, native_bf16=native_bf16)
            g = run_child("gemm", gemm_cfg, th, log)
            R["gemm"] = g
        if want("prep"):
            log("== 1. data preparation (train split, raw files -> tokenized, aligned)")
            nbp = run_child("prep_notebook", base, th, log)
            cache = tmp / "prep_cache_1x"
            cold = run_child("prep_ours", dict(base, cache_dir=str(cache)), th, log)
            warm = run_child("prep_ours", dict(base, cache_dir=str(cache), tag="warm"), th, log)
            R["prep"] = {"notebook": nbp, "ours_cold": cold, "ours_warm": warm}
        if want("train"):
            log("== 2. training throughput (batch 16)")
            ds_dir = tmp / "ds_small_eval"
            run_child("make_dataset", dict(base, out=str(ds_dir), n_eval=32), th, log)
            tr = {
                "notebook": run_child("train_trainer", dict(base, variant="notebook", steps=steps_nb), th, log),
                "dynamic_padding": run_child("train_trainer", dict(base, variant="dynamic", steps=steps), th, log),
            }
            # ours in fp32 and bf16 with its defaults, then the same two with the word embeddings
            # updated sparsely (a config option, off by default)
            sparse = ["--sparse_embedding_updates", "true"]
            for key, precision, n, extra in (
                ("ours_fp32", "no", steps, []),
                ("ours_bf16", "bf16", steps_bf16, []),
                ("ours_fp32_sparse", "no", steps, sparse),
                ("ours_bf16_sparse", "bf16", steps_bf16, sparse),
            ):
                tr[key] = run_child(
                    "train_ours",
                    dict(
                        base,
                        precision=precision,
                        steps=n,
                        dataset_path=str(ds_dir),
                        tag="tp_sparse" if extra else "tp",
                        extra_args=extra,
                    ),
                    th,
                    log,
                )
            R["train"] = tr
            if "error" not in g:  # the peak once more, right after the timed steps (best of both is kept)
                again = run_child("gemm", gemm_cfg, th, log)
                if "error" not in again:
                    g = R["gemm"] = best_gemm([g, again])
            log("== cost of document context (64 pieces each side): per sentence vs packed into windows")
            R["context"] = {
                "per_sentence": run_child(
                    "train_ours",
                    dict(base, precision="no", steps=steps, tag="ctx", dataset_path=str(ds_dir), context_size=64),
                    th,
                    log,
                ),
                # batch 4 packed windows: about the labelled pieces per step of 16 single sentences
                "packed": run_child(
                    "train_ours",
                    dict(
                        base,
                        precision="no",
                        steps=steps,
                        tag="pack",
                        dataset_path=str(ds_dir),
                        context_size=64,
                        extra_args=["--pack_length", 128, "--per_device_train_batch_size", 4],
                    ),
                    th,
                    log,
                ),
            }
        if want("infer"):
            log("== 3. inference on the test set")
            trained = bool(args.trained_model)
            mdir = Path(args.trained_model).resolve() if trained else tmp / "model_with_head"
            if not trained:
                run_child("make_model", dict(base, out=str(mdir)), th, log)
            every = 7 if quick else None  # --quick: the pipeline on 1 sentence in 7 (~490)
            tags_file = tmp / "tags_fp32.json"
            R["infer"] = {
                "pipeline": run_child("infer_pipeline", dict(base, model_dir=str(mdir), every=every), th, log),
                "ours_fp32": run_child(
                    "infer_ours", dict(base, model_dir=str(mdir), save_tags=str(tags_file), trained=trained), th, log
                ),
                "ours_bf16": run_child(
                    "infer_ours",
                    dict(
                        base,
                        model_dir=str(mdir),
                        bf16=True,
                        trained=trained,
                        limit=None if native_bf16 or trained else 64 if quick else 500,
                        compare_tags=str(tags_file),
                    ),
                    th,
                    log,
                ),
                "note": (
                    f"model = {args.trained_model}, trained: test F1 of both precisions on the whole test set"
                    if trained
                    else "model = the encoder with an untrained (seeded) classification head: speed "
                    "and word coverage only (pass --trained-model for F1)"
                )
                + "; bf16 tag agreement is vs our fp32 output on the same sentences",
            }
        if want("scale"):
            log("== 5. scaling with corpus size (train split concatenated k times)")
            sc = {}
            for k in (1, 2, 4):
                d = scaled_data_dir(data_dir, k, tmp / f"data_{k}x")
                r = {
                    "ours_cold": run_child(
                        "prep_ours", dict(base, data_dir=str(d), cache_dir=str(tmp / f"sc_{k}")), th, log
                    )
                }
                if not quick:
                    r["notebook"] = run_child("prep_notebook", dict(base, data_dir=str(d)), th, log)
                if args.epoch_scaling == "measure":
                    # one real epoch of ours fp32 over the k-times corpus; validation/test cut to 32 sentences
                    ds_k = tmp / f"ds_{k}x"
                    run_child("make_dataset", dict(base, data_dir=str(d), out=str(ds_k), n_eval=32), th, log)
                    r["epoch_ours_fp32"] = run_child(
                        "train_ours",
                        dict(
                            base,
                            precision="no",
                            steps=None,
                            epochs=1,
                            tag=f"epoch{k}x",
                            dataset_path=str(ds_k),
                            time_only=True,
                        ),
                        th,
                        log,
                    )
                sc[f"{k}x"] = r
            R["scale"] = sc
        if want("f1") and not quick:
            log("== 6. quality at equal budget: one epoch each, test micro F1")
            f1s = args.f1_steps
            R["quality"] = {
                "notebook": run_child("f1_notebook", dict(base, steps=f1s if f1s else -1), th, log),
                "ours": run_child(
                    "train_ours", dict(base, precision="no", steps=f1s, tag="f1", extra_args=recipe_args()), th, log
                ),
            }
        shutil.rmtree(tmp, ignore_errors=True)

    summarize(R, g, quick)
    R["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    R["bench_wall_s"] = round(time.perf_counter() - T_START, 1)
    out = RESULTS / "latest.json"
    out.write_text(json.dumps(R, indent=2) + "\n")
    write_markdown(R)
    log(f"wrote {out} and BENCHMARKS.md ({R['bench_wall_s']} s)")
    print(json.dumps(R["summary"], indent=2))
    return 0


def summarize(R: dict, g: dict, quick: bool) -> None:
    S: dict = {}
    tr, pr, inf, sc, q = (R.get(k, {}) for k in ("train", "prep", "infer", "scale", "quality"))
    sps = lambda d: (d or {}).get("sentences_per_s")  # noqa: E731
    if tr:
        S["train_speedup_vs_notebook"] = ratio(sps(tr["ours_fp32"]), sps(tr["notebook"]))
        S["train_speedup_vs_dynamic_padding"] = ratio(sps(tr["ours_fp32"]), sps(tr["dynamic_padding"]))
        S["train_speedup_bf16_vs_notebook"] = ratio(sps(tr["ours_bf16"]), sps(tr["notebook"]))
        S["train_speedup_bf16_vs_ours_fp32"] = ratio(sps(tr["ours_bf16"]), sps(tr["ours_fp32"]))
        if "ours_fp32_sparse" in tr:  # sparse word-embedding updates, against our dense fp32 default
            S["train_speedup_sparse_embeddings_fp32"] = ratio(sps(tr["ours_fp32_sparse"]), sps(tr["ours_fp32"]))
            S["train_speedup_sparse_embeddings_bf16_vs_ours_fp32"] = ratio(
                sps(tr.get("ours_bf16_sparse")), sps(tr["ours_fp32"])
            )
    ctx = R.get("context")
    if ctx and tr:
        base_epoch = tr["ours_fp32"].get("epoch_time_s_estimated")
        for k in ("per_sentence", "packed"):
            S[f"context_{k}_epoch_time_ratio"] = ratio(ctx[k].get("epoch_time_s_estimated"), base_epoch)
    if pr:
        S["prep_speedup_vs_notebook"] = ratio(pr["notebook"].get("work_s"), pr["ours_cold"].get("work_s"))
        S["prep_warm_speedup_vs_notebook"] = ratio(pr["notebook"].get("work_s"), pr["ours_warm"].get("work_s"))
        S["prep_speedup_vs_notebook_incl_imports"] = ratio(
            pr["notebook"].get("total_s"), pr["ours_cold"].get("total_s")
        )
        S["prep_warm_speedup_vs_notebook_incl_imports"] = ratio(
            pr["notebook"].get("total_s"), pr["ours_warm"].get("total_s")
        )
    if inf:
        # Words per second: in --quick the pipeline sees a sample, ours the whole set; the rate per word
        # does not depend on which sentences were drawn (on the same sentences it equals the ratio of
        # sentences/s).
        wps = lambda d: (d or {}).get("words_per_s") or sps(d)  # noqa: E731
        S["inference_speedup_vs_pipeline"] = ratio(wps(inf["ours_fp32"]), wps(inf["pipeline"]))
        S["inference_bf16_speedup_vs_pipeline"] = ratio(wps(inf["ours_bf16"]), wps(inf["pipeline"]))
        f32, f16 = inf["ours_fp32"].get("f1"), inf["ours_bf16"].get("f1")
        if f32 is not None and f16 is not None:  # a trained model: bf16 counts only where F1 holds
            S["inference_f1_fp32"], S["inference_f1_bf16"] = f32, f16
            S["inference_bf16_f1_delta"] = round(f16 - f32, 5)
    # model FLOP/s and MFU
    S["mfu_fp32"] = S["mfu_bf16"] = None
    feats = (sc.get("1x", {}).get("ours_cold") if sc else None) or (pr.get("ours_cold") if pr else None)
    if tr and g and "params_non_embedding" in g and feats and "pieces" in feats:
        per_piece = feats["sum_len_sq"] / feats["pieces"]
        for key, prec, peak in (
            ("ours_fp32", "fp32", g["peak_fp32_gflops"]),
            ("ours_bf16", "bf16", g["peak_bf16_gflops"]),
            ("ours_fp32_sparse", "fp32_sparse_embeddings", g["peak_fp32_gflops"]),
            ("ours_bf16_sparse", "bf16_sparse_embeddings", g["peak_bf16_gflops"]),
        ):
            pps = tr.get(key, {}).get("pieces_per_s")
            if pps:
                gf = model_flops(pps, per_piece, g) / 1e9
                tr[key]["model_gflops_per_s"] = round(gf, 2)
                S[f"model_gflops_per_s_{prec}"] = round(gf, 2)
                S[f"mfu_{prec}"] = round(gf / peak, 4)
        for key in ("notebook", "dynamic_padding"):
            pps = tr[key].get("pieces_per_s")
            if pps:
                tr[key]["model_gflops_per_s"] = round(model_flops(pps, per_piece, g) / 1e9, 2)
        S["model_flops_method"] = (
            "analytic: 6 x non-embedding params x real word pieces + 12 x layers x hidden x "
            "sum(L^2) (L: real window length; E[L^2]/E[L] from the training windows); checked "
            "against FlopCounterMode forward x3 on one 16x32 batch (gemm.flop_check.ratio)"
        )
    # scaling
    if sc:
        ks = [1, 2, 4]
        prep_t = [sc[f"{k}x"]["ours_cold"].get("work_s") for k in ks]
        if all(prep_t):
            S["scale_prep_ours_s"] = dict(zip([f"{k}x" for k in ks], prep_t))
            S["scale_prep_ours_fit"] = linfit(ks, prep_t)
            S["scale_prep_ours_ratio_4x_over_1x"] = ratio(prep_t[2], prep_t[0])
        if not quick and all("notebook" in sc[f"{k}x"] for k in ks):
            nt = [sc[f"{k}x"]["notebook"].get("work_s") for k in ks]
            if all(nt):
                S["scale_prep_notebook_s"] = dict(zip([f"{k}x" for k in ks], nt))
                S["scale_prep_notebook_fit"] = linfit(ks, nt)
        w1 = sc["1x"]["ours_cold"].get("rows")
        ep = [(sc[f"{k}x"].get("epoch_ours_fp32") or {}).get("train_time_s") for k in ks]
        if all(ep):
            S["scale_epoch_ours_fp32_s"] = dict(zip([f"{k}x" for k in ks], ep))
            S["scale_epoch_ours_fp32_fit"] = linfit(ks, ep)
            S["scale_epoch_ours_fp32_ratio_4x_over_1x"] = ratio(ep[2], ep[0])
            S["scale_epoch_method"] = (
                "measured: one full epoch of train_accelerate.py (fp32, batch 16) over the train "
                "split concatenated k times; training steps only (metrics.json)"
            )
        elif tr and w1 and sps(tr.get("ours_fp32")):
            est = {f"{k}x": round(math.ceil(k * w1 / BATCH) * BATCH / sps(tr["ours_fp32"]), 1) for k in ks}
            S["scale_epoch_ours_fp32_estimated_s"] = est
            S["scale_epoch_method"] = (
                "ESTIMATE, not measured: steps per epoch (ceil(windows x k / 16)) x measured "
                "step time of ours fp32; linear by construction"
            )
    S["f1_ours"] = (q.get("ours") or {}).get("f1") if q else None
    S["f1_notebook"] = (q.get("notebook") or {}).get("f1") if q else None
    if quick:
        S["f1_note"] = "null in --quick: the equal-budget epochs run in full mode only"
    # The same equal-budget epochs, several seeds, run separately by bench/quality.py (same children):
    # quoted with their source, never as this run's own measurement.
    qpath = RESULTS / "quality.json"
    if qpath.exists():
        qj = json.loads(qpath.read_text())
        if "notebook" in qj and "ours_no_context" in qj:
            S["f1_quality_json_1_epoch"] = {
                "source": "bench/results/quality.json (bench/quality.py), updated " + qj.get("updated", "?"),
                "ours_mean": qj["ours_no_context"]["f1_mean"],
                "ours_seeds": qj["ours_no_context"]["n_seeds"],
                "notebook_mean": qj["notebook"]["f1_mean"],
                "notebook_seeds": qj["notebook"]["n_seeds"],
            }
    R["summary"] = S
    # targets (ratios within this run)
    T = {}

    def tgt(name, value, op, bound):
        if value is None:
            T[name] = {"value": None, "target": f"{op} {bound}", "met": None}
        else:
            T[name] = {
                "value": value,
                "target": f"{op} {bound}",
                "met": value >= bound if op == ">=" else value <= bound,
            }

    tgt("train fp32 vs notebook", S.get("train_speedup_vs_notebook"), ">=", 5)
    tgt("train fp32 vs dynamic padding", S.get("train_speedup_vs_dynamic_padding"), ">=", 1.5)
    tgt("mfu fp32", S.get("mfu_fp32"), ">=", 0.5)
    tgt("train bf16 vs ours fp32", S.get("train_speedup_bf16_vs_ours_fp32"), ">=", 2)
    if S.get("mfu_fp32_sparse_embeddings") is not None:  # with the option on (not the default)
        tgt("mfu fp32, sparse embedding updates", S["mfu_fp32_sparse_embeddings"], ">=", 0.5)
        tgt(
            "train bf16 + sparse embedding updates vs ours fp32",
            S.get("train_speedup_sparse_embeddings_bf16_vs_ours_fp32"),
            ">=",
            2,
        )
    tgt("prep cold vs notebook", S.get("prep_speedup_vs_notebook"), ">=", 1)
    tgt("prep warm vs notebook", S.get("prep_warm_speedup_vs_notebook"), ">=", 10)
    tgt("inference vs pipeline", S.get("inference_speedup_vs_pipeline"), ">=", 5)
    delta = S.get("inference_bf16_f1_delta")
    tgt(
        "inference bf16 vs pipeline"
        + (f" (test F1 {100 * delta:+.2f} vs fp32)" if delta is not None else " (no F1: untrained head)"),
        S.get("inference_bf16_speedup_vs_pipeline") if delta is not None and abs(delta) <= 0.001 else None,
        ">=",
        5,
    )
    f1o, f1n = S.get("f1_ours"), S.get("f1_notebook")
    tgt("f1 ours - f1 notebook", round(f1o - f1n, 4) if f1o is not None and f1n is not None else None, ">=", 0)
    qf = S.get("f1_quality_json_1_epoch")
    if qf:
        tgt(
            f"f1 ours - f1 notebook, 1 epoch, mean of {qf['ours_seeds']}/{qf['notebook_seeds']} seeds (quality.json)",
            round(qf["ours_mean"] - qf["notebook_mean"], 4),
            ">=",
            0,
        )
    R["targets"] = T


def fmt(v, nd=2):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def write_markdown(R: dict) -> None:
    S, m = R["summary"], R["machine"]
    tr, pr, inf, g = R.get("train", {}), R.get("prep", {}), R.get("infer", {}), R.get("gemm", {})
    L = [
        MARK_BEGIN,
        "",
        f"### Latest run: {R['date']} ({R['mode']} mode)",
        "",
        f"- command: `{R['command']}`",
        f"- machine: {m['cpu']}, {m['cores']} cores (AVX-512: {m['avx512']}, AVX512-BF16: {m['avx512_bf16']}, "
        f"AMX: {m['amx']}); threads per measurement: {R['threads']}; load average at start "
        f"{m['loadavg_at_start']}, at end {R.get('loadavg_at_end')}",
        f"- versions: python {m['python']}, " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- model `{R['model']}`, data `{R['data_dir']}`, batch {R['batch_size']}, seed {R['seed']}; each "
        "measurement in its own subprocess (peak RSS = ru_maxrss of that subprocess tree)",
        "",
    ]
    if g and "peak_fp32_gflops" in g:
        twice = (
            (
                " (best of the measurements before and after the training runs: fp32 "
                + " / ".join(str(m["fp32"]) for m in g["peak_measurements"])
                + ")"
            )
            if "peak_measurements" in g
            else ""
        )
        L += [
            f"Matrix-multiply peak measured in this run{twice}: fp32 {g['peak_fp32_gflops']} GFLOP/s "
            f"(sizes {g['gemm_gflops_fp32']}), bf16 {g['peak_bf16_gflops']} GFLOP/s (sizes {g['gemm_gflops_bf16']}). "
            f"FLOP-count check: FlopCounterMode fwd x3 / analytic = {g['flop_check']['ratio']}.",
            "",
        ]
    if pr:
        L += [
            "| 1. data preparation (train) | work s | incl. imports s | rows | peak RSS MB |",
            "|---|---|---|---|---|",
        ]
        for k, lab in (
            ("notebook", "notebook: line loop + 1 tokenizer call/sentence, pad 120"),
            ("ours_cold", "ours cold: builder + batched map (empty cache)"),
            ("ours_warm", "ours warm: datasets cache populated"),
        ):
            r = pr[k]
            L.append(
                f"| {lab} | {fmt(r.get('work_s'))} | {fmt(r.get('total_s'))} | {fmt(r.get('rows'))} | "
                f"{fmt(r.get('peak_rss_mb'), 0)} |"
            )
        L.append("")
    if tr:
        L += [
            "| 2. training, batch 16 | steps | sentences/s | real pieces/s | model GFLOP/s | peak RSS MB |",
            "|---|---|---|---|---|---|",
        ]
        for k, lab in (
            ("notebook", "(a) notebook: Trainer, pad to 120"),
            ("dynamic_padding", "(b) Trainer + DataCollatorForTokenClassification, random batches"),
            ("ours_fp32", "(c) ours fp32 (length-grouped, fused AdamW)"),
            ("ours_bf16", "(d) ours bf16 autocast"),
            ("ours_fp32_sparse", "(c') ours fp32, sparse_embedding_updates"),
            ("ours_bf16_sparse", "(d') ours bf16, sparse_embedding_updates"),
        ):
            if k not in tr:
                continue
            r = tr[k]
            L.append(
                f"| {lab} | {fmt(r.get('steps'))} | {fmt(r.get('sentences_per_s'))} | {fmt(r.get('pieces_per_s'), 0)} | "
                f"{fmt(r.get('model_gflops_per_s'))} | {fmt(r.get('peak_rss_mb'), 0)} |"
            )
        L.append("")
    ctx = R.get("context")
    if ctx and tr:
        L += [
            "| document context, 64 pieces each side | steps | batch | sentences/s | real pieces/s | epoch s (est.) | x no context |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, lab, batch, ratio_key in (
            ("ours_fp32", "none (ours fp32 above)", 16, None),
            ("per_sentence", "per sentence (FLERT layout)", 16, "context_per_sentence_epoch_time_ratio"),
            ("packed", "packed, pack_length 128", 4, "context_packed_epoch_time_ratio"),
        ):
            r = tr[k] if k == "ours_fp32" else ctx[k]
            L.append(
                f"| {lab} | {fmt(r.get('steps'))} | {batch} | {fmt(r.get('sentences_per_s'))} | {fmt(r.get('pieces_per_s'), 0)} | "
                f"{fmt(r.get('epoch_time_s_estimated'), 0)} | {fmt(S.get(ratio_key), 2) if ratio_key else '1'} |"
            )
        L += ["", "(epoch time = training windows / windows per second over the measured steps: an estimate)", ""]
    if inf:
        L += [
            "| 3. inference, CoNLL-2003 test | sentences | sentences/s | words/s | words predicted / gold | test F1 | peak RSS MB |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, lab in (
            ("pipeline", "pipeline('ner'), one sentence per call"),
            ("ours_fp32", "ours: Predictor fp32"),
            ("ours_bf16", "ours: Predictor bf16"),
        ):
            r = inf[k]
            L.append(
                f"| {lab} | {fmt(r.get('sentences'))} | {fmt(r.get('sentences_per_s'))} | {fmt(r.get('words_per_s'), 0)} | "
                f"{fmt(r.get('words_predicted'))} / {fmt(r.get('words_gold'))} | "
                f"{fmt(100 * r['f1']) if r.get('f1') is not None else '–'} | {fmt(r.get('peak_rss_mb'), 0)} |"
            )
        L += ["", f"({inf.get('note')})", ""]
    if "scale_prep_ours_s" in S:
        L += [
            f"5. Scaling (ours, cold prep of the train split concatenated k times): {S['scale_prep_ours_s']} s; "
            f"fit {S['scale_prep_ours_fit']}; 4x/1x = {S['scale_prep_ours_ratio_4x_over_1x']}. "
            + (
                f"Epoch time (ours fp32) {S['scale_epoch_ours_fp32_s']} s, fit {S['scale_epoch_ours_fp32_fit']}, 4x/1x = "
                f"{S['scale_epoch_ours_fp32_ratio_4x_over_1x']} — {S['scale_epoch_method']}."
                if "scale_epoch_ours_fp32_s" in S
                else f"Epoch time (ours fp32) {S.get('scale_epoch_ours_fp32_estimated_s')} s — {S.get('scale_epoch_method')}."
            ),
            "",
        ]
        if "scale_prep_notebook_s" in S:
            L += [f"Notebook prep at 1x/2x/4x: {S['scale_prep_notebook_s']} s; fit {S['scale_prep_notebook_fit']}.", ""]
    L += ["| ratio (ours ÷ theirs) | value |", "|---|---|"]
    for k in (
        "train_speedup_vs_notebook",
        "train_speedup_vs_dynamic_padding",
        "train_speedup_bf16_vs_notebook",
        "train_speedup_bf16_vs_ours_fp32",
        "prep_speedup_vs_notebook",
        "prep_warm_speedup_vs_notebook",
        "inference_speedup_vs_pipeline",
        "mfu_fp32",
        "mfu_bf16",
        "f1_ours",
        "f1_notebook",
    ):
        L.append(f"| `{k}` | {fmt(S.get(k), 3)} |")
    L += ["", "| target (issue 5) | value | target | met |", "|---|---|---|---|"]
    for k, t in R.get("targets", {}).items():
        L.append(
            f"| {k} | {fmt(t['value'], 3)} | {t['target']} | {'–' if t['met'] is None else ('yes' if t['met'] else 'NO')} |"
        )
    L += ["", MARK_END]
    write_section(
        MARK_BEGIN, MARK_END, "\n".join(L), heading="## End-to-end: notebook recipe vs nerforge (`bench/run.py`)"
    )


def write_section(begin: str, end: str, section: str, heading: str = "") -> None:
    """Replace what lies between the `begin`/`end` markers of BENCHMARKS.md (markers included in
    `section` or not: they are kept), or append it under `heading` when the markers are missing."""
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if not section.startswith(begin):
        section = f"{begin}\n{section}\n{end}"
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        text = pre + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + (heading + "\n\n" if heading else "") + section + "\n"
    path.write_text(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "conll2003"))
    p.add_argument("--model", default=str(ROOT.parent / "shared" / "models" / "all-minilm-l6-v2"))
    p.add_argument("--quick", action="store_true", help="a run under ~10 minutes; no equal-budget F1")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per fp32 training variant")
    p.add_argument("--bf16-steps", type=int, default=None)
    p.add_argument("--f1-steps", type=int, default=None, help="(testing) cut the equal-budget runs to N steps")
    p.add_argument(
        "--trained-model",
        default=None,
        help="inference on this trained export (e.g. a quality run's model/): adds fp32 and bf16 test F1",
    )
    p.add_argument(
        "--epoch-scaling",
        choices=["measure", "estimate"],
        default=None,
        help="item 5's epoch time at 1x/2x/4x: measured (one real epoch each, ~7x one epoch's time; the "
        "default in full mode) or estimated from the step time (the default in --quick)",
    )
    p.add_argument("--only", default=None, help="comma-separated subset: gemm,prep,train,infer,scale,f1")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_cfg", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        emit(CHILDREN[args._child](json.loads(args._cfg)))
        return 0
    return main_parent(args)


if __name__ == "__main__":
    sys.exit(main())
