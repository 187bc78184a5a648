"""Paired A/B of our training loop: two settings, run alternately in rounds, same batches and seed.

    python -m bench.ab --data-dir ../shared/data/conll2003 --model ../shared/models/all-minilm-l6-v2 \
        --name sparse_embeddings --b-args "--sparse_embedding_updates true" [--a-args ""] [--rounds 4]

bench/run.py measures each variant once, one after another; on a shared 2-core machine two such
measurements of the same code differ by up to ~10%, more than the effect of a small change. Here A and
B run in turns (A B, B A, A B, ...), each 100 optimizer steps in its own subprocess (bench/run.py's
train_ours child, on the full training split), so drift over time hits both alike; the figure is
the ratio B / A of each round, and their median. Writes bench/results/ab_NAME.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from bench import measure
from bench.render import RESULTS


def paired_ratios(rounds: list[dict]) -> dict:
    """Per-round ratios B/A of sentences per second, and their median, min and max."""
    ratios = [r["b"]["sentences_per_s"] / r["a"]["sentences_per_s"] for r in rounds]
    return {
        "ratios_b_over_a": [round(x, 4) for x in ratios],
        "median": round(statistics.median(ratios), 4),
        "min": round(min(ratios), 4),
        "max": round(max(ratios), 4),
        "b_faster_in": f"{sum(x > 1 for x in ratios)} of {len(ratios)} rounds",
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(measure.ROOT.parent / "shared" / "data" / "conll2003"))
    p.add_argument("--model", default=str(measure.ROOT.parent / "shared" / "models" / "all-minilm-l6-v2"))
    p.add_argument("--name", required=True, help="names the result file: bench/results/ab_NAME.json")
    p.add_argument("--a-args", default="", help="train_accelerate.py flags of A (default: none, the loop's defaults)")
    p.add_argument("--b-args", required=True, help="train_accelerate.py flags of B")
    p.add_argument("--precision", choices=["no", "bf16"], default="no")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    variants = {"a": shlex.split(args.a_args), "b": shlex.split(args.b_args)}
    rounds = []
    with tempfile.TemporaryDirectory(prefix="nerforge-ab-") as tmp:
        base = {"model": str(Path(args.model).resolve()), "data_dir": str(Path(args.data_dir).resolve()), "tmp": tmp}
        ds = str(Path(tmp) / "ds")
        measure.run_child("make_dataset", dict(base, out=ds, n_eval=32), args.threads, print)
        for i in range(args.rounds):
            order = "ab" if i % 2 == 0 else "ba"  # alternate who goes first
            res = {}
            for v in order:
                res[v] = measure.run_child(
                    "train_ours",
                    dict(
                        base,
                        precision=args.precision,
                        steps=args.steps,
                        tag=f"ab_{v}",
                        dataset_path=ds,
                        extra_args=variants[v],
                    ),
                    args.threads,
                    print,
                )
                if "error" in res[v]:
                    return 1
            rounds.append(
                {
                    "order": order,
                    **{
                        v: {
                            k: res[v].get(k)
                            for k in ("sentences_per_s", "pieces_per_s", "train_time_s", "loadavg_1min_start_end")
                        }
                        for v in "ab"
                    },
                }
            )
    out = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python -m bench.ab " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "machine": measure.machine(),
        "a_args": args.a_args,
        "b_args": args.b_args,
        "precision": args.precision,
        "steps": args.steps,
        "rounds": rounds,
        "summary": paired_ratios(rounds),
    }
    path = RESULTS / f"ab_{args.name}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["summary"], indent=2), f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
