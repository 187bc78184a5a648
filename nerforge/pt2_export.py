"""Static int8 for the CPU: ``nerforge quantize --model EXPORT`` writes ``EXPORT/pt2/model_int8.pt2``, an
AOTInductor package of the export's model with int8 linear layers, and ``pt2/build.json`` (what was built,
for which CPU, and how it was checked). :mod:`nerforge.pt2_runtime` runs it (``--backend torch-int8``).

How, stated once:

* **Quantization.** PyTorch 2 export quantization (torchao's ``X86InductorQuantizer``, its default
  config): int8 weights per output channel, int8 activations per tensor, *static*: their scales come
  from running calibration windows (the predictor's own windows of the sentences given, by default the
  first :data:`CALIBRATION_SENTENCES` of the training split) through the observed graph. Attention's two
  matrix products, softmax, layer norms and GELU stay in floating point: in bf16 where the CPU has
  native bf16 (the quantizer's "int8-mixed-bf16" mode, the graph traced under bf16 autocast), else fp32.
* **Compilation, once.** The converted graph is exported again (windows and pieces dynamic) and compiled
  ahead of time by AOTInductor with frozen weights, which lowers each quantize/dequantize pair around a
  linear layer to a oneDNN int8 kernel with its weights prepacked. That costs about a minute for MiniLM;
  loading the package afterwards takes well under a second, where ``torch.compile`` would pay the
  compile again in every process (BENCHMARKS.md, "bf16 and int8 on the CPU").
* **Checked at build.** The package tags :data:`CHECK_SENTENCES` sentences that follow the calibration
  ones; its tags must agree with the fp32 model's on at least :data:`MIN_AGREEMENT` of the words, or
  nothing is written. ``nerforge verify`` then scores a whole split with it, and ``--backend auto``
  only picks it within 0.3 F1 of fp32 (:mod:`nerforge.backends`).
* **Atomic.** The package is built in a temporary folder beside ``pt2/`` and swapped in whole; a failed
  build or check leaves the export as it was.

torchao is needed to build (the ``int8`` extra), not to run. The package is machine code: it runs on a
CPU with the instructions of the one it was built on and under the same torch release, and is not
pushed to the Hub (:data:`nerforge.hub.LOCAL_ONLY`).
"""

from __future__ import annotations

import time
from pathlib import Path

from nerforge.errors import ExportError
from nerforge.predictor import Predictor
from nerforge.pt2_runtime import BUILD_FILE, INT8_FILE, PT2_DIR, Pt2Predictor, isa_flags, weights_digest

__all__ = [
    "CALIBRATION_SENTENCES",
    "CHECK_SENTENCES",
    "MIN_AGREEMENT",
    "EXTRA_HINT",
    "Pt2BuildError",
    "require_torchao",
    "quantized_graph",
    "build_int8",
]

CALIBRATION_SENTENCES = 300  # what bench/pt2e.py calibrated on (validation there; F1 +0.09 on test)
CHECK_SENTENCES = 200
MIN_AGREEMENT = 0.95  # as the ONNX int8 check: a broken package (all O, say) agrees on far fewer
EXTRA_HINT = "pip install 'nerforge[int8]' (from a checkout: pip install -e '.[int8]')"
MAX_WINDOWS = 4096  # the largest batch the package accepts (the predictor's batches are capped far below)


class Pt2BuildError(ExportError):
    """The int8 package could not be built or failed its check; nothing was written."""


def require_torchao() -> None:
    from importlib.util import find_spec

    if find_spec("torchao") is None:
        raise ValueError(f"nerforge quantize needs torchao, the 'int8' extra: {EXTRA_HINT}")


class _Recording(Predictor):
    """The fp32 torch predictor, keeping each padded batch it forwards: calibration input in exactly the
    windows the package will see."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.recorded: list[tuple] = []

    def _forward(self, input_ids, attention_mask):
        # NumPy copies: any tensor made here, inside the predictor's inference mode, would be an inference
        # tensor, which torch.export refuses; they become tensors again outside it (:func:`build_int8`).
        self.recorded.append((input_ids.numpy().copy(), attention_mask.numpy().copy()))
        return super()._forward(input_ids, attention_mask)


def _example(batches: list[tuple]):
    """An example input for torch.export with at least two windows and two pieces: a size-1 dimension
    would be specialized, not left dynamic."""
    import torch

    ids, mask = max(batches, key=lambda b: b[0].shape[0] * b[0].shape[1])
    if ids.shape[0] < 2:
        ids, mask = torch.cat([ids, ids]), torch.cat([mask, mask])
    return ids, mask


def _logits_module(inner, autocast: bool):
    """`inner` as a module of (input_ids, attention_mask) -> float logits, under bf16 autocast if asked."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            # Autocast only when asked: even a disabled autocast region is traced as one, which the
            # quantizer cannot annotate.
            if autocast:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = self.inner(input_ids=input_ids, attention_mask=attention_mask)
            else:
                out = self.inner(input_ids=input_ids, attention_mask=attention_mask)
            return getattr(out, "logits", out).float()

    return Logits()


def _dims(max_pieces: int) -> dict:
    from torch.export import Dim

    return {0: Dim("windows", min=1, max=MAX_WINDOWS), 1: Dim("pieces", min=2, max=max_pieces)}


def quantized_graph(model, batches: list[tuple], max_pieces: int):
    """torch.export (windows and pieces dynamic) -> prepare_pt2e -> calibration on `batches`
    ((input_ids, attention_mask) tensors made outside inference mode) -> convert_pt2e: the fp32 graph
    with quantize/dequantize pairs around each linear layer. :func:`build_int8` exports it again and
    compiles it ahead of time; bench/pt2e.py compiles it in process with torch.compile."""
    import torch
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torch.export import export
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    dims = _dims(max_pieces)
    graph = export(
        _logits_module(model.eval(), False), _example(batches), dynamic_shapes=(dims, dims), strict=False
    ).module()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    observed = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for ids, mask in batches:
            observed(ids, mask)
    return convert_pt2e(observed)


def build_int8(
    folder: str | Path,
    calibration: tuple[list, list],
    check: tuple[list, list],
    *,
    bf16: bool,
    flags: frozenset[str],
) -> dict:
    """Build, check and swap in ``folder/pt2/`` (model_int8.pt2 and build.json); return build.json's content.

    ``calibration`` and ``check``: (sentences, document ids); ``bf16``: the non-int8 rest in bf16 (only
    where the CPU has native bf16); ``flags``: this CPU's (:func:`nerforge.backends.cpu_flags`), recorded
    so the package is refused where they are missing. A failed step raises :class:`Pt2BuildError` and
    leaves ``folder`` unchanged."""
    require_torchao()
    import torch

    from nerforge.atomic import fresh_tmp, swap_in, write_json_atomic
    from nerforge.backends import cpu_name

    folder = Path(folder)
    final = folder / PT2_DIR
    started = time.perf_counter()
    reference = _Recording.from_pretrained(str(folder), device="cpu")
    cal_sents, cal_docs = calibration
    if not any(cal_sents):
        raise ValueError("no calibration sentences: the int8 scales need some input")
    reference.predict_words(cal_sents, cal_docs)
    batches = [(torch.from_numpy(ids), torch.from_numpy(mask)) for ids, mask in reference.recorded]
    windows = sum(int(ids.shape[0]) for ids, _ in batches)
    tmp = fresh_tmp(final)
    try:
        try:
            from torch.export import export

            converted = quantized_graph(reference.model, batches, reference.max_length)
            dims = _dims(reference.max_length)
            # Exported again, under bf16 autocast when the rest runs in bf16 (the "int8-mixed-bf16" mode).
            program = export(
                _logits_module(converted, bf16), _example(batches), dynamic_shapes=(dims, dims), strict=False
            )
            quantized_s = time.perf_counter() - started
            from torch._inductor import aoti_compile_and_package

            # Freezing happens only without autograd: then the quantize/dequantize pairs become int8 kernels.
            with torch.no_grad():
                aoti_compile_and_package(
                    program, package_path=str(tmp / INT8_FILE), inductor_configs={"freezing": True}
                )
        except Exception as e:  # noqa: BLE001 - export, quantization or compilation: one error saying which
            raise Pt2BuildError(f"could not build {final / INT8_FILE}: {type(e).__name__}: {e}") from e
        build = {
            "file": INT8_FILE,
            "quantization": "static int8 (torchao X86InductorQuantizer default config: int8 weights per "
            "channel, int8 activations per tensor), linear layers",
            "bf16": bf16,
            "rest": "bf16" if bf16 else "fp32",
            "torch": torch.__version__,
            "torchao": _version("torchao"),
            "cpu": cpu_name(),
            "isa_flags": isa_flags(flags),
            "weights_sha256": weights_digest(folder),
            "max_pieces": reference.max_length,
            "calibration_sentences": len(cal_sents),
            "calibration_windows": windows,
            "quantize_s": round(quantized_s, 1),
            "compile_s": round(time.perf_counter() - started - quantized_s, 1),
        }
        build["check"] = _check(folder, tmp, reference, check, build)
        write_json_atomic(tmp / BUILD_FILE, build)
        swap_in(tmp, final)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return build


def _check(folder: Path, tmp: Path, reference: Predictor, check: tuple[list, list], build: dict) -> dict:
    """Tag the check sentences with the package just built (loaded as :class:`Pt2Predictor` loads it) and
    with fp32 torch; raise :class:`Pt2BuildError` when the tags agree on fewer than MIN_AGREEMENT words."""
    from torch._inductor import aoti_load_package

    sents, docs = check
    started = time.perf_counter()
    runner = aoti_load_package(str(tmp / INT8_FILE))
    load_s = time.perf_counter() - started
    package = Pt2Predictor(
        runner, reference.model.config, reference.tokenizer, reference.windows, build=build, file=str(tmp / INT8_FILE)
    )
    ours, theirs = package.predict_words(sents, docs), reference.predict_words(sents, docs)
    words = sum(len(s) for s in ours)
    agree = sum(a == b for s, t in zip(ours, theirs) for a, b in zip(s, t))
    fraction = agree / words if words else 1.0
    if fraction < MIN_AGREEMENT:
        raise Pt2BuildError(
            f"{folder / PT2_DIR / INT8_FILE}: int8 tags agree with fp32 on {fraction:.2%} of {words} check words "
            f"(at least {MIN_AGREEMENT:.0%} expected); nothing written"
        )
    return {
        "sentences": len(sents),
        "words": words,
        "tag_agreement_vs_fp32": round(fraction, 5),
        "load_s": round(load_s, 3),
    }


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
