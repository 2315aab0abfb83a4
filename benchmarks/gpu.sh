#!/usr/bin/env bash
# Everything the project measures on a GPU, in one run of under 8 minutes on one H100-class GPU:
#
#   1. inference: 24 frames at 512x768, 20 DDIM steps with guidance 3.5, the SD-1.5-size
#      pipeline (random weights: speed does not depend on them) -> animate-gpu-full-DATE.json
#   2. training: seconds per step, samples/s and peak memory of stage 1 (512x768) and stage 2
#      (24 frames) at SD-1.5 size -> train-gpu-DATE.json
#   3. DWPose frames/s at batch 1, 8 and 32 -> pose-dwpose-VIDEO-DATE.json, when the DWPose ONNX
#      files are given (DWPOSE_DETECTOR=yolox_l.onnx DWPOSE_MODEL=dw-ll_ucoco_384.onnx): their
#      licence keeps them out of the repository and this offline machine has none
#   4. evaluation cost: seconds per clip-second of each metric group -> evaluate-PIPELINE-DATE.json,
#      when EVAL_DATA_ROOT names a data root the pipeline has trained in (`make demo` there)
#
# Each step has its own time limit; one that fails or is skipped is recorded as such and the rest
# go on. benchmarks/results/gpu-DEVICE-DATE.json lists the device, each step's status, seconds
# and result file. Run from the repository root after `make install` (with a CUDA build of torch:
# `make install TORCH_SPEC=torch TORCH_PIP_ARGS=`):
#
#   bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DATE=$(date +%F)
RESULTS=benchmarks/results
mkdir -p "$RESULTS"
DEVICE=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" 2>/dev/null)
if [ -z "$DEVICE" ]; then
  echo "gpu.sh: no CUDA GPU visible to $PY (torch.cuda.is_available() is False); nothing measured" >&2
  exit 2
fi
SLUG=$(echo "$DEVICE" | tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9-')
STEPS=()

step() {  # step NAME LIMIT_S RESULT_GLOB COMMAND...
  local name=$1 limit=$2 glob=$3; shift 3
  local t0=$SECONDS status
  echo "== $name (at most ${limit} s): $*"
  if timeout --signal=INT --kill-after=15 "$limit" "$@"; then status=ok
  else status="failed (exit $?)"; fi
  local file; file=$(ls -t $glob 2>/dev/null | head -1)
  STEPS+=("{\"step\": \"$name\", \"status\": \"$status\", \"seconds\": $((SECONDS - t0)), \"result\": \"${file}\"}")
}

skip() {  # skip NAME REASON
  echo "== $1: skipped ($2)"
  STEPS+=("{\"step\": \"$1\", \"status\": \"skipped\", \"reason\": \"$2\"}")
}

step inference 150 "$RESULTS/animate-gpu-full-$DATE.json" \
  "$PY" benchmarks/animate.py gpu-full --frames 24 --size 512x768 --steps 20 --guidance 3.5
step training 200 "$RESULTS/train-gpu-*$DATE*.json" "$PY" benchmarks/train.py gpu
if [ -n "${DWPOSE_DETECTOR:-}" ] && [ -n "${DWPOSE_MODEL:-}" ]; then
  step dwpose 60 "$RESULTS/pose-dwpose-*-$DATE.json" \
    "$PY" benchmarks/pose.py dwpose --detector "$DWPOSE_DETECTOR" --pose-model "$DWPOSE_MODEL" --seconds 10
else
  skip dwpose "set DWPOSE_DETECTOR and DWPOSE_MODEL to the DWPose ONNX files"
fi
if [ -n "${EVAL_DATA_ROOT:-}" ]; then
  step evaluation 60 "$RESULTS/evaluate-*-$DATE.json" \
    "$PY" benchmarks/evaluate.py --data-root "$EVAL_DATA_ROOT" --pipeline "${EVAL_PIPELINE:-demo}"
else
  skip evaluation "set EVAL_DATA_ROOT to a data root the pipeline has trained in"
fi

OUT="$RESULTS/gpu-$SLUG-$DATE.json"
{
  echo "{\"device\": \"$DEVICE\", \"date\": \"$DATE\","
  echo " \"nvidia_smi\": \"$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)\","
  echo " \"steps\": ["
  (IFS=,; echo "  ${STEPS[*]}")
  echo " ]}"
} > "$OUT"
echo "wrote $OUT"
