"""What runs a model: the one place a backend name becomes a predictor.

``torch`` (:class:`nerforge.predictor.Predictor`, fp32 or with ``bf16`` under bfloat16 autocast),
``onnx`` and ``onnx-int8`` (the export's ``onnx/model.onnx`` / ``onnx/model_quantized.onnx`` under ONNX
Runtime, :class:`nerforge.onnx_runtime.OnnxPredictor`: the same windows and batches; intra-op threads
as torch's), ``torch-int8`` (the export's static int8 AOTInductor package ``pt2/model_int8.pt2``, built
on this machine by ``nerforge quantize``: :class:`nerforge.pt2_runtime.Pt2Predictor`), and ``auto``: the
fastest of those *paths* whose F1 on the export was verified.

A path is one way to run an export on a CPU: ``torch`` (fp32), ``torch-bf16``, ``onnx``, ``onnx-int8``,
``torch-int8``.
``nerforge verify`` scores a split with each path this machine can run, times it, and writes the export's
``backends.json`` (:func:`verify_paths`). ``auto`` (:func:`choose`) then takes, among the recorded paths
whose F1 is within :data:`MAX_F1_DELTA` points of fp32's and whose files are unchanged since, the one
with the most words per second (within :data:`SPEED_TIE` of it, the one closest to fp32's F1), never bf16 on a CPU without native bf16 (emulated bf16 is slower than
fp32), never ONNX without onnxruntime, never an int8 package built for another CPU or torch release;
with no record, or on a GPU, it is plain torch.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from nerforge.features import WindowSettings
from nerforge.predictor import Predictor

BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "torch-int8")
PATHS = ("torch", "torch-bf16", "onnx", "onnx-int8", "torch-int8")
RECORD_FILE = "backends.json"
MAX_F1_DELTA = 0.3  # F1 points: a path that moves F1 more than this is never picked by auto
SPEED_TIE = 0.05  # paths within 5% of the fastest's words/s are as fast: the one closer to fp32's F1 wins
# The command that writes a path's file (said when the file is missing).
WRITTEN_BY = {
    "onnx": "nerforge onnx writes it",
    "onnx-int8": "nerforge onnx writes it",
    "torch-int8": "nerforge quantize builds it",
}
# CPU flags of native bfloat16 arithmetic: x86 AVX512-BF16 / AMX-BF16, Arm's BF16 extension.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})

__all__ = [
    "BACKENDS",
    "PATHS",
    "RECORD_FILE",
    "MAX_F1_DELTA",
    "Choice",
    "choose",
    "cpu_flags",
    "cpu_name",
    "native_bf16",
    "path_files",
    "fingerprint",
    "fingerprints",
    "read_record",
    "resolve",
    "load_predictor",
    "verify_paths",
]


@dataclass(frozen=True)
class Choice:
    """A resolved backend: what :func:`load_predictor` runs, and why it was chosen."""

    backend: str
    bf16: bool
    reason: str
    # sha256 of model.safetensors when resolve already hashed it (auto with a verify record): the int8
    # package's load checks its weights against this instead of reading 1.3 GB (bert-large) again
    weights_sha256: str | None = field(default=None, compare=False)

    @property
    def path(self) -> str:
        return "torch-bf16" if self.bf16 else self.backend


def _cpuinfo_field(names: tuple[str, ...], cpuinfo: str | None) -> str | None:
    """The first processor's value of one of ``names`` in /proc/cpuinfo (None: no such field or file)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in names:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags (``flags`` on x86, ``Features`` on Arm) from /proc/cpuinfo; empty where
    there is no such file (macOS, Windows): nothing is assumed native there."""
    return frozenset((_cpuinfo_field(("flags", "Features"), cpuinfo) or "").split())


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name (/proc/cpuinfo), else what ``platform`` knows."""
    return _cpuinfo_field(("model name",), cpuinfo) or platform.processor() or platform.machine()


def native_bf16(flags: frozenset[str]) -> bool:
    return bool(NATIVE_BF16_FLAGS & flags)


def path_files(path: str) -> tuple[str, ...]:
    """The export files a path runs (relative to the export folder)."""
    from nerforge.onnx_runtime import FP32_FILE, INT8_FILE, ONNX_DIR
    from nerforge.pt2_runtime import INT8_FILE as PT2_INT8_FILE
    from nerforge.pt2_runtime import PT2_DIR

    return {
        "torch": ("model.safetensors",),
        "torch-bf16": ("model.safetensors",),
        "onnx": (f"{ONNX_DIR}/{FP32_FILE}",),
        "onnx-int8": (f"{ONNX_DIR}/{INT8_FILE}",),
        "torch-int8": (f"{PT2_DIR}/{PT2_INT8_FILE}",),
    }[path]


def fingerprint(folder: str | Path, path: str) -> str | None:
    """sha256 of the file a path runs (None if it is missing): a record is only trusted for the weights
    it verified (a retrained, calibrated or re-exported model needs a new ``nerforge verify``). For torch
    it is :func:`nerforge.pt2_runtime.weights_digest`, the digest the int8 package records."""
    from nerforge.checkpoint import sha256_of

    (name,) = path_files(path)  # every path runs one file
    f = Path(folder) / name
    return sha256_of(f) if f.is_file() else None


def fingerprints(folder: str | Path, names) -> dict[str, str | None]:
    """:func:`fingerprint` of each path in ``names``, each file set hashed once (torch and torch-bf16 run
    the same weights: one pass over model.safetensors, which is 1.3 GB for bert-large)."""
    by_files: dict[tuple[str, ...], str | None] = {}
    out = {}
    for name in names:
        files = path_files(name)
        if files not in by_files:
            by_files[files] = fingerprint(folder, name)
        out[name] = by_files[files]
    return out


def read_record(folder: str | Path) -> dict | None:
    """The export's ``backends.json``, or None (no such file, or not a local folder)."""
    import json

    f = Path(folder) / RECORD_FILE
    if not f.is_file():
        return None
    try:
        record = json.loads(f.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{f}: not valid JSON ({e}); rerun nerforge verify") from None
    if not isinstance(record, dict) or not isinstance(record.get("paths"), dict):
        raise ValueError(f"{f}: expected an object with 'paths' (written by nerforge verify)")
    return record


def choose(
    record: dict | None,
    *,
    device_type: str,
    flags: frozenset[str],
    runnable: dict[str, str | None],
    current: dict[str, str | None] | None = None,
) -> Choice:
    """``auto``'s pick (pure). ``record``: the export's ``backends.json`` (None: none); ``flags``: this
    CPU's; ``runnable``: path -> None if it may run here, else why not (no onnxruntime); ``current``:
    path -> fingerprint of the export's files now (a path whose files changed since the record is not
    trusted; None: not checked)."""
    if device_type != "cpu":
        return Choice("torch", False, f"auto: torch on {device_type} (the verified CPU paths are for CPUs)")
    if record is None:
        return Choice(
            "torch",
            False,
            f"auto: torch fp32 (no {RECORD_FILE} in the export: nerforge verify checks the faster paths)",
        )
    paths = record["paths"]
    skipped, candidates = [], []
    for name, r in paths.items():
        if name not in PATHS or "f1_delta" not in r or "words_per_s" not in r:
            continue
        why = None
        if abs(float(r["f1_delta"])) > MAX_F1_DELTA:
            why = f"F1 {float(r['f1_delta']):+.2f}"
        elif name == "torch-bf16" and not native_bf16(flags):
            why = "no native bf16 on this CPU"
        elif (blocked := runnable.get(name, "unknown here")) is not None:
            why = blocked  # why this install cannot run it
        elif current is not None and current.get(name) != r.get("sha256"):
            why = "files changed since verified" if current.get(name) else "file missing"
        if why:
            skipped.append(f"{name}: {why}")
        else:
            candidates.append(name)
    if not candidates:
        return Choice("torch", False, "auto: torch fp32 (no verified path runs here: " + "; ".join(skipped) + ")")
    # The fastest; paths within SPEED_TIE of it are a tie on a timing this noisy, and then the smaller F1
    # change wins (on the MiniLM recipe int8 ran 1% faster than bf16 at -0.28 F1 against -0.03).
    top = max(float(paths[n]["words_per_s"]) for n in candidates)
    tied = [n for n in candidates if float(paths[n]["words_per_s"]) >= (1 - SPEED_TIE) * top]
    best = min(tied, key=lambda n: (abs(float(paths[n]["f1_delta"])), -float(paths[n]["words_per_s"])))
    r = paths[best]
    base = paths.get("torch", {}).get("words_per_s")
    speed = f", {float(r['words_per_s']) / float(base):.2f}x fp32's words/s" if base else ""
    how = (
        "fastest verified path"
        if float(r["words_per_s"]) == top
        else f"verified, within {SPEED_TIE:.0%} of the fastest, closest to fp32"
    )
    reason = (
        f"auto: {best} ({how} in {RECORD_FILE}{speed}, F1 {float(r['f1_delta']):+.2f} "
        f"vs fp32 on {record.get('split', '?')}; measured on {record.get('cpu', '?')})"
    )
    if skipped:
        reason += "; skipped " + "; ".join(skipped)
    backend = "torch" if best in ("torch", "torch-bf16") else best
    return Choice(backend, best == "torch-bf16", reason)


def _onnx_available() -> bool:
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None


def _package_blocked(folder: Path, flags: frozenset[str], weights_sha256: str | None) -> str | None:
    """Why the export's int8 package cannot run here (None: it can, or there is none to judge).
    ``weights_sha256``: the export's weights' digest, torch's :func:`fingerprint` (the callers have it)."""
    import torch

    from nerforge.pt2_runtime import BUILD_FILE, PT2_DIR, package_problem, read_build

    if not (folder / PT2_DIR / BUILD_FILE).is_file():
        return None  # no package: the fingerprint check reports the missing file
    try:
        return package_problem(read_build(folder), flags, torch.__version__, weights_sha256)
    except ValueError as e:
        return str(e)


def resolve(
    model: str, backend: str = "auto", *, device: str | None = None, bf16: bool = False, compile: bool = False
) -> Choice:
    """A backend name (``auto`` included) and ``--bf16`` -> the :class:`Choice` to load. ``--bf16`` is
    an explicit torch bf16; any other explicit backend is taken as given; with ``compile`` auto chooses
    among the torch paths only."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    if backend != "auto":
        return Choice(backend, bf16, f"backend {backend} (given)")
    if bf16:
        return Choice("torch", True, "auto: torch bf16 (--bf16 given)")
    import torch

    device_type = (device or ("cuda" if torch.cuda.is_available() else "cpu")).split(":")[0]
    folder = Path(model)
    record = read_record(folder) if device_type == "cpu" and folder.is_dir() else None
    flags = cpu_flags()
    onnx_missing = None if _onnx_available() else "onnxruntime not installed"
    runnable = {
        p: (("--compile runs torch" if compile else onnx_missing) if p.startswith("onnx") else None) for p in PATHS
    }
    current = None
    if record is not None:
        current = fingerprints(folder, ["torch", *(p for p in record["paths"] if p in PATHS)])
        if "torch-int8" in record["paths"]:  # the weights' digest is torch's fingerprint: hashed once
            blocked = "--compile runs torch" if compile else _package_blocked(folder, flags, current["torch"])
            runnable["torch-int8"] = blocked
    choice = choose(record, device_type=device_type, flags=flags, runnable=runnable, current=current)
    return replace(choice, weights_sha256=current["torch"]) if current else choice


def load_predictor(
    model: str,
    backend: str = "torch",
    windows: WindowSettings | None = None,
    *,
    device: str | None = None,
    bf16: bool = False,
    compile: bool = False,
) -> Predictor:
    """The predictor for an export folder or Hub id; ``windows`` None: the export's own. Bad settings
    (bf16 or a GPU with an ONNX backend, the onnx extra missing, no such file) are ValueErrors.
    ``auto`` is resolved first (:func:`resolve`); the predictor's ``choice`` says what and why.
    ``compile`` (torch only) runs the model through ``torch.compile``; ``auto`` never picks it alone:
    it costs tens of seconds when a process starts."""
    choice = resolve(model, backend, device=device, bf16=bf16, compile=compile)
    if compile and choice.backend != "torch":
        raise ValueError(f"--compile is for the torch backend, not {choice.backend} ({choice.reason})")
    predictor = _load(
        model,
        choice.backend,
        windows,
        device=device,
        bf16=choice.bf16,
        compile=compile,
        weights_sha256=choice.weights_sha256,
    )
    predictor.choice = choice
    return predictor


def _load(
    model: str,
    backend: str,
    windows: WindowSettings | None,
    *,
    device: str | None,
    bf16: bool,
    compile: bool = False,
    weights_sha256: str | None = None,
) -> Predictor:
    if backend == "torch":
        return Predictor.from_pretrained(model, windows, device=device, bf16=bf16, compile=compile)
    if backend == "torch-int8":
        if bf16 or device not in (None, "cpu"):
            raise ValueError(
                "--backend torch-int8 runs the export's int8 package on the CPU as it was built "
                "(its non-int8 rest in bf16 or fp32, fixed by nerforge quantize); drop --bf16 / --device"
            )
        from nerforge.pt2_runtime import Pt2Predictor

        return Pt2Predictor.from_pretrained(model, windows, flags=cpu_flags(), weights_sha256=weights_sha256)
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


def verify_paths(
    model: str,
    split,
    windows: WindowSettings | None = None,
    *,
    paths: tuple[str, ...] | None = None,
    flags: frozenset[str] | None = None,
    on_path=None,
) -> dict:
    """Score ``split`` with each path this machine can run (default: torch; torch-bf16 where the CPU
    has native bf16; onnx and onnx-int8 where the export has the file and onnxruntime is installed),
    timing each prediction after a warm-up call, and return what ``backends.json`` holds. Paths not run
    are listed under ``not_run`` with the reason. ``on_path(name, entry)`` is called after each."""
    import torch

    from nerforge.metric import score
    from nerforge.scoring import predict_split

    folder = Path(model)
    flags = cpu_flags() if flags is None else flags
    not_run = {}
    wanted = list(paths or PATHS)
    if "torch" not in wanted:
        wanted.insert(0, "torch")  # the reference every delta is taken against
    unknown = [name for name in wanted if name not in PATHS]
    if unknown:
        raise ValueError(f"unknown path {unknown[0]!r} (known: {', '.join(PATHS)})")
    hashes = fingerprints(folder, wanted)
    todo = []
    for name in wanted:
        if name == "torch-bf16" and not native_bf16(flags) and paths is None:
            not_run[name] = "no native bf16 on this CPU (emulated bf16 is slower than fp32)"
        elif name.startswith("onnx") and not _onnx_available():
            not_run[name] = "onnxruntime not installed (pip install 'nerforge[onnx]')"
        elif hashes[name] is None:
            made = f" ({WRITTEN_BY[name]})" if name in WRITTEN_BY else ""
            not_run[name] = f"no {path_files(name)[0]} in the export{made}"
        elif name == "torch-int8" and (blocked := _package_blocked(folder, flags, hashes["torch"])):
            not_run[name] = blocked
        else:
            todo.append(name)
    if "torch" not in todo:
        raise ValueError(f"{folder}: {not_run['torch']}: verify needs the torch weights")
    words = sum(len(s) for s in split["tokens"])
    entries, ref_f1 = {}, None
    for name in todo:
        backend = "torch" if name in ("torch", "torch-bf16") else name
        predictor = _load(model, backend, windows, device="cpu", bf16=name == "torch-bf16")
        predictor.predict_words([["warm", "up"]])
        t0 = time.perf_counter()
        p = predict_split(predictor, split)
        dt = time.perf_counter() - t0
        f1 = float(score(p["gold"], p["pred"])["f1"])
        ref_f1 = f1 if name == "torch" else ref_f1
        entries[name] = {
            "f1": round(f1, 6),
            "f1_delta": round(100 * (f1 - ref_f1), 3),
            "time_s": round(dt, 3),
            "words_per_s": round(words / dt, 1),
            "precision": predictor.describe()["precision"],
            "sha256": hashes[name],
        }
        if on_path is not None:
            on_path(name, entries[name])
    return {
        "split": None,  # the command fills in the split's name and where it came from
        "sentences": len(split),
        "words": words,
        "cpu": cpu_name(),
        "native_bf16": native_bf16(flags),
        "intra_op_threads": int(torch.get_num_threads()),
        "max_f1_delta": MAX_F1_DELTA,
        "torch": torch.__version__,
        "paths": entries,
        "not_run": not_run,
    }
