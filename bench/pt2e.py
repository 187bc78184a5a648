"""Static int8 through PyTorch 2 export quantization (issue 29's lever), for bench rows only.

The fp32 export is captured with ``torch.export`` (batch and length dynamic), annotated by torchao's
``X86InductorQuantizer`` (int8 weights per channel, int8 activations per tensor, static: their scales come
from running validation windows through the observed graph), converted, and compiled by inductor with
frozen weights, which lowers the quantize/dequantize pairs around each linear layer to oneDNN int8 kernels
(VNNI/AMX). With ``bf16`` the converted graph runs under bf16 autocast, so what is not int8 (attention's
matmuls and softmax, layer norms, GELU) runs in bf16: the quantizer's "int8-mixed-bf16" mode.

It needs ``torchao`` (``pip install torchao``), a bench-only dependency until a row shows what it buys:
the product's own int8 path is ONNX Runtime's dynamic quantization (nerforge/onnx_export.py).
"""

from __future__ import annotations

import time


def install(pred, calibration_sentences, calibration_docs, *, bf16: bool) -> dict:
    """Replace a torch :class:`nerforge.predictor.Predictor`'s forward with a static-int8 compiled graph,
    calibrated on the windows the predictor itself makes from `calibration_sentences`. Returns what it
    did and how long the quantization took (the compile happens at the first call)."""
    import torch
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torch._inductor import config as inductor_config
    from torch.export import Dim, export
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from bench.measure import recorded_windows

    t0 = time.perf_counter()
    # torch.export cannot trace inference tensors: the recorded windows are copies, made tensors again here
    batches = recorded_windows(pred, calibration_sentences, calibration_docs)
    batches = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in batches]

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    windows, pieces = Dim("windows", min=1, max=4096), Dim("pieces", min=2, max=pred.max_length)
    dims = {0: windows, 1: pieces}
    graph = export(Logits(pred.model.eval()), batches[0], dynamic_shapes=(dims, dims), strict=False).module()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    observed = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for ids, mask in batches:
            observed(ids, mask)
    converted = convert_pt2e(observed)
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
