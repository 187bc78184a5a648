"""Running ONNX exports: the ONNX Runtime session and :class:`OnnxPredictor`, the predictor whose forward
pass is that session (same windows, batches and length sorting as :class:`nerforge.predictor.Predictor`).

The files an export holds (``onnx/model.onnx``, ``onnx/model_quantized.onnx``) are written and verified
by :mod:`nerforge.onnx_export`; ``nerforge onnx --model EXPORT`` is the command. Intra-op threads: what
torch would use (:func:`intra_op_threads`), stated by the commands.
"""

from __future__ import annotations

import logging
from pathlib import Path

from nerforge.predictor import Predictor, WindowSettings, export_windows

__all__ = [
    "ONNX_DIR",
    "FP32_FILE",
    "INT8_FILE",
    "VERIFICATION_FILE",
    "EXTRA_HINT",
    "require_onnx",
    "intra_op_threads",
    "CPU_DISABLED_OPTIMIZERS",
    "session",
    "OnnxPredictor",
]

logger = logging.getLogger(__name__)

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model_quantized.onnx"
VERIFICATION_FILE = "verification.json"
EXTRA_HINT = "pip install 'nerforge[onnx]' (from a checkout: pip install -e '.[onnx]')"


def require_onnx() -> None:
    """Raise a ValueError naming the extra to install when onnx, onnxruntime or onnxscript is missing."""
    missing = []
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ValueError(f"ONNX needs {', '.join(missing)}, the 'onnx' extra: {EXTRA_HINT}")


def intra_op_threads() -> int:
    """The intra-op threads ONNX Runtime is given: as many as torch would use (``torch.get_num_threads()``,
    which honours ``OMP_NUM_THREADS`` and ``torch.set_num_threads``)."""
    import torch

    return int(torch.get_num_threads())


# Graph rewrites left out on the CPU. ONNX Runtime 1.32's fused SkipLayerNormalization (residual Add +
# LayerNorm in one kernel) took 27% of the int8 MiniLM graph's time on a 2-core Xeon with AMX (21 of 79 ms
# for 64 windows of 32 pieces), about 4x what the Add and LayerNormalization nodes it replaces take
# unfused; without the fusion a forward pass took 0.79x the time (int8) and 0.91x (fp32), same logits
# to float rounding (BENCHMARKS.md, "ONNX and int8 inference"). GPU providers keep it.
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def session(path: str | Path, threads: int | None = None, providers: list[str] | None = None):
    """An ``onnxruntime.InferenceSession`` on `path`, with `threads` intra-op threads (default
    :func:`intra_op_threads`), one inter-op thread, all graph optimizations but
    :data:`CPU_DISABLED_OPTIMIZERS` on the CPU, the CPU provider unless `providers` says otherwise."""
    require_onnx()
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or intra_op_threads())
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only
    providers = providers or ["CPUExecutionProvider"]
    disabled = list(CPU_DISABLED_OPTIMIZERS) if providers == ["CPUExecutionProvider"] else []
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers, disabled_optimizers=disabled)


# ---------------------------------------------------------------------------------------------- predictor


class OnnxPredictor(Predictor):
    """:class:`nerforge.predictor.Predictor` whose forward pass is an ONNX Runtime session: the same
    windows, batches, length sorting, tags, probabilities and logits (``predict_words``,
    ``predict_words_with_scores``, ``predict_logits``, ``tag_text``).

    Args:
        onnx_session: an ``onnxruntime.InferenceSession`` of a graph with this module's inputs and output.
        config: the model's ``transformers`` config (labels, position limit).
        tokenizer: its fast tokenizer.
        backend: the name it is reported under (``onnx`` or ``onnx-int8``).
        Other keyword arguments as :class:`~nerforge.predictor.Predictor`'s (no ``device``/``bf16``).
    """

    # onnxruntime's CPU kernels prefer smaller batches than torch's (2,048 pieces): on a 2-core Xeon with
    # AMX, whole CoNLL-2003 test set, caps of 256/512/768/1,024/2,048 padded pieces gave int8 18.1/21.9/
    # 21.9/21.4/20.8k words/s on a no-context export and 10.1/11.9/12.1/12.0/11.1k on the recipe's; fp32
    # 768 against 2,048: 1.05x and 1.09x. Torch fp32 was fastest at 2,048 (BENCHMARKS.md).
    max_batch_pieces = 768

    def __init__(
        self,
        onnx_session,
        config,
        tokenizer,
        windows: WindowSettings | None = None,
        *,
        backend: str = "onnx",
        file: str | None = None,
    ):
        import torch

        self.device = torch.device("cpu")  # inputs are built on the CPU; the session places them
        if onnx_session.get_providers()[0] != "CPUExecutionProvider":
            self.max_batch_pieces = None  # a GPU provider: no cache to spill out of
        self.model = None
        self.bf16 = False
        self.session = onnx_session
        self.backend = backend
        self.file = file
        self._feeds = [i.name for i in onnx_session.get_inputs()]
        unknown = set(self._feeds) - {"input_ids", "attention_mask", "token_type_ids"}
        if unknown or "input_ids" not in self._feeds:
            raise ValueError(f"{file or 'the ONNX graph'}: unexpected inputs {self._feeds}")
        self._configure(config, tokenizer, windows or WindowSettings())

    @property
    def intra_op_threads(self) -> int:
        return int(self.session.get_session_options().intra_op_num_threads)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        windows: WindowSettings | None = None,
        *,
        quantized: bool = False,
        revision: str | None = None,
        trust_remote_code: bool = False,
        threads: int | None = None,
        providers: list[str] | None = None,
    ) -> OnnxPredictor:
        """Load ``onnx/model.onnx`` (``onnx/model_quantized.onnx`` with `quantized`) of an export folder
        or Hub id, with its config and tokenizer; ``windows`` None: the export's own, as
        :meth:`Predictor.from_pretrained`'s."""
        require_onnx()
        from transformers import AutoConfig, AutoTokenizer

        from nerforge.modeling import PREFIX_SPACE_MODELS

        name_or_path = str(name_or_path)
        rel = f"{ONNX_DIR}/{INT8_FILE if quantized else FP32_FILE}"
        local = Path(name_or_path)
        if local.is_dir():
            path = local / rel
            if not path.is_file():
                raise ValueError(f"{name_or_path}: no {rel}; write it with nerforge onnx --model {name_or_path}")
        else:
            from huggingface_hub import hf_hub_download

            try:
                path = Path(hf_hub_download(name_or_path, rel, revision=revision))
            except Exception as e:  # noqa: BLE001 - not on the Hub, no such file, offline
                raise ValueError(f"{name_or_path}: could not get {rel} ({type(e).__name__}: {e})") from None
        config = AutoConfig.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
        extra = {"add_prefix_space": True} if config.model_type in PREFIX_SPACE_MODELS else {}
        tokenizer = AutoTokenizer.from_pretrained(
            name_or_path, revision=revision, use_fast=True, trust_remote_code=trust_remote_code, **extra
        )
        if windows is None:
            windows = export_windows(name_or_path)
        sess = session(path, threads=threads, providers=providers)
        return cls(sess, config, tokenizer, windows, backend="onnx-int8" if quantized else "onnx", file=str(path))

    def _forward(self, input_ids, attention_mask):
        import numpy as np
        import torch

        ids = input_ids.numpy()
        feeds = {"input_ids": ids, "attention_mask": attention_mask.numpy()}
        if "token_type_ids" in self._feeds:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return torch.from_numpy(self.session.run(["logits"], feeds)[0]).float()
