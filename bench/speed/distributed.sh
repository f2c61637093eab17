#!/usr/bin/env bash
# Issue 15's speed check on one machine: 1 rank × THREADS threads against THREADS ranks × 1
# thread (`mpirun`), end to end on Fashion-MNIST (ConvNet w=16, global batch 256), per task.
# For each it prints the training images/s of the second of two epochs, the share of the
# step's wall time spent inside collectives (rank 0's `comm_share`: gradient, statistics and
# metric all-reduces, the wait for the slower rank included), and the bytes rank 0 passed
# to all-reduces per step against 4 bytes per trained parameter.
# Timing only: nothing here is a test. Needs a build with `--features mpi` and Open MPI.
#
#   bench/speed/distributed.sh                       # TASKS="simclr rotation", about 2 minutes
#   TASKS=byol LIMIT=5120 bench/speed/distributed.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

THREADS=${THREADS:-2}
LIMIT=${LIMIT:-2560}
BATCH=${BATCH:-256}
TASKS=${TASKS:-"simclr rotation"}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

cargo build --release --workspace --features mpi
pretext=target/release/pretext
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "machine: $(getconf _NPROCESSORS_ONLN) cores, $(lscpu | sed -n 's/^Model name: *//p'); uptime before: $(uptime)" >&2

common=(--data fashion-mnist --backbone convnet --batch-size "$BATCH" --limit "$LIMIT" --epochs 2 --seed 0)
for task in $TASKS; do
    settings=()
    [ -e "bench/speed/$task.toml" ] && settings=(--config "bench/speed/$task.toml")
    echo "$task: 1 rank x $THREADS threads" >&2
    RAYON_NUM_THREADS=$THREADS CANDLE_NUM_THREADS=$THREADS \
        "$pretext" train --task "$task" "${common[@]}" "${settings[@]}" --workers "$THREADS" --out "$work/$task-1" >/dev/null
    echo "$task: $THREADS ranks x 1 thread" >&2
    mpirun -q -np "$THREADS" --bind-to core -x RAYON_NUM_THREADS=1 -x CANDLE_NUM_THREADS=1 \
        "$pretext" train --task "$task" "${common[@]}" "${settings[@]}" --workers 1 --out "$work/$task-$THREADS" >/dev/null
done

python3 - "$work" "$THREADS" $TASKS <<'PY'
import json, struct, sys
work, ranks, tasks = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def last_epoch(run):
    rows = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
    return [r for r in rows if r.get("epoch_end")][-1]

def trained_floats(run):
    # Trained parameters: the student's tensors, without batch norm's running statistics.
    path = f"{run}/checkpoints/epoch-0002.safetensors"
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    total = 0
    for name, t in header.items():
        if name.startswith(("backbone.", "head.")) and not name.endswith(("running_mean", "running_var")):
            count = 1
            for d in t["shape"]:
                count *= d
            total += count
    return total

print("| task | setup | images/s | speed-up | comm share | all-reduced per step | 4 B × parameters |")
print("|---|---|---|---|---|---|---|")
for task in tasks:
    one, many = last_epoch(f"{work}/{task}-1"), last_epoch(f"{work}/{task}-{ranks}")
    params = trained_floats(f"{work}/{task}-1")
    print(f"| {task} | 1 rank × {ranks} threads | {one['images_per_sec']:.0f} | 1.00× | – | – | {4 * params / 1e6:.2f} MB |")
    print(f"| {task} | {ranks} ranks × 1 thread | {many['images_per_sec']:.0f} | {many['images_per_sec'] / one['images_per_sec']:.2f}× "
          f"| {100 * many['comm_share']:.1f}% | {many['reduced_bytes_per_step'] / 1e6:.2f} MB | {4 * params / 1e6:.2f} MB |")
PY
