"""nerforge.onnx: ONNX and int8 exports verified at export and swapped in whole, the export_onnx training
option, the model card, and --backend onnx / onnx-int8 giving torch's tags through the same windows.
Tiny random-weight BERTs (a few seconds per export); the realdata test runs MiniLM on CoNLL-2003."""

import hashlib
import json
import shutil
import sys

import pytest
from conftest import CONLL_DIR, MINILM_DIR, NER, ROOT, SAMPLE_DIR

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install -e '.[onnx]') is not installed")
pytest.importorskip("onnxscript", reason="the onnx extra (pip install -e '.[onnx]') is not installed")

import onnxruntime as ort  # noqa: E402

from nerforge.onnx_export import MAX_ABS_DIFF  # noqa: E402
from nerforge.onnx_runtime import FP32_FILE, INT8_FILE, VERIFICATION_FILE, OnnxPredictor  # noqa: E402
from nerforge.predictor import Predictor, export_windows  # noqa: E402


def digest(folder):
    """{relative path: sha256} of every file under `folder`."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def sample_sentences(split="test"):
    from conll2003_loader import read_conll

    sents = list(read_conll(SAMPLE_DIR / f"{split}.txt", ("tokens", "pos_tags", "chunk_tags", "ner_tags")))
    return [s.tokens for s in sents], [s.document_index for s in sents]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random BERT folder (no ONNX), vocabulary from the sample corpus: copy it before changing it."""
    from nerforge.modeling import build_tiny_bert

    words = {w for split in ("train", "test") for s in sample_sentences(split)[0] for w in s}
    return build_tiny_bert(words, NER, tmp_path_factory.mktemp("tiny") / "model", seed=3)


@pytest.fixture(scope="module")
def export(tiny_dir, tmp_path_factory):
    """A training export written by export_run with export_onnx: true (fp32 and int8)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from nerforge.cli.train import parse_config
    from nerforge.export import export_run

    out = tmp_path_factory.mktemp("run")
    cfg = parse_config(["--tiny_model", "--output_dir", str(out), "--export_onnx", "true"])
    model = AutoModelForTokenClassification.from_pretrained(tiny_dir)
    metrics = {"history": [{"step": 1, "loss": 1.0}]}
    return export_run(model, AutoTokenizer.from_pretrained(tiny_dir), cfg, metrics, NER, out / "model")


def copy_of(folder, tmp_path, name="model"):
    dst = tmp_path / "x" / name
    shutil.copytree(folder, dst)
    return dst


# ------------------------------------------------------------------ export: files, graphs, card


def test_export_onnx_option_writes_verified_files_and_the_card_says_so(export):
    assert sorted(p.name for p in (export / "onnx").iterdir()) == [FP32_FILE, INT8_FILE, VERIFICATION_FILE]
    check = json.loads((export / "onnx" / VERIFICATION_FILE).read_text())
    assert check["inputs"] == ["input_ids", "attention_mask", "token_type_ids"] and check["output"] == "logits"
    assert 0 <= check["fp32"]["max_abs_logit_diff_vs_torch"] <= MAX_ABS_DIFF
    assert check["int8"]["tag_agreement_vs_fp32"] >= check["int8"]["limit"]
    assert len(set(check["sample"]["widths"])) > 1  # the check ran at more than one sequence length
    card = (export / "README.md").read_text()
    assert "### ONNX" in card and "`onnx/model.onnx` (fp32)" in card and "`onnx/model_quantized.onnx`" in card
    assert "ort.InferenceSession" in card
    assert not [p.name for p in export.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    for name in (FP32_FILE, INT8_FILE):  # no local path (the exporter's stack traces) is published
        assert str(ROOT).encode() not in (export / "onnx" / name).read_bytes()


@pytest.mark.parametrize("name", [FP32_FILE, INT8_FILE])
def test_onnxruntime_loads_the_graphs_with_dynamic_axes(export, name):
    import numpy as np
    import torch
    from transformers import AutoModelForTokenClassification

    sess = ort.InferenceSession(str(export / "onnx" / name), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    assert all(isinstance(d, str) for i in sess.get_inputs() for d in i.shape)  # batch and sequence are symbolic
    model = AutoModelForTokenClassification.from_pretrained(export).eval()
    for shape in ((1, 3), (3, 40)):  # neither is a shape of the check sample
        ids = np.random.default_rng(0).integers(5, 60, size=shape, dtype=np.int64)
        mask = np.ones_like(ids)
        mask[-1, shape[1] // 2 :] = 0
        out = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        assert out.shape == (*shape, len(NER))
        with torch.inference_mode():
            ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
        if name == FP32_FILE:
            assert np.abs(out - ref)[mask.astype(bool)].max() <= MAX_ABS_DIFF


def test_graph_is_traced_with_eager_attention_and_the_model_keeps_its_own(tiny_dir, tmp_path):
    import onnx
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from nerforge.onnx_export import export_onnx

    model = AutoModelForTokenClassification.from_pretrained(tiny_dir)
    assert model.config._attn_implementation == "sdpa"  # what transformers picks, and what we train with
    export_onnx(model, AutoTokenizer.from_pretrained(tiny_dir), tmp_path / "onnx", quantize_int8=True)
    assert model.config._attn_implementation == "sdpa"
    for name in (FP32_FILE, INT8_FILE):
        ops = {n.op_type for n in onnx.load(str(tmp_path / "onnx" / name)).graph.node}
        assert "Softmax" in ops and "IsNaN" not in ops, (name, sorted(ops))  # SDPA's masked softmax is not there


def test_cpu_sessions_leave_out_the_skip_layer_norm_fusion(export, tmp_path, monkeypatch):
    import onnx

    import nerforge.onnx_runtime as nx

    def optimized_ops(disabled):  # the graph onnxruntime runs, written out at session start
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(tmp_path / f"opt{len(disabled)}.onnx")
        path = export / "onnx" / FP32_FILE
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
        return {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}

    assert "SkipLayerNormalization" in optimized_ops([])  # the fusion applies to our graphs...
    left = optimized_ops(list(nx.CPU_DISABLED_OPTIMIZERS))  # ...and the name we give turns it off
    assert "SkipLayerNormalization" not in left and "LayerNormalization" in left

    seen = []
    real = ort.InferenceSession

    def recording(path, sess_options=None, providers=None, disabled_optimizers=None):
        seen.append((providers, disabled_optimizers))
        return real(path, sess_options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled_optimizers)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    nx.session(export / "onnx" / INT8_FILE)
    nx.session(export / "onnx" / INT8_FILE, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert seen == [
        (["CPUExecutionProvider"], list(nx.CPU_DISABLED_OPTIMIZERS)),
        (["CUDAExecutionProvider", "CPUExecutionProvider"], []),  # GPU kernels keep the fused op
    ]


def test_command_adds_onnx_to_a_model_folder_and_touches_nothing_else(tiny_dir, tmp_path, capsys):
    from nerforge.cli.onnx import main

    folder = copy_of(tiny_dir, tmp_path)
    before = digest(folder)
    assert main(["--model", str(folder), "--no-int8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {folder / 'onnx'}: model.onnx (max abs logit diff vs torch")
    assert sorted(p.name for p in (folder / "onnx").iterdir()) == [FP32_FILE, VERIFICATION_FILE]  # no int8 asked
    after = digest(folder)
    assert {k: v for k, v in after.items() if not k.startswith("onnx/")} == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["model"]


def test_a_failed_fp32_check_leaves_no_onnx_folder(tiny_dir, tmp_path, capsys, monkeypatch):
    import nerforge.onnx_export as nx
    from nerforge.cli.onnx import main as onnx_main

    real = nx._torch_logits
    monkeypatch.setattr(nx, "_torch_logits", lambda model, inputs: real(model, inputs) + 1e-3)
    folder = copy_of(tiny_dir, tmp_path)
    before = digest(folder)
    assert onnx_main(["--model", str(folder)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: fp32 ONNX logits differ from torch's by up to 0.001")
    assert "Traceback" not in captured.err and captured.out == ""
    assert digest(folder) == before and not (folder / "onnx").exists()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["model"]  # the temporary folder is gone


def test_a_failed_int8_check_keeps_the_previous_onnx_files(export, tmp_path, capsys, monkeypatch):
    import nerforge.onnx_export as nx
    from nerforge.cli.onnx import main as onnx_main

    monkeypatch.setattr(nx, "MIN_INT8_AGREEMENT", 1.01)
    folder = copy_of(export, tmp_path)
    before = digest(folder)
    assert onnx_main(["--model", str(folder)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "int8 ONNX tags agree with fp32's on" in err[0] and "at least 101% required" in err[0]
    assert digest(folder) == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["model"]


def test_an_interrupted_export_leaves_the_folder_as_it_was(tiny_dir, tmp_path, monkeypatch):
    """A kill during the export (here: KeyboardInterrupt once model.onnx is half written) never leaves a
    half-written onnx/: the files are assembled beside the folder and swapped in only when verified."""
    import nerforge.onnx_export as nx
    from nerforge.export import add_onnx

    def killed(model, names, example, path):
        path.write_bytes(b"half a graph")
        raise KeyboardInterrupt

    monkeypatch.setattr(nx, "_export_fp32", killed)
    folder = copy_of(tiny_dir, tmp_path)
    before = digest(folder)
    with pytest.raises(KeyboardInterrupt):
        add_onnx(folder, quantize_int8=True)
    assert digest(folder) == before and not (folder / "onnx").exists()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["model"]


def test_export_run_keeps_the_weights_when_onnx_fails(tiny_dir, tmp_path, monkeypatch):
    """export_onnx: true and a failing ONNX export: the export is written without onnx/ (its card says
    nothing of ONNX) and ExportError (exit 1 of the training script) says what to rerun."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    import nerforge.onnx_export as nx
    from nerforge.cli.train import parse_config
    from nerforge.export import ExportError, export_run

    def broken(*a, **k):
        raise RuntimeError("unsupported operator\nmore detail")

    monkeypatch.setattr(nx, "_export_fp32", broken)
    cfg = parse_config(["--tiny_model", "--output_dir", str(tmp_path), "--export_onnx", "true"])
    model = AutoModelForTokenClassification.from_pretrained(tiny_dir)
    with pytest.raises(ExportError) as err:
        export_run(model, AutoTokenizer.from_pretrained(tiny_dir), cfg, {"history": []}, NER, tmp_path / "model")
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'model'} was written without onnx/: torch.onnx.export failed: ")
    assert "RuntimeError: unsupported operator;" in msg and "\n" not in msg
    assert msg.endswith(f"retry with nerforge onnx --model {tmp_path / 'model'}")
    export = tmp_path / "model"
    assert (export / "model.safetensors").is_file() and not (export / "onnx").exists()
    assert "### ONNX" not in (export / "README.md").read_text()


def test_update_export_keeps_onnx_for_the_same_weights_and_remakes_it_for_new_ones(export, tmp_path):
    """report --update-card rewrites an export with the same weights (onnx/ copied as it is);
    calibrate folds a temperature into the classifier (onnx/ made again from the new weights)."""
    import numpy as np
    import torch
    from transformers import AutoModelForTokenClassification

    from nerforge.export import update_export

    folder = copy_of(export, tmp_path)
    metrics = json.loads((folder / "metrics.json").read_text())
    model = AutoModelForTokenClassification.from_pretrained(folder)
    onnx_before = {k: v for k, v in digest(folder).items() if k.startswith("onnx/")}
    update_export(folder, model, metrics)
    assert {k: v for k, v in digest(folder).items() if k.startswith("onnx/")} == onnx_before

    with torch.no_grad():
        model.classifier.weight.mul_(3.0)
    update_export(folder, model, metrics)
    assert sorted(p.name for p in (folder / "onnx").iterdir()) == [FP32_FILE, INT8_FILE, VERIFICATION_FILE]
    sess = ort.InferenceSession(str(folder / "onnx" / FP32_FILE), providers=["CPUExecutionProvider"])
    ids = np.array([[2, 9, 11, 3]], dtype=np.int64)
    out = sess.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": 0 * ids})[0]
    with torch.inference_mode():
        ref = model(input_ids=torch.from_numpy(ids)).logits.numpy()
    assert np.abs(out - ref).max() <= MAX_ABS_DIFF
    assert sorted(p.name for p in folder.parent.iterdir()) == ["model"]


# ------------------------------------------------------------------ --backend onnx / onnx-int8


def test_fp32_onnx_gives_torch_tags_through_the_same_windows(export):
    """Windows (max_length 16), document context and packing: the ONNX predictor's tags equal torch's
    and its logits match to the verified tolerance, on every sentence of the sample test file."""
    import torch

    words, docs = sample_sentences()
    windows = export_windows(export).override(max_length=16, stride=3, context_size=2, pack_length=10, batch_size=8)
    torch_pred = Predictor.from_pretrained(export, windows, device="cpu")
    onnx_pred = OnnxPredictor.from_pretrained(export, windows)
    assert onnx_pred.describe()["intra_op_threads"] == torch.get_num_threads()
    assert onnx_pred.describe()["backend"] == "onnx" and onnx_pred.file.endswith("onnx/model.onnx")
    a, b = torch_pred.predict_logits(words, docs), onnx_pred.predict_logits(words, docs)
    assert [len(x) for x in a] == [len(x) for x in b] == [len(s) for s in words]
    assert max(float((x - y).abs().max()) for x, y in zip(a, b) if len(x)) <= MAX_ABS_DIFF
    assert onnx_pred.predict_words(words, docs) == torch_pred.predict_words(words, docs)


def test_int8_gives_one_tag_per_word(export):
    words, docs = sample_sentences()
    pred = OnnxPredictor.from_pretrained(
        export, export_windows(export).override(max_length=16, stride=3), quantized=True
    )
    tags = pred.predict_words(words + [[]], docs + [docs[-1] + 1])
    assert [len(t) for t in tags] == [len(s) for s in words] + [0]
    assert {t for s in tags for t in s} <= set(NER)
    assert pred.describe()["backend"] == "onnx-int8" and pred.file.endswith("onnx/model_quantized.onnx")


def test_onnx_batches_are_capped_in_padded_pieces_on_the_cpu_only(export):
    words, docs = sample_sentences()
    pred = OnnxPredictor.from_pretrained(export, quantized=True)
    shapes, forward = [], pred._forward
    pred._forward = lambda ids, mask: (shapes.append(tuple(ids.shape)), forward(ids, mask))[1]
    pred.predict_words(words * 8, None)
    cap = OnnxPredictor.max_batch_pieces
    assert cap < Predictor.max_batch_pieces  # onnxruntime's CPU kernels are faster on smaller batches
    assert len(shapes) > 1 and all(b * w <= cap or b == 1 for b, w in shapes)
    assert sum(b for b, _ in shapes) == 8 * len(words)

    class GpuSession:  # what a CUDA session reports; nothing is run on it
        def __init__(self, real):
            self.real = real

        def get_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def get_inputs(self):
            return self.real.get_inputs()

    from transformers import AutoConfig

    gpu = OnnxPredictor(GpuSession(pred.session), AutoConfig.from_pretrained(export), pred.tokenizer)
    assert gpu.max_batch_pieces is None and pred.max_batch_pieces == cap


def test_predict_and_score_commands_take_backend_and_state_threads(export, tmp_path, capsys):
    import torch

    from nerforge.cli.predict import main as predict
    from nerforge.cli.score import main as score

    outputs = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.txt"
        capsys.readouterr()
        assert (
            predict(
                ["--model", str(export), "--conll", str(SAMPLE_DIR / "test.txt"), "--output", str(out)]
                + ["--backend", backend]
            )
            == 0
        )
        err = capsys.readouterr().err
        threads = torch.get_num_threads()
        assert err.startswith(f"backend {backend} (fp32, cpu") and f"), {threads} intra-op thread" in err
        outputs[backend] = out.read_text()
    assert outputs["onnx"] == outputs["torch"]
    capsys.readouterr()
    assert score(["--model", str(export), "--data-dir", str(SAMPLE_DIR), "--backend", "onnx-int8"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["settings"]["backend"]["backend"] == "onnx-int8"
    assert printed["settings"]["backend"]["intra_op_threads"] == torch.get_num_threads()


def test_backend_errors_exit_2_in_one_line(tiny_dir, capsys):
    from nerforge.cli.predict import main as predict
    from nerforge.cli.report import build_parser

    conll = str(SAMPLE_DIR / "test.txt")
    for extra, expected in (
        (["--backend", "onnx"], f"no onnx/model.onnx; write it with nerforge onnx --model {tiny_dir}"),
        (["--backend", "onnx-int8", "--bf16"], "--bf16 is for --backend torch"),
    ):
        capsys.readouterr()
        assert predict(["--model", str(tiny_dir), "--conll", conll, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err and len(err.strip().splitlines()) == 1
    args = build_parser().parse_args(["--model", "m", "--data-dir", "d", "--output-dir", "o", "--backend", "onnx-int8"])
    assert args.backend == "onnx-int8"


def test_without_the_extra_the_commands_say_which_to_install(tiny_dir, tmp_path, capsys, monkeypatch):
    from nerforge.cli.onnx import main as onnx_main
    from nerforge.cli.predict import main as predict
    from nerforge.cli.train import parse_config
    from nerforge.config import ConfigError

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    hint = "pip install 'nerforge[onnx]'"
    capsys.readouterr()
    assert predict(["--model", str(tiny_dir), "--conll", str(SAMPLE_DIR / "test.txt"), "--backend", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --backend onnx: ONNX needs onnxruntime") and hint in err
    assert onnx_main(["--model", str(tiny_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ONNX needs onnxruntime, the 'onnx' extra") and hint in err
    assert not (tiny_dir / "onnx").exists()
    with pytest.raises(ConfigError, match=r"training\.export_onnx: ONNX needs onnxruntime.*nerforge\[onnx\]"):
        parse_config(["--tiny_model", "--output_dir", str(tmp_path), "--export_onnx", "true"])
    assert parse_config(["--tiny_model", "--output_dir", str(tmp_path)]).training.export_onnx is False


# ------------------------------------------------------------------ real data


@pytest.mark.realdata
@pytest.mark.slow
def test_minilm_fp32_onnx_gives_torch_tags_on_the_whole_conll2003_test_set(tmp_path):
    """The shared MiniLM with a fresh random head (seeded): ONNX fp32 and torch give the same tag to every
    word of the CoNLL-2003 test set. Where they differ at all, torch's two logits must be within the
    verified tolerance of each other (a tie that a 1e-5 rounding difference may break either way)."""
    if not (CONLL_DIR / "test.txt").is_file() or not (MINILM_DIR / "config.json").is_file():
        pytest.skip("../shared/data/conll2003 or ../shared/models/all-minilm-l6-v2 is absent")
    import torch

    from conll2003_loader import load_splits
    from nerforge.export import add_onnx
    from nerforge.modeling import load_model_and_tokenizer

    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(str(MINILM_DIR), label_names=NER)
    folder = tmp_path / "minilm"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    check = add_onnx(folder)
    test = load_splits(data_dir=str(CONLL_DIR), cache_dir=str(tmp_path / "cache"))["test"]
    words, docs = [list(s) for s in test["tokens"]], list(test["document_id"])
    a = Predictor.from_pretrained(folder, device="cpu").predict_logits(words, docs)
    b = OnnxPredictor.from_pretrained(folder).predict_logits(words, docs)
    n_words = sum(len(s) for s in words)
    assert sum(len(x) for x in b) == n_words == 46435
    differ = [(x, y) for xs, ys in zip(a, b) for x, y in zip(xs, ys) if int(x.argmax()) != int(y.argmax())]
    for x, y in differ:
        assert abs(float(x[x.argmax()] - x[y.argmax()])) <= 2 * MAX_ABS_DIFF
    assert len(differ) <= 5, f"{len(differ)} of {n_words} words tagged differently"
    print(f"fp32 ONNX vs torch: {n_words - len(differ)} of {n_words} words the same tag; check {check['fp32']}")
