"""bench/gpu.py: the GPU check's own code path, run on the CPU (--smoke), and its inputs. Nothing timed."""

import json
import math
import subprocess
import sys

import pytest
from conftest import ROOT

from bench import gpu


def _positive(row: dict, *keys: str) -> None:
    for k in keys:
        v = row[k]
        assert isinstance(v, (int, float)) and math.isfinite(v) and v > 0, (row["kind"], k, v)


@pytest.mark.release  # bench/gpu.py's own run; the GPU check (bench/gpu_check.sh) runs it for real
def test_smoke_writes_the_whole_json(tmp_path):
    out = tmp_path / "gpu.json"
    p = subprocess.run(
        [sys.executable, "-m", "bench.gpu", "--smoke", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["schema"] == gpu.SCHEMA and r["smoke"] is True and r["complete"] is True
    assert {"machine", "flops", "archs", "data", "loop_on_cuda", "gemm", "fused_adamw_check", "summary"} <= set(r)
    assert "6 * params_non_embedding * real_pieces" in r["flops"]["train"]
    assert r["data"]["source"] in ("real", "stats", "synthetic")
    assert r["loop_on_cuda"]["pad_multiple_cuda"] == 8 and r["loop_on_cuda"]["pin_memory_on_cuda"] is True
    for k in ("bf16", "tf32", "fp32"):
        assert r["gemm"][f"peak_{k}_tflops"] > 0
    # the loop's order: optimizer on CPU parameters, model moved, fused AdamW steps on the device
    assert r["fused_adamw_check"]["status"] == "ok" and r["fused_adamw_check"]["fused"] is True

    rows = r["rows"]
    assert not [x for x in rows if x["status"] == "error"], [x.get("error") for x in rows]
    train = {(x["precision"], x["shape"], x["settings"]["host_sync_per_step"]): x for x in rows if x["kind"] == "train"}
    assert set(train) == {
        ("bf16", "packed", True),
        ("tf32", "packed", True),
        ("fp32", "packed", True),
        ("bf16", "sentences", True),
        ("bf16", "packed", False),
    }
    for x in train.values():
        assert x["status"] == "ok" and x["steps"] >= 1
        _positive(x, "sentences_per_s", "real_pieces_per_s", "model_tflops_per_s", "mfu_vs_bf16_peak", "peak_memory_mb")
        assert math.isfinite(x["loss_mean"]) and x["params_non_embedding"] < x["params_total"]
        s = x["settings"]
        assert s["fused_adamw"] is True and s["attn_implementation"] == "sdpa" and s["pad_multiple"] == 1
        assert s["autocast"] == ("bf16" if x["precision"] == "bf16" else None)
        assert s["tf32"] is False  # never on a CPU
    assert train[("bf16", "sentences", True)]["sentences_per_window"] == 1
    assert train[("bf16", "packed", True)]["sentences_per_window"] > 1

    predict = {x["precision"]: x for x in rows if x["kind"] == "predict"}
    assert set(predict) == {"fp32", "bf16"}
    for x in predict.values():
        assert x["status"] == "ok"
        _positive(x, "sentences_per_s", "words_per_s", "real_pieces_per_s", "mfu_vs_bf16_peak", "peak_memory_mb")

    (onnx,) = [x for x in rows if x["kind"] == "onnx"]
    if onnx["status"] == "ok":
        _positive(onnx, "real_pieces_per_s", "mfu_vs_bf16_peak", "peak_memory_mb")
    else:
        assert onnx["status"] == "skipped" and "onnxruntime" in onnx["reason"]
    assert set(r["summary"]) >= {"train_smoke-2x32_bf16", "predict_smoke-2x32_fp32"}


def test_word_tokenizer_has_the_vocabulary_and_the_piece_counts():
    tok = gpu.word_tokenizer()
    assert len(tok) == gpu.VOCAB
    enc = tok([["a12b3", "a5", "a28890b99b0"]], is_split_into_words=True)
    assert enc.word_ids(0) == [None, 0, 0, 1, 2, 2, 2, None]
    assert tok.unk_token_id not in enc["input_ids"][0]


def test_stored_shapes_match_the_configs_and_add_up():
    stats = json.loads(gpu.SHAPES_FILE.read_text())
    shapes = gpu.shapes(smoke=False)
    for name, st in stats["train"].items():
        assert {k: shapes[name][k] for k in st["settings"]} == st["settings"]
        assert sum(st["length_histogram"].values()) == st["windows"]
        assert sum(int(k) * n for k, n in st["length_histogram"].items()) == st["pieces"]
    assert shapes["packed"]["from"].startswith("configs/")
    assert sum(stats["test"]["words_per_sentence"].values()) <= stats["test"]["sentences"]
