#!/usr/bin/env bash
# Issue 29's measurements on a CPU with AMX, in one command from the repository root (a venv with the
# project installed with its onnx and int8 extras, ../shared beside the checkout):
#
#     bash bench/amx_check.sh [--skip-train] [--skip-quality]
#
# Issue 29's targets are ratios on a CPU with AVX512-BF16 and AMX (its bf16 and int8 ceilings); on any
# other CPU bf16 is emulated and the figures would answer another question, so the script stops there
# (exit 2) before it spends anything. In order, each step's output in $LOG_DIR (outputs/amx_check):
#   1. the recipe's export (configs/minilm-cpu.yaml, 3 epochs: ~17 min on the 2-core AMX Xeon) unless
#      outputs/minilm-cpu/model exists or --skip-train;
#   2. `nerforge onnx` and `nerforge quantize` on it (the int8 package is machine code for this CPU: built
#      here, never carried from another machine);
#   3. `nerforge verify` on validation -> $VERIFY_JSON (bench/results/verify_minilm_recipe.json): what
#      `--backend auto` picks on this CPU;
#   4. `python -m bench.run --only gemm,infer` on the export: the inference table, the ceilings and
#      issue 29's summary keys in bench/results/latest.json and BENCHMARKS.md's generated section;
#   5. `python -m bench.run --only train`: train_speedup_bf16_vs_ours_fp32;
#   6. unless --skip-quality: validation F1 in bf16 and fp32 side by side, 3 seeds x 1 epoch each, no
#      context (bench.quality's protocol: six 1-epoch runs) -> bench/results/quality.json.
# It ends with every target bench/render.py judged (issue 29's among them) and the fastest path's F1 delta.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA_DIR:-../shared/data/conll2003}
MODEL_DIR=${MODEL_DIR:-outputs/minilm-cpu/model}
LOG_DIR=${LOG_DIR:-outputs/amx_check}
CPUINFO=${CPUINFO:-/proc/cpuinfo}
VERIFY_JSON=${VERIFY_JSON:-bench/results/verify_minilm_recipe.json}
train=1 quality=1
for a in "$@"; do
    case "$a" in
        --skip-train) train=0 ;;
        --skip-quality) quality=0 ;;
        *) echo "amx_check: unknown option $a (--skip-train, --skip-quality)" >&2; exit 2 ;;
    esac
done

flags=$(grep -m1 '^flags' "$CPUINFO" || true)
missing=""
for f in avx512_bf16 amx_bf16 amx_int8 amx_tile; do
    grep -qw "$f" <<<"$flags" || missing="$missing $f"
done
if [ -n "$missing" ]; then
    echo "amx_check: this CPU ($(grep -m1 'model name' "$CPUINFO" | cut -d: -f2- | xargs)) lacks:$missing;" \
        "issue 29's figures need AVX512-BF16 and AMX: nothing run" >&2
    exit 2
fi
[ -f "$DATA/test.txt" ] || { echo "amx_check: $DATA/test.txt not found (DATA_DIR=...)" >&2; exit 2; }
python -c 'import torchao, onnxruntime' 2>/dev/null \
    || { echo "amx_check: needs the onnx and int8 extras: pip install -e '.[onnx,int8]'" >&2; exit 2; }

mkdir -p "$LOG_DIR"
step() { # step NAME COMMAND...: run it, its output to the terminal and $LOG_DIR/NAME.log, timed
    local name=$1
    shift
    echo "amx_check: $name: $*"
    local t0=$SECONDS
    "$@" 2>&1 | tee "$LOG_DIR/$name.log"
    echo "amx_check: $name done in $((SECONDS - t0)) s"
}

lscpu > "$LOG_DIR/lscpu.txt"
if [ ! -f "$MODEL_DIR/config.json" ]; then
    [ "$train" = 1 ] || { echo "amx_check: $MODEL_DIR is not an export and --skip-train was given" >&2; exit 2; }
    step train nerforge train --config minilm-cpu --data-dir "$DATA" --output-dir "$(dirname "$MODEL_DIR")"
fi
step onnx nerforge onnx --model "$MODEL_DIR"
step quantize nerforge quantize --model "$MODEL_DIR" --data-dir "$DATA"
step verify nerforge verify --model "$MODEL_DIR" --data-dir "$DATA"
cp "$MODEL_DIR/backends.json" "$VERIFY_JSON"
step infer python -m bench.run --only gemm,infer --trained-model "$MODEL_DIR"
step train_speed python -m bench.run --only train
if [ "$quality" = 1 ]; then
    for precision in no bf16; do
        step "quality_$precision" python -m bench.quality --epochs 1 --seeds 0 1 2 --variants ours_no_context \
            --precision "$precision"
    done
fi
# The targets as bench/render.py judged them (value, target, met), then the fastest path's F1 delta
python - <<'EOF'
import json

R = json.load(open("bench/results/latest.json"))
for name, t in R["targets"].items():
    print(f"{name}: {t['value']} ({t['target']}: {'met' if t['met'] else 'not met'})")
print("inference_fastest_f1_delta:", R["summary"].get("inference_fastest_f1_delta"))
EOF
