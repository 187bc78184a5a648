"""What goes into an export folder besides the weights: training curve, model card, atomic
writes; and pushing a finished export folder to the Hugging Face Hub.

The training script writes ``OUTPUT_DIR/model/`` (weights, tokenizer, ``training_config.yaml``,
``metrics.json``) and then calls :func:`plot_training_curve` and :func:`render_model_card`.
:func:`push_export` (also ``python -m nerforge.push``) uploads the folder in one commit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEMPLATE = REPO_ROOT / "model_card.md"
DEFAULT_WIDGET_TEXT = "My name is Clara and I live in Berkeley, California."
DEFAULT_COMMIT_MESSAGE = "Upload NER model trained with nerforge"
FRAMEWORKS = ["nerforge", "transformers", "torch", "datasets", "accelerate", "tokenizers", "huggingface_hub"]
CARD_METRICS = ["precision", "recall", "f1", "accuracy"]

__all__ = [
    "atomic_write_text",
    "write_json_atomic",
    "plot_training_curve",
    "render_model_card",
    "push_export",
    "check_export_dir",
    "PushError",
    "IncompleteExportError",
    "AuthenticationError",
]


# ---------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``:
    readers see the old content or the new one, never a half-written file."""
    _atomic_write_bytes(Path(path), text.encode(encoding))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """``json.dump`` (indented, UTF-8) with the same all-or-nothing guarantee as
    :func:`atomic_write_text`."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------
# Training curve
# ---------------------------------------------------------------------------


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def plot_training_curve(history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Plot training loss (left axis) and validation F1 (right axis) against optimizer steps.

    ``history`` holds entries such as ``{"step": 10, "loss": 1.23, ...}`` and
    ``{"step": 20, "eval_f1": 0.81, ...}``; entries without ``step`` use their position.
    Works with only losses, only evaluations, a single point, or nothing (an empty chart
    saying so).  Writes a PNG atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    loss_x, loss_y, f1_x, f1_y = [], [], [], []
    for i, entry in enumerate(history or []):
        step = entry.get("step", i)
        if _finite(entry.get("loss")):
            loss_x.append(step)
            loss_y.append(float(entry["loss"]))
        if _finite(entry.get("eval_f1")):
            f1_x.append(step)
            f1_y.append(float(entry["eval_f1"]))

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xlabel("optimizer step")
    handles = []
    if loss_x:
        (h,) = ax.plot(
            loss_x,
            loss_y,
            color="tab:blue",
            marker="o" if len(loss_x) < 30 else None,
            markersize=3,
            label="training loss",
        )
        handles.append(h)
        ax.set_ylabel("training loss", color="tab:blue")
    else:
        ax.set_yticks([])
    if f1_x:
        ax2 = ax.twinx()
        (h,) = ax2.plot(f1_x, f1_y, color="tab:orange", marker="s", markersize=4, label="validation F1")
        handles.append(h)
        ax2.set_ylabel("validation F1 (entity level)", color="tab:orange")
        ax2.set_ylim(0.0, 1.0)
    if handles:
        ax.legend(handles=handles, loc="center right")
    else:
        ax.text(0.5, 0.5, "no training history recorded", ha="center", va="center", transform=ax.transAxes)
    ax.grid(True, alpha=0.3)
    ax.set_title("Training curve")
    fig.tight_layout()

    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _atomic_write_bytes(Path(path), buf.getvalue())


# ---------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------

_SECRET_PARTS = {"token", "secret", "password", "passwd", "apikey", "credential", "credentials"}
_TOKEN_VALUE_RE = re.compile(r"hf_[A-Za-z0-9]{16,}")


def _is_secret_key(key: str) -> bool:
    """Keys such as ``hub_token``, ``use_auth_token``, ``api_key`` are dropped from the card.

    The test is on ``_``-separated parts (``label_all_tokens`` and ``tokenizer_name`` are
    hyperparameters, not secrets, and are kept)."""
    parts = [p for p in re.split(r"[_\-.\s]+", key.lower()) if p]
    if any(p in _SECRET_PARTS for p in parts):
        return True
    return len(parts) >= 2 and parts[-1] == "key" and parts[-2] in {"api", "access", "secret", "private"}


def _fmt_value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    text = _TOKEN_VALUE_RE.sub("<redacted>", text)
    return text.replace("|", "\\|").replace("\n", " ")


def _config_tables(run_config: Mapping[str, Any]) -> list[dict]:
    """[{"name": section, "rows": [(key, value_str), ...]}, ...] without secret-looking keys."""
    sections = []
    loose = []
    for section, values in run_config.items():
        if _is_secret_key(str(section)):
            continue
        if isinstance(values, Mapping):
            rows = [(str(k), _fmt_value(v)) for k, v in values.items() if not _is_secret_key(str(k))]
            sections.append({"name": str(section), "rows": rows})
        else:
            loose.append((str(section), _fmt_value(values)))
    if loose:
        sections.append({"name": "other", "rows": loose})
    return sections


def _pct(x: Any) -> str:
    return f"{100.0 * float(x):.2f}" if _finite(x) else "n/a"


def _split_view(split: str, scores: Mapping[str, Any]) -> dict:
    per_type = scores.get("per_type") or {}
    return {
        "split": split,
        "precision": _pct(scores.get("precision")),
        "recall": _pct(scores.get("recall")),
        "f1": _pct(scores.get("f1")),
        "accuracy": _pct(scores.get("accuracy")),
        "weighted_f1": _pct(scores.get("weighted_f1")),
        "loss": f"{float(scores['loss']):.4f}" if _finite(scores.get("loss")) else None,
        "num_sentences": scores.get("num_sentences"),
        "num_words": scores.get("num_words"),
        "per_type": [
            {
                "type": name,
                "precision": _pct(row.get("precision")),
                "recall": _pct(row.get("recall")),
                "f1": _pct(row.get("f1")),
                "support": row.get("support"),
            }
            for name, row in sorted(per_type.items())
        ],
    }


def _looks_local(name: str | None) -> bool:
    if not name:
        return True
    if os.path.exists(os.path.expanduser(name)):
        return True
    if name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1:
        return True
    return False


def _framework_versions() -> list[tuple[str, str]]:
    from importlib import metadata

    out = []
    for name in FRAMEWORKS:
        dist = name.replace("_", "-")
        try:
            out.append((name, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            try:
                mod = __import__(name)
                out.append((name, str(getattr(mod, "__version__", "unknown"))))
            except ImportError:
                out.append((name, "not installed"))
    return out


def _detect_uncased(export_dir: Path, do_lower_case: bool | None, model_name: str | None) -> bool:
    if do_lower_case is not None:
        return bool(do_lower_case)
    tok_cfg = export_dir / "tokenizer_config.json"
    if tok_cfg.is_file():
        try:
            value = json.loads(tok_cfg.read_text(encoding="utf-8")).get("do_lower_case")
        except (OSError, ValueError):
            value = None
        if isinstance(value, bool):
            return value
    return "uncased" in (model_name or "").lower()


def render_model_card(
    export_dir: str | os.PathLike,
    *,
    run_config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    label_names: Sequence[str],
    repo_id: str | None = None,
    template_path: str | os.PathLike = DEFAULT_TEMPLATE,
    do_lower_case: bool | None = None,
    widget_text: str = DEFAULT_WIDGET_TEXT,
):
    """Render the model card from ``template_path`` (Jinja) and write ``export_dir/README.md``.

    Metadata (YAML header, incl. ``model-index`` for validation/test precision, recall,
    F1 and accuracy) is built with ``huggingface_hub.ModelCardData``/``EvalResult``; every
    number in the card comes from ``metrics`` (the dict written to ``metrics.json``) and
    every setting from ``run_config`` (the resolved ``training_config.yaml`` as a dict).
    Returns the ``huggingface_hub.ModelCard``.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    export_dir = Path(export_dir)
    model_cfg = dict(run_config.get("model") or {})
    data_cfg = dict(run_config.get("data") or {})
    train_cfg = dict(run_config.get("training") or {})

    base_name = model_cfg.get("model_name_or_path")
    tiny = bool(model_cfg.get("tiny_model"))
    base_model = None if tiny or _looks_local(base_name) else base_name

    dataset_id = data_cfg.get("dataset_name") or None
    if not dataset_id:
        source = data_cfg.get("dataset_path") or data_cfg.get("data_dir")
        dataset_id = Path(str(source)).name if source else "conll2003"
    is_conll = "conll2003" in dataset_id.lower().replace("-", "").replace("_", "")
    dataset_pretty = "CoNLL-2003" if is_conll else dataset_id

    license_id = run_config.get("license") or model_cfg.get("license") or train_cfg.get("license") or "apache-2.0"
    if repo_id:
        model_name = repo_id.split("/")[-1]
    elif base_model:
        model_name = f"{base_model.split('/')[-1]}-{dataset_id.split('/')[-1]}"
    else:
        model_name = f"nerforge-{dataset_id.split('/')[-1]}"

    splits = [(s, metrics[s]) for s in ("validation", "test") if isinstance(metrics.get(s), Mapping)]
    eval_results = [
        EvalResult(
            task_type="token-classification",
            task_name="Named Entity Recognition",
            dataset_type=dataset_id,
            dataset_name=dataset_pretty,
            dataset_split=split,
            metric_type=name,
            metric_name=f"{split.capitalize()} {name.capitalize() if name != 'f1' else 'F1'}",
            metric_value=float(scores[name]),
        )
        for split, scores in splits
        for name in CARD_METRICS
        if _finite(scores.get(name))
    ]

    tags = ["token-classification", "ner", "conll2003" if is_conll else dataset_id.split("/")[-1].lower(), "nerforge"]
    card_data = ModelCardData(
        language="en",
        license=license_id,
        library_name="transformers",
        pipeline_tag="token-classification",
        datasets=[dataset_id],
        base_model=base_model,
        tags=tags,
        metrics=list(CARD_METRICS),
        model_name=model_name,
        eval_results=eval_results or None,
        widget=[{"text": widget_text}],
    )

    context_size = data_cfg.get("context_size") or 0
    pack_length = data_cfg.get("pack_length") or 0
    scheme = str(data_cfg.get("tagging_scheme") or "iob2").lower()
    model_ref = repo_id or "path/to/this/folder"
    entity_types = sorted({t.split("-", 1)[1] for t in label_names if "-" in t})
    extra = {
        k: metrics[k]
        for k in ("best_step", "num_processes", "train_runtime_s", "effective_batch_size")
        if metrics.get(k) is not None
    }
    if _finite(extra.get("train_runtime_s")):
        extra["train_runtime_s"] = f"{float(extra['train_runtime_s']):.1f}"

    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        title=repo_id or model_name,
        repo_id=repo_id,
        model_ref=model_ref,
        base_model_name=base_name,
        base_model_on_hub=base_model,
        tiny_model=tiny,
        dataset_id=dataset_id,
        dataset_pretty=dataset_pretty,
        is_conll=is_conll,
        tagging_scheme=scheme.upper(),
        uncased=_detect_uncased(export_dir, do_lower_case, base_name),
        context_size=context_size,
        pack_length=pack_length,
        label_names=list(label_names),
        entity_types=entity_types,
        config_tables=_config_tables(run_config),
        splits=[_split_view(s, scores) for s, scores in splits],
        training_facts=extra,
        has_curve=(export_dir / "training_curve.png").is_file(),
        frameworks=_framework_versions(),
        widget_text=widget_text,
    )
    export_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(export_dir / "README.md", str(card))
    return card


# ---------------------------------------------------------------------------
# Push to the Hub
# ---------------------------------------------------------------------------

RETRY_HINT = "python -m nerforge.push OUTPUT_DIR/model --hub_model_id user/name"
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


class PushError(RuntimeError):
    """A push to the Hub failed; the local export folder is untouched."""


class IncompleteExportError(PushError, ValueError):
    """The folder is not a complete export: nothing was pushed."""


class AuthenticationError(PushError):
    """401/403/404 from the Hub: missing, wrong or insufficient token (never retried)."""


def check_export_dir(export_dir: str | os.PathLike) -> Path:
    """Raise :class:`IncompleteExportError` unless ``export_dir`` holds weights
    (``model.safetensors`` or a sharded index), ``config.json``, ``README.md`` and a
    tokenizer file."""
    folder = Path(export_dir)
    if not folder.is_dir():
        raise IncompleteExportError(f"{folder} is not a folder: expected an export such as OUTPUT_DIR/model")
    missing = []
    if not ((folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()):
        missing.append("model.safetensors")
    for name in ("config.json", "README.md"):
        if not (folder / name).is_file():
            missing.append(name)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append("a tokenizer file (" + " / ".join(TOKENIZER_FILES[:3]) + ")")
    if missing:
        raise IncompleteExportError(
            f"{folder} is not a complete export, missing: {', '.join(missing)}. "
            "Re-run the export (training writes OUTPUT_DIR/model) before pushing."
        )
    return folder


def _known_tokens(token: str | None) -> list[str]:
    found = [t for t in (token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")) if t]
    try:
        from huggingface_hub import get_token

        cached = get_token()
        if cached:
            found.append(cached)
    except Exception:  # reading the local token file must never break a push
        pass
    return sorted(set(found), key=len, reverse=True)


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _TOKEN_VALUE_RE.sub("***", text)


def _status_code(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def _transient_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [TimeoutError]
    try:
        import httpx2

        types += [httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError]
    except ImportError:  # pragma: no cover - huggingface_hub 2.x depends on httpx2
        pass
    try:
        import httpx

        types += [httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError]
    except ImportError:
        pass
    try:
        import requests

        types += [requests.exceptions.Timeout, requests.exceptions.ConnectionError]
    except ImportError:
        pass
    return tuple(types)


def _classify(exc: BaseException) -> str:
    """'auth', 'retry' or 'fatal'."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return "fatal"
    code = _status_code(exc)
    if code is not None:
        if code in (401, 403, 404):
            return "auth"
        if code == 429 or code >= 500:
            return "retry"
        return "fatal"
    if isinstance(exc, _transient_types()) or isinstance(exc, ConnectionError):
        return "retry"
    return "fatal"


def push_export(
    export_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    max_retries: int = 3,
    backoff_s: float = 2.0,
) -> str:
    """Upload a finished export folder to ``repo_id`` on the Hub in one commit; return the commit URL.

    Token: ``token``, else ``HF_TOKEN``, else the login cached by ``hf auth login``.  The repo
    is created if needed (``exist_ok``), the ``revision`` branch too.  Timeouts, connection
    errors, HTTP 429 and 5xx are retried ``max_retries`` times with exponential backoff
    (``backoff_s``, ``2*backoff_s``, ...); 401/403/404 are not.  The local folder is only
    read.  Failures raise :class:`PushError` (token scrubbed from every message).
    """
    import huggingface_hub

    folder = check_export_dir(export_dir)
    token = token or os.environ.get("HF_TOKEN") or None
    secrets = _known_tokens(token)
    message = commit_message or DEFAULT_COMMIT_MESSAGE
    retry_hint = f"fix the cause and retry with: {RETRY_HINT}"

    api = huggingface_hub.HfApi(token=token, library_name="nerforge")

    def call(what: str, fn, *args, **kwargs):
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised as PushError
                kind = _classify(exc)
                detail = _scrub(f"{type(exc).__name__}: {exc}", secrets)
                if kind == "auth":
                    raise AuthenticationError(
                        f"authentication failed for {repo_id}: set HF_TOKEN or run `hf auth login` "
                        f"(HTTP {_status_code(exc)} while trying to {what}; the token must have write "
                        f"access to the namespace). Local export unchanged; {retry_hint}"
                    ) from None
                if kind == "retry" and attempt < max_retries:
                    wait = backoff_s * (2**attempt)
                    attempt += 1
                    logger.warning("%s failed (%s); retry %d/%d in %.1fs", what, detail, attempt, max_retries, wait)
                    time.sleep(wait)
                    continue
                tried = f" after {attempt + 1} attempts" if kind == "retry" else ""
                raise PushError(
                    f"push to {repo_id} failed{tried} while trying to {what}: {detail}. "
                    f"Local export {folder} unchanged; {retry_hint}"
                ) from None

    call("create the repository", api.create_repo, repo_id, private=private, exist_ok=True, repo_type="model")
    if revision:
        call(
            f"create branch {revision!r}", api.create_branch, repo_id, branch=revision, exist_ok=True, repo_type="model"
        )
    info = call(
        "upload the folder",
        api.upload_folder,
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        revision=revision,
        commit_message=message,
    )
    url = getattr(info, "commit_url", None) or str(info)
    logger.info("pushed %s to %s", folder, url)
    return str(url)
