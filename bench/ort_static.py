"""Static int8 through ONNX Runtime (issue 29's lever), for bench rows only.

``onnxruntime.quantization.quantize_static`` on the export's fp32 ``onnx/model.onnx``: QDQ format, int8
weights per output channel and uint8 activations whose scales are fixed from validation windows (MinMax
calibration), for the ``MatMul`` nodes: the linear layers and, unlike the product's dynamic int8
(nerforge/onnx_export.py), the attention's two matmuls, whose inputs are activations on both sides. The
classifier head stays fp32 as in the dynamic file. The result is written where ``--backend onnx-int8``
looks for it, in a copy of the export, so the same predictor runs it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path


def write(export: Path, out: Path, calibration_sentences, calibration_docs, *, attention: bool = True) -> dict:
    """Copy `export` (which has onnx/model.onnx) to `out`, replacing onnx/model_quantized.onnx with a static
    int8 graph calibrated on the windows the ONNX predictor makes of `calibration_sentences`. Without
    `attention` only the MatMuls with a weight (the linear layers) are quantized."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from bench.measure import recorded_windows
    from nerforge.onnx_export import _classifier_nodes, _graph
    from nerforge.onnx_runtime import FP32_FILE, INT8_FILE, ONNX_DIR, OnnxPredictor

    t0 = time.perf_counter()
    shutil.copytree(export, out)
    fp32 = out / ONNX_DIR / FP32_FILE
    pred = OnnxPredictor.from_pretrained(str(out), quantized=False)
    feeds_seen = []
    for ids, mask in recorded_windows(pred, calibration_sentences, calibration_docs):
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in pred._feeds:
            feed["token_type_ids"] = np.zeros_like(ids)
        feeds_seen.append(feed)
    graph = _graph(fp32)
    weights = {t.name for t in graph.initializer}
    skip = set(_classifier_nodes(graph))
    if not attention:  # a MatMul whose inputs are both activations is one of attention's two
        skip |= {n.name for n in graph.node if n.op_type == "MatMul" and not (set(n.input) & weights)}

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds_seen)

        def get_next(self):
            return next(self.it, None)

    quantize_static(
        str(fp32),
        str(out / ONNX_DIR / INT8_FILE),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=sorted(skip),
    )
    return {
        "quantizer": "onnxruntime quantize_static, QDQ, int8 weights per channel, uint8 activations (MinMax)",
        "attention_matmuls": attention,
        "calibration_sentences": len(calibration_sentences),
        "calibration_windows": sum(int(f["input_ids"].shape[0]) for f in feeds_seen),
        "quantize_s": round(time.perf_counter() - t0, 1),
    }
