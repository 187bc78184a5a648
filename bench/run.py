"""End-to-end benchmark: the notebook recipe vs nerforge, same machine, model and data, one process tree.

    python -m bench.run --data-dir ../shared/data/conll2003 --model ../shared/models/all-minilm-l6-v2 [--quick]
    python -m bench.run --render      # BENCHMARKS.md's generated section again, from bench/results/latest.json

Run from the repository root. Every measurement runs in its own subprocess (`python -m bench.measure
NAME CONFIG`, bench/measure.py), which prints one JSON line and its own peak RSS, so peaks never mix.
All subprocesses get the same thread settings (OMP/MKL threads and torch.set_num_threads = --threads).
Writes bench/results/latest.json and regenerates the section of BENCHMARKS.md between the markers
(bench/render.py). Nothing here asserts on time: it measures and reports.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.measure import BATCH, SEED, machine, recipe_args, run_child, split_file
from bench.render import RESULTS, best_gemm, summarize, write_markdown

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]


def scaled_data_dir(src: Path, k: int, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    text = split_file(src, "train").read_text(encoding="utf-8")
    if not text.endswith("\n\n"):
        text = text.rstrip("\n") + "\n\n"
    (dst / "train.txt").write_text(text * k, encoding="utf-8")
    for split, name in (("validation", "valid.txt"), ("test", "test.txt")):
        shutil.copyfile(split_file(src, split), dst / name)
    return dst


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
    pt2e_available = importlib.util.find_spec("torchao") is not None  # bench/pt2e.py's rows
    # Where bf16 is emulated a step takes ~10x fp32's: a couple of steps say enough.
    steps_bf16 = args.bf16_steps or (steps if native_bf16 else 2 if quick else 6)
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_lines: list[str] = []

    def log(msg):
        print(msg, flush=True)
        log_lines.append(msg)

    cmd = "python -m bench.run " + " ".join(sys.argv[1:])
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
            onnx_dir = tmp / "model_onnx"

            def onnx_static(row: str, attention: bool) -> dict:
                """ONNX Runtime's static int8 (QDQ, calibrated on validation; bench/ort_static.py): the ONNX
                export quantized into a copy of its own (row `ROW_quantize`), then run (row `ROW`)."""
                out = tmp / row
                quantize = dict(base, model_dir=str(onnx_dir), out=str(out), attention=attention)
                run = dict(base, model_dir=str(out), backend="onnx-int8", trained=trained, compare_tags=str(tags_file))
                return {
                    f"{row}_quantize": run_child("make_onnx_static", quantize, th, log),
                    row: run_child("infer_ours", run, th, log),
                }

            def int8_package() -> dict:
                """nerforge quantize's package built into a copy of the export (row `int8_package_build`),
                then run as --backend torch-int8 runs it (row `ours_int8_package`); needs torchao to build."""
                if not pt2e_available:
                    return {}
                out = tmp / "int8_package"
                run = dict(base, model_dir=str(out), backend="torch-int8", trained=trained, compare_tags=str(tags_file))
                return {
                    "int8_package_build": run_child(
                        "make_int8_package", dict(base, model_dir=str(mdir), out=str(out)), th, log
                    ),
                    "ours_int8_package": run_child("infer_ours", run, th, log),
                }

            R["infer"] = {
                "pipeline": run_child("infer_pipeline", dict(base, model_dir=str(mdir), every=every), th, log),
                "pipeline_batched": run_child(
                    "infer_pipeline", dict(base, model_dir=str(mdir), every=every, batch_size=64), th, log
                ),
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
                # torch.compile (inductor, frozen weights: oneDNN prepacks them for AMX) in fp32 and bf16
                # autocast; startup_s holds the compile (issue 29's levers)
                **{
                    row: run_child(
                        "infer_ours",
                        dict(
                            base,
                            model_dir=str(mdir),
                            bf16=bf16,
                            compile=True,
                            trained=trained,
                            limit=None if native_bf16 or trained or not bf16 else 64 if quick else 500,
                            compare_tags=str(tags_file),
                        ),
                        th,
                        log,
                    )
                    for row, bf16 in (("ours_fp32_compiled", False), ("ours_bf16_compiled", True))
                },
                # static int8 through PyTorch 2 export quantization (torchao, inductor), weights and
                # activations int8 for the linear layers; the rest in fp32 or bf16 autocast (bench/pt2e.py)
                **{
                    row: run_child(
                        "infer_ours",
                        dict(base, model_dir=str(mdir), pt2e=mode, trained=trained, compare_tags=str(tags_file)),
                        th,
                        log,
                    )
                    for row, mode in (("ours_pt2e_int8", "int8"), ("ours_pt2e_int8_bf16", "int8-bf16"))
                    if pt2e_available and (mode == "int8" or native_bf16)
                },
                # the same static int8 as a product path: nerforge quantize's package, compiled once ahead of
                # time (its build is "int8_package_build"; startup_s is loading it)
                **int8_package(),
                "onnx_export": run_child("make_onnx", dict(base, model_dir=str(mdir), out=str(onnx_dir)), th, log),
                **{
                    row: run_child(
                        "infer_ours",
                        dict(
                            base, model_dir=str(onnx_dir), backend=backend, trained=trained, compare_tags=str(tags_file)
                        ),
                        th,
                        log,
                    )
                    for row, backend in (("onnx_fp32", "onnx"), ("onnx_int8", "onnx-int8"))
                },
                # ONNX Runtime's static int8: the linear layers only, and with attention's two matmuls too
                **onnx_static("onnx_int8_static", attention=False),
                **onnx_static("onnx_int8_static_attention", attention=True),
                "note": (
                    f"model = {args.trained_model}, trained: test F1 of every row on the whole test set"
                    if trained
                    else "model = the encoder with an untrained (seeded) classification head: speed "
                    "and word coverage only (pass --trained-model for F1)"
                )
                + "; bf16 and ONNX tag agreement is vs our torch fp32 output on the same sentences",
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

    if only and (RESULTS / "latest.json").is_file():
        # A partial run (--only) replaces its own sections of the last full results and keeps the others.
        previous = json.loads((RESULTS / "latest.json").read_text())
        if "train" not in only and "gemm" in R and "infer" in R:
            # the training rows' MFU stays against the peak measured beside them
            R["infer"]["gemm"] = R.pop("gemm")
        R = {**previous, **{k: v for k, v in R.items() if k != "summary"}}
        R["full_run_date"] = previous.get("full_run_date", previous["date"])  # of the sections not rerun
        R["full_run_machine"] = previous.get("full_run_machine", previous["machine"])  # and where they ran
        R["partial_update"] = f"sections {sorted(only)} from {R['date']}; the others from {R['full_run_date']}"
        R["partial_sections"] = sorted(only)
        g = R.get("gemm") or g
    summarize(R, g, quick)
    R["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    R["bench_wall_s"] = round(time.perf_counter() - T_START, 1)
    out = RESULTS / "latest.json"
    out.write_text(json.dumps(R, indent=2) + "\n")
    write_markdown(R)
    log(f"wrote {out} and BENCHMARKS.md ({R['bench_wall_s']} s)")
    print(json.dumps(R["summary"], indent=2))
    return 0


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
    p.add_argument(
        "--render", action="store_true", help="only rewrite BENCHMARKS.md's section from bench/results/latest.json"
    )
    args = p.parse_args(argv)
    if args.render:
        write_markdown(json.loads((RESULTS / "latest.json").read_text()))
        return 0
    return main_parent(args)


if __name__ == "__main__":
    sys.exit(main())
