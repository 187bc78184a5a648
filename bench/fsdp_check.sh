#!/usr/bin/env bash
# FSDP2 on one GPU (issue 27, section 2), prepared and not yet run: nothing here has had a GPU.
#
#     PY=/path/to/cuda/python bash bench/fsdp_check.sh      (bench/gpu_check.sh runs it after bench.gpu)
#
# The quick start for 10 steps under configs/accelerate/fsdp.yaml (FSDP2, BertLayer wrapping, sharded
# state dict, bf16) with a checkpoint at step 5 and 10, then the same command resumed from the latest
# checkpoint (loads the sharded checkpoint, exports again). Asserts: both runs exit 0; the startup
# summary says FSDP with every parameter tensor sharded (DTensor); the second run resumed at step 10;
# the export is a plain safetensors model that from_pretrained loads and that scores (nerforge score)
# the test F1 its metrics.json records. Writes bench/results/gpu_fsdp.json (and $OUT/ when set).
# Needs accelerate, datasets, seqeval and transformers in that Python (it says which are missing).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DIR=${FSDP_DIR:-/tmp/nerforge-fsdp}
JSON=${FSDP_JSON:-bench/results/gpu_fsdp.json}
missing=$("$PY" -c 'import importlib.util as u; print(" ".join(m for m in ("accelerate", "datasets", "seqeval", "transformers", "safetensors") if u.find_spec(m) is None))')
if [ -n "$missing" ]; then echo "fsdp_check: $PY lacks: $missing" >&2; exit 2; fi
rm -rf "$DIR" && mkdir -p "$(dirname "$DIR")"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
run() {
    "$PY" -m accelerate.commands.launch --config_file configs/accelerate/fsdp.yaml --num_processes 1 \
        -m nerforge.train --config quickstart --output-dir "$DIR" --report-to none --evaluate-pipeline false \
        --calibrate false --example-text "" --max-steps 10 --eval-steps 5 --save-steps 5 "$@"
}
run > "$DIR.first.log" 2>&1; rc1=$?
run --resume-from-checkpoint latest > "$DIR.resumed.log" 2>&1; rc2=$?
"$PY" - "$DIR" "$rc1" "$rc2" "$JSON" <<'PY'
import json, re, subprocess, sys
from pathlib import Path

out, rc1, rc2, dest = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
first = Path(f"{out}.first.log").read_text(errors="replace")
resumed = Path(f"{out}.resumed.log").read_text(errors="replace")
got = {"first_exit": rc1, "resumed_exit": rc2}
m = re.search(r"distributed: (.*)", first)
got["distributed"] = m.group(1) if m else None
s = re.search(r"FSDP: (\d+) of (\d+) parameter tensors sharded", first)
got["all_sharded"] = bool(s) and s.group(1) == s.group(2) and int(s.group(2)) > 0
got["resumed_at_10"] = bool(re.search(r"resumed from .*checkpoint\S* at step 10", resumed))
export = out / "model"
got["export_files"] = sorted(p.name for p in export.iterdir()) if export.is_dir() else []
if (export / "model.safetensors").is_file():
    from transformers import AutoModelForTokenClassification
    AutoModelForTokenClassification.from_pretrained(export)
    want = json.loads((export / "metrics.json").read_text())["test"]["f1"]
    p = subprocess.run([sys.executable, "-m", "nerforge", "score", "--model", str(export), "--data-dir", "bundled:sample",
                        "--quiet"], capture_output=True, text=True)
    got["score_exit"] = p.returncode
    got["test_f1_run"], got["test_f1_score"] = want, (json.loads(p.stdout)["f1"] if p.returncode == 0 else None)
got["ok"] = (rc1 == 0 and rc2 == 0 and got["all_sharded"] and got["resumed_at_10"]
             and got.get("score_exit") == 0 and abs(got["test_f1_run"] - got["test_f1_score"]) < 1e-9)
if not got["ok"]:
    got["first_log_tail"], got["resumed_log_tail"] = first[-2000:], resumed[-2000:]
dest.write_text(json.dumps(got, indent=2) + "\n")
print(json.dumps(got, indent=2))
sys.exit(0 if got["ok"] else 1)
PY
rc=$?
if [ -n "${OUT:-}" ] && [ -f "$JSON" ]; then cp "$JSON" "$OUT/"; fi
exit $rc
