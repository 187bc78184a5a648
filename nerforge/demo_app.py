"""The page of ``nerforge demo``: a Gradio app over a :class:`nerforge.predictor.Predictor`.

Tab "Tag": a text box (several lines; blank-line separated paragraphs are documents, given document
context when the model was trained with it), a score threshold, and the entities highlighted by type
with a table of their scores. Tab "Report" (when the export has one): the per-type scores of its test
split, its most frequent confusions, the reliability diagram.

:func:`tag` and :func:`report_tables` are pure (tested without Gradio); :func:`build_app` needs the
``[demo]`` extra (``pip install 'nerforge[demo]'``).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["tag", "report_tables", "build_app", "TITLE"]

TITLE = "nerforge: named entities"
COLUMNS = ["text", "type", "score", "start", "end"]


def tag(predictor, text: str, threshold: float = 0.0) -> tuple[dict, list[list]]:
    """(Gradio HighlightedText value, entity table rows) for ``text``: each line tagged with the
    predictor (paragraphs as documents when the model has document context), entities under
    ``threshold`` dropped, offsets into the whole text."""
    lines = text.split("\n")
    paragraphs = bool(getattr(predictor, "context_size", 0))
    results = predictor.tag_text(lines, paragraphs=paragraphs)
    entities, rows, offset = [], [], 0
    for line, result in zip(lines, results):
        for e in result["entities"]:
            if e["score"] < threshold:
                continue
            start, end = offset + e["start"], offset + e["end"]
            entities.append({"entity": e["type"], "start": start, "end": end})
            rows.append([e["text"], e["type"], round(e["score"], 4), start, end])
        offset += len(line) + 1
    return {"text": text, "entities": entities}, rows


def report_tables(export: str | Path) -> dict | None:
    """What the report tab shows, from the export's metrics.json: per-type rows of its test split
    (``[type, precision, recall, F1, support]`` in %), top confusions, and the reliability diagram's
    path. None when the export has no test scores."""
    metrics_file = Path(export) / "metrics.json"
    if not metrics_file.is_file():
        return None
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    test = metrics.get("test") or {}
    per_type = test.get("per_type") or {}
    if not per_type:
        return None
    rows = [
        [t, round(100 * s["precision"], 2), round(100 * s["recall"], 2), round(100 * s["f1"], 2), s.get("support")]
        for t, s in sorted(per_type.items())
    ]
    rows.append(["all (micro)", *(round(100 * test[k], 2) for k in ("precision", "recall", "f1")), None])
    confusions = [
        [c["gold"], c["pred"], c["count"]] for c in ((metrics.get("report") or {}).get("top_confusions") or [])
    ]
    plot = Path(export) / "calibration.png"
    return {"per_type": rows, "confusions": confusions, "reliability": str(plot) if plot.is_file() else None}


def build_app(predictor, name: str, export: str | Path | None = None, example: str | None = None):
    """The Gradio Blocks page (not launched) of the model ``name``; ``export``: its local folder, for the
    report tab."""
    import gradio as gr

    report = report_tables(export) if export else None
    context = bool(getattr(predictor, "context_size", 0))
    hint = (
        "Blank lines separate paragraphs; sentences of one paragraph see each other (document context)."
        if context
        else "One sentence or more per line."
    )
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}\nModel `{name}`. {hint}")
        with gr.Tab("Tag"):
            text = gr.Textbox(label="Text", lines=6, value=example or "", elem_id="nf-text")
            threshold = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Score threshold", elem_id="nf-threshold")
            button = gr.Button("Tag", variant="primary", elem_id="nf-tag")
            highlighted = gr.HighlightedText(label="Entities", combine_adjacent=False, elem_id="nf-entities")
            table = gr.Dataframe(headers=COLUMNS, label="Scores", interactive=False, elem_id="nf-table")

            def run(t, th):
                return tag(predictor, t, th)

            button.click(run, [text, threshold], [highlighted, table])
            text.submit(run, [text, threshold], [highlighted, table])
        if report:
            with gr.Tab("Report"):
                gr.Markdown("Scores of the test split when the model was exported (entity level, %).")
                gr.Dataframe(value=report["per_type"], headers=["type", "precision", "recall", "F1", "support"])
                if report["confusions"]:
                    gr.Dataframe(value=report["confusions"], headers=["gold", "predicted", "count"], label="Confusions")
                if report["reliability"]:
                    gr.Image(report["reliability"], label="Reliability diagram", interactive=False)
    return app
