"""Where a token-classification model fails, in one folder: scores, error kinds, confusions, slices,
confidence, the errors for annotators, and corrected test sets side by side.

    nerforge report --model M (--data-dir D | --dataset-path P) [--split test] \
        [--extra-test FILE ...] --output-dir R

Every word of the split is predicted once, with the training loop's windows (``nerforge.predictor``), and
scored with its rules (``nerforge.metric``); labels are mapped to the dataset's by name, so any Hub
token-classification model works. Written to ``R`` (complete or not at all):

* ``report.json``: ``scores`` (conlleval micro and per type; seqeval's strict IOB2 mode beside it),
  ``gold_entities``, ``predicted_entities``, ``words_unscored`` (0, or the command fails), ``errors``
  (kinds overall and per type, see ``nerforge.taxonomy``), ``confusion``, ``slices`` (F1 by entity
  length, by seen/unseen surface form in the training split, by all-caps headline vs the rest, by
  sentence length), ``confidence`` (ECE now, and the export's calibration before/after if it has one),
  ``thresholds`` (entity precision/recall when entities under a score are dropped) and ``extra_tests``.
* ``report.md``: the same as tables; ``confusion.png``, ``slices.png``, ``reliability.png``.
* ``errors.jsonl``: one line per error (sentence, words, gold and predicted spans, kind, the model's
  confidence), the most confident first: a confident disagreement is the likeliest gold-label error.
* ``predictions.conll``: ``word gold predicted`` per line, ``-DOCSTART- O O`` between documents: every
  non-blank line has three columns, as conlleval reads it.

Each ``--extra-test`` file (e.g. CoNLL++, the CoNLL-2003 test set with corrected labels) is scored the
same way; when its sentences are the main split's, the report counts the predictions that are wrong
under the main labels and right under the corrected ones. Exit status 2 on bad input (a file and line
where there is one), nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

from nerforge.atomic import atomic_write_text, fresh_tmp, swap_in, write_json_atomic
from nerforge.calibration import split_calibration
from nerforge.card import reliability_diagram, save_png
from nerforge.metric import score
from nerforge.scoring import predict_split
from nerforge.taxonomy import (
    KINDS,
    classify,
    confusion,
    count_kinds,
    entities,
    is_headline,
    length_bucket,
    sentence_length_bucket,
    slice_scores,
    surface,
)

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
PRETTY = {"conllpp": "CoNLL++", "conll2003": "CoNLL-2003"}


def extra_test_name(path: str) -> str:
    """What an extra test set is called: its folder's name for a file named like a split
    (``conllpp/test.txt`` -> ``conllpp``), else the file's stem."""
    p = Path(path)
    return p.parent.name if p.stem in ("test", "testb", "eng", "valid", "dev") and p.parent.name else p.stem


def card_summary(report: dict, top: int = 5) -> dict:
    """What the model card says of a report (``metrics.json``'s ``report``): the split's scores, the error
    kinds, the most frequent confusions and the extra test sets' scores."""
    main = report["main"]
    pairs = [
        {"gold": g, "pred": q, "count": n}
        for g, row in main["confusion"].items()
        for q, n in row.items()
        if g != q and n
    ]
    pairs.sort(key=lambda x: (-x["count"], x["gold"], x["pred"]))
    return {
        "split": report["split"],
        "scores": {k: main["scores"]["conlleval"][k] for k in ("precision", "recall", "f1")},
        "errors": main["errors"]["overall"],
        "top_confusions": pairs[:top],
        "word_ece": main["confidence"]["word_ece"],
        "extra_tests": {
            name: {
                "dataset_name": PRETTY.get(name, name),
                **{k: x["scores"]["conlleval"][k] for k in ("precision", "recall", "f1")},
                **(x.get("against_main") or {}),
            }
            for name, x in report["extra_tests"].items()
        },
    }


__all__ = ["analyse", "make_report", "write_report", "update_card", "card_summary"]


# ---------------------------------------------------------------------------------------- analysis


def _entity_score(probs: list[float], e) -> float:
    return sum(probs[e[1] : e[2] + 1]) / (e[2] - e[1] + 1)


def _span(words, e, probs=None) -> dict | None:
    if e is None:
        return None
    out = {"type": e[0], "start": e[1], "end": e[2] + 1, "text": surface(words, e)}
    if probs is not None:
        out["score"] = round(_entity_score(probs, e), 4)
    return out


def strict_scores(gold, pred) -> dict:
    """seqeval's strict IOB2 mode (an entity must start with B-), micro-averaged."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    kw = {"mode": "strict", "scheme": IOB2, "average": "micro", "zero_division": 0}
    return {
        "precision": precision_score(gold, pred, **kw),
        "recall": recall_score(gold, pred, **kw),
        "f1": f1_score(gold, pred, **kw),
    }


def analyse(p: dict, train_surfaces: set | None = None) -> dict:
    """Everything the report says about one split's predictions (see the module docstring), and the
    error records for errors.jsonl."""
    words, gold_tags, pred_tags, probs = p["words"], p["gold"], p["pred"], p["probs"]
    gold = [entities(t) for t in gold_tags]
    pred = [entities(t) for t in pred_tags]
    records, errors = [], []
    for i, (g, q) in enumerate(zip(gold, pred)):
        for r in classify(g, q):
            records.append(r)
            if r["kind"] == "correct":
                continue
            lo = min(e[1] for e in (r["gold"], r["pred"]) if e)
            hi = max(e[2] for e in (r["gold"], r["pred"]) if e)
            errors.append(
                {
                    "sentence": i,
                    "document": p["docs"][i],
                    "kind": r["kind"],
                    "gold": _span(words[i], r["gold"]),
                    "pred": _span(words[i], r["pred"], probs[i]),
                    "confidence": round(sum(probs[i][lo : hi + 1]) / (hi - lo + 1), 4),
                    "words": words[i],
                    "gold_tags": gold_tags[i],
                    "pred_tags": pred_tags[i],
                }
            )
    errors.sort(key=lambda e: (-e["confidence"], e["sentence"], (e["gold"] or e["pred"])["start"]))

    slices = {
        "entity_length": slice_scores(words, gold, pred, lambda i, e: length_bucket(e)),
        "casing": slice_scores(words, gold, pred, lambda i, e: "all-caps" if is_headline(words[i]) else "rest"),
        "sentence_length": slice_scores(words, gold, pred, lambda i, e: sentence_length_bucket(len(words[i]))),
    }
    if train_surfaces is not None:
        seen = slice_scores(
            words, gold, pred, lambda i, e: "seen" if surface(words[i], e) in train_surfaces else "unseen"
        )
        slices["seen_in_train"] = seen
    thresholds = []
    gold_sets = [set(g) for g in gold]
    n_gold = sum(len(g) for g in gold)
    for s in THRESHOLDS:
        kept = [[e for e in q if _entity_score(probs[i], e) >= s] for i, q in enumerate(pred)]
        tp = sum(len(set(k) & gs) for k, gs in zip(kept, gold_sets))
        n_kept = sum(len(k) for k in kept)
        thresholds.append(
            {
                "min_score": s,
                "precision": tp / n_kept if n_kept else 0.0,
                "recall": tp / n_gold if n_gold else 0.0,
                "entities_kept": n_kept,
            }
        )
    conf = split_calibration(p["logits"], gold_tags, p["to_name"])
    return {
        "scores": {
            "conlleval": score(gold_tags, pred_tags),
            "seqeval_strict_iob2": strict_scores(gold_tags, pred_tags),
        },
        "num_sentences": len(words),
        "num_words": sum(len(w) for w in words),
        "words_unscored": 0,
        "gold_entities": n_gold,
        "predicted_entities": sum(len(q) for q in pred),
        "errors": count_kinds(records),
        "confusion": confusion(records),
        "slices": slices,
        "confidence": {
            "word_ece": conf["word"]["ece"],
            "entity_ece": conf["entity"]["ece"],
            "word_mean_confidence": conf["word"]["mean_confidence"],
            "word_accuracy": conf["word"]["accuracy"],
            "word": conf["word"],
            "entity": conf["entity"],
        },
        "thresholds": thresholds,
    }, errors


def wrong_then_right(main: dict, extra: dict) -> dict | None:
    """Predictions wrong under the main labels and right under the extra file's (and the reverse),
    when both hold the same sentences in the same order; None otherwise."""
    if main["words"] != extra["words"]:
        return None
    fixed = broken = 0
    for gm, ge, pm in zip(main["gold"], extra["gold"], main["pred"]):
        g_main, g_extra = set(entities(gm)), set(entities(ge))
        for e in entities(pm):
            fixed += e not in g_main and e in g_extra
            broken += e in g_main and e not in g_extra
    changed = sum(a != b for a, b in zip(main["gold"], extra["gold"]))
    return {
        "sentences_relabelled": changed,
        "predictions_wrong_then_right": fixed,
        "predictions_right_then_wrong": broken,
    }


# ---------------------------------------------------------------------------------------- writing


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def conll_lines(p: dict) -> list[str]:
    lines, doc = [], None
    for i, (words, gold, pred) in enumerate(zip(p["words"], p["gold"], p["pred"])):
        if p["docs"][i] != doc:
            doc = p["docs"][i]
            lines += ["-DOCSTART- O O", ""]
        lines += [f"{w} {g} {q}" for w, g, q in zip(words, gold, pred)] + [""]
    return lines


def confusion_types(table: dict) -> list[str]:
    """The rows and columns of a confusion table: the entity types in order, then ``none``."""
    return sorted((set(table) | {q for row in table.values() for q in row}) - {"none"}) + ["none"]


def markdown(report: dict) -> str:
    m = report["main"]
    c = m["scores"]["conlleval"]
    s = m["scores"]["seqeval_strict_iob2"]
    L = [
        f"# Error report: `{report['model']}` on {report['split']}",
        "",
        f"{m['num_sentences']} sentences, {m['num_words']} words ({m['words_unscored']} unscored), "
        f"{m['gold_entities']} gold and {m['predicted_entities']} predicted entities.",
        "",
        "| scores | precision | recall | F1 |",
        "|---|---|---|---|",
        f"| entity level, conlleval rules | {_pct(c['precision'])} | {_pct(c['recall'])} | {_pct(c['f1'])} |",
        f"| seqeval strict IOB2 | {_pct(s['precision'])} | {_pct(s['recall'])} | {_pct(s['f1'])} |",
    ]
    for name, extra in report["extra_tests"].items():
        e = extra["scores"]["conlleval"]
        L.append(f"| `{name}` (conlleval rules) | {_pct(e['precision'])} | {_pct(e['recall'])} | {_pct(e['f1'])} |")
    L += [
        "",
        "## Errors by kind",
        "",
        "Matched one to one (nerforge.taxonomy): correct + type + boundary + boundary_type + missed = gold "
        "entities; correct + type + boundary + boundary_type + spurious = predicted entities. Per type: by "
        "the gold entity's type (spurious: by the predicted type).",
        "",
        "| type | " + " | ".join(KINDS) + " |",
        "|---" * (len(KINDS) + 1) + "|",
    ]
    rows = [("all", m["errors"]["overall"])] + list(m["errors"]["per_type"].items())
    L += [f"| {t} | " + " | ".join(str(c[k]) for k in KINDS) + " |" for t, c in rows]
    types = confusion_types(m["confusion"])
    L += [
        "",
        "## Confusion (rows: gold type, columns: predicted type)",
        "",
        "![confusion](confusion.png)",
        "",
        "| gold \\ predicted | " + " | ".join(types) + " |",
        "|---" * (len(types) + 1) + "|",
    ]
    L += [f"| {g} | " + " | ".join(str(m["confusion"].get(g, {}).get(q, 0)) for q in types) + " |" for g in types]
    L += ["", "## Where it fails", "", "![F1 by slice](slices.png)", ""]
    for name, table in m["slices"].items():
        L += [
            f"### {name.replace('_', ' ')}",
            "",
            "| slice | precision | recall | F1 | support | predicted |",
            "|---|---|---|---|---|---|",
        ]
        L += [
            f"| {k} | {_pct(v['precision'])} | {_pct(v['recall'])} | {_pct(v['f1'])} | {v['support']} | "
            f"{v['predicted']} |"
            for k, v in table.items()
        ]
        L.append("")
    conf = m["confidence"]
    L += [
        "## Confidence",
        "",
        "![reliability](reliability.png)",
        "",
        f"Expected calibration error (15 bins) of the scores as the model gives them: words "
        f"{_pct(conf['word_ece'])}% (mean confidence {_pct(conf['word_mean_confidence'])}%, accuracy "
        f"{_pct(conf['word_accuracy'])}%), entities {_pct(conf['entity_ece'])}%.",
    ]
    cal = report.get("calibration")
    if cal:
        L += [
            "",
            f"The export's calibration (temperature {cal['temperature']:.3f}, fitted on validation), ECE "
            "before → after:",
            "",
            "| split | words | entities |",
            "|---|---|---|",
        ]
        L += [
            f"| {k} | {_pct(cal[k]['before']['word']['ece'])} → {_pct(cal[k]['after']['word']['ece'])} | "
            f"{_pct(cal[k]['before']['entity']['ece'])} → {_pct(cal[k]['after']['entity']['ece'])} |"
            for k in ("validation", "test")
            if k in cal
        ]
    L += [
        "",
        "Entity precision and recall when entities scoring under a threshold are dropped "
        "(`nerforge predict --min-score S`):",
        "",
        "| min score | precision | recall | entities kept |",
        "|---|---|---|---|",
    ]
    L += [
        f"| {t['min_score']} | {_pct(t['precision'])} | {_pct(t['recall'])} | {t['entities_kept']} |"
        for t in m["thresholds"]
    ]
    if report["extra_tests"]:
        L += ["", "## Corrected test sets side by side", ""]
        for name, extra in report["extra_tests"].items():
            e, k = extra["scores"]["conlleval"], extra["errors"]["overall"]
            L.append(
                f"- `{name}`: F1 {_pct(e['f1'])} (main split {_pct(c['f1'])}); errors: "
                + ", ".join(f"{x} {k[x]}" for x in KINDS if x != "correct")
                + "."
            )
            w = extra.get("against_main")
            if w:
                L.append(
                    f"  {w['sentences_relabelled']} sentences carry other labels there; "
                    f"{w['predictions_wrong_then_right']} of our predictions counted wrong on the main split "
                    f"are right under its labels ({w['predictions_right_then_wrong']} the other way)."
                )
    n_errors = sum(v for k, v in m["errors"]["overall"].items() if k != "correct")
    L += [
        "",
        "## Errors for annotators",
        "",
        f"`errors.jsonl` holds the {n_errors} errors, one a line, the most confident first: where the model is "
        "sure and the gold says otherwise, the gold label is the first thing to check.",
        "",
    ]
    return "\n".join(L)


def plot_confusion(table: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    types = confusion_types(table)
    grid = [[table.get(g, {}).get(q, 0) for q in types] for g in types]
    fig = Figure(figsize=(5.5, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(grid, cmap="Blues")
    ax.set_xticks(range(len(types)), types)
    ax.set_yticks(range(len(types)), types)
    ax.set_xlabel("predicted type")
    ax.set_ylabel("gold type")
    top = max(max(r) for r in grid) or 1
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black", fontsize=8)
    fig.colorbar(im, ax=ax)
    ax.set_title("Entity confusion (matched one to one; none = missed / spurious)", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def plot_slices(slices: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3 * len(slices), 3.5), dpi=100)
    FigureCanvasAgg(fig)
    for k, (name, table) in enumerate(slices.items()):
        ax = fig.add_subplot(1, len(slices), k + 1)
        keys = list(table)
        ax.bar(range(len(keys)), [100 * table[x]["f1"] for x in keys], color="tab:blue")
        ax.set_xticks(range(len(keys)), [f"{x}\n({table[x]['support']})" for x in keys], fontsize=7)
        ax.set_ylim(0, 100)
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.set_ylabel("F1 (support)" if k == 0 else "")
    fig.tight_layout()
    save_png(fig, path)


def write_report(out_dir: Path, report: dict, errors: list[dict], main_pred: dict) -> None:
    """All the files, under a temporary name beside `out_dir`, swapped in when complete."""
    out_dir = Path(out_dir)
    tmp = fresh_tmp(out_dir)
    try:
        write_json_atomic(tmp / "report.json", report)
        atomic_write_text(tmp / "report.md", markdown(report))
        atomic_write_text(tmp / "errors.jsonl", "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors))
        atomic_write_text(tmp / "predictions.conll", "\n".join(conll_lines(main_pred)) + "\n")
        plot_confusion(report["main"]["confusion"], tmp / "confusion.png")
        plot_slices(report["main"]["slices"], tmp / "slices.png")
        reliability_diagram({"the model's scores": report["main"]["confidence"]}, tmp / "reliability.png")
        swap_in(tmp, out_dir)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise


def make_report(model: str, data, split: str, extra_tests: list[str], load_predictor) -> tuple[dict, list[dict], dict]:
    """The report of ``model`` on ``split`` of the data that ``data`` (a ``DataConfig``) describes, with
    every file of ``extra_tests`` scored alike: (report, errors, the main split's predictions).
    ``load_predictor()`` is called once the data has been read and checked (bad input fails fast)."""
    from conll2003_loader import load_splits

    splits = load_splits(**data.loader_kwargs())
    if split not in splits:
        raise ValueError(f"no split {split!r} (splits: {', '.join(splits)})")
    ds = splits[split]
    if not len(ds):
        raise ValueError(f"the {split} split is empty")
    names = list(ds.features["ner_tags"].feature.names)
    # Extra test files are read (and checked) before the model runs: a bad file fails fast.
    extra_ds = {}
    for f in extra_tests:
        extra = load_splits(
            test_file=f, columns=data.columns, tagging_scheme="iob2", label_names=names, cache_dir=data.cache_dir
        )["test"]
        if not len(extra):
            raise ValueError(f"{f}: no sentences")
        extra_ds[f] = extra
    predictor = load_predictor()
    main_pred = predict_split(predictor, ds)
    train_surfaces = None
    if "train" in splits and split != "train":
        train = splits["train"]
        tnames = train.features["ner_tags"].feature.names
        train_surfaces = {
            surface(w, e) for w, t in zip(train["tokens"], train["ner_tags"]) for e in entities([tnames[x] for x in t])
        }
    main, errors = analyse(main_pred, train_surfaces)
    report = {
        "model": model,
        "split": split,
        "settings": predictor.settings(),
        "gold_entities": main["gold_entities"],
        "predicted_entities": main["predicted_entities"],
        "words_unscored": main["words_unscored"],
        "errors": main["errors"],
        "main": main,
        "extra_tests": {},
    }
    for f, extra in extra_ds.items():
        p = predict_split(predictor, extra)
        result, _ = analyse(p, train_surfaces)
        result["against_main"] = wrong_then_right(main_pred, p)
        report["extra_tests"][extra_test_name(f)] = result
    metrics_file = Path(model) / "metrics.json"
    if metrics_file.is_file():
        report["calibration"] = json.loads(metrics_file.read_text(encoding="utf-8")).get("calibration")
    return report, errors, main_pred


def update_card(export: Path, report: dict) -> None:
    """The report's summary into the export's metrics.json, and the card rendered again."""
    from nerforge.export import update_metrics

    update_metrics(export, "report", card_summary(report))
