"""Calibrated confidence: one temperature, fitted on validation, folded into the classifier.

    nerforge calibrate --model EXPORT --data-dir RAW_DIR      # or --dataset-path P

A token classifier's softmax scores are over-confident after fine-tuning. Temperature scaling (Guo et
al. 2017) divides the logits by one number T, fitted by minimising the negative log-likelihood of the
gold tags of the validation words (each word's first word piece, as scored). Dividing the classifier's
weights and bias by T gives the same logits / T inside the model itself, so argmax, tags and F1 do not
change and every consumer (``pipeline("ner")`` from the Hub included) gets the calibrated scores with
no custom code.

Measured before and after, on validation and test: the expected calibration error (ECE, 15 equal-width
confidence bins) of the words (confidence: the probability of the predicted tag; right: it is the gold
tag) and of the predicted entities (confidence: the mean probability of the predicted tag over the
entity's words, the score ``nerforge predict`` gives; right: the gold has the same span and type).
Training calls :func:`calibrate_model` at its end unless ``calibrate: false``; the command does the
same to an existing export and rewrites it whole (weights, ``metrics.json``, card, reliability diagram).
"""

from __future__ import annotations

import math

from nerforge.metric import align_label_names, entities

N_BINS = 15
T_RANGE = (0.05, 20.0)

__all__ = ["fit_temperature", "nll", "ece", "reliability_bins", "fold_temperature", "calibrate_model", "summary_line"]


# ---------------------------------------------------------------------------------------- pure parts


def nll(logits, gold, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `gold` (ids, [N]) under softmax(logits / T) (logits [N, L])."""
    import torch

    return float(torch.nn.functional.cross_entropy(logits.detach().double() / temperature, gold.long()))


def fit_temperature(logits, gold, lo: float = T_RANGE[0], hi: float = T_RANGE[1], steps: int = 80) -> float:
    """The T in [lo, hi] that minimises :func:`nll`: golden-section search on log T (the NLL is convex
    in 1/T, so it has one minimum on the interval)."""
    a, b = math.log(lo), math.log(hi)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, gold, math.exp(c)), nll(logits, gold, math.exp(d))
    for _ in range(steps):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, gold, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, gold, math.exp(d))
    return math.exp((a + b) / 2)


def reliability_bins(confidences, correct, n_bins: int = N_BINS) -> list[dict]:
    """Equal-width confidence bins over [0, 1] (the last one closed): count, mean confidence and
    accuracy of the predictions in each (empty bins included, with None)."""
    bins = [{"lo": k / n_bins, "hi": (k + 1) / n_bins, "count": 0, "conf": 0.0, "right": 0} for k in range(n_bins)]
    for c, r in zip(confidences, correct):
        k = min(int(float(c) * n_bins), n_bins - 1)
        bins[k]["count"] += 1
        bins[k]["conf"] += float(c)
        bins[k]["right"] += int(bool(r))
    return [
        {
            "lo": round(b["lo"], 4),
            "hi": round(b["hi"], 4),
            "count": b["count"],
            "confidence": b["conf"] / b["count"] if b["count"] else None,
            "accuracy": b["right"] / b["count"] if b["count"] else None,
        }
        for b in bins
    ]


def ece(confidences, correct, n_bins: int = N_BINS) -> float:
    """Expected calibration error: the count-weighted mean of |accuracy - confidence| over the bins."""
    bins = reliability_bins(confidences, correct, n_bins)
    n = sum(b["count"] for b in bins)
    return sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / n if n else 0.0


def split_calibration(logits: list, gold_tags: list[list[str]], to_name: dict, temperature: float = 1.0) -> dict:
    """Word- and entity-level confidence figures of one split at temperature T.

    `logits`: one tensor [words, labels] per sentence (model id order); `gold_tags`: the gold tag names;
    `to_name`: model id -> the dataset's tag name. The word NLL is given where every gold tag is one of
    the model's labels."""
    import torch

    to_id = {name: i for i, name in to_name.items()}
    words_conf, words_right, ent_conf, ent_right, gold_ids = [], [], [], [], []
    for z, gold in zip(logits, gold_tags):
        if not len(gold):
            continue
        prob = (z.double() / temperature).softmax(-1)
        conf, ids = prob.max(-1)
        pred = [to_name[int(i)] for i in ids]
        words_conf += conf.tolist()
        words_right += [p == g for p, g in zip(pred, gold)]
        gold_ids += [to_id.get(g, -1) for g in gold]
        gold_set = set(entities(gold))
        for ent in entities(pred):
            ent_conf.append(float(conf[ent[1] : ent[2] + 1].mean()))
            ent_right.append(ent in gold_set)
    n = max(1, len(words_right))
    word_nll = None
    if gold_ids and min(gold_ids) >= 0:
        word_nll = nll(torch.cat([z for z, g in zip(logits, gold_tags) if len(g)]), torch.tensor(gold_ids), temperature)
    return {
        "word": {
            "ece": ece(words_conf, words_right),
            "nll": word_nll,
            "mean_confidence": sum(words_conf) / n,
            "accuracy": sum(words_right) / n,
            "words": len(words_right),
            "bins": reliability_bins(words_conf, words_right),
        },
        "entity": {
            "ece": ece(ent_conf, ent_right),
            "mean_confidence": sum(ent_conf) / max(1, len(ent_conf)),
            "precision": sum(ent_right) / max(1, len(ent_right)),
            "entities": len(ent_right),
            "bins": reliability_bins(ent_conf, ent_right),
        },
    }


# ---------------------------------------------------------------------------------------- the model


def fold_temperature(model, temperature: float) -> None:
    """Divide the classifier's weights and bias by T: the model's logits become logits / T."""
    import torch

    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear):
        raise ValueError(
            f"cannot fold a temperature into {type(model).__name__}: expected a torch.nn.Linear `classifier` head, "
            f"found {type(head).__name__}"
        )
    with torch.no_grad():
        head.weight.div_(temperature)
        if head.bias is not None:
            head.bias.div_(temperature)


def calibrate_model(predictor, splits: dict, label_column: str = "ner_tags") -> dict:
    """Fit T on ``splits["validation"]``, measure every split before and after, fold T into the
    predictor's model (in place). Returns what goes into ``metrics.json`` under ``calibration``."""
    import torch

    from nerforge.scoring import words_and_documents

    names = list(splits["validation"].features[label_column].feature.names)
    to_name = align_label_names(predictor.id2label, names)  # model id -> dataset tag name
    to_id = {name: i for i, name in to_name.items()}
    data = {}
    for split, ds in splits.items():
        if not len(ds):
            raise ValueError(f"calibration: the {split} split is empty")
        gold = [[names[t] for t in tags] for tags in ds[label_column]]
        data[split] = (predictor.predict_logits(*words_and_documents(ds)), gold)
    val_logits, val_gold = data["validation"]
    unknown = sorted({g for sent in val_gold for g in sent if g not in to_id})
    if unknown:
        raise ValueError(f"calibration: gold tags {unknown} are none of the model's labels {sorted(to_id)}")
    z = torch.cat([x for x, g in zip(val_logits, val_gold) if len(g)])
    y = torch.tensor([to_id[t] for sent in val_gold for t in sent])
    out = {"fitted_on": "validation", "n_bins": N_BINS}
    if bool((z.argmax(-1) == y).all()):
        # Without a single wrong word the likelihood grows as T -> 0: there is nothing to fit.
        temperature, out["note"] = 1.0, "no word of the validation split is wrong: the temperature stays 1"
    else:
        temperature = fit_temperature(z, y)
    out["temperature"] = temperature
    for split, (logits, gold) in data.items():
        out[split] = {
            "before": split_calibration(logits, gold, to_name, 1.0),
            "after": split_calibration(logits, gold, to_name, temperature),
        }
    # the headline figures: word-level ECE on validation, where T was fitted
    out["ece_before"] = out["validation"]["before"]["word"]["ece"]
    out["ece_after"] = out["validation"]["after"]["word"]["ece"]
    fold_temperature(predictor.model, temperature)
    return out


def summary_line(calibration: dict) -> str:
    parts = [f"temperature {calibration['temperature']:.3f}"]
    for split in ("validation", "test"):
        if split in calibration:
            c = calibration[split]
            parts.append(
                f"{split} ECE words {100 * c['before']['word']['ece']:.2f}% -> {100 * c['after']['word']['ece']:.2f}%, "
                f"entities {100 * c['before']['entity']['ece']:.2f}% -> {100 * c['after']['entity']['ece']:.2f}%"
            )
    return "; ".join(parts)
