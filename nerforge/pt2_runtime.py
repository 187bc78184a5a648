"""Running an export's static int8 package: ``pt2/model_int8.pt2``, an AOTInductor program that
``nerforge quantize`` (:mod:`nerforge.pt2_export`) compiled on this machine, and :class:`Pt2Predictor`,
the predictor whose forward pass is that program (same windows, batches and length sorting as
:class:`nerforge.predictor.Predictor`).

The package is machine code for the CPU it was built on and the torch release that built it: its int8
linear layers are oneDNN kernels with weights prepacked for that CPU's instructions (AMX, AVX512-VNNI or
AVX2). ``pt2/build.json`` records both, and the sha256 of the ``model.safetensors`` it was built from; a
package built for another instruction set, by another torch, or from weights the export no longer has
(retrained, calibrated) is refused with a message saying to rebuild it (:func:`package_problem`), never run. Loading needs
torch alone: torchao is only needed to build the package.
"""

from __future__ import annotations

import json
from pathlib import Path

from nerforge.predictor import Predictor, WindowSettings, export_windows

__all__ = [
    "PT2_DIR",
    "INT8_FILE",
    "BUILD_FILE",
    "ISA_FLAGS",
    "isa_flags",
    "weights_digest",
    "package_problem",
    "Pt2Predictor",
]

PT2_DIR = "pt2"
INT8_FILE = "model_int8.pt2"
BUILD_FILE = "build.json"
WEIGHTS_FILE = "model.safetensors"  # what the package's weights were frozen from
# The /proc/cpuinfo flags that decide which kernels inductor and oneDNN emit for the package, and how the
# weights are prepacked for them: a package runs only where this set is the same as where it was built.
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "avx512_fp16",
)


def isa_flags(flags: frozenset[str]) -> list[str]:
    """The flags of :data:`ISA_FLAGS` among a CPU's ``flags`` (sorted)."""
    return sorted(set(ISA_FLAGS) & set(flags))


def weights_digest(folder: str | Path) -> str | None:
    """sha256 of an export's ``model.safetensors`` (None when it has none), as ``build.json`` records it."""
    from nerforge.checkpoint import sha256_of

    f = Path(folder) / WEIGHTS_FILE
    return sha256_of(f) if f.is_file() else None


def package_problem(
    build: dict, flags: frozenset[str], torch_version: str, weights_sha256: str | None = None
) -> str | None:
    """Why a package with this ``build.json`` cannot run here (None: it can): another instruction set,
    another torch release (AOTInductor programs are tied to the one that compiled them), or -- when
    ``weights_sha256`` (the export's weights now, :func:`weights_digest`) is given -- other weights than
    it was built from: the package carries its own frozen copy, which would silently serve the old model
    after a retrain or ``nerforge calibrate``. Pure.

    The instruction sets must be the same, not merely a superset: a package built without an instruction
    could run on a CPU with it, but its weights were prepacked for the kernels of the CPU that built it,
    and oneDNN may pick other kernels on this one (and an AVX2 package on an AMX CPU wastes the AMX)."""
    built, here = sorted(build.get("isa_flags", ())), isa_flags(flags)
    if built != here:
        missing = sorted(set(built) - set(here))
        why = (
            f"this one lacks {', '.join(missing)}"
            if missing
            else f"this one also has {', '.join(sorted(set(here) - set(built)))}"
        )
        return f"built for a CPU with {', '.join(built) or 'none of the flags that matter'}; {why}"
    if build.get("torch") != torch_version:
        return f"built by torch {build.get('torch')}, this is torch {torch_version}"
    if weights_sha256 is not None and build.get("weights_sha256") != weights_sha256:
        if "weights_sha256" not in build:
            return f"its {BUILD_FILE} does not say which weights it was built from (an older nerforge built it)"
        return f"built from other weights than the export's {WEIGHTS_FILE} (retrained or calibrated since)"
    return None


def read_build(folder: str | Path) -> dict:
    """``pt2/build.json`` of an export folder (a ValueError naming the file when missing or not JSON)."""
    f = Path(folder) / PT2_DIR / BUILD_FILE
    if not f.is_file():
        raise ValueError(
            f"{folder}: no {PT2_DIR}/{BUILD_FILE}; build the package with nerforge quantize --model {folder}"
        )
    try:
        build = json.loads(f.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{f}: not valid JSON ({e}); rebuild with nerforge quantize") from None
    if not isinstance(build, dict):
        raise ValueError(f"{f}: expected an object (written by nerforge quantize)")
    return build


class Pt2Predictor(Predictor):
    """:class:`nerforge.predictor.Predictor` whose forward pass is the export's static int8 AOTInductor
    package (``pt2/model_int8.pt2``): the same windows, batches, tags, probabilities and logits.

    Args:
        runner: the loaded package (``torch._inductor.aoti_load_package``): (input_ids, attention_mask) ->
            float logits [windows, pieces, labels].
        config: the model's ``transformers`` config (labels, position limit).
        tokenizer: its fast tokenizer.
        build: the package's ``build.json`` (what :meth:`describe` reports).
    """

    backend = "torch-int8"

    def __init__(self, runner, config, tokenizer, windows: WindowSettings | None = None, *, build: dict, file: str):
        import torch

        self.device = torch.device("cpu")
        self.model = None
        self.bf16 = False
        self.runner = runner
        self.build = build
        self.file = file
        self._configure(config, tokenizer, windows or WindowSettings())
        if self.max_length > int(build.get("max_pieces", self.max_length)):
            raise ValueError(
                f"{file}: built for windows of at most {build['max_pieces']} pieces, asked for {self.max_length}; "
                "rebuild with nerforge quantize"
            )

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        windows: WindowSettings | None = None,
        *,
        flags: frozenset[str],
        weights_sha256: str | None = None,
    ) -> Pt2Predictor:
        """Load ``pt2/model_int8.pt2`` of a local export folder with its config and tokenizer; ``flags``: this
        CPU's (:func:`nerforge.backends.cpu_flags`); ``weights_sha256``: the export's
        :func:`weights_digest` where the caller has just computed it (None: computed here). ValueErrors: no
        such folder or package, or one built for another CPU or torch or from other weights
        (:func:`package_problem`)."""
        import torch
        from transformers import AutoConfig, AutoTokenizer

        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(
                f"{folder}: the int8 package is built on the machine that runs it (nerforge quantize), "
                "so torch-int8 takes a local export folder"
            )
        build = read_build(folder)
        path = folder / PT2_DIR / INT8_FILE
        if not path.is_file():
            raise ValueError(f"{folder}: no {PT2_DIR}/{INT8_FILE}; build it with nerforge quantize --model {folder}")
        digest = weights_sha256 if weights_sha256 is not None else weights_digest(folder)
        problem = package_problem(build, flags, torch.__version__, digest)
        if problem:
            raise ValueError(f"{path}: {problem}; rebuild it here with nerforge quantize --model {folder}")
        from torch._inductor import aoti_load_package

        runner = aoti_load_package(str(path))
        config = AutoConfig.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True)
        return cls(
            runner,
            config,
            tokenizer,
            windows if windows is not None else export_windows(str(folder)),
            build=build,
            file=str(path),
        )

    def describe(self) -> dict:
        out = super().describe()
        rest = "bf16" if self.build.get("bf16") else "fp32"
        out["precision"] = f"static int8 linear layers, {rest} rest (AOTInductor)"
        out["device"] = "cpu"
        return out

    def _forward(self, input_ids, attention_mask):
        import torch

        with torch.no_grad():
            return self.runner(input_ids.contiguous(), attention_mask.contiguous()).float()
