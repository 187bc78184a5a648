"""What the product's static int8 path costs and buys on this machine, through the commands a user runs.

    python -m bench.int8_package --model outputs/minilm-cpu/model --data-dir ../shared/data/conll2003 \
        --name minilm_recipe [--rounds 3]

1. ``nerforge onnx`` (if the export has no ONNX files) and ``nerforge quantize`` on the export: the
   package's build time (quantization, AOTInductor compile) and its check, from ``pt2/build.json``.
2. Start-up in a fresh process per backend, ``--rounds`` times in turns (torch fp32, torch-int8, ONNX
   int8, ...): import, load, and tag one sentence, wall seconds. What the package is for: the int8 kernels
   without paying torch.compile's tens of seconds in every process.
3. ``nerforge verify`` on validation: F1 and words/s of every path this CPU runs, the record ``auto``
   follows, and the path it then chooses.
4. ``nerforge score --split test`` with torch fp32 and each int8 path: the test F1 each gives.

Writes bench/results/int8_package_NAME.json (with the machine: the package is this CPU's).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import measure
from bench.render import RESULTS

LOAD_AND_TAG = """
import sys, time
t0 = time.perf_counter()
from nerforge.backends import load_predictor
p = load_predictor(sys.argv[1], sys.argv[2])
p.predict_words([["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]])
print(time.perf_counter() - t0)
"""


def nerforge(*args: str) -> str:
    """Run a nerforge command; its stdout (a failure stops the bench, with the command's stderr)."""
    p = subprocess.run([sys.executable, "-m", "nerforge", *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"nerforge {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout


def startup_s(model: str, backend: str) -> dict:
    """Wall seconds of a fresh process that imports, loads `backend` and tags one sentence; and the part
    inside Python after the interpreter started."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", LOAD_AND_TAG, model, backend], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"loading {backend} failed:\n{p.stderr[-3000:]}")
    return {"wall_s": round(wall, 2), "load_and_tag_s": round(float(p.stdout.strip().splitlines()[-1]), 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="an export folder (the package is built into it)")
    p.add_argument("--data-dir", default=str(measure.ROOT.parent / "shared" / "data" / "conll2003"))
    p.add_argument("--name", required=True, help="names the result file: bench/results/int8_package_NAME.json")
    p.add_argument("--rounds", type=int, default=3, help="start-up measurements per backend, in turns")
    p.add_argument("--skip-build", action="store_true", help="keep the export's pt2/ package as it is")
    args = p.parse_args(argv)
    model = str(Path(args.model))
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    if not (Path(model) / "onnx" / "model_quantized.onnx").is_file():
        nerforge("onnx", "--model", model, "--quiet")
    build_stdout = "" if args.skip_build else nerforge("quantize", "--model", model, "--data-dir", args.data_dir)
    build = json.loads((Path(model) / "pt2" / "build.json").read_text(encoding="utf-8"))

    backends = ["torch", "torch-int8", "onnx-int8"]
    startup: dict[str, list] = {b: [] for b in backends}
    for i in range(args.rounds):
        for b in backends if i % 2 == 0 else backends[::-1]:  # alternate the order: drift hits all alike
            startup[b].append(startup_s(model, b))
            print(f"round {i + 1}: {b} {startup[b][-1]}", file=sys.stderr)

    verify_stdout = nerforge("verify", "--model", model, "--data-dir", args.data_dir)
    record = json.loads((Path(model) / "backends.json").read_text(encoding="utf-8"))
    paths = record["paths"]
    base = paths["torch"]["words_per_s"]
    test = {}
    with tempfile.TemporaryDirectory() as tmp:
        for b in backends:
            f = Path(tmp) / f"{b}.json"
            nerforge(
                "score",
                "--model",
                model,
                "--data-dir",
                args.data_dir,
                "--split",
                "test",
                "--backend",
                b,
                "--quiet",
                "--metrics-json",
                str(f),
            )
            test[b] = round(100 * json.loads(f.read_text(encoding="utf-8"))["f1"], 2)
    test_delta = {b: round(test[b] - test["torch"], 2) for b in backends}
    out = {
        "date": started,
        "command": "python -m bench.int8_package " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": measure.machine(),
        "model": model,
        "build": build,
        "build_stdout": build_stdout.strip(),
        "startup": {
            b: {"runs": r, "median_load_and_tag_s": sorted(x["load_and_tag_s"] for x in r)[len(r) // 2]}
            for b, r in startup.items()
        },
        "verify": record,
        "speed_vs_fp32": {name: round(e["words_per_s"] / base, 3) for name, e in paths.items()},
        "test_f1": test,
        "test_f1_delta": test_delta,
        "auto": verify_stdout.strip().splitlines()[-1],
    }
    path = RESULTS / f"int8_package_{args.name}.json"
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    for name, e in paths.items():
        print(
            f"{name:>11}: F1 {100 * e['f1']:.2f} ({e['f1_delta']:+.2f}), {e['words_per_s']:.0f} words/s, "
            f"{out['speed_vs_fp32'][name]:.2f}x fp32"
        )
    print(out["auto"])
    print("test F1:", test, "delta:", test_delta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
