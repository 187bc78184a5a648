"""Where a CPU training step goes, and what bf16 buys on the recipe (issue 29).

    python -m bench.train_levers [--steps 40] [--rounds 2] [--skip-loop] [--skip-model] [--skip-shapes]

(A part skipped keeps its last figures in the results file, with the date and command that made them.)

Three parts, all on configs/minilm-cpu.yaml's shape (packed windows of 128 pieces + 64 of document context
on each side, batch 4), side by side in one run:

1. **loop**: train_accelerate.py itself (bench/measure.py's train_ours child, full training split,
   `--steps` optimizer steps each) in fp32 and bf16 with `--dropout_masks auto` (nerforge.dropout's masks
   on a CPU) and `attention_precision` auto, with `--attention_dropout 0`, and with torch's dropout masks
   (`--dropout_masks torch`, the default); the variants run in turns, `--rounds` times,
   the order rotated each round, so drift on a shared machine hits them alike. Figure: pieces per second,
   each variant's median, paired ratios. `--loop-shape bert-base-cased|bert-large-cased`: the same on a
   random-weight BERT of that size (speed only), stored under its own key.
2. **model**: one training step (forward with labels, backward, clipping, fused AdamW) of the bare
   model on fixed random batches of the same shape, eager and under torch.compile, fp32 and bf16
   autocast, attention in bf16 or fp32 (the compile's warm-up reported apart), plus torch.profiler's top
   operators of an eager bf16 step with the recipe's dropout and of the fastest eager variant: where the
   time goes. Each variant's model GFLOP/s and MFU (bench/render.py's analytic FLOPs, against
   latest.json's GEMM peak of its precision).
3. **shapes**: the same bare step on encoders of configs/bert-base-cased.yaml's and
   configs/bert-large-cased.yaml's size (BERT's published dimensions, cased vocabulary, random weights:
   the weights are not offline and a step's time does not depend on them, so speed only, no F1), fp32
   against bf16 with the attention as `attention_precision: auto` sets it and `dropout_masks: auto`'s
   masks, at the encoder's attention dropout and at 0, and with torch's dropout masks; the variants in turns, `--rounds` times, order rotated. What bf16 buys on the
   flagship model, where the matrix products are 2.7x (base) and 4.8x (large) MiniLM's width.

Writes bench/results/train_levers.json. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import measure
from bench.render import RESULTS, model_flops

RECIPE_SHAPE = ["--context_size", "64", "--pack_length", "128", "--per_device_train_batch_size", "4"]
LOOP_VARIANTS = {  # name -> (accelerate mixed precision, extra flags); attention_precision auto throughout
    "fp32": ("no", ["--dropout_masks", "auto"]),  # auto: nerforge.dropout's masks on a CPU
    "bf16": ("bf16", ["--dropout_masks", "auto"]),  # attention_precision auto at the encoder's dropout: bf16
    "fp32_attention_dropout_0": ("no", ["--attention_dropout", "0", "--dropout_masks", "auto"]),
    "bf16_attention_dropout_0": ("bf16", ["--attention_dropout", "0", "--dropout_masks", "auto"]),  # fp32 attention
    "fp32_torch_masks": ("no", ["--dropout_masks", "torch"]),  # torch's dropout: training.dropout_masks' default
    "bf16_torch_masks": ("bf16", ["--dropout_masks", "torch"]),
}
BF16_PAIRS = {  # the loop's bf16-against-fp32 pairs at the same dropout and masks
    "recipe_dropout": ("bf16", "fp32"),
    "attention_dropout_0": ("bf16_attention_dropout_0", "fp32_attention_dropout_0"),
    "torch_masks": ("bf16_torch_masks", "fp32_torch_masks"),
}
MASK_PAIRS = {"fp32": ("fp32", "fp32_torch_masks"), "bf16": ("bf16", "bf16_torch_masks")}  # fast masks against torch's
MODEL_VARIANTS = (
    "fp32",
    "bf16",
    "bf16_fp32_attention",
    "fp32_attention_dropout_0",
    "bf16_attention_dropout_0",
    "bf16_attention_dropout_0_fp32_attention",
    "bf16_attention_dropout_0_fp32_attention_compile",
)


# BERT's published dimensions (Devlin et al., 2019) with the cased vocabulary: what configs/bert-base-cased.yaml
# and configs/bert-large-cased.yaml train, built from their config alone (random weights; speed only).
BERT_SHAPES = {
    "bert-base-cased": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
    "bert-large-cased": {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
    },
}
SHAPE_VARIANTS = (
    "fp32",
    "bf16",
    "fp32_attention_dropout_0",
    "bf16_attention_dropout_0",
    "fp32_torch_masks",
    "bf16_torch_masks",
)


def paired(rounds: list, a: str, b: str, metric: str) -> list:
    """Per round, ``a``'s ``metric`` over ``b``'s: ratios within one round, where drift hits both alike."""
    return [round(r[a][metric] / r[b][metric], 3) for r in rounds]


def save_random_shape(shape: str, tokenizer_from: str, out: Path) -> str:
    """A token-classification BERT of ``shape``'s dimensions with random weights and ``tokenizer_from``'s
    tokenizer (its vocabulary size), saved to ``out``: the loop's input at the flagship's size, speed only."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    torch.manual_seed(0)
    model = BertForTokenClassification(BertConfig(vocab_size=len(tokenizer), num_labels=9, **BERT_SHAPES[shape]))
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return str(out)


def loop_part(args) -> dict:
    rounds = []
    minilm = args.loop_shape == "minilm"
    names = list(args.loop_variants)
    with tempfile.TemporaryDirectory(prefix="nerforge-levers-") as tmp:
        model = str(Path(args.model).resolve())
        if not minilm:
            model = save_random_shape(args.loop_shape, model, Path(tmp) / "model")
        base = {"model": model, "data_dir": str(Path(args.data_dir).resolve()), "tmp": tmp}
        ds = str(Path(tmp) / "ds")
        measure.run_child("make_dataset", dict(base, out=ds, n_eval=32), args.threads, print)
        for i in range(args.rounds):
            order = names[i % len(names) :] + names[: i % len(names)]
            res = {}
            for name in order:
                precision, extra = LOOP_VARIANTS[name]
                r = measure.run_child(
                    "train_ours",
                    dict(
                        base,
                        precision=precision,
                        steps=args.steps,
                        tag=f"lever_{name}",
                        dataset_path=ds,
                        extra_args=measure.recipe_args() + RECIPE_SHAPE + extra,
                    ),
                    args.threads,
                    print,
                )
                if "error" in r:
                    raise RuntimeError(f"{name}: {r['error']}")
                res[name] = {k: r.get(k) for k in ("windows_per_s", "pieces_per_s", "train_time_s", "precision")}
            rounds.append({"order": order, **res})
    model_name = args.model if minilm else f"{args.loop_shape} dimensions, random weights, {args.model}'s tokenizer"
    return loop_summary(rounds, names, {"model": model_name, "steps": args.steps, "shape": " ".join(RECIPE_SHAPE)})


def loop_summary(rounds: list, names: list, meta: dict) -> dict:
    """The loop part's figures from its rounds: each variant's median and the paired ratios, in pieces per
    second (every variant trains the same batches, so pieces/s and windows/s give the same ratio, but
    windows/s is stored to 2 decimals: 0.4 against 0.6 at bert-large-cased's size)."""
    median = {n: round(statistics.median(r[n]["pieces_per_s"] for r in rounds), 2) for n in names}

    def faster(a, b):  # pieces/s: a over b, per round
        return paired(rounds, a, b, "pieces_per_s")

    out = {
        **meta,
        "rounds": rounds,
        "pieces_per_s_median": median,
        "speedup_vs_fp32": {n: round(median[n] / median["fp32"], 3) for n in names} if "fp32" in names else {},
    }
    # (a, b) -> a's pieces/s over b's, for the pairs that both ran
    bf16 = {k: ab for k, ab in BF16_PAIRS.items() if set(ab) <= set(names)}
    masks = {k: ab for k, ab in MASK_PAIRS.items() if set(ab) <= set(names)}
    out["bf16_vs_fp32_same_dropout"] = {k: round(median[a] / median[b], 3) for k, (a, b) in bf16.items()}
    out["bf16_vs_fp32_paired"] = {k: faster(a, b) for k, (a, b) in bf16.items()}
    out["fast_masks_vs_torch_masks_paired"] = {k: faster(a, b) for k, (a, b) in masks.items()}
    return out


def random_batches(n: int = 4, b: int = 4, length: int = 256) -> list:
    """Fixed random batches of the recipe's training shape: b windows of up to 128 pieces + 2 x 64 of
    context, ragged as packing leaves them (60-100% real pieces), labels -100 on the padding."""
    import torch

    torch.manual_seed(0)
    batches = []
    for _ in range(n):
        ids = torch.randint(1000, 28000, (b, length))
        mask = torch.ones(b, length, dtype=torch.long)
        for r in range(b):
            real = int(length * (0.6 + 0.4 * torch.rand(()).item()))
            mask[r, real:] = 0
            ids[r, real:] = 0
        labels = torch.randint(0, 9, (b, length))
        labels[mask == 0] = -100
        batches.append((ids, mask, labels))
    return batches


def training_step(model, bf16: bool, fp32_attention: bool, compile: bool = False, fast_masks: bool = False):
    """One optimizer step of ``model`` as a closure over a batch: forward with labels under bf16 autocast or
    not, backward, clipping, fused AdamW (what the training loop does per step, without its data pipeline).
    ``fast_masks``: nerforge.dropout's masks, as training.load_model sets them (else torch's dropout)."""
    import torch

    from nerforge.dropout import use_fast_dropout
    from nerforge.modeling import attention_dropout_of, attention_in_fp32

    model.train()
    if fast_masks:
        use_fast_dropout(model, attention_dropout_of(model.config), fp32_attention)
    elif fp32_attention:
        attention_in_fp32(model)
    forward = torch.compile(model, dynamic=True) if compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    def step(batch):
        ids, mask, labels = batch
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = forward(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def step_flops(model, batches) -> float:
    """Model FLOPs of one step, as bench/render.py counts them (6 x non-embedding parameters x real pieces +
    the attention's 12 x layers x hidden x sum of squared real lengths), averaged over ``batches``."""
    cfg = model.config
    g = {
        "params_non_embedding": sum(
            p.numel() for n, p in model.named_parameters() if "embeddings" not in n and "classifier" not in n
        ),
        "num_layers": cfg.num_hidden_layers,
        "hidden": cfg.hidden_size,
    }
    lengths = [m.sum(1).double() for _, m, _ in batches]
    return statistics.mean(model_flops(float(L.sum()), float((L * L).sum() / L.sum()), g) for L in lengths)


def gemm_peaks() -> dict:
    """This machine's GEMM peaks by precision from latest.json (bench.run's gemm section), or None each."""
    path = RESULTS / "latest.json"
    gemm = json.loads(path.read_text()).get("gemm", {}) if path.exists() else {}
    return {"fp32": gemm.get("peak_fp32_gflops"), "bf16": gemm.get("peak_bf16_gflops")}


def model_part(args) -> dict:
    import torch
    from transformers import AutoModelForTokenClassification

    torch.set_num_threads(args.threads)
    batches = random_batches()
    b, length = batches[0][0].shape

    def build(name):
        kw = {"attention_probs_dropout_prob": 0.0} if "attention_dropout_0" in name else {}
        model = AutoModelForTokenClassification.from_pretrained(args.model, num_labels=9, **kw)
        return training_step(model, "bf16" in name, "fp32_attention" in name, name.endswith("compile"))

    out = {"shape": [b, length], "steps": args.model_steps, "variants": {}}
    flops = step_flops(AutoModelForTokenClassification.from_pretrained(args.model, num_labels=9), batches)
    out["gflop_per_step"] = round(flops / 1e9, 2)
    peaks = out["gemm_peaks_gflops"] = gemm_peaks()
    for name in MODEL_VARIANTS:
        step = build(name)
        t0 = time.perf_counter()
        for batch in batches:
            step(batch)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(args.model_steps):
            step(batches[i % len(batches)])
        ms = 1000 * (time.perf_counter() - t0) / args.model_steps
        gflops = flops / 1e9 / (ms / 1000)
        peak = peaks["bf16" if name.startswith("bf16") else "fp32"]
        out["variants"][name] = {
            "ms_per_step": round(ms, 1),
            "warmup_s": round(warm, 1),
            "model_gflops_per_s": round(gflops, 1),
            "mfu": round(gflops / peak, 4) if peak else None,
        }
        print(f"model {name}: {ms:.1f} ms/step (warm-up {warm:.1f} s)", flush=True)
    base = out["variants"]["fp32"]["ms_per_step"]
    out["speedup_vs_fp32"] = {n: round(base / v["ms_per_step"], 3) for n, v in out["variants"].items()}

    from torch.profiler import ProfilerActivity, profile

    for name in ("bf16", "bf16_attention_dropout_0_fp32_attention"):
        step = build(name)
        for batch in batches[:2]:
            step(batch)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches:
                step(batch)
        ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in ops)
        out[f"profile_{name}_eager_top"] = [
            {
                "op": e.key,
                "self_share": round(e.self_cpu_time_total / total, 4),
                "ms_per_step": round(e.self_cpu_time_total / 1000 / len(batches), 1),
                "calls_per_step": e.count // len(batches),
            }
            for e in ops[:12]
        ]
    return out


def shapes_part(args) -> dict:
    import torch
    from transformers import BertConfig, BertForTokenClassification

    from nerforge.modeling import wants_fp32_attention

    torch.set_num_threads(args.threads)
    batches = random_batches()
    peaks = gemm_peaks()
    out = {"shape": list(batches[0][0].shape), "steps": args.shape_steps, "gemm_peaks_gflops": peaks, "models": {}}
    for shape in args.shapes:
        dims = BERT_SHAPES[shape]
        rounds = []
        flops = None
        for i in range(args.rounds):
            order = SHAPE_VARIANTS[i % len(SHAPE_VARIANTS) :] + SHAPE_VARIANTS[: i % len(SHAPE_VARIANTS)]
            res = {}
            for name in order:
                dropout = 0.0 if name.endswith("attention_dropout_0") else 0.1  # BERT's own: 0.1
                bf16 = name.startswith("bf16")
                # the attention's precision as training_config.attention_precision 'auto' sets it on a CPU
                fp32_attention = wants_fp32_attention("auto", "bf16" if bf16 else "no", "cpu", dropout)
                torch.manual_seed(0)
                config = BertConfig(vocab_size=28996, num_labels=9, attention_probs_dropout_prob=dropout, **dims)
                model = BertForTokenClassification(config)
                if flops is None:
                    flops = step_flops(model, batches)
                fast_masks = not name.endswith("torch_masks")  # dropout_masks auto on a CPU
                step = training_step(model, bf16, fp32_attention, fast_masks=fast_masks)
                step(batches[0])  # warm-up: oneDNN primitives, the optimizer's state
                t0 = time.perf_counter()
                for j in range(args.shape_steps):
                    step(batches[(j + 1) % len(batches)])
                ms = 1000 * (time.perf_counter() - t0) / args.shape_steps
                gflops = flops / 1e9 / (ms / 1000)
                peak = peaks["bf16" if bf16 else "fp32"]
                res[name] = {
                    "ms_per_step": round(ms, 1),
                    "attention": "fp32" if fp32_attention or not bf16 else "bf16",
                    "dropout_masks": "fast" if fast_masks else "torch",
                    "model_gflops_per_s": round(gflops, 1),
                    "mfu": round(gflops / peak, 4) if peak else None,
                }
                print(f"shape {shape} round {i + 1} {name}: {ms:.0f} ms/step", flush=True)
                del model, step
            rounds.append({"order": list(order), **res})
        median = {n: statistics.median(r[n]["ms_per_step"] for r in rounds) for n in SHAPE_VARIANTS}
        out["models"][shape] = {
            "dimensions": dims,
            "gflop_per_step": round(flops / 1e9, 2),
            "rounds": rounds,
            "ms_per_step_median": median,
            "speedup_vs_fp32": {n: round(median["fp32"] / median[n], 3) for n in SHAPE_VARIANTS},
            "bf16_vs_fp32_paired": {  # ms a step: fp32's over bf16's
                "recipe_dropout": paired(rounds, "fp32", "bf16", "ms_per_step"),
                "attention_dropout_0": paired(
                    rounds, "fp32_attention_dropout_0", "bf16_attention_dropout_0", "ms_per_step"
                ),
                "torch_masks": paired(rounds, "fp32_torch_masks", "bf16_torch_masks", "ms_per_step"),
            },
            "fast_masks_vs_torch_masks_paired": {
                p: paired(rounds, f"{p}_torch_masks", p, "ms_per_step") for p in ("fp32", "bf16")
            },
        }
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(measure.ROOT.parent / "shared" / "data" / "conll2003"))
    p.add_argument("--model", default=str(measure.ROOT.parent / "shared" / "models" / "all-minilm-l6-v2"))
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per loop variant")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--model-steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-loop", action="store_true")
    p.add_argument("--skip-model", action="store_true")
    p.add_argument("--skip-shapes", action="store_true")
    p.add_argument(
        "--loop-shape",
        default="minilm",
        choices=["minilm", *BERT_SHAPES],
        help="the loop on --model (minilm) or on a random-weight BERT of that size with --model's tokenizer",
    )
    p.add_argument(
        "--loop-variants",
        nargs="+",
        default=list(LOOP_VARIANTS),
        choices=list(LOOP_VARIANTS),
        help="the loop's variants (default: all); ratios are stored for the pairs that ran",
    )
    p.add_argument("--shapes", nargs="+", default=list(BERT_SHAPES), choices=list(BERT_SHAPES))
    p.add_argument("--shape-steps", type=int, default=3, help="timed steps per shape variant (after one warm-up)")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    out = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.train_levers", *argv]),
        "machine": measure.machine(),
    }
    if not args.skip_model:
        out["model"] = dict(model_part(args), date=out["date"], command=out["command"])
    # A BERT-size loop's key names its steps: at ~10 s a step such runs are short, and runs of different
    # lengths train different batches, so they are kept apart.
    loop_key = "loop" if args.loop_shape == "minilm" else f"loop_{args.loop_shape}_{args.steps}_steps"
    if not args.skip_loop:
        out[loop_key] = dict(loop_part(args), date=out["date"], command=out["command"])
    if not args.skip_shapes:
        out["shapes"] = dict(shapes_part(args), date=out["date"], command=out["command"])
    path = RESULTS / "train_levers.json"
    if path.exists():  # a part not run keeps its last figures
        last = json.loads(path.read_text())
        for part in [k for k in last if k in ("model", "shapes") or k.startswith("loop")]:
            if part not in out:
                out[part] = dict(
                    last[part],
                    date=last[part].get("date", last["date"]),
                    command=last[part].get("command", last["command"]),
                )
    path.write_text(json.dumps(out, indent=2) + "\n")
    speedups = {k: v.get("speedup_vs_fp32") for k, v in out.items() if isinstance(v, dict) and k != "shapes"}
    speedups.update({f"shapes {m}": v["speedup_vs_fp32"] for m, v in out.get("shapes", {}).get("models", {}).items()})
    print(json.dumps(speedups, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
