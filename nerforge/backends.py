"""What runs a model: the one place a backend name becomes a predictor.

``torch`` (:class:`nerforge.predictor.Predictor`), ``onnx`` and ``onnx-int8`` (the export's
``onnx/model.onnx`` / ``onnx/model_quantized.onnx`` under ONNX Runtime,
:class:`nerforge.onnx_runtime.OnnxPredictor`: the same windows and batches; intra-op threads as torch's).
"""

from __future__ import annotations

from nerforge.features import WindowSettings
from nerforge.predictor import Predictor

BACKENDS = ("torch", "onnx", "onnx-int8")

__all__ = ["BACKENDS", "load_predictor"]


def load_predictor(
    model: str,
    backend: str = "torch",
    windows: WindowSettings | None = None,
    *,
    device: str | None = None,
    bf16: bool = False,
) -> Predictor:
    """The predictor for an export folder or Hub id; ``windows`` None: the export's own. Bad settings
    (bf16 or a GPU with an ONNX backend, the onnx extra missing, no such file) are ValueErrors."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    if backend == "torch":
        return Predictor.from_pretrained(model, windows, device=device, bf16=bf16)
    if bf16:
        raise ValueError(f"--bf16 is for --backend torch; --backend {backend} runs the ONNX graph as it is")
    if device not in (None, "cpu"):
        raise ValueError(f"--backend {backend} runs on the CPU (onnxruntime's CPU provider); drop --device {device}")
    from nerforge.onnx_runtime import OnnxPredictor, require_onnx

    try:
        require_onnx()
    except ValueError as e:  # the onnx extra is missing: say which to install
        raise ValueError(f"--backend {backend}: {e}") from None
    return OnnxPredictor.from_pretrained(model, windows, quantized=backend == "onnx-int8")
