"""Where does pipeline("ner") fed whole documents lose F1 against our predictor? One export, one split,
the pipeline's input length (the tokenizer's model_max_length) and chunk overlap (stride) varied.

    python -m bench.pipeline_gap --model EXPORT --data-dir ../shared/data/conll2003 [--split test] \
        [--max-length 256 512] [--stride 32 64 128] [--output bench/results/pipeline_gap.json]

Each row: entity precision, recall and F1 of transformers' pipeline (the export's aggregation strategy)
fed one document per call (nerforge.pipeline_scores), beside ours (the export's own windows, with
document context) and the pipeline fed one sentence per call. Nothing here asserts: it measures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--max-length", type=int, nargs="+", default=[256, 512])
    p.add_argument("--stride", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)

    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    from conll2003_loader import load_splits
    from nerforge.card import RECOMMENDED_AGGREGATION
    from nerforge.metric import score
    from nerforge.pipeline_scores import pipeline_scores
    from nerforge.predictor import Predictor

    ds = load_splits(data_dir=args.data_dir)[args.split]
    names = ds.features["ner_tags"].feature.names
    words = [list(s) for s in ds["tokens"]]
    gold = [[names[t] for t in tags] for tags in ds["ner_tags"]]
    docs = ds["document_id"]
    ours = score(gold, Predictor.from_pretrained(args.model).predict_words(words, docs))
    model = AutoModelForTokenClassification.from_pretrained(args.model).eval()
    rows = []
    for max_length in args.max_length:
        for stride in args.stride:
            if stride >= max_length // 2:
                continue
            tok = AutoTokenizer.from_pretrained(args.model)
            tok.model_max_length = max_length
            ner = pipeline(
                "ner", model=model, tokenizer=tok, aggregation_strategy=RECOMMENDED_AGGREGATION, stride=stride
            )
            t0 = time.perf_counter()
            got = pipeline_scores(ner, words, gold, docs)
            rows.append(
                {"max_length": max_length, "stride": stride, "seconds": round(time.perf_counter() - t0, 1), **got}
            )
            print(
                f"max_length {max_length} stride {stride}: document F1 {100 * got['document']['f1']:.2f}, "
                f"sentence F1 {100 * got['sentence']['f1']:.2f} (ours {100 * ours['f1']:.2f})",
                flush=True,
            )
    out = {
        "model": args.model,
        "split": args.split,
        "aggregation_strategy": RECOMMENDED_AGGREGATION,
        "ours": {k: ours[k] for k in ("precision", "recall", "f1")},
        "rows": rows,
    }
    if args.output:
        Path(args.output).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
