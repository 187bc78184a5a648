"""Quality at equal budget: the notebook recipe vs ours without and with document context.

    python -m bench.quality --data-dir ../shared/data/conll2003 --model ../shared/models/all-minilm-l6-v2 \
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
  ours_no_context   train_accelerate.py with the training settings of configs/minilm-cpu.yaml (the
                    recipe for this model: learning rate, warmup, schedule, IOB2, first-piece labels;
                    passed explicitly) and the loop's other defaults (length-grouped batches of 16,
                    fused AdamW, windows instead of truncation), for --epochs epochs.
  ours_context      the same with --context_size N word pieces of document context on each side and
                    consecutive sentences of a document packed into one window up to --pack_length
                    pieces (the context is paid once per window, not once per sentence), at
                    --per_device_train_batch_size B windows (default 4: about the labelled pieces per
                    step, and a little fewer steps per epoch, than 16 single sentences). --pack-length 0
                    --context-batch-size 16 gives per-sentence context (FLERT's layout, ~6x the pieces).

Choosing our settings: `--set KEY=VALUE` (repeatable; `--learning-rate LR` is `--set learning_rate=LR`)
runs the ours_* variants with a training setting other than the recipe's. Every run records the
settings it trained with (learning rate, warmup, schedule, tag scheme, which pieces carry labels), and
runs are kept apart by them. The variant figures aggregate only the runs at the recipe's current
settings (configs/minilm-cpu.yaml), and the "settings selection" table compares every setting tried for
ours_no_context on *validation* F1 (mean over seeds), so the recipe is chosen there, not on test.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import re
import statistics
import sys
from pathlib import Path

from bench import measure
from bench.render import write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

RECIPE = measure.RECIPE
TUNED = measure.recipe_settings()


# Settings the recipe takes from a choice on more than CoNLL-2003 (issue 27 section 7: the validation
# splits of CoNLL-2003 and WNUT-17, 3 seeds each, bench/label_defaults.py): a CoNLL-only lead here does
# not overrule them.
DECIDED_ON_TWO_CORPORA = ("label_all_tokens",)


def recipe_epochs(path: Path = RECIPE) -> int:
    """The epochs the recipe trains for: the budget at which a setting is finally judged."""
    from nerforge.config import load_saved

    return int(load_saved(path).training.num_train_epochs)


# What runs recorded before settings were recorded trained with (the defaults of that time).
LEGACY = {
    "learning_rate": 1e-4,
    "warmup_ratio": 0.1,
    "lr_scheduler_type": "linear",
    "tagging_scheme": "iob2",
    "label_all_tokens": False,
}

# Settings added after runs were recorded, with the value every earlier run trained with.
ADDED = {"sparse_embedding_updates": False, "keep_words_whole": False}

RESULTS = HERE / "results" / "quality.json"
VARIANTS = ("notebook", "ours_no_context", "ours_context")


def one_run(variant: str, seed: int, epochs: int, args, log) -> dict:
    cfg = {"model": args.model, "data_dir": args.data_dir, "seed": seed, "epochs": epochs, "tmp": args.tmp}
    if args.max_steps:
        cfg["steps"] = args.max_steps
    if variant == "notebook":
        res = measure.run_child("f1_notebook", cfg, args.threads, log)
    else:
        # one output folder per variant, seed, epochs and setting: no run overwrites another's export
        tag = f"{variant}_q{seed}e{epochs}" + "".join(f"_{v}" for v in args.set.values())
        if args.precision != "no":
            tag += f"_{args.precision}"
        cfg.update(
            precision=args.precision,
            tag=tag,
            full_eval=True,
            context_size=args.context_size if variant == "ours_context" else 0,
        )
        if variant == "ours_context":
            cfg["extra_args"] = [
                "--pack_length",
                args.pack_length,
                "--per_device_train_batch_size",
                args.context_batch_size,
            ]
        # every setting on the command line: the record says what ran
        cfg["extra_args"] = cfg.get("extra_args", []) + measure.recipe_args(dict(TUNED, **args.set))
        res = measure.run_child("train_ours", cfg, args.threads, log)
    if "error" in res:
        raise RuntimeError(f"{variant} seed {seed} failed:\n{res['error']}")
    return {
        "seed": seed,
        "epochs": epochs,
        "f1": res["f1"],
        "validation_f1": res.get("val_f1"),
        "train_time_s": res.get("train_time_s"),
        "time_per_epoch_s": round(res["train_time_s"] / epochs, 1) if res.get("train_time_s") else None,
        "wall_s": res.get("wall_s"),
        "max_steps": args.max_steps,
        "context_size": cfg.get("context_size", 0),
        "pack_length": args.pack_length if variant == "ours_context" else 0,
        "command": res.get("command"),
        "loadavg_1min_start_end": res.get("loadavg_1min_start_end"),
        "settings": None if variant == "notebook" else dict(TUNED, **args.set),
        "machine": args.machine,
        "precision": "no" if variant == "notebook" else args.precision,
    }


def run_key(r: dict) -> tuple:
    return (
        r["variant"],
        r["epochs"],
        r["seed"],
        r.get("max_steps"),
        json.dumps(r["settings"], sort_keys=True),
        r.get("precision", "no"),
    )


def at_recipe(r: dict, precision: str = "no") -> bool:
    return (r["settings"] is None or r["settings"] == TUNED) and r.get("precision", "no") == precision


def changed(settings: dict) -> str:
    """The settings that differ from the recipe's, e.g. 'learning_rate=0.0002' ('the recipe')."""
    diff = [f"{k}={v}" for k, v in settings.items() if TUNED.get(k) != v]
    return ", ".join(diff) or "the recipe"


def parse_setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or key not in TUNED:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY one of {', '.join(TUNED)}, got {text!r}")
    tp = type(TUNED[key])
    if tp is bool:
        if value.lower() not in ("true", "false"):
            raise argparse.ArgumentTypeError(f"{key} takes true or false, got {value!r}")
        return key, value.lower() == "true"
    return key, tp(value)


def aggregate(runs: list[dict]) -> dict:
    f1s = [r["f1"] for r in runs]
    return {
        "f1_mean": round(statistics.mean(f1s), 5),
        "f1_std": round(statistics.stdev(f1s), 5) if len(f1s) > 1 else None,
        "n_seeds": len(f1s),
        "epochs": runs[0]["epochs"],
        "runs": sorted(runs, key=lambda r: r["seed"]),
    }


def summarise(all_runs: list[dict]) -> dict:
    out: dict = {
        "updated": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": measure.machine(),
        "all_runs": all_runs,
    }
    budgets = sorted({r["epochs"] for r in all_runs})
    for epochs in budgets:
        block = recipe_block(all_runs, epochs, "no")
        if epochs == 1:
            out.update(block)
        else:
            out[f"epochs_{epochs}"] = block
    # bf16 autocast training (issue 5: its F1 at equal budget must not fall below fp32's by more than
    # seed noise): kept apart from the fp32 figures, per epochs, under "bf16"
    bf16 = {f"epochs_{epochs}": block for epochs in budgets if (block := recipe_block(all_runs, epochs, "bf16"))}
    if bf16:
        out["bf16"] = bf16
    out["settings_selection"] = selection(all_runs)
    out["recipe_epochs"] = recipe_epochs()
    # the same comparison at a longer budget, where a setting was tried there too (e.g. 3 epochs, the
    # budget configs/minilm-cpu.yaml trains for)
    for epochs in [e for e in budgets if e != 1]:
        sel = selection(all_runs, epochs)
        if len(sel["tried"]) > 1:
            out[f"settings_selection_epochs_{epochs}"] = sel
    out["settings_choice"] = choice(out)
    return out


def recipe_block(all_runs: list[dict], epochs: int, precision: str) -> dict:
    """Each variant's aggregate over its runs at the recipe's settings, `epochs` epochs and `precision`
    (smoke runs left out; the notebook trains in fp32 only)."""
    block = {}
    for v in VARIANTS:
        runs = [
            r
            for r in all_runs
            if r["variant"] == v and r["epochs"] == epochs and not r.get("max_steps") and at_recipe(r, precision)
        ]
        if runs:
            block[v] = dict(
                aggregate(runs),
                settings=None if v == "notebook" else TUNED,
                **({"precision": precision} if precision != "no" else {}),
            )
    return block


def choice(q: dict) -> dict:
    """The validation choice that counts: at the recipe's own epochs for a setting run there on as many
    seeds as the shorter budget's choice, otherwise the 1-epoch screen's."""
    short = q["settings_selection"]
    own = q.get(f"settings_selection_epochs_{q['recipe_epochs']}", short)
    decides = own
    if own is not short and short["validation_best"] is not None:
        mine = [t for t in own["tried"] if t["settings"] == short["validation_best"]]
        if not mine or mine[0]["n_seeds"] < max(t["n_seeds"] for t in own["tried"]):
            decides = short  # the shorter budget's choice was not run at the recipe's budget yet
    return {
        "epochs": decides["epochs"],
        "validation_best": decides["validation_best"],
        "recipe_is_validation_best": decides["recipe_is_validation_best"],
    }


def selection(all_runs: list[dict], epochs: int = 1) -> dict:
    """ours_no_context at `epochs` epochs (fp32), grouped by the settings trained with: validation F1 mean/std over
    seeds. The best validation mean among the settings run on the most seeds is the validation choice
    (a one-seed screen can rule a setting out, not choose it)."""
    groups: dict[str, list[dict]] = {}
    for r in all_runs:
        if (
            r["variant"] == "ours_no_context"
            and r["epochs"] == epochs
            and not r.get("max_steps")
            and r.get("validation_f1")
            and r.get("precision", "no") == "no"
        ):
            groups.setdefault(json.dumps(r["settings"], sort_keys=True), []).append(r)
    tried = []
    for key, runs in groups.items():
        v = [r["validation_f1"] for r in runs]
        tried.append(
            {
                "settings": json.loads(key),
                "changed": changed(json.loads(key)),
                "n_seeds": len(v),
                "seeds": sorted(r["seed"] for r in runs),
                "validation_f1_mean": round(statistics.mean(v), 5),
                "validation_f1_std": round(statistics.stdev(v), 5) if len(v) > 1 else None,
            }
        )
    tried.sort(key=lambda t: -t["validation_f1_mean"])
    most = max((t["n_seeds"] for t in tried), default=0)
    best = next((t for t in tried if t["n_seeds"] == most), None)
    return {
        "epochs": epochs,
        "tried": tried,
        "validation_best": best and best["settings"],
        "recipe": TUNED,
        "recipe_is_validation_best": best is not None and best["settings"] == TUNED,
    }


def _machine_name(m: dict) -> str:
    return f"{m.get('cpu', '?')} ({m.get('cores', '?')} cores)"


def markdown(q: dict) -> str:
    # runs made on different machines over time: say where each ran, not only where the file was written
    where = collections.Counter(
        _machine_name(r["machine"]) if r.get("machine") else "not recorded" for r in q.get("all_runs", [])
    )
    lines = [
        "## Quality (`bench/quality.py`)",
        "",
        f"Test micro F1 (entity level, conlleval rules), mean ± sample std over seeds; updated {q['updated']} "
        f"on {_machine_name(q['machine'])}. Runs by machine: "
        + ", ".join(f"{m} {n}" for m, n in where.most_common())
        + ".",
        "",
        "| epochs | variant | seeds | test F1 (%) | per seed: test F1 / validation F1 (%) | time per epoch (s), per seed |",
        "|---|---|---|---|---|---|",
    ]
    blocks = [(1, {v: q[v] for v in VARIANTS if v in q})]
    blocks += [(int(k.split("_")[1]), v) for k, v in q.items() if k.startswith("epochs_")]
    blocks += [
        (int(k.split("_")[1]), {f"{v} (bf16 autocast)": agg for v, agg in block.items()})
        for k, block in q.get("bf16", {}).items()
    ]
    for epochs, block in blocks:
        for v, agg in block.items():
            f1 = f"{100 * agg['f1_mean']:.2f}" + (f" ± {100 * agg['f1_std']:.2f}" if agg["f1_std"] is not None else "")
            seeds = ", ".join(str(r["seed"]) for r in agg["runs"])
            per_seed = " · ".join(
                f"{100 * r['f1']:.2f} / " + (f"{100 * r['validation_f1']:.2f}" if r.get("validation_f1") else "–")
                for r in agg["runs"]
            )
            # wall time depends on what else ran: a run whose load average exceeded its 2 threads is marked *
            times = " · ".join(
                (f"{r['time_per_epoch_s']:.0f}" if r.get("time_per_epoch_s") else "–")
                + ("*" if max(r.get("loadavg_1min_start_end") or [0]) > 2.5 or r.get("timing_note") else "")
                + ("ᴮ" if (r.get("machine") or {}).get("avx512_bf16") else "")
                for r in agg["runs"]
            )
            lines.append(f"| {epochs} | {v} | {seeds} | {f1} | {per_seed} | {times} |")
    notes = [
        f"{r['variant']} seed {r['seed']}, {r['epochs']} epochs: {r['timing_note']}"
        for r in q["all_runs"]
        if r.get("timing_note")
    ]
    lines += [
        "",
        "Times: * a run whose load average exceeded its 2 threads (something else ran beside it)"
        + (f" or that was disturbed ({'; '.join(notes)})" if notes else "")
        + "; "
        "ᴮ a run on an AVX512-BF16 machine (fp32 GEMM ~175 GFLOP/s); unmarked runs predate the per-run "
        "machine record, and their times match the AVX2-only machine (~60 GFLOP/s fp32) of earlier "
        "sessions. Compare times only within one kind.",
    ]
    sels = [q.get("settings_selection")] + [v for k, v in q.items() if k.startswith("settings_selection_epochs_")]
    for sel in sels:
        if not (sel and sel["tried"]):
            continue
        best, n = changed(sel["validation_best"]), sel["epochs"]
        decided_at = q.get("settings_choice", {}).get("epochs", n)
        differs = {k for k, v in (sel["validation_best"] or {}).items() if TUNED.get(k) != v}
        if sel["recipe_is_validation_best"]:
            verdict = "."
        elif differs and differs <= set(DECIDED_ON_TWO_CORPORA):
            verdict = (
                f"; it leads on CoNLL-2003 alone, and {', '.join(sorted(differs))} is chosen on the validation "
                'splits of CoNLL-2003 and WNUT-17 together (BENCHMARKS.md, "Labelling defaults beyond '
                "CoNLL-2003\"), where the recipe's value holds."
            )
        elif decided_at != n:
            verdict = f"; decided at {decided_at} epochs, below."
        else:
            verdict = "; the recipe does **not** have it yet."
        budget = (
            f" This is the recipe's own budget ({n} epochs): where a setting was run here on as many seeds, "
            "this table decides, and the shorter budget only screens."
            if n == q.get("recipe_epochs")
            else ""
        )
        lines += [
            "",
            f"Settings selection: ours_no_context, {n} epoch{'s' if n > 1 else ''}, **validation** F1 only, "
            f"best first.{budget} The recipe ({RECIPE.relative_to(ROOT)}): "
            + ", ".join(f"{k}={v}" for k, v in sel["recipe"].items())
            + ". Validation choice (best among the "
            f"settings run on the most seeds): {best}{verdict}",
            "",
            "| settings (changes from the recipe) | seeds | validation F1 (%) |",
            "|---|---|---|",
        ]
        for t in sel["tried"]:
            f1 = f"{100 * t['validation_f1_mean']:.2f}" + (
                f" ± {100 * t['validation_f1_std']:.2f}" if t["validation_f1_std"] is not None else ""
            )
            lines.append(f"| {t['changed']} | {', '.join(map(str, t['seeds']))} | {f1} |")
    lines += ["", "Commands (SEED for the seed; output and cache folders left out):", ""]
    lines += [f"- `{c}`" for c in sorted({command_template(r["command"]) for r in q["all_runs"] if r.get("command")})]
    lines += ["- notebook: `bench/run.py`'s f1_notebook child (bench/notebook_recipe.py), one per seed", ""]
    return "\n".join(lines)


def command_template(command: str) -> str:
    """A run's command with what differs between seeds and machines taken out, so runs share one line."""
    c = re.sub(r" --(output_dir|cache_dir) \S+| --overwrite_output_dir| \(run by hand.*", "", command)
    c = re.sub(r"^\S*python \S*train_accelerate\.py", "python train_accelerate.py", c)
    return re.sub(r"--seed \d+", "--seed SEED", c)


def write_markdown(section: str) -> None:
    write_section("<!-- quality:begin -->", "<!-- quality:end -->", section)


def load_runs() -> list[dict]:
    runs = json.loads(RESULTS.read_text())["all_runs"] if RESULTS.exists() else []
    for r in runs:  # runs recorded before settings were recorded: the defaults of that time, at their rate
        if "settings" not in r:
            r["settings"] = (
                None if r["variant"] == "notebook" else dict(LEGACY, learning_rate=r.get("learning_rate", 1e-4))
            )
        r.pop("learning_rate", None)
        if r["settings"] is not None:
            r["settings"] = {**ADDED, **r["settings"]}
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
    p.add_argument(
        "--set",
        type=parse_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"ours_* variants: a setting other than the loop's default ({', '.join(TUNED)})",
    )
    p.add_argument("--learning-rate", type=float, default=None, help="same as --set learning_rate=LR")
    p.add_argument(
        "--precision",
        choices=["no", "bf16"],
        default="no",
        help="ours_* variants: accelerate's mixed precision (bf16 = autocast); the notebook always fp32",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None, help="(smoke test) cut every run to N steps; not aggregated")
    p.add_argument("--tmp", default=str(HERE / "results" / "tmp"))
    p.add_argument("--render", action="store_true", help="run nothing: rewrite BENCHMARKS.md from quality.json")
    args = p.parse_args(argv)
    args.set = dict(args.set)
    if args.learning_rate is not None:
        args.set["learning_rate"] = args.learning_rate
    if args.render:
        q = json.loads(RESULTS.read_text())
        write_markdown(markdown(dict(summarise(load_runs()), updated=q["updated"], machine=q["machine"])))
        return 0
    Path(args.tmp).mkdir(parents=True, exist_ok=True)
    # Each run says which CPU it ran on: sessions get different machines (AVX2-only vs AVX512-BF16, ~3x
    # apart in fp32 GEMM), so time per epoch is comparable only between runs on the same kind.
    m = measure.machine()
    args.machine = {k: m[k] for k in ("cpu", "cores", "avx512", "avx512_bf16", "amx")}
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
