"""The report of a benchmark run: ratios, MFU and targets from the measurements (`summarize`), and the
generated section of BENCHMARKS.md (`write_markdown`). Pure functions of bench/results/latest.json:
`python -m bench.run --render` rebuilds the section from the stored results alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MARK_BEGIN = "<!-- bench/run.py:begin (generated; edit outside the markers) -->"
MARK_END = "<!-- bench/run.py:end -->"
BATCH = 16


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


def model_flops(pieces: float, sum_len_sq_per_piece: float, g: dict) -> float:
    """6 * N_non_embedding * real tokens + attention 12 * layers * d * sum(L^2) (L real length; the
    sum estimated as pieces * E[L^2]/E[L] over the training windows)."""
    return 6 * g["params_non_embedding"] * pieces + 12 * g["num_layers"] * g["hidden"] * pieces * sum_len_sq_per_piece


INFER_ROWS = (
    "pipeline",
    "pipeline_batched",
    "ours_fp32",
    "ours_bf16",
    "ours_fp32_compiled",
    "ours_bf16_compiled",
    "ours_pt2e_int8",
    "ours_pt2e_int8_bf16",
    "ours_int8_package",
    "onnx_fp32",
    "onnx_int8",
    "onnx_int8_static",
    "onnx_int8_static_attention",
)
# The CPU paths a user can run (pipeline rows excluded), and what the name in the summary says.
PATH_ROWS = {
    "ours_fp32": "torch fp32",
    "ours_bf16": "torch bf16 autocast",
    "ours_fp32_compiled": "torch fp32 + torch.compile",
    "ours_bf16_compiled": "torch bf16 autocast + torch.compile",
    "onnx_fp32": "ONNX Runtime fp32",
    "ours_pt2e_int8": "torch static int8 (PT2E, inductor)",
    "ours_pt2e_int8_bf16": "torch static int8 + bf16 (PT2E, inductor)",
    "ours_int8_package": "torch-int8 package (nerforge quantize, AOTInductor)",
    "onnx_int8": "ONNX Runtime int8 (dynamic)",
    "onnx_int8_static": "ONNX Runtime int8 (static, linear layers)",
    "onnx_int8_static_attention": "ONNX Runtime int8 (static, linear layers and attention)",
}
# Rows held to the bf16 and to the int8 GEMM ceiling (the rest to fp32's). The int8 ceiling measured is ONNX
# Runtime's dynamic int8 GEMM; the static and PT2E (oneDNN) int8 rows are held to it too.
BF16_ROWS = ("ours_bf16", "ours_bf16_compiled")
INT8_ROWS = (
    "onnx_int8",
    "onnx_int8_static",
    "onnx_int8_static_attention",
    "ours_pt2e_int8",
    "ours_pt2e_int8_bf16",
    "ours_int8_package",
)
MAX_F1_DELTA = 0.003  # issue 29: a path counts only at test F1 within 0.3 points of torch fp32's


def fastest(S: dict, inf: dict, wps) -> None:
    """Issue 29's summary: the fastest path whose test F1 is within 0.3 of torch fp32's (without F1, an
    untrained head: the fastest at all, marked so), against both ways of running the pipeline."""
    f32 = (inf.get("ours_fp32") or {}).get("f1")
    rows = []
    for key, name in PATH_ROWS.items():
        r = inf.get(key) or {}
        if not wps(r) or (r.get("sentences") != (inf.get("ours_fp32") or {}).get("sentences")):
            continue  # a row on a sample (emulated bf16 in --quick) is not comparable
        delta = None if f32 is None or r.get("f1") is None else r["f1"] - f32
        if delta is None or abs(delta) <= MAX_F1_DELTA:
            rows.append((wps(r), key, name, delta))
    if not rows:
        return
    speed, key, name, delta = max(rows)
    S["inference_fastest_backend"] = name + ("" if f32 is not None else " (untrained head: F1 not checked)")
    S["inference_fastest_speedup_vs_pipeline"] = ratio(speed, wps(inf.get("pipeline")))
    S["inference_fastest_speedup_vs_batched_pipeline"] = ratio(speed, wps(inf.get("pipeline_batched")))
    S["inference_fastest_f1_delta"] = None if delta is None else round(100 * delta, 3)  # points
    S["inference_fastest_startup_s"] = (inf.get(key) or {}).get("startup_s")


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
        if "onnx_fp32" in inf:  # ONNX Runtime rows (issue 16), against both ways of using the pipeline
            onnx, int8, batched = inf["onnx_fp32"], inf["onnx_int8"], inf.get("pipeline_batched")
            S["inference_speedup_vs_batched_pipeline"] = ratio(wps(inf["ours_fp32"]), wps(batched))
            S["inference_onnx_speedup_vs_pipeline"] = ratio(wps(onnx), wps(inf["pipeline"]))
            S["inference_onnx_speedup_vs_batched_pipeline"] = ratio(wps(onnx), wps(batched))
            S["inference_onnx_int8_speedup_vs_pipeline"] = ratio(wps(int8), wps(inf["pipeline"]))
            S["inference_onnx_int8_speedup_vs_batched_pipeline"] = ratio(wps(int8), wps(batched))
            S["inference_batched_pipeline_speedup_vs_pipeline"] = ratio(wps(batched), wps(inf["pipeline"]))
            if f32 is not None and onnx.get("f1") is not None and int8.get("f1") is not None:
                S["inference_onnx_f1_delta"] = round(onnx["f1"] - f32, 5)
                S["inference_onnx_int8_f1_delta"] = round(int8["f1"] - onnx["f1"], 5)
        # Inference MFU: forward FLOPs of the real pieces (2 N per piece + attention 4 L d per piece pair of
        # a window) per second, over the fp32 GEMM peak of the same run (bf16 rows: over the bf16 peak).
        gi = inf.get("gemm") or g  # a partial run measures its own peak beside the inference rows
        if gi and "params_non_embedding" in gi:
            for key in INFER_ROWS:
                r = inf.get(key) or {}
                if r.get("pieces") and r.get("time_s"):
                    flops = (
                        2 * gi["params_non_embedding"] * r["pieces"]
                        + 4 * gi["num_layers"] * gi["hidden"] * r["sum_len_sq"]
                    )
                    r["model_gflops_per_s"] = round(flops / r["time_s"] / 1e9, 2)
                    peaks = {k: gi["peak_bf16_gflops"] for k in BF16_ROWS}
                    peaks.update((k, gi.get("peak_int8_dynamic_gflops")) for k in INT8_ROWS)
                    peak = peaks.get(key) or gi["peak_fp32_gflops"]
                    r["inference_mfu"] = round(r["model_gflops_per_s"] / peak, 4)
                    S[f"inference_mfu_{key}"] = r["inference_mfu"]
            # The most a predictor could gain on this machine: at 100% of the GEMM peak with its own input
            # (ratio / MFU), and with the pipeline's input, each sentence alone (1 / the pipeline's MFU).
            for key, prec, speedup in (
                ("ours_fp32", "fp32", "inference_speedup_vs_pipeline"),
                ("ours_bf16", "bf16", "inference_bf16_speedup_vs_pipeline"),
                ("onnx_int8", "onnx_int8", "inference_onnx_int8_speedup_vs_pipeline"),
            ):
                mfu = S.get(f"inference_mfu_{key}")
                if mfu and S.get(speedup) and (key != "onnx_int8" or gi.get("peak_int8_dynamic_gflops")):
                    S[f"inference_{prec}_ceiling_vs_pipeline"] = round(S[speedup] / mfu, 2)
            if S.get("inference_mfu_pipeline"):
                S["inference_fp32_ceiling_vs_pipeline_sentences_alone"] = round(1 / S["inference_mfu_pipeline"], 2)
            # Issue 29: each low-precision kind at its best, as a fraction of its own GEMM ceiling.
            bf16_mfu = [S.get(f"inference_mfu_{k}") for k in BF16_ROWS]
            if any(bf16_mfu):
                S["inference_bf16_ceiling_fraction"] = max(x for x in bf16_mfu if x)
            int8_mfu = [S.get(f"inference_mfu_{k}") for k in INT8_ROWS]
            if any(int8_mfu) and gi.get("peak_int8_dynamic_gflops"):
                S["inference_int8_ceiling_fraction"] = max(x for x in int8_mfu if x)
        fastest(S, inf, wps)
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
    if "inference_onnx_int8_speedup_vs_pipeline" in S:
        d8 = S.get("inference_onnx_int8_f1_delta")
        held = d8 is not None and abs(d8) <= 0.003  # int8 counts only where test F1 stays within 0.3
        label = f" (test F1 {100 * d8:+.2f} vs ONNX fp32)" if d8 is not None else " (no F1: untrained head)"
        tgt(
            "inference ONNX int8 vs pipeline" + label,
            S["inference_onnx_int8_speedup_vs_pipeline"] if held else None,
            ">=",
            8,
        )
        tgt(
            "inference ONNX int8 vs batched pipeline" + label,
            S["inference_onnx_int8_speedup_vs_batched_pipeline"] if held else None,
            ">=",
            5,
        )
        best = max(x for x in (S.get("inference_speedup_vs_pipeline"), S["inference_onnx_speedup_vs_pipeline"]) if x)
        tgt("inference fp32 (torch or ONNX) vs pipeline", best, ">=", 5)
    if "inference_fastest_speedup_vs_pipeline" in S:  # issue 29
        tgt(
            f"fastest CPU path ({S['inference_fastest_backend']}) vs pipeline",
            S["inference_fastest_speedup_vs_pipeline"],
            ">=",
            10,
        )
        tgt("fastest CPU path vs batched pipeline", S.get("inference_fastest_speedup_vs_batched_pipeline"), ">=", 7)
        tgt("bf16 inference, fraction of the bf16 GEMM ceiling", S.get("inference_bf16_ceiling_fraction"), ">=", 0.4)
        tgt("int8 inference, fraction of the int8 GEMM ceiling", S.get("inference_int8_ceiling_fraction"), ">=", 0.4)
    if S.get("train_speedup_bf16_vs_ours_fp32") is not None:
        tgt("training bf16 vs ours fp32 (steps/s)", S["train_speedup_bf16_vs_ours_fp32"], ">=", 1.6)
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


def machine_text(m: dict) -> str:
    """A machine record as the generated section names it: CPU, cores and the instruction sets that matter."""
    return f"{m['cpu']}, {m['cores']} cores (AVX-512: {m['avx512']}, AVX512-BF16: {m['avx512_bf16']}, AMX: {m['amx']})"


def markdown(R: dict) -> str:
    """The generated section of BENCHMARKS.md (markers included) for the results of a run."""
    S, m = R["summary"], R["machine"]
    tr, pr, inf, g = R.get("train", {}), R.get("prep", {}), R.get("infer", {}), R.get("gemm", {})
    L = [
        MARK_BEGIN,
        "",
        f"### Latest run: {R['date']} ({R['mode']} mode)",
        "",
        f"- command: `{R['command']}`",
        f"- machine: {machine_text(m)}; threads per measurement: {R['threads']}; load average at start "
        f"{m['loadavg_at_start']}, at end {R.get('loadavg_at_end')}",
        f"- versions: python {m['python']}, " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- model `{R['model']}`, data `{R['data_dir']}`, batch {R['batch_size']}, seed {R['seed']}; each "
        "measurement in its own subprocess (peak RSS = ru_maxrss of that subprocess tree)",
    ]
    if R.get("partial_update"):
        L.append(f"- partial run (`--only`): {R['partial_update']}; the sections it did not run are quoted from then")
        fm = R.get("full_run_machine")
        if fm and (fm["cpu"], fm["cores"]) != (m["cpu"], m["cores"]):
            L.append(
                f"- **the quoted sections ran on another machine**: {machine_text(fm)}; compare rows of one "
                "section only, and each row's MFU is against the peak measured beside it"
            )
    L.append("")
    if g and "peak_fp32_gflops" in g:
        # a partial run without training keeps the peak measured beside the training rows it quotes
        quoted = R.get("partial_update") and "train" not in R.get("partial_sections", ["train"])
        where = f"with the training rows ({R['full_run_date']})" if quoted else "in this run"
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
            f"Matrix-multiply peak measured {where}{twice}: fp32 {g['peak_fp32_gflops']} GFLOP/s "
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
            "| 3. inference, CoNLL-2003 test | sentences | sentences/s | words/s | x pipeline | x batched pipeline "
            "| words predicted / gold | test F1 | tags = torch fp32 | inference MFU | start-up s | model MB | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        wps = lambda d: (d or {}).get("words_per_s")  # noqa: E731
        for k, lab in (
            ("pipeline", "pipeline('ner'), one sentence per call"),
            ("pipeline_batched", "pipeline('ner') over the list, batch_size=64"),
            ("ours_fp32", "ours: Predictor, torch fp32"),
            ("ours_bf16", "ours: Predictor, torch bf16"),
            ("ours_fp32_compiled", "ours: Predictor, torch fp32, torch.compile"),
            ("ours_bf16_compiled", "ours: Predictor, torch bf16, torch.compile"),
            ("onnx_fp32", "ours: Predictor, ONNX Runtime fp32"),
            ("ours_pt2e_int8", "ours: Predictor, torch static int8 (PT2E), torch.compile"),
            ("ours_pt2e_int8_bf16", "ours: Predictor, torch static int8 + bf16 (PT2E), torch.compile"),
            ("ours_int8_package", "ours: nerforge quantize's package (--backend torch-int8), AOTInductor"),
            ("onnx_int8", "ours: Predictor, ONNX Runtime int8"),
            ("onnx_int8_static", "ours: Predictor, ONNX Runtime static int8, linear layers"),
            ("onnx_int8_static_attention", "ours: Predictor, ONNX Runtime static int8, linear + attention"),
        ):
            r = inf.get(k)
            if not r:
                continue
            agree = r.get("tag_agreement_vs_fp32")
            L.append(
                f"| {lab} | {fmt(r.get('sentences'))} | {fmt(r.get('sentences_per_s'))} | {fmt(r.get('words_per_s'), 0)} | "
                f"{fmt(ratio(wps(r), wps(inf['pipeline'])), 2)} | {fmt(ratio(wps(r), wps(inf.get('pipeline_batched'))), 2)} | "
                f"{fmt(r.get('words_predicted'))} / {fmt(r.get('words_gold'))} | "
                f"{fmt(100 * r['f1']) if r.get('f1') is not None else '–'} | "
                f"{f'{100 * agree:.2f}%' if agree is not None else '–'} | {fmt(r.get('inference_mfu'), 3)} | "
                f"{fmt(r.get('startup_s'), 1)} | {fmt(r.get('model_file_mb'), 1)} | {fmt(r.get('peak_rss_mb'), 0)} |"
            )
        L += ["", f"({inf.get('note')})", ""]
        v = (inf.get("onnx_export") or {}).get("verification")
        if v:
            diff = v.get("fp32", {}).get("max_abs_logit_diff_vs_torch")
            L += [
                f"ONNX export (`nerforge onnx`, {fmt(inf['onnx_export'].get('export_s'))} s): "
                f"fp32 max |logit - torch| {f'{diff:.1e}' if diff is not None else '–'} on the check sample; "
                f"int8 settings {json.dumps({k: x for k, x in v.get('int8', {}).get('settings', {}).items() if k != 'nodes_kept_fp32'})}; "
                f"intra-op threads {fmt(inf['onnx_fp32'].get('intra_op_threads'))}. Inference MFU = forward FLOPs of the "
                "real pieces (2 x non-embedding parameters per piece + 4 x layers x hidden per pair of pieces of a "
                "window) per second over the fp32 GEMM peak of the same run (bf16 row: the bf16 peak; int8 row: "
                "ONNX Runtime's dynamic int8 MatMul at the model's shapes, where measured)"
                + (
                    f"; peak measured beside these rows: fp32 {inf['gemm']['peak_fp32_gflops']}, bf16 "
                    f"{inf['gemm']['peak_bf16_gflops']}, int8 dynamic "
                    f"{inf['gemm'].get('peak_int8_dynamic_gflops', '–')} GFLOP/s."
                    if inf.get("gemm")
                    else "."
                ),
                "",
            ]
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
    return "\n".join(L)


def write_markdown(R: dict) -> None:
    write_section(
        MARK_BEGIN, MARK_END, markdown(R), heading="## End-to-end: notebook recipe vs nerforge (`bench/run.py`)"
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
