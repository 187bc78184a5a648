"""The model card and the training curve of an export folder.

:func:`render_model_card` fills the Jinja template (``model_card.md``, shipped in the package; the
repository's top-level ``model_card.md`` is the same file) from the typed run configuration and the
run's metrics: every number in the card comes from ``metrics.json`` and every setting from the
resolved configuration. :func:`plot_training_curve` draws ``training_curve.png``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nerforge.atomic import atomic_write_bytes, atomic_write_text
from nerforge.hub import TOKEN_VALUE_RE

if TYPE_CHECKING:
    from nerforge.config import RunConfig

DEFAULT_TEMPLATE = Path(__file__).resolve().parent / "model_card.md"
DEFAULT_WIDGET_TEXT = "My name is Clara and I live in Berkeley, California."
FRAMEWORKS = ["nerforge", "transformers", "torch", "datasets", "accelerate", "tokenizers", "huggingface_hub"]
CARD_METRICS = ["precision", "recall", "f1", "accuracy"]
# The pipeline aggregation that gives each word the label of its first word piece: the piece the model is
# trained and scored on. "simple" also groups the other pieces' predictions (never trained unless
# label_all_tokens) and returns fragments such as '##oh'.
RECOMMENDED_AGGREGATION = "first"

__all__ = [
    "plot_training_curve",
    "plot_reliability",
    "render_model_card",
    "DEFAULT_TEMPLATE",
    "RECOMMENDED_AGGREGATION",
]


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ---------------------------------------------------------------------------
# Training curve
# ---------------------------------------------------------------------------


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
    save_png(fig, path)


def save_png(fig, path: str | os.PathLike) -> None:
    """A matplotlib figure written as a PNG, atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def reliability_diagram(curves: Mapping[str, Mapping[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Accuracy against confidence per bin, words and predicted entities side by side, one line per
    curve: ``{label: {"word": {"bins", "ece"}, "entity": {...}}}`` (``nerforge.calibration``'s figures)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    colors = ["tab:red", "tab:blue"] if len(curves) > 1 else ["tab:blue"]
    fig = Figure(figsize=(9, 4), dpi=100)
    FigureCanvasAgg(fig)
    for k, (level, plural) in enumerate((("word", "words"), ("entity", "entities"))):
        ax = fig.add_subplot(1, 2, k + 1)
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
        for (label, figures), color in zip(curves.items(), colors):
            bins = [b for b in figures[level]["bins"] if b["count"]]
            ax.plot(
                [b["confidence"] for b in bins],
                [b["accuracy"] for b in bins],
                marker="o",
                markersize=3,
                color=color,
                label=f"{label} (ECE {100 * figures[level]['ece']:.2f}%)",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title}{plural}")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)


def plot_reliability(calibration: Mapping[str, Any], path: str | os.PathLike, split: str = "validation") -> None:
    """Reliability diagram of a calibration (``metrics.json``'s ``calibration``): before and after the
    temperature, for words and for predicted entities."""
    c = calibration[split]
    title = f"{split}, T = {calibration['temperature']:.3f}: "
    reliability_diagram({"before": c["before"], "after": c["after"]}, path, title)


# ---------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------


def _fmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = TOKEN_VALUE_RE.sub("<redacted>", text)  # a token pasted into a setting is never printed
    return text.replace("|", "\\|").replace("\n", " ")


def _config_tables(cfg: RunConfig) -> list[dict]:
    """[{"name": section, "rows": [(field, value_str), ...]}, ...], one table per config section.
    The configuration has no field for a secret (the Hub token comes from the environment)."""
    return [
        {"name": name, "rows": [(f.name, _fmt_value(getattr(section, f.name))) for f in dataclasses.fields(section)]}
        for name, section in cfg.sections()
    ]


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


def _sentence_alone_view(metrics: Mapping[str, Any]) -> list[dict]:
    """F1 with each sentence tagged alone beside F1 with document context, per split (empty when the
    model was trained without context or the figures are missing)."""
    alone = metrics.get("sentence_alone")
    if not isinstance(alone, Mapping):
        return []
    return [
        {"split": s, "alone": _pct(alone[s].get("f1")), "context": _pct(metrics[s].get("f1"))}
        for s in ("validation", "test")
        if isinstance(alone.get(s), Mapping) and isinstance(metrics.get(s), Mapping)
    ]


def _pipeline_view(metrics: Mapping[str, Any]) -> dict | None:
    """Ours beside pipeline('ner') fed one document and one sentence per call, per split (None without
    the figures); ``same``: the data had no documents, so both pipeline columns are one sentence per call;
    ``document_better``: whole documents scored higher on the last split (the usage snippet then feeds one)."""
    p = metrics.get("pipeline")
    if not isinstance(p, Mapping) or not isinstance(p.get("sentence"), Mapping):
        return None
    rows = []
    for s in ("validation", "test"):
        doc, sent = (p.get(mode, {}).get(s) for mode in ("document", "sentence"))
        if isinstance(doc, Mapping) and isinstance(sent, Mapping) and isinstance(metrics.get(s), Mapping):
            rows.append(
                {
                    "split": s,
                    "ours": _pct(metrics[s].get("f1")),
                    "document": _pct(doc.get("f1")),
                    "sentence": _pct(sent.get("f1")),
                    "document_f1": float(doc["f1"]),
                    "sentence_f1": float(sent["f1"]),
                }
            )
    if not rows:
        return None
    same = all(r["document_f1"] == r["sentence_f1"] for r in rows)
    return {
        "rows": rows,
        "same": same,
        "document_better": not same and rows[-1]["document_f1"] > rows[-1]["sentence_f1"],
        "stride": p.get("stride"),
    }


def _calibration_view(calibration: Mapping[str, Any] | None) -> dict | None:
    if not isinstance(calibration, Mapping) or not _finite(calibration.get("temperature")):
        return None
    rows = []
    for split in ("validation", "test"):
        c = calibration.get(split)
        if not isinstance(c, Mapping):
            continue
        b, a = c["before"], c["after"]
        rows.append(
            {
                "split": split,
                "word_before": _pct(b["word"]["ece"]),
                "word_after": _pct(a["word"]["ece"]),
                "entity_before": _pct(b["entity"]["ece"]),
                "entity_after": _pct(a["entity"]["ece"]),
                "confidence_before": _pct(b["word"]["mean_confidence"]),
                "confidence_after": _pct(a["word"]["mean_confidence"]),
                "accuracy": _pct(a["word"]["accuracy"]),
            }
        )
    return {"temperature": f"{float(calibration['temperature']):.3f}", "rows": rows}


def _report_view(report: Mapping[str, Any] | None) -> dict | None:
    if not report:
        return None
    kinds = ("correct", "type", "boundary", "boundary_type", "missed", "spurious")
    return {
        "split": report["split"],
        "f1": _pct(report["scores"]["f1"]),
        "errors": [(k, report["errors"].get(k, 0)) for k in kinds],
        "top_confusions": report["top_confusions"],
        "word_ece": _pct(report.get("word_ece")),
        "extra_tests": [
            {
                "name": extra["dataset_name"],
                "f1": _pct(extra["f1"]),
                "fixed": extra.get("predictions_wrong_then_right"),
                "relabelled": extra.get("sentences_relabelled"),
            }
            for extra in report["extra_tests"].values()
        ],
    }


def _audit_view(audit: Mapping[str, Any] | None) -> dict | None:
    """The one card line of ``nerforge audit --update-card``: its counts and the command."""
    if not isinstance(audit, Mapping):
        return None
    keys = ("split", "sentences", "flagged_sentences", "flagged_spans", "method", "command")
    return {k: audit.get(k) for k in keys}


def _looks_local(name: str | None) -> bool:
    if not name:
        return True
    if os.path.exists(os.path.expanduser(name)):
        return True
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def _framework_versions() -> list[tuple[str, str]]:
    from importlib import metadata

    out = []
    for name in FRAMEWORKS:
        try:
            out.append((name, metadata.version(name.replace("_", "-"))))
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


def data_name(d) -> str:
    """What the data is called when the config does not say: the prepared dataset's or the data folder's
    name (the training file's folder without one), or conll2003 when the raw release is downloaded."""
    from nerforge.config import data_path

    train_dir = str(Path(d.train_file).parent) if d.train_file else None
    for source in (d.dataset_path, data_path(d.data_dir), train_dir):
        if source:
            path = Path(source)
            name = path.resolve().name if path.exists() else path.name
            if name:
                return name
    return "conll2003"


def render_model_card(
    export_dir: str | os.PathLike,
    cfg: RunConfig,
    *,
    metrics: Mapping[str, Any],
    label_names: Sequence[str],
    repo_id: str | None = None,
    template_path: str | os.PathLike = DEFAULT_TEMPLATE,
    do_lower_case: bool | None = None,
    widget_text: str = DEFAULT_WIDGET_TEXT,
):
    """Render the model card from ``template_path`` (Jinja) and write ``export_dir/README.md``.

    Metadata (YAML header, incl. ``model-index`` for validation/test precision, recall, F1 and
    accuracy) is built with ``huggingface_hub.ModelCardData``/``EvalResult``; every number in the card
    comes from ``metrics`` (the dict written to ``metrics.json``) and every setting from ``cfg``.
    Returns the ``huggingface_hub.ModelCard``.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    export_dir = Path(export_dir)
    m, d = cfg.model, cfg.data
    base_name = m.model_name_or_path
    base_model = None if m.tiny_model or _looks_local(base_name) else base_name

    dataset_id = d.dataset_name or data_name(d)
    is_conll = "conll2003" in dataset_id.lower().replace("-", "").replace("_", "")
    dataset_pretty = "CoNLL-2003" if is_conll else dataset_id

    if repo_id:
        model_name = repo_id.split("/")[-1]
    elif base_model:
        model_name = f"{base_model.split('/')[-1]}-{dataset_id.split('/')[-1]}"
    else:
        model_name = f"nerforge-{dataset_id.split('/')[-1]}"

    splits = [(s, metrics[s]) for s in ("validation", "test") if isinstance(metrics.get(s), Mapping)]
    report = metrics.get("report") if isinstance(metrics.get("report"), Mapping) else None
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
    view = _pipeline_view(metrics)
    for row in view["rows"] if view else []:  # what pipeline('ner') users get, beside ours
        for mode in ("document", "sentence"):
            eval_results.append(
                EvalResult(
                    task_type="token-classification",
                    task_name="Named Entity Recognition",
                    dataset_type=dataset_id,
                    dataset_name=dataset_pretty,
                    dataset_split=row["split"],
                    metric_type="f1",
                    metric_name=f"{row['split'].capitalize()} F1, pipeline('ner') one {mode} per call",
                    metric_value=row[f"{mode}_f1"],
                )
            )
    for name, extra in ((report or {}).get("extra_tests") or {}).items():  # e.g. CoNLL++: its own dataset
        eval_results += [
            EvalResult(
                task_type="token-classification",
                task_name="Named Entity Recognition",
                dataset_type=name,
                dataset_name=extra["dataset_name"],
                dataset_split="test",
                metric_type=metric,
                metric_name=f"Test {metric.capitalize() if metric != 'f1' else 'F1'}",
                metric_value=float(extra[metric]),
            )
            for metric in ("precision", "recall", "f1")
            if _finite(extra.get(metric))
        ]

    tags = ["token-classification", "ner", "conll2003" if is_conll else dataset_id.split("/")[-1].lower(), "nerforge"]
    card_data = ModelCardData(
        language="en",
        license=m.license,
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
        model_ref=repo_id or "path/to/this/folder",
        base_model_name=base_name,
        base_model_on_hub=base_model,
        tiny_model=m.tiny_model,
        dataset_id=dataset_id,
        dataset_pretty=dataset_pretty,
        is_conll=is_conll,
        tagging_scheme=d.tagging_scheme.upper(),
        uncased=_detect_uncased(export_dir, do_lower_case, base_name),
        context_size=d.context_size,
        pack_length=d.pack_length,
        sentence_alone_fraction=d.sentence_alone_fraction,
        label_names=list(label_names),
        entity_types=entity_types,
        config_tables=_config_tables(cfg),
        splits=[_split_view(s, scores) for s, scores in splits],
        training_facts=extra,
        has_curve=(export_dir / "training_curve.png").is_file(),
        sentence_alone=_sentence_alone_view(metrics),
        pipeline=view,
        calibration=_calibration_view(metrics.get("calibration")),
        report=_report_view(report),
        audit=_audit_view(metrics.get("audit")),
        has_calibration_plot=(export_dir / "calibration.png").is_file(),
        onnx_files=sorted(f.name for f in (export_dir / "onnx").glob("*.onnx")),
        frameworks=_framework_versions(),
        widget_text=widget_text,
        aggregation=RECOMMENDED_AGGREGATION,
        label_all_tokens=d.label_all_tokens,
        label_edge_punctuation=d.label_edge_punctuation,
        keep_words_whole=cfg.model.keep_words_whole,
    )
    export_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(export_dir / "README.md", str(card))
    return card
