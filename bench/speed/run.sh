#!/usr/bin/env bash
# Issue 7's training-step comparison, in one run: candle's stock convolution, Pretext's
# kernels (im2col/GEMM convolution, fused batch norm, and for the ViT fused LayerNorm,
# softmax, GELU and bias gradients) and PyTorch, for the issue's ConvNet (batch 256,
# 1x28x28), the same ConvNet on Jigsaw's tiles (`tiles`: batch 2304, 1x7x7), the
# full-width CIFAR ResNet-18 (batch 64, 3x32x32) and ViT-Tiny on 28 px with 4 px patches
# (batch 64, 1x28x28; timm's VisionTransformer on the PyTorch side), 2 threads each. Runs
# are interleaved round by round so that load from other processes hits all three alike;
# the table takes medians. Timing only: nothing here is a test.
#
#   bench/speed/run.sh                       # ROUNDS=3 STEPS_CONVNET=10 STEPS_RESNET=3 (also the ViT's)
#   ROUNDS=1 MODELS="convnet vit-tiny" bench/speed/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
MODELS=${MODELS:-"convnet tiles resnet18 vit-tiny"}
STEPS_CONVNET=${STEPS_CONVNET:-10}
STEPS_RESNET=${STEPS_RESNET:-3}
THREADS=${THREADS:-2}
export RAYON_NUM_THREADS=$THREADS CANDLE_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

venv=bench/.venv
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    # PyPI's torch wheel (CPU + CUDA, a few GB); only PyPI is reachable from here.
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet torch
fi
if [[ " $MODELS " == *" vit-tiny "* ]] && ! "$venv/bin/python" -c "import timm" 2>/dev/null; then
    "$venv/bin/pip" install --quiet timm
fi

cargo build --release -p pretext-core --example step_speed
bin=target/release/examples/step_speed
results=$(mktemp)
trap 'rm -f "$results"' EXIT

echo "machine: $(getconf _NPROCESSORS_ONLN) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$ROUNDS"); do
    for model in $MODELS; do
        case $model in convnet | tiles) steps=$STEPS_CONVNET ;; *) steps=$STEPS_RESNET ;; esac
        echo "round $round/$ROUNDS: $model" >&2
        "$bin" "$model" stock "$steps" | tee -a "$results" >&2
        "$bin" "$model" fast "$steps" | tee -a "$results" >&2
        "$venv/bin/python" bench/speed/torch_step.py "$model" "$steps" | tee -a "$results" >&2
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 bench/speed/table.py < "$results"
