"""nerforge quantize and --backend torch-int8: the static int8 AOTInductor package, built into an export,
checked against fp32, refused where it cannot run, recorded by verify and chosen by auto."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest

pytest.importorskip("torchao", reason="nerforge quantize needs the int8 extra (torchao)")

from nerforge.backends import cpu_flags, load_predictor, resolve  # noqa: E402
from nerforge.pt2_runtime import BUILD_FILE, INT8_FILE, PT2_DIR, isa_flags, package_problem  # noqa: E402

QUANTIZE = ["--data-dir", "bundled:sample", "--calibration-sentences", "48", "--check-sentences", "48"]


@pytest.fixture(scope="module")
def quantized(quickstart_export, tmp_path_factory):
    """A copy of the session's quick-start export with its int8 package built (once for the module). Its
    classifier's logits are doubled first (the same tags, over-confident scores): the training loop
    calibrated the export, and `nerforge calibrate` must have a temperature to fold in."""
    from safetensors.torch import load_file, save_file

    from nerforge.cli import quantize

    dst = tmp_path_factory.mktemp("pt2") / "model"
    shutil.copytree(quickstart_export, dst)
    state = load_file(dst / "model.safetensors")
    for k in [k for k in state if k.startswith("classifier.")]:
        state[k] = state[k] * 2
    save_file(state, dst / "model.safetensors", metadata={"format": "pt"})
    assert quantize.main(["--model", str(dst), *QUANTIZE, "--quiet"]) == 0
    return dst


def sample_sentences(model, split="test"):
    from nerforge.scoring import data_settings, load_split

    ds = load_split(split, data_settings(str(model), data_dir="bundled:sample"))
    return [list(s) for s in ds["tokens"]], list(ds["document_id"])


def test_quantize_writes_a_checked_int8_package_for_this_cpu(quantized):
    import torch

    assert sorted(p.name for p in (quantized / PT2_DIR).iterdir()) == [BUILD_FILE, INT8_FILE]
    assert not any(p.name.startswith(".") for p in quantized.iterdir())  # no temporary folder left
    build = json.loads((quantized / PT2_DIR / BUILD_FILE).read_text())
    assert build["torch"] == torch.__version__ and build["isa_flags"] == isa_flags(cpu_flags())
    assert build["calibration_sentences"] == 48 and build["calibration_windows"] >= 1
    assert build["check"]["sentences"] == 48 and build["check"]["tag_agreement_vs_fp32"] >= 0.95
    assert build["max_pieces"] == load_predictor(str(quantized), "torch").max_length
    # Real int8 kernels, not fp32 matrix products on dequantized weights: the compiled wrapper calls
    # oneDNN's quantized linear (the lowering needs the weights frozen, i.e. a build without autograd).
    with zipfile.ZipFile(quantized / PT2_DIR / INT8_FILE) as z:
        wrapper = "".join(z.read(n).decode() for n in z.namelist() if n.endswith("wrapper.cpp"))
    assert "qlinear_pointwise" in wrapper and "aoti_torch_cpu_addmm_out" not in wrapper


def test_torch_int8_tags_as_fp32_and_says_what_it_runs(quantized):
    sentences, docs = sample_sentences(quantized)
    fp32 = load_predictor(str(quantized), "torch")
    int8 = load_predictor(str(quantized), "torch-int8")
    assert int8.describe()["precision"].startswith("static int8 linear layers")
    assert int8.windows == fp32.windows  # the export's own windows
    ours, ref = int8.predict_words(sentences, docs), fp32.predict_words(sentences, docs)
    assert [len(s) for s in ours] == [len(s) for s in sentences]  # every word tagged once
    words = sum(len(s) for s in sentences)
    agree = sum(a == b for s, t in zip(ours, ref) for a, b in zip(s, t))
    assert agree / words >= 0.95, (agree, words)
    with pytest.raises(ValueError, match="--bf16"):
        load_predictor(str(quantized), "torch-int8", bf16=True)


def test_commands_keep_torchao_noise_off_the_console(quantized):
    """With the int8 extra installed transformers imports torchao on every model load; its warnings (CUDA
    kernel libraries that do not load on a CPU torch, pytree notices) are not shown by our commands. (The
    torch backend: torch-int8 loads no transformers model, so torchao is not imported there.)"""
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, "-m", "nerforge", "predict", "--model", str(quantized), "--backend", "torch"],
        input="Mara Lindqvist visited Port Ellis .\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "torchao" not in p.stderr and "Enum subclass" not in p.stderr, p.stderr
    assert p.stderr.startswith("backend torch (fp32"), p.stderr


def test_a_package_built_for_another_cpu_or_torch_is_refused(quantized, tmp_path):
    from nerforge.pt2_runtime import Pt2Predictor

    build = {"isa_flags": ["amx_int8", "avx2"], "torch": "2.13.0"}
    assert package_problem(build, frozenset({"avx2", "amx_int8", "sse2"}), "2.13.0") is None  # sse2: not an ISA flag
    assert "lacks amx_int8" in package_problem(build, frozenset({"avx2"}), "2.13.0")
    # Built without AVX-512: its weights were prepacked for AVX2 kernels; rebuilt on the richer CPU instead.
    assert "also has avx512f" in package_problem(build, frozenset({"avx2", "amx_int8", "avx512f"}), "2.13.0")
    assert "torch 2.13.0" in package_problem(build, frozenset({"avx2", "amx_int8"}), "2.14.1")
    here = frozenset({"avx2", "amx_int8"})
    assert package_problem({**build, "weights_sha256": "a"}, here, "2.13.0", weights_sha256="a") is None
    assert "other weights" in package_problem({**build, "weights_sha256": "a"}, here, "2.13.0", weights_sha256="b")
    assert "an older nerforge built it" in package_problem(build, here, "2.13.0", weights_sha256="b")
    with pytest.raises(ValueError, match=f"{INT8_FILE}.*rebuild it here with nerforge quantize"):
        Pt2Predictor.from_pretrained(quantized, flags=frozenset())  # a CPU without this one's instructions
    bare = tmp_path / "bare"
    shutil.copytree(quantized, bare, ignore=shutil.ignore_patterns(PT2_DIR))
    with pytest.raises(ValueError, match="nerforge quantize --model"):
        load_predictor(str(bare), "torch-int8")


def test_a_package_is_never_run_with_weights_it_was_not_built_from(quantized, tmp_path, capsys):
    """Calibration folds a temperature into the classifier: the package (its own frozen copy of the old
    weights) would serve uncalibrated scores. calibrate leaves pt2/ out and says so; a package whose
    export's weights changed any other way is refused by name, and auto passes it over."""
    from safetensors.torch import load_file, save_file

    from nerforge.cli import calibrate
    from nerforge.cli import verify as verify_cli
    from nerforge.pt2_runtime import weights_digest

    build = json.loads((quantized / PT2_DIR / BUILD_FILE).read_text())
    assert build["weights_sha256"] == weights_digest(quantized)
    export = tmp_path / "calibrated"
    shutil.copytree(quantized, export)
    # report and audit rewrite the export around the same weights: the package stays, byte for byte
    from nerforge.export import update_metrics

    update_metrics(export, "note", "rewritten")
    assert (export / PT2_DIR / INT8_FILE).read_bytes() == (quantized / PT2_DIR / INT8_FILE).read_bytes()
    assert calibrate.main(["--model", str(export), "--data-dir", "bundled:sample", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "temperature 1.000" not in out  # the doubled logits are divided back
    assert not (export / PT2_DIR).exists() and f"rebuild it with nerforge quantize --model {export}" in out
    assert "rerun nerforge verify" not in out  # the export has no backends.json
    assert weights_digest(export) != build["weights_sha256"]

    changed = tmp_path / "changed"
    shutil.copytree(quantized, changed)
    assert verify_cli.main(["--model", str(changed), "--data-dir", "bundled:sample", "--paths", "torch-int8"]) == 0
    record = json.loads((changed / "backends.json").read_text())
    record["paths"]["torch-int8"].update(f1_delta=0.0, words_per_s=100 * record["paths"]["torch"]["words_per_s"])
    state = load_file(changed / "model.safetensors")
    bias = next(k for k in state if k.endswith("classifier.bias"))
    state[bias] = state[bias] + 1.0
    save_file(state, changed / "model.safetensors", metadata={"format": "pt"})
    # The torch record is stale too: re-verify torch alone, so only the package's weights are in question.
    record["paths"]["torch"]["sha256"] = weights_digest(changed)
    (changed / "backends.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="built from other weights"):
        load_predictor(str(changed), "torch-int8")
    choice = resolve(str(changed), "auto")
    assert choice.path == "torch" and "torch-int8: built from other weights" in choice.reason, choice.reason


def test_verify_records_torch_int8_and_auto_skips_a_foreign_package(quantized, tmp_path, capsys, monkeypatch):
    from nerforge.cli import verify as verify_cli
    from nerforge.pt2_runtime import weights_digest

    export = tmp_path / "model"
    shutil.copytree(quantized, export)
    rc = verify_cli.main(["--model", str(export), "--data-dir", "bundled:sample", "--paths", "torch", "torch-int8"])
    assert rc == 0
    rec = json.loads((export / "backends.json").read_text())
    entry = rec["paths"]["torch-int8"]
    assert entry["precision"].startswith("static int8") and len(entry["sha256"]) == 64
    assert abs(entry["f1_delta"]) < 5 and entry["words_per_s"] > 0
    # Whatever verify measured, a package whose build.json asks for instructions this CPU lacks is skipped.
    build_file = export / PT2_DIR / BUILD_FILE
    build = json.loads(build_file.read_text())
    build["isa_flags"] = [*build["isa_flags"], "amx_fp8_in_2030"]
    build_file.write_text(json.dumps(build))
    rec["paths"]["torch-int8"]["words_per_s"] = 100 * rec["paths"]["torch"]["words_per_s"]
    rec["paths"]["torch-int8"]["f1_delta"] = 0.0
    (export / "backends.json").write_text(json.dumps(rec))
    choice = resolve(str(export), "auto")
    assert choice.path == "torch" and "torch-int8: built for a CPU with" in choice.reason
    assert "lacks amx_fp8_in_2030" in choice.reason
    build["isa_flags"].pop()
    build_file.write_text(json.dumps(build))
    choice = resolve(str(export), "auto")
    assert (choice.backend, choice.path) == ("torch-int8", "torch-int8"), choice.reason
    # the weights are read once: resolve's digest is the one the package's load checks
    import nerforge.pt2_runtime

    assert choice.weights_sha256 == weights_digest(export)
    monkeypatch.setattr(nerforge.pt2_runtime, "weights_digest", lambda folder: pytest.fail("hashed again"))
    assert type(load_predictor(str(export), "auto")).__name__ == "Pt2Predictor"


def test_a_failed_build_leaves_the_export_as_it_was(quantized, tmp_path, monkeypatch, capsys):
    import torch._inductor

    from nerforge.cli import quantize

    export = tmp_path / "model"
    shutil.copytree(quantized, export)
    before = {p.relative_to(export): p.read_bytes() for p in export.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise RuntimeError("C++ compiler killed")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", broken)
    assert quantize.main(["--model", str(export), *QUANTIZE, "--quiet"]) != 0
    err = capsys.readouterr().err
    assert f"could not build {export / PT2_DIR / INT8_FILE}" in err and "C++ compiler killed" in err
    after = {p.relative_to(export): p.read_bytes() for p in export.rglob("*") if p.is_file()}
    assert after == before  # the old package and everything else untouched, no temporary folder left


def test_quantize_rejects_what_it_cannot_use(quantized, tmp_path, capsys):
    from nerforge.cli import quantize

    rc = quantize.main(["--model", str(tmp_path), "--data-dir", "bundled:sample"])
    assert rc != 0 and "no config.json" in capsys.readouterr().err
    rc = quantize.main(["--model", str(quantized), "--data-dir", "bundled:sample", "--calibration-sentences", "100000"])
    assert rc != 0 and "too few" in capsys.readouterr().err
