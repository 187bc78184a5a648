"""bench/amx_check.sh, the prepared run of issue 29's measurements on an AMX CPU: it refuses any other CPU
before spending anything, runs its steps in order and stops at the first that fails. The commands it
runs are stubs here (each records its arguments); the script itself is the committed one, copied into a
scratch tree so that its results land there."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

AMX_FLAGS = "fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8"
STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$CALLS"
if [ "${FAIL_ON:-}" = "$1" ]; then echo "failed on purpose" >&2; exit 1; fi
if [ "$(basename "$0")" = nerforge ] && [ "$1" = train ]; then mkdir -p "$MODEL_DIR"; fi
if [ "$(basename "$0")" = nerforge ] && [ "$1" = verify ]; then echo '{"paths": {}}' > "$MODEL_DIR/backends.json"; fi
if [ "$1" = - ]; then cat > /dev/null; fi
exit 0
"""


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "bench").mkdir()
    shutil.copy(ROOT / "bench" / "amx_check.sh", tmp_path / "bench" / "amx_check.sh")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("nerforge", "python"):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.txt").write_text("EU B-ORG\n")
    model = tmp_path / "export"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return tmp_path


def run(tree: Path, flags: str, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    cpuinfo = tree / "cpuinfo"
    cpuinfo.write_text(f"model name\t: Test CPU\nflags\t\t: {flags}\n")
    calls = tree / "calls.txt"
    environ = {
        "PATH": f"{tree / 'stubs'}:/usr/bin:/bin",
        "CPUINFO": str(cpuinfo),
        "CALLS": str(calls),
        "DATA_DIR": str(tree / "data"),
        "MODEL_DIR": str(tree / "export"),
        "VERIFY_JSON": str(tree / "verify.json"),
        "LOG_DIR": str(tree / "logs"),
        "HOME": os.environ.get("HOME", "/tmp"),
        **env,
    }
    p = subprocess.run(
        ["bash", str(tree / "bench" / "amx_check.sh"), *args], env=environ, capture_output=True, text=True, timeout=60
    )
    return p, calls.read_text().splitlines() if calls.exists() else []


def test_a_cpu_without_amx_is_refused_before_anything_runs(tree):
    p, calls = run(tree, "fpu sse avx2 fma")
    assert p.returncode == 2
    assert "lacks: avx512_bf16 amx_bf16 amx_int8 amx_tile" in p.stderr and "Test CPU" in p.stderr
    assert calls == []


def test_on_amx_every_step_runs_in_order_and_verify_s_record_is_kept(tree):
    p, calls = run(tree, AMX_FLAGS)
    assert p.returncode == 0, p.stderr
    model, data = str(tree / "export"), str(tree / "data")
    assert calls == [
        "python -c import torchao, onnxruntime",
        f"nerforge onnx --model {model}",
        f"nerforge quantize --model {model} --data-dir {data}",
        f"nerforge verify --model {model} --data-dir {data}",
        f"python -m bench.run --only gemm,infer --trained-model {model}",
        "python -m bench.run --only train",
        "python -m bench.quality --epochs 1 --seeds 0 1 2 --variants ours_no_context --precision no",
        "python -m bench.quality --epochs 1 --seeds 0 1 2 --variants ours_no_context --precision bf16",
        "python -",
    ]
    assert (tree / "verify.json").read_text() == '{"paths": {}}\n'
    assert {f.name for f in (tree / "logs").iterdir()} >= {"onnx.log", "quantize.log", "verify.log", "infer.log"}


def test_without_an_export_it_trains_the_recipe_first_unless_told_not_to(tree):
    shutil.rmtree(tree / "export")
    p, calls = run(tree, AMX_FLAGS, "--skip-quality")
    assert p.returncode == 0, p.stderr
    train = f"nerforge train --config minilm-cpu --data-dir {tree / 'data'} --output-dir {tree}"
    assert calls[1] == train and not any("bench.quality" in c for c in calls)
    (tree / "calls.txt").unlink()
    shutil.rmtree(tree / "export")
    p, calls = run(tree, AMX_FLAGS, "--skip-train")
    assert p.returncode == 2 and "--skip-train" in p.stderr and len(calls) == 1


def test_a_failed_step_stops_the_run(tree):
    p, calls = run(tree, AMX_FLAGS, FAIL_ON="quantize")
    assert p.returncode != 0
    assert calls[-1].startswith("nerforge quantize") and not any(c.startswith("nerforge verify") for c in calls)
