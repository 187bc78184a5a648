"""ONNX and int8 exports of a token-classification model, verified against it.

``nerforge onnx --model EXPORT`` (or the training option ``export_onnx: true``) writes
``EXPORT/onnx/model.onnx`` (fp32) and, unless ``--no-int8``, ``EXPORT/onnx/model_quantized.onnx`` (dynamic
int8 weights), the layout that ONNX Runtime users, Optimum-style loaders and transformers.js look for,
plus ``onnx/verification.json`` (what was checked). :mod:`nerforge.onnx_runtime` runs them.

Rules stated once:

* **Graph.** ``torch.onnx.export(..., dynamo=True)`` of the model as saved (loaded back on the CPU in
  fp32, with eager attention: see :func:`_eager_attention`; the per-node Python stack traces, which hold
  local paths, left out); inputs ``input_ids``, ``attention_mask`` and, when the tokenizer produces them,
  ``token_type_ids`` (int64, axes ``batch`` and ``sequence`` dynamic); output ``logits``
  [batch, sequence, labels], the names ``ORTModelForTokenClassification`` and transformers.js feed.
* **int8.** ``onnxruntime.quantization.quantize_dynamic``: int8 weights (per output channel),
  activations quantized at run time, for the ``MatMul`` (linear) layers only; the embeddings
  (``Gather``) and the classifier stay fp32 (:data:`INT8_SETTINGS`; the measurements behind them are
  in :func:`quantize`'s docstring).
* **Verified at export.** On a fixed sample (sentences of the bundled sample corpus, batched with
  padding, plus two long rows) the fp32 graph's logits must match torch's to :data:`MAX_ABS_DIFF` on
  every real word piece, and the int8 graph's tags must agree with the fp32 graph's on at least
  :data:`MIN_INT8_AGREEMENT` of the words. A failed check (or a failed export) raises
  :class:`OnnxExportError` and nothing is left behind: the files are written into a temporary folder
  that is swapped in whole (:func:`nerforge.export.add_onnx`).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from nerforge.errors import ExportError
from nerforge.onnx_runtime import FP32_FILE, INT8_FILE, VERIFICATION_FILE, session

__all__ = [
    "MAX_ABS_DIFF",
    "MIN_INT8_AGREEMENT",
    "INT8_SETTINGS",
    "OnnxExportError",
    "export_onnx",
    "quantize",
]

logger = logging.getLogger(__name__)

MAX_ABS_DIFF = 1e-4
MIN_INT8_AGREEMENT = 0.95  # a broken int8 graph (all O, say) agrees on far fewer; a sound one on 98-100%
# quantize_dynamic settings, chosen by F1 on the whole CoNLL-2003 test set (see quantize()'s docstring)
INT8_SETTINGS = {
    "op_types_to_quantize": ["MatMul"],
    "per_channel": True,
    "keep_first_layer_fp32": False,
    "keep_classifier_fp32": True,
}
_SAMPLE_SENTENCES = 48  # sentences of the sample corpus the check runs on
_SAMPLE_BATCH = 16
_LONG_ROW = 256  # word pieces of the two long rows (capped at the model's limit)


class OnnxExportError(ExportError):
    """The ONNX export or its verification failed; nothing was written."""


# ---------------------------------------------------------------------------------------------- export


def _input_names(model, tokenizer) -> list[str]:
    """input_ids, attention_mask and token_type_ids when the tokenizer makes them and the model takes
    them (BERT, MiniLM, ELECTRA...; not RoBERTa or DistilBERT), as Optimum's exports have them."""
    import inspect

    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in getattr(tokenizer, "model_input_names", ()) and "token_type_ids" in (
        inspect.signature(model.forward).parameters
    ):
        names.append("token_type_ids")
    return names


def _sample_words() -> list[list[str]]:
    """The fixed verification sample: the first sentences of the bundled sample corpus's test file."""
    path = Path(__file__).with_name("sample_data") / "test.txt"
    sentences, cur = [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        fields = line.split()
        if not fields:
            if cur:
                sentences.append(cur)
            cur = []
        elif fields[0] != "-DOCSTART-":
            cur.append(fields[0])
    return sentences[:_SAMPLE_SENTENCES]


def _sample_batches(tokenizer, limit: int, names: list[str]) -> list[tuple[dict, list]]:
    """[(int64 numpy inputs, first-piece mask)]: batches of sample sentences padded to their longest,
    and one batch of two long rows (one of them padded), so that both axes vary."""
    import numpy as np

    sentences = _sample_words()
    long_words = [w for s in sentences for w in s]
    groups = [sentences[i : i + _SAMPLE_BATCH] for i in range(0, len(sentences), _SAMPLE_BATCH)]
    groups.append([long_words, long_words[: len(long_words) // 3]])
    out = []
    for group in groups:
        enc = tokenizer(
            group,
            is_split_into_words=True,
            truncation=True,
            max_length=min(limit, _LONG_ROW),
            padding=True,
            return_tensors="np",
        )
        inputs = {
            "input_ids": enc["input_ids"].astype(np.int64),
            "attention_mask": enc["attention_mask"].astype(np.int64),
        }
        if "token_type_ids" in names:
            inputs["token_type_ids"] = np.zeros_like(inputs["input_ids"])
        first = np.zeros(inputs["input_ids"].shape, dtype=bool)
        for r in range(len(group)):
            prev = None
            for k, w in enumerate(enc.word_ids(r)):
                first[r, k] = w is not None and w != prev
                prev = w
        out.append((inputs, first))
    return out


@contextmanager
def _quiet():
    """The exporter's chatter (progress lines, torchvision notices, deprecation warnings) kept out of
    the command's output; errors still raise."""
    import contextlib
    import io

    # "" (root): onnxruntime.quantization advises pre-processing with logging.warning
    names = ("", "torch.onnx", "torch.onnx._internal.exporter._registration", "onnxscript", "onnx_ir")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def _torch_logits(model, inputs: dict):
    import torch

    with torch.inference_mode():
        return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.float().numpy()


@contextmanager
def _eager_attention(model):
    """The model with transformers' eager attention while the graph is traced, its own afterwards.

    The exporter writes torch's SDPA with a boolean mask as a softmax wrapped in Where and IsNaN over
    every [batch, heads, length, length] score tensor (a fully masked row would be NaN); eager attention
    adds the mask as a float and needs neither. Same logits (1.1e-5 from torch either way), and on the
    MiniLM recipe export (8 windows of 256 pieces, 2 threads) those two ops were 25% of the int8
    graph's time: a batch took 0.231 s, 0.171 s with eager; fp32 0.369 s, 0.288 s."""
    before = getattr(model.config, "_attn_implementation", None)
    if before in (None, "eager") or not hasattr(model, "set_attn_implementation"):
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def _export_fp32(model, names: list[str], example: dict, path: Path) -> None:
    import torch

    class _Logits(torch.nn.Module):  # positional inputs in ONNX order, the logits tensor out
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, **kw).logits

    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    args = tuple(torch.from_numpy(example[n]) for n in names)
    big = sum(p.numel() * p.element_size() for p in model.parameters()) > 1_800_000_000  # protobuf's 2 GB
    with _quiet(), _eager_attention(model):
        program = torch.onnx.export(
            _Logits(model).eval(),
            args,
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=tuple({0: batch, 1: sequence} for _ in names),
            dynamo=True,
            verbose=False,
        )
        # The exporter records a Python stack trace per node: the paths of this machine (home folder,
        # user name) would be published with the model. Everything else (module names) stays.
        for node in program.model.graph.all_nodes():
            node.metadata_props.pop("pkg.torch.onnx.stack_trace", None)
        program.save(str(path), external_data=big)


def _graph(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False).graph


def _classifier_nodes(graph) -> list[str]:
    """Names of the nodes between the last MatMul and the ``logits`` output: the classifier layer."""
    producer = {out: node for node in graph.node for out in node.output}
    names, todo = [], ["logits"]
    while todo:
        node = producer.get(todo.pop())
        if node is None:
            continue
        names.append(node.name)
        if node.op_type != "MatMul":
            todo += list(node.input)
    return names


def _first_layer_nodes(graph, num_layers: int, skip: list[str]) -> list[str]:
    """Names of the weight MatMuls of the first encoder layer: in a topological order (an ONNX graph's)
    every MatMul of layer 0 comes before any of layer 1, which reads its output, so with the same
    number of weight MatMuls per layer they are the first ``count / num_layers``; [] (with a warning)
    when the count does not divide."""
    weights = {init.name for init in graph.initializer}
    matmuls = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights and n.name not in skip]
    if num_layers < 1 or not matmuls or len(matmuls) % num_layers:
        logger.warning("%d weight MatMuls in %d layers: the first layer is quantized too", len(matmuls), num_layers)
        return []
    return matmuls[: len(matmuls) // num_layers]


def quantize(fp32: Path, out: Path, settings: dict | None = None, num_layers: int = 0) -> dict:
    """Dynamic int8 quantization of `fp32` (a graph of ``num_layers`` encoder layers) into `out`;
    returns the settings used and the nodes kept in fp32.

    The defaults (:data:`INT8_SETTINGS`) were chosen on the minilm-cpu export (6 layers, fp32 ONNX test
    F1 87.26 = torch's; whole CoNLL-2003 test set through our windows; entity F1 change against fp32):
    quantize_dynamic's defaults (MatMul and the embeddings' Gather, per tensor) -0.69; MatMul only -0.59
    (classifier in fp32 too: -0.59); per channel: -0.35 (all) and -0.29 (MatMul only, classifier fp32);
    with that, one more group in fp32: QKV -0.15, attention output -0.22, FFN in -0.18, FFN out -0.34,
    layer 1 -0.32, last layer -0.36, **first layer -0.07** (tags 99.80% the same as fp32's), first and
    last -0.04. Those figures are from graphs traced with SDPA attention; with the eager-attention
    graphs written now that setting measured -0.22.

    On a 2-core Xeon with AMX (2026-12-01) the fp32 MatMuls (the first layer's and the attention
    products) were 32% of the int8 graph's time in onnxruntime's profile, and quantizing the first layer
    made the predictor 1.22-1.24x faster over the whole test set at a small cost in F1 (against fp32;
    first layer fp32 -> int8): recipe export (document context, test F1 87.18) -0.16 -> **-0.24**;
    a no-context export (86.81) -0.06 -> **-0.09**. Both inside the 0.3 we allow, so the default is
    now: MatMul weights int8 per output channel, only the embeddings and the classifier in fp32
    (``keep_first_layer_fp32`` brings the first layer back; ``export_onnx(int8_settings=...)``). The
    export's check (int8 tags against fp32 on the sample) still guards against a model that int8
    breaks."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    s = dict(INT8_SETTINGS if settings is None else settings)
    graph = _graph(fp32)
    exclude = _classifier_nodes(graph) if s.get("keep_classifier_fp32") else []
    if s.get("keep_first_layer_fp32"):
        exclude += _first_layer_nodes(graph, num_layers, exclude)
    with _quiet():
        quantize_dynamic(
            str(fp32),
            str(out),
            op_types_to_quantize=s.get("op_types_to_quantize"),
            per_channel=bool(s.get("per_channel")),
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
        )
    return {**s, "nodes_kept_fp32": exclude}


def export_onnx(model, tokenizer, folder: str | Path, *, quantize_int8: bool = False, int8_settings=None) -> dict:
    """Write ``model.onnx`` (and with `quantize_int8` ``model_quantized.onnx``) and ``verification.json``
    into `folder` (created; the caller makes it atomic) and verify them against `model` (fp32, CPU).
    Returns what ``verification.json`` holds; raises :class:`OnnxExportError` when the export or a check
    fails, leaving in `folder` whatever was written (the caller removes it)."""
    import numpy as np
    import onnxruntime
    import torch

    from nerforge.modeling import position_limit

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    param = next(model.parameters())
    if param.device.type != "cpu" or param.dtype != torch.float32:
        raise ValueError(f"export_onnx needs the model on the CPU in float32, not {param.device} {param.dtype}")
    model.eval()
    names = _input_names(model, tokenizer)
    limit = min(x for x in (position_limit(model.config), _LONG_ROW) if x)
    batches = _sample_batches(tokenizer, limit, names)
    t0 = time.perf_counter()
    try:
        _export_fp32(model, names, batches[0][0], folder / FP32_FILE)
    except Exception as e:  # noqa: BLE001 - any exporter failure is one clear message
        raise OnnxExportError(f"torch.onnx.export failed: {_first_line(e)}") from e
    export_s = time.perf_counter() - t0
    fp32 = _loaded(folder / FP32_FILE)
    got = [i.name for i in fp32.get_inputs()]
    if got != names or [o.name for o in fp32.get_outputs()] != ["logits"]:
        raise OnnxExportError(f"the ONNX graph has inputs {got} and outputs {[o.name for o in fp32.get_outputs()]}")
    diffs, fp32_tags = [], []
    for inputs, first in batches:
        ref = _torch_logits(model, inputs)
        out = fp32.run(["logits"], inputs)[0]
        real = inputs["attention_mask"].astype(bool)
        if out.shape != ref.shape:
            raise OnnxExportError(f"fp32 ONNX logits have shape {out.shape}, torch's {ref.shape}")
        diffs.append(np.abs(out - ref)[real].max())
        fp32_tags.append(out.argmax(-1)[first])
    diff = float(np.max(diffs))  # NaN if any is
    n_words = int(sum(t.size for t in fp32_tags))
    result = {
        "inputs": names,
        "output": "logits",
        "opset": _opset(folder / FP32_FILE),
        "sample": {
            "sentences": len(_sample_words()),
            "batches": len(batches),
            "words": n_words,
            "widths": [int(b[0]["input_ids"].shape[1]) for b in batches],
        },
        "fp32": {"file": FP32_FILE, "max_abs_logit_diff_vs_torch": diff, "limit": MAX_ABS_DIFF},
        "export_s": round(export_s, 2),
        "torch": _version("torch"),
        "onnxruntime": onnxruntime.__version__,
        "onnx": _version("onnx"),
        "onnxscript": _version("onnxscript"),
    }
    if not diff <= MAX_ABS_DIFF:  # also catches NaN
        raise OnnxExportError(
            f"fp32 ONNX logits differ from torch's by up to {diff:.3g} on the check sample (limit {MAX_ABS_DIFF:g})"
        )
    if quantize_int8:
        try:
            layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
            settings = quantize(folder / FP32_FILE, folder / INT8_FILE, int8_settings, num_layers=layers)
        except Exception as e:  # noqa: BLE001
            raise OnnxExportError(f"int8 quantization failed: {_first_line(e)}") from e
        int8 = _loaded(folder / INT8_FILE)
        same = 0
        for (inputs, first), tags in zip(batches, fp32_tags):
            same += int((int8.run(["logits"], inputs)[0].argmax(-1)[first] == tags).sum())
        agreement = same / max(n_words, 1)
        result["int8"] = {
            "file": INT8_FILE,
            "tag_agreement_vs_fp32": round(agreement, 6),
            "limit": MIN_INT8_AGREEMENT,
            "settings": settings,
        }
        if agreement < MIN_INT8_AGREEMENT:
            raise OnnxExportError(
                f"int8 ONNX tags agree with fp32's on {100 * agreement:.2f}% of the check sample's {n_words} "
                f"words (at least {100 * MIN_INT8_AGREEMENT:g}% required)"
            )
    (folder / VERIFICATION_FILE).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _first_line(e: BaseException) -> str:
    """``Type: first line of the message`` (exporter errors run to pages)."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _loaded(path: Path):
    """:func:`session` on a graph just written; onnxruntime refusing it is an :class:`OnnxExportError`."""
    try:
        return session(path)
    except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
        raise OnnxExportError(f"onnxruntime cannot load {path.name}: {_first_line(e)}") from e


def _opset(path: Path) -> int | None:
    import onnx

    for imp in onnx.load(str(path), load_external_data=False).opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return None


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
