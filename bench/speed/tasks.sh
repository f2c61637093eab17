#!/usr/bin/env bash
# Issue 3's speed comparison, in one run, on CPU at one thread count (default 2):
#  - training images/s per task (all eight by default; TASKS to choose): `pretext train` on Fashion-MNIST
#    (ConvNet w=16, or ViT-Tiny with 4 px patches for MAE, which masks a ViT's patches; batch 256,
#    2 prefetch workers) against the seed article's PyTorch code, corrected
#    (bench/speed/torch_tasks.py, same backbone, heads, batch, optimizer, 2 DataLoader workers),
#    with the ratio;
#  - SimCLR augmentation throughput (two views per image): SimclrAugment over rayon's
#    threads (core/examples/augment_speed.rs) against torchvision's PIL transforms through a
#    2-worker DataLoader;
#  - kNN evaluation time (bank 60000x128, 10000 queries, k=200, T=0.1):
#    pretext_core::eval::knn_predict (core/examples/knn_speed.rs) against a NumPy reference
#    (bench/speed/knn_numpy.py), with the number of predictions that agree.
# Timing only: nothing here is a test. Prints the raw JSON lines to stderr, a table to stdout.
#
#   bench/speed/tasks.sh                  # THREADS=2 LIMIT=2560 ROUNDS=1, about 3-4 minutes
#   TASKS=rotation ROUNDS=2 bench/speed/tasks.sh
#
# Pretext's number is the epoch_end record of the second of two epochs over the first LIMIT
# training images (metrics.jsonl's images_per_sec: dataset images per second from the start
# of the epoch's prefetch to its last step); the first epoch is its warm-up. PyTorch runs a
# few warm-up steps, then times one epoch over the same LIMIT images the same way.
set -euo pipefail
cd "$(dirname "$0")/../.."

THREADS=${THREADS:-2}
LIMIT=${LIMIT:-2560}
BATCH=${BATCH:-256}
ROUNDS=${ROUNDS:-1}
TASKS=${TASKS:-"simclr jigsaw rotation byol dino barlow vicreg mae"}
AUG_IMAGES_PRETEXT=${AUG_IMAGES_PRETEXT:-60000}
AUG_IMAGES_TORCH=${AUG_IMAGES_TORCH:-5000}
export RAYON_NUM_THREADS=$THREADS CANDLE_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
export OPENBLAS_NUM_THREADS=$THREADS

venv=bench/.venv
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    # PyPI's torch wheel (CPU + CUDA, a few GB); only PyPI is reachable from here.
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet torch
fi
if ! "$venv/bin/python" -c "import torchvision, threadpoolctl, timm" 2>/dev/null; then
    # torchvision's wheels declare the torch they need (>=), so pip keeps the torch above;
    # timm is MAE's ViT (torch_tasks.py's vit-tiny).
    "$venv/bin/pip" install --quiet torchvision threadpoolctl timm
fi

# The CLI, the plugin libraries and the two examples below (`--examples` alone builds only examples).
cargo build --release --workspace --lib --bins --examples
pretext=target/release/pretext
work=$(mktemp -d)
results=$work/results.jsonl
trap 'rm -rf "$work"' EXIT

echo "machine: $(getconf _NPROCESSORS_ONLN) cores, $(lscpu | sed -n 's/^Model name: *//p'), $THREADS threads; uptime before: $(uptime)" >&2
for round in $(seq "$ROUNDS"); do
    for task in $TASKS; do
        echo "round $round/$ROUNDS: $task" >&2
        out=$work/$task-$round
        settings=()
        [ -e "bench/speed/$task.toml" ] && settings=(--config "bench/speed/$task.toml")
        case $task in
            mae) backbone=vit-tiny ;;  # Pretext's default 4 px patches: 49 tokens of a 28 px image
            *) backbone=convnet ;;
        esac
        "$pretext" train --task "$task" --data fashion-mnist --backbone "$backbone" --batch-size "$BATCH" \
            --epochs 2 --limit "$LIMIT" --knn-every 0 --workers 2 "${settings[@]}" --out "$out" > /dev/null
        python3 - "$out/metrics.jsonl" "$task" "$THREADS" "$BATCH" <<'EOF' | tee -a "$results" >&2
import json, sys
path, task, threads, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ends = [r for r in map(json.loads, open(path)) if r.get("epoch_end")]
last = ends[-1]
print(json.dumps({"kind": "train", "impl": "pretext", "task": task, "threads": threads, "batch": batch,
                  "steps": last["step"] - ends[-2]["step"] if len(ends) > 1 else last["step"],
                  "images_per_s": round(last["images_per_sec"], 2),
                  "first_epoch_images_per_s": round(ends[0]["images_per_sec"], 2), "loss": round(last["loss"], 4)}))
EOF
        "$venv/bin/python" bench/speed/torch_tasks.py train "$task" --backbone "$backbone" --limit "$LIMIT" \
            --batch "$BATCH" --threads "$THREADS" | tee -a "$results" >&2
    done
    echo "round $round/$ROUNDS: augmentation" >&2
    target/release/examples/augment_speed "$AUG_IMAGES_PRETEXT" "$BATCH" | tee -a "$results" >&2
    "$venv/bin/python" bench/speed/torch_tasks.py augment --images "$AUG_IMAGES_TORCH" --batch "$BATCH" \
        --threads "$THREADS" | tee -a "$results" >&2
    echo "round $round/$ROUNDS: kNN" >&2
    target/release/examples/knn_speed "$work/knn" | tee -a "$results" >&2
    "$venv/bin/python" bench/speed/knn_numpy.py "$work/knn" | tee -a "$results" >&2
done
echo "uptime after: $(uptime)" >&2
python3 bench/speed/tasks_table.py < "$results"
