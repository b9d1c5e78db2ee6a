#!/usr/bin/env bash
# The GPU checks and numbers, in one run of under 8 minutes on a bare GPU machine:
#   bash bench/gpu.sh                 (from the repository root; results in $OUT, default bench/gpu-out)
# 1. the `cuda` tests; 2. train steps (fast, graphed, straightforward) at the protocol's batches and
# precision, and per class count for the protocol projection (bench/projection.py); 3. end-to-end
# train.py + eval under amp and bf16; 4. evaluation throughput through the real loader.
# Packages the machine lacks (open_clip and its tokenizer's ftfy and regex, yacs, tabulate) are
# installed from wheels in .whl/ if present (the machine reaches no index; carry .whl to it):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl open_clip_torch ftfy wcwidth regex yacs tabulate
# Each stage has its own time limit within DEADLINE (seconds, default 470), so one that hangs costs
# only its share; STAGES="tests e2e" runs a selection (step-baselines, the six baselines' steps, only when named). Results are appended to $OUT/results.jsonl
# (one JSON line per benchmark), everything printed to $OUT/gpu.log.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
needs="import open_clip, open_clip.tokenizer, yacs, ftfy, tabulate"
if ! python3 -c "$needs" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/mmrl-site \
            .whl/*.whl || exit 1
        export PYTHONPATH="$PYTHONPATH:/tmp/mmrl-site"
        python3 -c "$needs" || exit 1  # a package missing from .whl/: its name is in the error above
    else
        echo "missing packages ($needs failed) and no wheels in .whl/ (see the header of this script)" >&2
        exit 1
    fi
fi
log="$OUT/gpu.log"
results="$OUT/results.jsonl"
: >"$results"

DEADLINE=${DEADLINE:-470}   # seconds for all stages together (the script's promise: under 8 minutes)
STAGES=${STAGES:-"tests startup step-eurosat step-classes step-imagenet e2e eval-64px eval-400px step-mmrlpp"}
T0=$SECONDS

stage() {  # stage NAME SECONDS COMMAND...: run if selected, within its limit and what is left of DEADLINE
    local name=$1 limit=$2
    shift 2
    [[ " $STAGES " == *" $name "* ]] || return 0
    local left=$((DEADLINE - (SECONDS - T0)))
    if ((left < 15)); then
        echo "=== $name: skipped, ${left}s left of DEADLINE" | tee -a "$log"
        return 0
    fi
    ((limit > left)) && limit=$left
    echo "=== $name ($(date -u +%T), limit ${limit}s): $*" | tee -a "$log"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>>"$log" | tee -a "$log" | grep '^{' >>"$results"
    echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$log"
}

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    python3 -c "import torch, open_clip; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'open_clip', open_clip.__version__, 'cpus', __import__('os').cpu_count())"
} 2>&1 | tee -a "$log"

stage tests 120 python3 -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider -rA
stage startup 90 python3 bench/startup.py --device cuda --repeats 2 --json
stage step-eurosat 50 python3 bench/step.py --device cuda --case eurosat --paths fast,graph,reference --json
stage step-classes 45 python3 bench/step.py --device cuda --case imagenet --classes 5,19,24,50,98,199 \
    --paths fast,graph --json
stage step-imagenet 50 python3 bench/step.py --device cuda --case imagenet --classes 500 --batch 32 \
    --paths fast,graph,reference --json
stage e2e 80 python3 bench/e2e.py --runs amp:graph,bf16:graph --per-class 500 --json
stage eval-64px 60 python3 bench/eval.py --device cuda --images 3000 --batch 250 --workers 8 --rounds 2 --json
stage eval-400px 50 python3 bench/eval.py --device cuda --images 500 --data-images 500 --image-size 400 \
    --batch 250 --workers 16 --rounds 1 --json
stage step-mmrlpp 40 python3 bench/step.py --device cuda --case eurosat --trainer MMRLpp --paths graph,reference --json
stage step-baselines 300 bash -c 'for t in CoOp CoCoOp KgCoOp IVLP MaPLe PromptSRC; do
    python3 bench/step.py --device cuda --trainer $t --case eurosat --paths fast,graph,reference --json; done'
date -u | tee -a "$log"
