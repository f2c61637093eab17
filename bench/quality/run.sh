#!/usr/bin/env bash
# Learning-quality benchmark on Fashion-MNIST (Debian's dataset-fashion-mnist).
#
# Trains each pretext task with the same backbone and budget, then measures kNN (k=200,
# T=0.1, train split as the bank) and a linear probe on the test split, next to three
# baselines: raw pixels, the randomly initialised backbone, and the same backbone trained
# supervised for the same number of epochs. Prints a Markdown table (also written to
# bench/quality/results.md). Finished runs are reused, so an interrupted benchmark resumes.
#
# Usage: bench/quality/run.sh            (EPOCHS, BATCH, WIDTH, OUT, TASKS override the budget;
#        EPOCHS_<TASK> and WIDTH_<TASK>, e.g. EPOCHS_SIMCLR, give one task its own epochs or
#        backbone width, and SUPERVISED_EPOCHS the supervised baseline's; a task's settings
#        come from bench/quality/<task>.toml when that file exists)
#
# The random-init baseline is measured at every width a task uses, and each task's margin
# is taken against the random init of its own width.
#
# Then the ViT rows (VIT_TASKS, default "mae dino"; empty skips them): ViT-Tiny with 4 px
# patches, trained on the first VIT_LIMIT training images for VIT_EPOCHS (VIT_LIMIT_<TASK>,
# VIT_EPOCHS_<TASK> and VIT_BATCH_<TASK> per task), because a ViT step costs a CPU many
# ConvNet steps. They
# are scored with the first VIT_BANK training images as the kNN bank, the probe's and the
# fine-tuning's training set (VIT_FINETUNE_EPOCHS epochs), beside raw pixels and the
# random-init ViT under the same protocol; the random init fine-tuned is the supervised ViT.
set -euo pipefail
cd "$(dirname "$0")/../.."

EPOCHS=${EPOCHS:-10}
BATCH=${BATCH:-256}
WIDTH=${WIDTH:-16}
OUT=${OUT:-bench/quality/runs}
TASKS=${TASKS:-simclr rotation jigsaw byol barlow vicreg dino}
SUPERVISED_EPOCHS=${SUPERVISED_EPOCHS:-$EPOCHS}

[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || [ -n "${PRETEXT_DATA:-}" ] || {
  echo "Fashion-MNIST is missing: apt-get install dataset-fashion-mnist" >&2; exit 1; }
cargo build --release --workspace --quiet
P=target/release/pretext
mkdir -p "$OUT"

# Trains TASK into RUN with the given flags (and bench/quality/TASK.toml when it exists),
# unless RUN has completed already.
train_once() {
  local task=$1 run=$2
  shift 2
  local settings=()
  [ -e "bench/quality/$task.toml" ] && settings=(--config "bench/quality/$task.toml")
  if ! grep -q '"status": "completed"' "$run/run.json" 2>/dev/null; then
    rm -rf "$run"
    echo "== training $task: $* ${settings[*]}"
    $P train --task "$task" "$@" "${settings[@]}" --out "$run"
  fi
}

common=(--data fashion-mnist --backbone convnet --batch-size "$BATCH" --knn-every 1)
for task in $TASKS; do
  upper=$(echo "$task" | tr '[:lower:]' '[:upper:]')
  epochs_var="EPOCHS_$upper" width_var="WIDTH_$upper"
  epochs=${!epochs_var:-$EPOCHS} width=${!width_var:-$WIDTH}
  train_once "$task" "$OUT/$task" --epochs "$epochs" --width "$width" "${common[@]}"
  for protocol in knn linear; do
    [ -s "$OUT/$task.$protocol.json" ] || $P eval $protocol --run "$OUT/$task" --json > "$OUT/$task.$protocol.json"
    # The random init of this width, from the first run of that width (the seeded backbone
    # does not depend on the task).
    [ -s "$OUT/random-w$width.$protocol.json" ] || $P eval $protocol --run "$OUT/$task" --random-init --json > "$OUT/random-w$width.$protocol.json"
  done
done

first=$(set -- $TASKS; echo "$1")
for protocol in knn linear; do
  [ -s "$OUT/pixels.$protocol.json" ] || $P eval $protocol --pixels --data fashion-mnist --json > "$OUT/pixels.$protocol.json"
done
[ -s "$OUT/supervised.json" ] || { /usr/bin/time -f '%e' -o "$OUT/supervised.time" \
  $P eval finetune --run "$OUT/$first" --random-init --epochs "$SUPERVISED_EPOCHS" --batch-size "$BATCH" --json > "$OUT/supervised.json"; }

VIT_TASKS=${VIT_TASKS-mae dino}
VIT_LIMIT=${VIT_LIMIT:-20000}
VIT_EPOCHS=${VIT_EPOCHS:-2}
VIT_BANK=${VIT_BANK:-10000}
VIT_FINETUNE_EPOCHS=${VIT_FINETUNE_EPOCHS:-1}
vit=(--data fashion-mnist --backbone vit-tiny --patch-size 4)
for task in $VIT_TASKS; do
  upper=$(echo "$task" | tr '[:lower:]' '[:upper:]')
  epochs_var="VIT_EPOCHS_$upper" limit_var="VIT_LIMIT_$upper" batch_var="VIT_BATCH_$upper"
  epochs=${!epochs_var:-$VIT_EPOCHS} limit=${!limit_var:-$VIT_LIMIT} batch=${!batch_var:-$BATCH}
  run="$OUT/$task-vit"
  train_once "$task" "$run" --epochs "$epochs" --limit "$limit" --batch-size "$batch" "${vit[@]}"
  for protocol in knn linear finetune; do
    extra=(--limit "$VIT_BANK" --json)
    [ $protocol = finetune ] && extra+=(--epochs "$VIT_FINETUNE_EPOCHS" --batch-size "$BATCH")
    [ -s "$run.$protocol.json" ] || $P eval $protocol --run "$run" "${extra[@]}" > "$run.$protocol.json"
    [ -s "$OUT/random-vit.$protocol.json" ] || $P eval $protocol --run "$run" --random-init "${extra[@]}" > "$OUT/random-vit.$protocol.json"
  done
done
if [ -n "$VIT_TASKS" ]; then
  for protocol in knn linear; do
    [ -s "$OUT/pixels-$VIT_BANK.$protocol.json" ] || $P eval $protocol --pixels --data fashion-mnist --limit "$VIT_BANK" --json > "$OUT/pixels-$VIT_BANK.$protocol.json"
  done
fi

budget="ConvNet, batch $BATCH, AdamW (1e-3 unless the task or bench/quality/<task>.toml sets its own rate: SimCLR, VICReg and DINO 2e-3), warmup + cosine; width and epochs per row"
SUPERVISED_EPOCHS=$SUPERVISED_EPOCHS VIT_TASKS=$VIT_TASKS VIT_BANK=$VIT_BANK VIT_FINETUNE_EPOCHS=$VIT_FINETUNE_EPOCHS \
  python3 bench/quality/table.py "$OUT" "$TASKS" "$budget" | tee bench/quality/results.md
