"""Static int8 through PyTorch 2 export quantization (issue 29's lever), for bench rows only.

The fp32 export is captured with ``torch.export`` (batch and length dynamic), annotated by torchao's
``X86InductorQuantizer`` (int8 weights per channel, int8 activations per tensor, static: their scales come
from running validation windows through the observed graph), converted, and compiled by inductor with
frozen weights, which lowers the quantize/dequantize pairs around each linear layer to oneDNN int8 kernels
(VNNI/AMX). With ``bf16`` the converted graph runs under bf16 autocast, so what is not int8 (attention's
matmuls and softmax, layer norms, GELU) runs in bf16: the quantizer's "int8-mixed-bf16" mode.

It needs ``torchao`` (the ``int8`` extra). The product builds the same program ahead of time instead
(``nerforge quantize``, :mod:`nerforge.pt2_export`): this row is the in-process ``torch.compile`` of it,
whose compile every process pays again.
"""

from __future__ import annotations

import time


def install(pred, calibration_sentences, calibration_docs, *, bf16: bool) -> dict:
    """Replace a torch :class:`nerforge.predictor.Predictor`'s forward with a static-int8 compiled graph,
    calibrated on the windows the predictor itself makes from `calibration_sentences`. The quantized graph
    is the one ``nerforge quantize`` builds (:func:`nerforge.pt2_export.quantized_graph`), compiled here
    in process by ``torch.compile`` instead of ahead of time. Returns what it did and how long the
    quantization took (the compile happens at the first call)."""
    import torch
    from torch._inductor import config as inductor_config

    from bench.measure import recorded_windows
    from nerforge.pt2_export import quantized_graph

    t0 = time.perf_counter()
    # torch.export cannot trace inference tensors: the recorded windows are copies, made tensors again here
    batches = recorded_windows(pred, calibration_sentences, calibration_docs)
    batches = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in batches]
    converted = quantized_graph(pred.model.eval(), batches, pred.max_length)
    # Freezing lowers each quantize/dequantize pair around a linear layer to a oneDNN int8 kernel.
    inductor_config.freezing = True
    compiled = torch.compile(converted, dynamic=True)
    quantize_s = time.perf_counter() - t0

    class Output:  # what Predictor._forward reads from a transformers model's output
        def __init__(self, logits):
            self.logits = logits

    def run(input_ids, attention_mask):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return Output(compiled(input_ids, attention_mask).float())

    pred._run = run
    pred.compiled = True
    return {
        "quantizer": "torchao X86InductorQuantizer, default config (static, int8 activations per tensor)",
        "mode": "int8-mixed-bf16" if bf16 else "int8-mixed-fp32",
        "calibration_sentences": len(calibration_sentences),
        "calibration_windows": sum(int(b[0].shape[0]) for b in batches),
        "quantize_s": round(quantize_s, 1),
    }
