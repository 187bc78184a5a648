"""--backend auto and nerforge verify: which path runs an export, and the record that decides it."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import SAMPLE_DIR

from nerforge.backends import MAX_F1_DELTA, RECORD_FILE, Choice, choose, cpu_flags, cpu_name, fingerprint, native_bf16

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu vme sse sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
X86_OLD = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse sse2 avx2 fma\n"
ARM = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd evtstrm aes sve bf16 i8mm\n"


def test_cpu_flags_and_native_bf16():
    assert {"avx512_bf16", "amx_bf16"} <= cpu_flags(X86)
    assert native_bf16(cpu_flags(X86))
    assert not native_bf16(cpu_flags(X86_OLD))  # AVX2 only: bf16 would be emulated
    assert native_bf16(cpu_flags(ARM))
    assert cpu_flags("") == frozenset()
    assert cpu_name(X86) == "Intel(R) Xeon(R) Platinum 8488C"


def record(**paths):
    base = {"torch": {"f1": 0.9, "f1_delta": 0.0, "words_per_s": 1000.0, "sha256": "a"}}
    for name, (delta, speed) in paths.items():
        base[name.replace("_", "-")] = {"f1_delta": delta, "words_per_s": speed, "sha256": name}
    return {"split": "validation", "cpu": "test cpu", "paths": base}


ALL = {"torch": None, "torch-bf16": None, "onnx": None, "onnx-int8": None, "torch-int8": None}
AMX = cpu_flags(X86)


def test_choose_without_record_or_on_a_gpu_is_plain_torch():
    c = choose(None, device_type="cpu", flags=AMX, runnable=ALL)
    assert (c.backend, c.bf16) == ("torch", False) and RECORD_FILE in c.reason
    c = choose(record(torch_bf16=(0.0, 9000.0)), device_type="cuda", flags=AMX, runnable=ALL)
    assert (c.backend, c.bf16) == ("torch", False) and "cuda" in c.reason


def test_choose_takes_the_fastest_verified_path():
    r = record(torch_bf16=(0.05, 3000.0), onnx_int8=(-0.1, 4000.0), onnx=(0.0, 1100.0))
    c = choose(r, device_type="cpu", flags=AMX, runnable=ALL)
    assert c == Choice("onnx-int8", False, c.reason) and c.path == "onnx-int8"
    assert "4.00x fp32's words/s" in c.reason and "-0.10" in c.reason


def test_a_speed_tie_goes_to_the_path_closer_to_fp32():
    r = record(torch_bf16=(-0.03, 3244.0), onnx_int8=(-0.28, 3285.0))  # the MiniLM recipe's validation record
    c = choose(r, device_type="cpu", flags=AMX, runnable=ALL)
    assert c.path == "torch-bf16" and "-0.03" in c.reason
    r = record(torch_bf16=(-0.03, 3000.0), onnx_int8=(-0.28, 3300.0))  # 10% faster: speed wins
    assert choose(r, device_type="cpu", flags=AMX, runnable=ALL).path == "onnx-int8"


def test_choose_runs_the_int8_package_as_its_own_backend():
    r = record(torch_bf16=(0.0, 3000.0), onnx_int8=(-0.1, 3300.0), torch_int8=(0.09, 5000.0))
    c = choose(r, device_type="cpu", flags=AMX, runnable=ALL)
    assert (c.backend, c.bf16, c.path) == ("torch-int8", False, "torch-int8")
    foreign = {**ALL, "torch-int8": "built for a CPU with amx_int8, which this one lacks"}
    c = choose(r, device_type="cpu", flags=AMX, runnable=foreign)
    assert c.path == "onnx-int8" and "torch-int8: built for a CPU with amx_int8" in c.reason


def test_choose_never_takes_a_path_that_moves_f1():
    r = record(torch_bf16=(0.05, 3000.0), onnx_int8=(-(MAX_F1_DELTA + 0.01), 4000.0))
    c = choose(r, device_type="cpu", flags=AMX, runnable=ALL)
    assert (c.backend, c.bf16, c.path) == ("torch", True, "torch-bf16")
    assert "onnx-int8: F1 -0.31" in c.reason


def test_choose_never_takes_emulated_bf16():
    r = record(torch_bf16=(0.0, 3000.0))  # measured on a CPU with AMX, run on one without
    c = choose(r, device_type="cpu", flags=cpu_flags(X86_OLD), runnable=ALL)
    assert (c.backend, c.bf16) == ("torch", False)
    assert "no native bf16" in c.reason


def test_choose_skips_paths_it_cannot_run_or_whose_files_changed():
    r = record(onnx_int8=(0.0, 4000.0), torch_bf16=(0.0, 2000.0))
    no_ort = {**ALL, "onnx-int8": "onnxruntime not installed"}
    c = choose(r, device_type="cpu", flags=AMX, runnable=no_ort)
    assert c.path == "torch-bf16" and "onnxruntime not installed" in c.reason
    changed = {"torch": "a", "torch-bf16": "other weights", "onnx-int8": "onnx_int8"}
    c = choose(r, device_type="cpu", flags=AMX, runnable=ALL, current=changed)
    assert c.path == "onnx-int8"
    changed["onnx-int8"] = None  # the file is gone
    c = choose(r, device_type="cpu", flags=AMX, runnable=ALL, current=changed)
    assert c.path == "torch" and "files changed since verified" in c.reason and "file missing" in c.reason


@pytest.fixture
def export(quickstart_export, tmp_path):
    """A copy of the session's quick-start export (verify writes into it)."""
    dst = tmp_path / "model"
    shutil.copytree(quickstart_export, dst)
    return dst


def test_verify_writes_a_record_that_auto_follows(export, monkeypatch, capsys):
    from nerforge import backends
    from nerforge.cli import score as score_cli
    from nerforge.cli import verify as verify_cli

    monkeypatch.setattr(backends, "cpu_flags", lambda cpuinfo=None: AMX)  # as on a CPU with native bf16
    rc = verify_cli.main(["--model", str(export), "--data-dir", "bundled:sample", "--paths", "torch", "torch-bf16"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    rec = json.loads((export / RECORD_FILE).read_text())
    assert rec["split"] == "validation" and rec["data"] == "bundled:sample"
    assert set(rec["paths"]) == {"torch", "torch-bf16"}
    torch_entry, bf16_entry = rec["paths"]["torch"], rec["paths"]["torch-bf16"]
    assert torch_entry["f1_delta"] == 0.0 and 0.0 < torch_entry["f1"] <= 1.0
    assert bf16_entry["f1_delta"] == pytest.approx(100 * (bf16_entry["f1"] - torch_entry["f1"]), abs=1e-3)
    assert bf16_entry["sha256"] == torch_entry["sha256"] == fingerprint(export, "torch")
    assert bf16_entry["precision"] == "bf16 autocast" and rec["sentences"] > 0

    # auto runs what the record says is fastest and safe, and says so; score records it.
    fast = "torch-bf16" if bf16_entry["words_per_s"] > torch_entry["words_per_s"] else "torch"
    safe = abs(bf16_entry["f1_delta"]) <= MAX_F1_DELTA
    metrics = export.parent / "m.json"
    rc = score_cli.main(
        ["--model", str(export), "--data-dir", "bundled:sample", "--quiet", "--metrics-json", str(metrics)]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    chosen = json.loads(metrics.read_text())["settings"]["backend"]
    assert chosen["chosen"].startswith(f"auto: {fast if safe else 'torch'}")
    assert f"auto: {fast if safe else 'torch'}" in err
    assert chosen["precision"] == ("bf16 autocast" if safe and fast == "torch-bf16" else "fp32")

    # A record whose bf16 entry moved F1, read on the same CPU: auto stays in fp32.
    rec["paths"]["torch-bf16"].update(f1_delta=1.0, words_per_s=10 * torch_entry["words_per_s"])
    (export / RECORD_FILE).write_text(json.dumps(rec))
    assert backends.resolve(str(export)).path == "torch"
    # An explicit --backend is taken as given, whatever the record.
    assert backends.resolve(str(export), "torch", bf16=True).path == "torch-bf16"


def test_verify_without_onnx_files_says_why(export, capsys):
    from nerforge.cli import verify as verify_cli

    rc = verify_cli.main(
        [
            "--model",
            str(export),
            "--data-dir",
            "bundled:sample",
            "--paths",
            "torch",
            "onnx-int8",
            "torch-int8",
            "--no-write",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    rec = json.loads(out.out)
    assert set(rec["paths"]) == {"torch"}
    assert "onnx-int8" in rec["not_run"] and "nerforge onnx" in rec["not_run"]["onnx-int8"]
    assert rec["not_run"]["torch-int8"] == "no pt2/model_int8.pt2 in the export (nerforge quantize builds it)"
    assert not (export / RECORD_FILE).exists()


def test_a_broken_record_is_a_clear_error(export, capsys):
    from nerforge.cli import score as score_cli

    (export / RECORD_FILE).write_text("{not json")
    rc = score_cli.main(["--model", str(export), "--data-dir", "bundled:sample", "--quiet"])
    assert rc == 2
    assert RECORD_FILE in capsys.readouterr().err


def test_compile_tags_as_eager_and_says_so(quickstart_export):
    """--compile (torch.compile, weights frozen, dynamic shapes): the tags of the eager model in fp32 on
    batches of different widths, one compiled graph for all of them."""
    from conll2003_loader.parsing import read_conll
    from nerforge.backends import load_predictor

    sentences = [s.tokens for s in read_conll(SAMPLE_DIR / "test.txt")][:40]
    eager = load_predictor(str(quickstart_export), "torch")
    compiled = load_predictor(str(quickstart_export), "auto", compile=True)
    assert compiled.describe()["precision"] == "fp32, torch.compile"
    assert compiled.choice.path == "torch"
    assert compiled.predict_words(sentences) == eager.predict_words(sentences)
    with pytest.raises(ValueError, match="--compile is for the torch backend"):
        load_predictor(str(quickstart_export), "onnx", compile=True)
