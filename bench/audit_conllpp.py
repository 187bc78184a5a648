"""How well does ``nerforge audit`` find CoNLL-2003's label errors? Measured against CoNLL++, the same
test set with 186 sentences relabelled by people who never saw this project.

    python -m bench.audit_conllpp --model EXPORT --data-dir ../shared/data/conll2003 \
        --conllpp ../shared/data/conllpp/test.txt [--output bench/results/audit_conllpp.json]

The export's words probabilities on the CoNLL-2003 test split (out of sample: it never trained on it)
are ranked by confident learning (nerforge.label_errors, cleanlab) and by the plain baseline (the model's
probability of the gold label, lowest first), over entity types and over tags. A sentence is a hit when
CoNLL++ relabelled it (its entities differ). Reported: precision at 50/100/200, recall of the relabelled
sentences at 200 and 500, and the random rate (relabelled / all). The summary keys are those of the
default settings (confident learning over entity types). Nothing here asserts: it measures.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

PRECISION_K = (50, 100, 200)
RECALL_K = (200, 500)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--conllpp", required=True)
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)

    import cleanlab

    from conll2003_loader import load_splits
    from nerforge.label_errors import class_probabilities, differing_sentences, precision_at, rank, recall_at
    from nerforge.predictor import Predictor
    from nerforge.scoring import data_settings, load_split, predict_split

    data = data_settings(args.model, data_dir=args.data_dir)
    test = load_split("test", data)
    names = list(test.features["ner_tags"].feature.names)
    pp = load_splits(test_file=args.conllpp, columns=data.columns, tagging_scheme="iob2", label_names=names)["test"]
    gold = [[names[t] for t in s] for s in test["ner_tags"]]
    docs = list(test["document_id"])
    truth = differing_sentences(gold, [[names[t] for t in s] for s in pp["ner_tags"]])
    t0 = time.perf_counter()
    pred = predict_split(Predictor.from_pretrained(args.model), test)
    predict_s = time.perf_counter() - t0

    rows = {}
    for classes in ("types", "tags"):
        labels, probs, _ = class_probabilities(pred["logits"], pred["to_name"], pred["gold"], classes)
        for method in ("confident-learning", "disagreement"):
            t0 = time.perf_counter()
            r = rank(labels, probs, method)
            rows[f"{method}/{classes}"] = {
                "precision_at": {str(k): round(precision_at(r["order"], truth, k), 4) for k in PRECISION_K},
                "recall_at": {str(k): round(recall_at(r["order"], truth, k), 4) for k in RECALL_K},
                "flagged_sentences": len(r["flagged"]),
                # The settings are compared on the sentences they are scored on: each half of the
                # documents alone shows whether a choice holds on sentences it was not made on.
                "precision_by_half": {
                    half: round(precision_at([i for i in r["order"] if docs[i] % 2 == parity], truth, 50), 4)
                    for half, parity in (("even_documents_at_50", 0), ("odd_documents_at_50", 1))
                },
                "rank_seconds": round(time.perf_counter() - t0, 2),
            }
            print(method, classes, rows[f"{method}/{classes}"], flush=True)
    main_row, base_row = rows["confident-learning/types"], rows["disagreement/types"]
    out = {
        "model": args.model,
        "sentences": len(gold),
        "relabelled_sentences": len(truth),
        "random_rate": round(len(truth) / len(gold), 4),
        "precision_at": main_row["precision_at"],
        "recall_at": main_row["recall_at"],
        "baseline_precision_at": base_row["precision_at"],
        "baseline_recall_at": base_row["recall_at"],
        "rows": rows,
        "predict_seconds": round(predict_s, 1),
        "cleanlab": cleanlab.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    text = json.dumps(out, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
