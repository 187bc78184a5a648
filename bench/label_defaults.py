"""Do the recipe's labelling defaults hold beyond CoNLL-2003? Which word pieces carry labels (first piece or
every piece) and whether the tokenizer keeps words whole, trained with configs/minilm-cpu.yaml on another
corpus, seeds apart.

    python -m bench.label_defaults --corpus wnut17 --seeds 0 1 2 [--epochs 1] [--attention-dropout 0] \
        [--precision bf16] [--attention-precision mixed] [--dropout-masks torch] \
        [--output bench/results/label_defaults_wnut17.json]

Each (setting, seed) is one `nerforge train --config minilm-cpu` process with the corpus's files,
document context off, batches of 16 sentences and the rest as the config; validation and test entity F1
(and test precision/recall) are read from the run's metrics.json. Results accumulate in the output file
keyed by setting and seed, so a stopped sweep continues where it stopped. Also recorded, once per corpus,
what the labelling sees: word pieces per word for entity words and the rest, and the share of labelled
pieces that are continuation pieces when every piece is labelled (bench.label_defaults.piece_stats).
Nothing here asserts: it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"

CORPORA = {
    "wnut17": {
        "data_dir": SHARED / "data" / "wnut17",
        "args": [
            "--train-file",
            "wnut17train.conll",
            "--validation-file",
            "emerging.dev.conll",
            "--test-file",
            "emerging.test.annotated",
            "--columns",
            "tokens",
            "ner_tags",
        ],  # fmt: skip
    },
    "conll2003": {"data_dir": SHARED / "data" / "conll2003", "args": []},
}
# (label_all_tokens, keep_words_whole, label_edge_punctuation)
SETTINGS = {
    "first/split": (False, False, False),
    "first/whole": (False, True, False),
    "every/split": (True, False, False),
    "every/whole": (True, True, False),
    # first piece + punctuation split off a word's edges (issue 27 s4: label_edge_punctuation). The results
    # files also hold "starts/whole": every later piece that is no '##' piece labelled (a variant that
    # labelled the 'hash' of '#hash ##tag' too; WNUT-17 validation 43.59 +- 1.89; run, then dropped, code not kept)
    "punct/whole": (False, True, True),
}


def piece_stats(data_dir: Path, extra_args: list[str], model: str) -> dict:
    """Per split: word pieces per word (entity words, other words), the share of entity words cut into 3+
    pieces, and the share of labelled pieces that are continuation pieces with every piece labelled,
    for the model's tokenizer splitting words as it does in pretraining and keeping them whole."""
    from transformers import AutoTokenizer

    from conll2003_loader import load_splits
    from nerforge.modeling import keep_words_whole

    args = dict(zip(extra_args[0::2], extra_args[1::2])) if extra_args else {}
    kwargs = {k.lstrip("-").replace("-", "_"): v for k, v in args.items() if k != "--columns"}
    if "--columns" in extra_args:
        kwargs["columns"] = ["tokens", "ner_tags"]
    splits = load_splits(data_dir=str(data_dir), **kwargs)
    out = {}
    for whole in (False, True):
        tok = AutoTokenizer.from_pretrained(model)
        if whole:
            tok = keep_words_whole(tok)
        for name, ds in splits.items():
            names = ds.features["ner_tags"].feature.names
            ent, other, cont, labelled, long_ent, social = [], [], 0, 0, 0, 0
            for words, tags in zip(ds["tokens"], ds["ner_tags"]):
                enc = tok(list(words), is_split_into_words=True, add_special_tokens=False)
                counts = [0] * len(words)
                for w in enc.word_ids():
                    if w is not None:
                        counts[w] += 1
                for word, n, t in zip(words, counts, tags):
                    (ent if names[t] != "O" else other).append(n)
                    if word.startswith(("@", "#", "http")):
                        social += n
                    if names[t] != "O" and n >= 3:
                        long_ent += 1
                    labelled += n
                    cont += max(0, n - 1)
            out[f"{'whole' if whole else 'split'}/{name}"] = {
                "pieces_per_entity_word": round(statistics.mean(ent), 3) if ent else None,
                "pieces_per_other_word": round(statistics.mean(other), 3),
                "entity_words_with_3_or_more_pieces": round(long_ent / max(1, len(ent)), 4),
                "continuation_share_of_labelled_pieces": round(cont / max(1, labelled), 4),
                # the entity share of what the loss sees: one label per word, or one per piece
                "entity_share_first_piece_labels": round(len(ent) / max(1, len(ent) + len(other)), 4),
                "entity_share_every_piece_labels": round(sum(ent) / max(1, labelled), 4),
                "share_of_pieces_in_user_names_hashtags_urls": round(social / max(1, labelled), 4),
            }
    return out


def run_one(
    corpus: str,
    setting: str,
    seed: int,
    epochs: float,
    tmp: Path,
    attention_dropout=None,
    precision: str = "no",
    attention_precision: str = "auto",
    dropout_masks: str = "torch",
) -> dict:
    label_all, whole, edge_punct = SETTINGS[setting]
    c = CORPORA[corpus]
    key = setting_key(setting, attention_dropout, precision, attention_precision, dropout_masks)
    out = tmp / f"{corpus}-{key.replace('/', '-')}-{seed}"
    cmd = [sys.executable, "-m", "nerforge", "train", "--config", "minilm-cpu", "--data-dir", str(c["data_dir"])]
    cmd += [*c["args"], "--dataset-name", corpus, "--output-dir", str(out), "--overwrite-output-dir", "true"]
    cmd += ["--context-size", "0", "--pack-length", "0", "--per-device-train-batch-size", "16"]
    cmd += ["--num-train-epochs", str(epochs), "--seed", str(seed), "--report-to", "none"]
    cmd += ["--label-all-tokens", str(label_all).lower(), "--keep-words-whole", str(whole).lower()]
    cmd += ["--label-edge-punctuation", str(edge_punct).lower()]
    cmd += ["--evaluate-pipeline", "false", "--calibrate", "false", "--example-text", ""]
    if attention_dropout is not None:
        cmd += ["--attention-dropout", str(attention_dropout)]
    cmd += ["--attention-precision", attention_precision, "--dropout-masks", dropout_masks]
    t0 = time.perf_counter()
    # the precision is accelerate's setting (as `accelerate launch --mixed_precision` sets it), not ours
    env = dict(os.environ, ACCELERATE_MIXED_PRECISION=precision)
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)}\nfailed:\n{p.stderr[-3000:]}")
    m = json.loads((out / "model" / "metrics.json").read_text())
    row = {
        "validation_f1": m["validation"]["f1"],
        "test_f1": m["test"]["f1"],
        "test_precision": m["test"]["precision"],
        "test_recall": m["test"]["recall"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    shutil.rmtree(out / "best_model", ignore_errors=True)
    return row


def setting_key(
    setting: str,
    attention_dropout=None,
    precision: str = "no",
    attention_precision: str = "auto",
    dropout_masks: str = "torch",
) -> str:
    """The results file's key: the labelling setting, the attention dropout where one is set, the mixed
    precision where there is one, the attention's precision where it is not the default, and
    ``+fast_masks`` where dropout drew nerforge.dropout's masks ('auto' or 'fast' on this CPU; every key
    without it ran torch's masks, the default)."""
    key = setting if attention_dropout is None else f"{setting}+attention_dropout={attention_dropout:g}"
    key = key if precision == "no" else f"{key}+{precision}"
    key = key if attention_precision == "auto" else f"{key}+attention_{attention_precision}"
    return key if dropout_masks == "torch" else f"{key}+fast_masks"


def summarise(runs: dict) -> dict:
    out = {}
    for setting, by_seed in runs.items():
        rows = list(by_seed.values())
        agg = {"seeds": sorted(int(s) for s in by_seed)}
        for k in ("validation_f1", "test_f1", "test_recall"):
            xs = [r[k] for r in rows]
            agg[f"{k}_mean"] = round(statistics.mean(xs), 4)
            agg[f"{k}_std"] = round(statistics.stdev(xs), 4) if len(xs) > 1 else None
        out[setting] = agg
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", choices=CORPORA, default="wnut17")
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--model", default=str(SHARED / "models" / "all-minilm-l6-v2"))
    p.add_argument("--output", default=None)
    p.add_argument("--tmp", default=str(HERE / "results" / "tmp"))
    p.add_argument(
        "--attention-dropout", type=float, default=None, help="model.attention_dropout for every run (issue 29's lever)"
    )
    p.add_argument(
        "--precision",
        choices=("no", "bf16"),
        default="no",
        help="accelerate's mixed precision for every run (bf16: attention in fp32 on a CPU, the loop's default)",
    )
    p.add_argument(
        "--attention-precision",
        choices=("auto", "fp32", "mixed"),
        default="auto",
        help="training.attention_precision for every run (mixed: the attention in bf16 too)",
    )
    p.add_argument(
        "--dropout-masks",
        choices=("auto", "torch", "fast"),
        default="torch",
        help="training.dropout_masks for every run (auto: nerforge.dropout's masks on this CPU)",
    )
    args = p.parse_args(argv)
    path = Path(args.output or HERE / "results" / f"label_defaults_{args.corpus}.json")
    data = json.loads(path.read_text()) if path.is_file() else {"corpus": args.corpus, "runs": {}}
    c = CORPORA[args.corpus]
    if "pieces" not in data:
        data["pieces"] = piece_stats(c["data_dir"], c["args"], args.model)
        path.write_text(json.dumps(data, indent=2) + "\n")
    for seed in args.seeds:
        for setting in args.settings:
            key = f"epochs_{args.epochs:g}"
            name = setting_key(
                setting, args.attention_dropout, args.precision, args.attention_precision, args.dropout_masks
            )
            done = data["runs"].setdefault(key, {}).setdefault(name, {})
            if str(seed) in done:
                continue
            done[str(seed)] = run_one(
                args.corpus,
                setting,
                seed,
                args.epochs,
                Path(args.tmp),
                args.attention_dropout,
                args.precision,
                args.attention_precision,
                args.dropout_masks,
            )
            data["summary"] = {k: summarise(v) for k, v in data["runs"].items()}
            path.write_text(json.dumps(data, indent=2) + "\n")
            print(args.corpus, key, name, seed, done[str(seed)], flush=True)
    print(json.dumps(data.get("summary"), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
