#!/usr/bin/env bash
# Issue 12's data benchmark, in one run (timing only: nothing here is a test).
#
# 1. A folder of COUNT generated JPEGs of 200–800 px in class folders: Pretext's first pass
#    (read headers, decode, resize to 64×64, write the pixel cache) and epochs read from the
#    cache, beside torchvision's ImageFolder + DataLoader (Resize(64) + CenterCrop(64) +
#    ToTensor) with the same number of workers; also how long reopening the cached folder
#    takes (the second run's start).
# 2. `pretext train` on SMALL small JPEGs (48–128 px) at --image-size 64, and on a tenth of
#    them (--limit): peak anonymous memory (RssAnon) while the cache is built and for
#    TRAIN_SECONDS of training, next to the size of that dataset decoded. The training step
#    (rotation, ConvNet width 8, batch 64) is the same in both runs, so what differs is what
#    the dataset's size costs.
#
#   bench/data/run.sh                        # COUNT=20000 SMALL=200000 WORKERS=2
#   COUNT=2000 SMALL=20000 bench/data/run.sh # a quick look
set -euo pipefail
cd "$(dirname "$0")/../.."

COUNT=${COUNT:-20000}
SMALL=${SMALL:-200000}
WORKERS=${WORKERS:-2}
EPOCHS=${EPOCHS:-3}
TORCH_EPOCHS=${TORCH_EPOCHS:-1}
TRAIN_SECONDS=${TRAIN_SECONDS:-60}
WORK=${WORK:-bench/data/work}
SIZE=64

venv=bench/.venv
if ! "$venv/bin/python" -c "import torch, torchvision, PIL, numpy" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet torch torchvision pillow numpy
fi
py="$venv/bin/python"

photos="$WORK/photos-$COUNT"
small="$WORK/small-$SMALL"
mkdir -p "$WORK"
echo "generating $COUNT photos of 200-800 px in $photos" >&2
"$py" bench/data/make_photos.py "$photos" "$COUNT" 200 800
echo "generating $SMALL small photos of 48-128 px in $small" >&2
"$py" bench/data/make_photos.py "$small" "$SMALL" 48 128

cargo build --release --workspace
cargo build --release -p pretext-core --example data_speed
export PRETEXT_CACHE="$WORK/cache"
rm -rf "$PRETEXT_CACHE"
results="$WORK/results.jsonl"
: > "$results"
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

export RAYON_NUM_THREADS=$WORKERS
echo "pretext: first pass and $EPOCHS cached epochs" >&2
target/release/examples/data_speed "$photos" $SIZE "$WORKERS" "$EPOCHS" | tee -a "$results" >&2
echo "pretext: reopening the cached folder" >&2
target/release/examples/data_speed "$photos" $SIZE "$WORKERS" 0 | sed 's/"impl": "pretext"/"impl": "pretext-reopen"/' | tee -a "$results" >&2
echo "torchvision: $TORCH_EPOCHS epochs" >&2
"$py" bench/data/torch_loader.py "$photos" $SIZE "$WORKERS" "$TORCH_EPOCHS" 256 | tee -a "$results" >&2

for n in $(( SMALL / 10 )) "$SMALL"; do
    echo "memory: pretext train on $n images of $small" >&2
    out="$WORK/mem-run-$n"
    rm -rf "$out"
    "$py" bench/data/rss.py "$TRAIN_SECONDS" -- target/release/pretext train --task rotation --data "$small" \
        --limit "$n" --image-size $SIZE --width 8 --batch-size 64 --epochs 1 --workers "$WORKERS" --out "$out" \
        | sed "s/^{/{\"impl\": \"memory\", \"images\": $n, \"decoded_mib\": $(( n * SIZE * SIZE * 3 / 1048576 )), /" \
        | tee -a "$results" >&2
done
"$py" bench/data/table.py "$results"
