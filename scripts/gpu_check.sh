#!/usr/bin/env bash
# The blind GPU check for a session lent a GPU (the `device` tool): <= 8 minutes on one H100/H200, every step
# time-boxed, JSON written as each step ends (results/gpu/<step>.json, copied to $OUT when set).
#
# Here, once (needs PyPI; writes ignored folders .gpu_data/ and .whl/, ~40 MB to carry):
#     bash scripts/gpu_check.sh --prepare
# On the GPU machine (device.run with carry [".gpu_data", ".whl"], timeout_s 600):
#     bash scripts/gpu_check.sh
# On a CPU, to check the script itself with tiny sizes (JSON to /tmp/gpu_check_smoke):
#     GPU_CHECK_SMOKE=1 GPU_CHECK_BOX_SCALE=6 bash scripts/gpu_check.sh
#
# Order and boxes follow ../shared/GPU_NOTES.md ("A blind GPU check"): what matters most runs first.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ "${1:-}" = "--prepare" ]; then
    set -e
    mkdir -p .gpu_data .whl
    # CIFAR-10: the offline copy's train and test parquet (45 + 9 MB) -- the GPU machine has no network.
    cp -r ../shared/data/cifar10 .gpu_data/
    # Packages the GPU image lacks (it has torch, accelerate, huggingface-hub, pyarrow, pandas, ...): wheels for its
    # Python 3.12, without dependencies (each needed one is named).
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl datasets==5.2.0 webdataset==1.0.2 braceexpand==0.1.7 dill==0.4.1 multiprocess==0.70.19 torchattacks==3.5.1
    $PY -m pip download -q --no-deps --only-binary=:all: -d .whl/alt datasets==4.8.0
    du -sh .gpu_data .whl
    exit 0
fi

OUT_DIR=${GPU_CHECK_OUT:-results/gpu}
[ "${GPU_CHECK_SMOKE:-0}" = 1 ] && OUT_DIR=${GPU_CHECK_OUT:-/tmp/gpu_check_smoke}
SCALE=${GPU_CHECK_BOX_SCALE:-1}     # a slow CPU smoke run stretches every box
mkdir -p "$OUT_DIR"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
    # datasets 5.x wants pyarrow >= 24; with an older pyarrow on the image, fall back to the 4.x wheel (pyarrow >= 21)
    if ! $PY -c "import datasets" 2>/dev/null && ls .whl/alt/*.whl >/dev/null 2>&1; then
        echo "datasets 5 does not import here; installing $(ls .whl/alt)"
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/alt/*.whl
    fi
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export HF_HUB_DISABLE_XET=1

# step  box (s), the default order: env 30, gpu tests 75, verifier 60, determinism 100, bench 50, precision 40, oom 20, pipeline 160:
# 535 s at the most, plus ~15 s of wheel installs (device.run timeout_s 570). Measured on an H200 (2026-11-29,
# results/gpu/): env 13 s, tests 47, verifier 37, bench 27, precision 16, oom 5; determinism did not fit 45 s (three
# generate processes start ~10 s each); the pipeline reached D̂R (std model 24 s, robust model 58 s). The whole
# `fast` pipeline does not fit one lease: D̂R alone took 405 s for 50k images at batch 500 (~59 TFLOP/s achieved);
# a later lease resumes it from the stage cache only while the same machine is warm. Second lease (2026-11-30): steps
# "determinism& pipeline" with reproduce_fast10k: determinism 73 s (same bytes twice and after a resume), the whole
# fast10k pipeline 361 s (report in results/gpu/fast10k/); 365 s of the 570 s call.
run_step() {
    local step=$1 box=$(( $2 * SCALE )) t0=$SECONDS
    echo "== $step (box ${box}s)"
    timeout --kill-after=5 "$box" $PY scripts/gpu_check.py "$step" "$OUT_DIR"
    local rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        printf '{"status": "timeout", "box_seconds": %s}\n' "$box" > "$OUT_DIR/$step.json"
    fi
    echo "== $step: exit $rc after $((SECONDS - t0)) s"
}
# GPU_CHECK_STEPS picks steps (default: all, in this order); "name&" runs one in the background beside the next ones.
# GPU_CHECK_PIPELINE names the pipeline recipe (reproduce_fast, or reproduce_fast10k: the whole table in one lease)
# and GPU_CHECK_PIPELINE_BOX its box. A second lease, with the first one's JSON committed:
#     GPU_CHECK_STEPS="determinism& pipeline" GPU_CHECK_PIPELINE=reproduce_fast10k GPU_CHECK_PIPELINE_BOX=480 \
#         bash scripts/gpu_check.sh
# The next lease's first run (LEVERS.md: a standard source without the frozen whitening, plain cross-entropy):
#     GPU_CHECK_STEPS=pipeline GPU_CHECK_PIPELINE=reproduce_fast10k GPU_CHECK_PIPELINE_BOX=540 \
#         GPU_CHECK_PIPELINE_ARGS="standard_model.airbench.whiten=false standard_model.airbench.label_smoothing=0.0" \
#         bash scripts/gpu_check.sh
declare -A BOX=([env]=30 [tests]=75 [verifier]=60 [determinism]=100 [bench]=50 [precision]=40 [oom]=20
                [pipeline]=${GPU_CHECK_PIPELINE_BOX:-160})
export GPU_CHECK_PIPELINE_SECONDS=$(( (BOX[pipeline] - 15) * SCALE ))
STEPS=${GPU_CHECK_STEPS:-env tests verifier determinism bench precision oom pipeline}
for step in $STEPS; do
    [ -n "${BOX[${step%&}]:-}" ] || { echo "unknown step ${step%&} (steps: ${!BOX[*]})"; exit 2; }
done
for step in $STEPS; do
    name=${step%&}
    if [ "$name" != "$step" ]; then run_step "$name" "${BOX[$name]}" & else run_step "$name" "${BOX[$name]}"; fi
done
wait

$PY - "$OUT_DIR" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
summary = {p.stem: json.loads(p.read_text()).get("status") for p in sorted(out.glob("*.json")) if p.stem != "summary"}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary))
PYEOF
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/gpu" && cp "$OUT_DIR"/*.json "$OUT/gpu/" 2>/dev/null
    # the run's report, figures, stage records, model metrics and dataset manifests / previews (not the shards)
    ls -d runs/gpu_* >/dev/null 2>&1 && (cd runs && tar czf "$OUT/gpu_runs.tgz" --exclude='*.tar' --exclude='*.npy' --exclude='*.safetensors' \
        --exclude='*.parquet' --exclude='markers' --exclude='shards' --exclude='data' --exclude='cache' \
        gpu_* 2>/dev/null) || true
fi
