"""Quality at equal budget: the notebook recipe vs ours without and with document context.

    python bench/quality.py --data-dir ../shared/data/conll2003 --model ../shared/models/all-minilm-l6-v2 \
        --seeds 0 1 2 --epochs 1 [--variants notebook ours_no_context ours_context] [--context-size 64]

Each (variant, epochs, seed) is one training run in its own subprocess (bench/run.py's children),
scored on test with entity-level micro F1 (conlleval rules, nerforge.metric.score). Results
accumulate in bench/results/quality.json, keyed by variant, epochs and seed, so seeds can be added
run by run; the aggregates (mean, sample std) and the "Quality" section of BENCHMARKS.md are
recomputed from every run recorded so far.

Variants:
  notebook          the notebook recipe: HF Trainer, lr 2e-5, batch 16, weight decay 0.01, first-piece
                    labels, truncation at 120 (per-batch padding stands in for padding to 120: the
                    loss ignores pads, so F1 does not depend on it).
  ours_no_context   train_accelerate.py with its defaults (IOB2, lr 1e-4, warmup 10% + linear decay,
                    length-grouped batches of 16, fused AdamW, windows instead of truncation).
  ours_context      the same with --context_size N word pieces of document context on each side and
                    consecutive sentences of a document packed into one window up to --pack_length
                    pieces (the context is paid once per window, not once per sentence), at
                    --per_device_train_batch_size B windows (default 4: about the labelled pieces per
                    step, and a little fewer steps per epoch, than 16 single sentences). --pack-length 0
                    --context-batch-size 16 gives per-sentence context (FLERT's layout, ~6x the pieces).

Learning rate: `--learning-rate LR` runs the ours_* variants at LR instead of the loop's default. Every
run records its rate and runs at different rates are kept apart. The variant figures aggregate the
runs at the loop's current default (nerforge.config.TrainingConfig), and the "learning-rate selection"
table compares the rates tried for ours_no_context on *validation* F1 (mean over seeds), so the default
can be chosen there and test looked at only for the rate chosen.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import run as bench  # noqa: E402  (bench/run.py: subprocess children and the machine description)
from nerforge.config import TrainingConfig  # noqa: E402

DEFAULT_LR = TrainingConfig.learning_rate  # what train_accelerate.py uses without --learning_rate
NOTEBOOK_LR = 2e-5

RESULTS = HERE / "results" / "quality.json"
VARIANTS = ("notebook", "ours_no_context", "ours_context")


def one_run(variant: str, seed: int, epochs: int, args, log) -> dict:
    cfg = {"model": args.model, "data_dir": args.data_dir, "seed": seed, "epochs": epochs, "tmp": args.tmp}
    if args.max_steps:
        cfg["steps"] = args.max_steps
    if variant == "notebook":
        res = bench.run_child("f1_notebook", cfg, args.threads, log)
    else:
        cfg.update(precision="no", tag=f"q{seed}e{epochs}" + (f"lr{args.learning_rate:g}" if args.learning_rate else ""), full_eval=True,
                   context_size=args.context_size if variant == "ours_context" else 0)
        if variant == "ours_context":
            cfg["extra_args"] = ["--pack_length", args.pack_length, "--per_device_train_batch_size",
                                 args.context_batch_size]
        if args.learning_rate is not None:
            cfg["extra_args"] = cfg.get("extra_args", []) + ["--learning_rate", args.learning_rate]
        res = bench.run_child("train_ours", cfg, args.threads, log)
    if "error" in res:
        raise RuntimeError(f"{variant} seed {seed} failed:\n{res['error']}")
    return {"seed": seed, "epochs": epochs, "f1": res["f1"], "validation_f1": res.get("val_f1"),
            "train_time_s": res.get("train_time_s"), "time_per_epoch_s": round(res["train_time_s"] / epochs, 1)
            if res.get("train_time_s") else None, "wall_s": res.get("wall_s"), "max_steps": args.max_steps,
            "context_size": cfg.get("context_size", 0), "pack_length": args.pack_length if variant == "ours_context" else 0,
            "command": res.get("command"), "loadavg_1min_start_end": res.get("loadavg_1min_start_end"),
            "learning_rate": run_lr(variant, args.learning_rate)}


def run_lr(variant: str, lr: float | None) -> float:
    return NOTEBOOK_LR if variant == "notebook" else (lr if lr is not None else DEFAULT_LR)


def run_key(r: dict) -> tuple:
    return r["variant"], r["epochs"], r["seed"], r.get("max_steps"), r["learning_rate"]


def aggregate(runs: list[dict]) -> dict:
    f1s = [r["f1"] for r in runs]
    return {"f1_mean": round(statistics.mean(f1s), 5), "f1_std": round(statistics.stdev(f1s), 5) if len(f1s) > 1 else None,
            "n_seeds": len(f1s), "epochs": runs[0]["epochs"], "runs": sorted(runs, key=lambda r: r["seed"])}


def summarise(all_runs: list[dict]) -> dict:
    out: dict = {"updated": datetime.datetime.now().isoformat(timespec="seconds"), "machine": bench.machine(),
                 "all_runs": all_runs}
    for epochs in sorted({r["epochs"] for r in all_runs}):
        block = {}
        for v in VARIANTS:
            runs = [r for r in all_runs if r["variant"] == v and r["epochs"] == epochs and not r.get("max_steps")
                    and r["learning_rate"] == run_lr(v, None)]
            if runs:
                block[v] = dict(aggregate(runs), learning_rate=run_lr(v, None))
        if epochs == 1:
            out.update(block)
        else:
            out[f"epochs_{epochs}"] = block
    out["learning_rate_selection"] = lr_selection(all_runs)
    return out


def lr_selection(all_runs: list[dict]) -> dict:
    """ours_no_context at 1 epoch, grouped by learning rate: validation F1 mean/std over seeds. The
    rate with the best validation mean (among those with the most seeds) is the validation choice."""
    by_lr: dict[float, list[dict]] = {}
    for r in all_runs:
        if r["variant"] == "ours_no_context" and r["epochs"] == 1 and not r.get("max_steps") and r.get("validation_f1"):
            by_lr.setdefault(r["learning_rate"], []).append(r)
    rates = []
    for lr, runs in sorted(by_lr.items()):
        v = [r["validation_f1"] for r in runs]
        rates.append({"learning_rate": lr, "n_seeds": len(v), "seeds": sorted(r["seed"] for r in runs),
                      "validation_f1_mean": round(statistics.mean(v), 5),
                      "validation_f1_std": round(statistics.stdev(v), 5) if len(v) > 1 else None})
    most = max((r["n_seeds"] for r in rates), default=0)
    best = max((r for r in rates if r["n_seeds"] == most), key=lambda r: r["validation_f1_mean"], default=None)
    return {"rates": rates, "validation_best": best and best["learning_rate"], "default": DEFAULT_LR}


def markdown(q: dict) -> str:
    lines = ["## Quality (`bench/quality.py`)", "",
             f"Test micro F1 (entity level, conlleval rules), mean ± sample std over seeds; updated {q['updated']} "
             f"on {q['machine'].get('cpu', '?')} ({q['machine'].get('cores', '?')} cores).", "",
             "| epochs | variant | seeds | test F1 (%) | per seed: test F1 / validation F1 (%) | time per epoch (s), per seed |",
             "|---|---|---|---|---|---|"]
    blocks = [(1, {v: q[v] for v in VARIANTS if v in q})]
    blocks += [(int(k.split("_")[1]), v) for k, v in q.items() if k.startswith("epochs_")]
    for epochs, block in blocks:
        for v, agg in block.items():
            f1 = f"{100 * agg['f1_mean']:.2f}" + (f" ± {100 * agg['f1_std']:.2f}" if agg["f1_std"] is not None else "")
            seeds = ", ".join(str(r["seed"]) for r in agg["runs"])
            per_seed = " · ".join(f"{100 * r['f1']:.2f} / " + (f"{100 * r['validation_f1']:.2f}" if r.get("validation_f1")
                                                                else "–") for r in agg["runs"])
            # wall time depends on what else ran: a run whose load average exceeded its 2 threads is marked *
            times = " · ".join((f"{r['time_per_epoch_s']:.0f}" if r.get("time_per_epoch_s") else "–") +
                               ("*" if max(r.get("loadavg_1min_start_end") or [0]) > 2.5 else "") for r in agg["runs"])
            lines.append(f"| {epochs} | {v} | {seeds} | {f1} | {per_seed} | {times} |")
    sel = q.get("learning_rate_selection")
    if sel and sel["rates"]:
        lines += ["", f"Learning-rate selection (ours_no_context, 1 epoch, validation F1 only; the loop's default is "
                      f"{sel['default']:g}, the validation choice {sel['validation_best']:g}):", "",
                  "| learning rate | seeds | validation F1 (%) |", "|---|---|---|"]
        for r in sel["rates"]:
            f1 = f"{100 * r['validation_f1_mean']:.2f}" + (f" ± {100 * r['validation_f1_std']:.2f}"
                                                           if r["validation_f1_std"] is not None else "")
            lines.append(f"| {r['learning_rate']:g} | {', '.join(map(str, r['seeds']))} | {f1} |")
    lines += ["", "Commands: " + "; ".join(sorted({r['command'] for r in q['all_runs'] if r.get('command')}))[:2000], ""]
    return "\n".join(lines)


def write_markdown(section: str) -> None:
    bench.write_section("<!-- quality:begin -->", "<!-- quality:end -->", section)


def load_runs() -> list[dict]:
    runs = json.loads(RESULTS.read_text())["all_runs"] if RESULTS.exists() else []
    for r in runs:  # runs recorded before rates were recorded ran at the then-default 1e-4 / the notebook's 2e-5
        r.setdefault("learning_rate", NOTEBOOK_LR if r["variant"] == "notebook" else 1e-4)
    return runs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "conll2003"))
    p.add_argument("--model", default=str(ROOT.parent / "shared" / "models" / "all-minilm-l6-v2"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--context-size", type=int, default=64)
    p.add_argument("--pack-length", type=int, default=128, help="ours_context: word pieces of sentences per window")
    p.add_argument("--context-batch-size", type=int, default=4, help="ours_context: windows per batch")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="ours_* variants: this rate instead of the loop's default (runs are kept apart by rate)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None, help="(smoke test) cut every run to N steps; not aggregated")
    p.add_argument("--tmp", default=str(HERE / "results" / "tmp"))
    p.add_argument("--render", action="store_true", help="run nothing: rewrite BENCHMARKS.md from quality.json")
    args = p.parse_args(argv)
    if args.render:
        q = json.loads(RESULTS.read_text())
        write_markdown(markdown(dict(summarise(load_runs()), updated=q["updated"], machine=q["machine"])))
        return 0
    Path(args.tmp).mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    prior = load_runs()
    for seed in args.seeds:
        for v in args.variants:
            r = dict(one_run(v, seed, args.epochs, args, log), variant=v)
            prior = [x for x in prior if run_key(x) != run_key(r)] + [r]
            q = summarise(prior)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(q, indent=2) + "\n")
            write_markdown(markdown(q))
            log(f"{v} seed {seed} epochs {args.epochs}: test F1 {100 * r['f1']:.2f} ({r['time_per_epoch_s']} s/epoch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
