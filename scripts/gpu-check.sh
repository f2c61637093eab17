#!/usr/bin/env bash
# The one GPU check of Pretext's CUDA build (issue 6), meant to run ONCE on the GPU machine
# from inside the unpacked bundle of scripts/gpu-bundle.sh, in about 7 minutes at most:
#
#  (a) `pretext plugins`: all eight plugins load and were built with CUDA;
#  (b) for every task (PARITY_TASKS): the same seed, data and batches on `--device cuda`
#      and `--device cpu`, and the training loss of each of the first steps compared;
#  (c) SimCLR with the CIFAR ResNet-18 (full width) at 32x32, batch 512: images/s and the
#      GPU memory peak (nvidia-smi sampled in the background);
#  (d) the seed article's SimCLR in PyTorch (bench/speed/torch_tasks.py, corrected as
#      DESIGN.md asks) at the same model, batch, image size and loader workers, on the same
#      card: images/s, torch.cuda.max_memory_allocated and the same nvidia-smi peak;
#  (e) a Markdown table with the ratio, the date, the card and the driver: written to
#      gpu-check.md and printed.
#
# Each step runs under a time limit and its failure is recorded, not fatal: the rest still
# runs and the table says what failed. The exit status is 1 if any step or check failed.
#
# Outputs go to $OUT when it is set (the GPU machine brings back what is there: at most 8
# files, so only these 4), else to ./gpu-check-out:
#   gpu-check.md          the table (e)
#   gpu-check.log         everything printed
#   gpu-check.jsonl       one JSON record per measurement and per step
#   gpu-check-losses.tsv  (b)'s per-step losses on both devices
# Run directories and checkpoints go to a temporary folder that is removed at the end
# (GPU_CHECK_KEEP=1 keeps it and prints where).
#
# Usage:
#   pretext-gpu/gpu-check.sh                 # on the GPU machine, in the unpacked bundle
#   scripts/gpu-check.sh --dry-run-cpu       # anywhere: the same logic on the CPU, tiny sizes
#   GPU_CHECK_DEVICE=cpu scripts/gpu-check.sh   # the same as --dry-run-cpu
#
# The dry run substitutes the CPU for CUDA: the "device" side of (b) runs on the CPU with
# PRETEXT_CONV=stock, i.e. candle's own convolution and batch norm, the code path that CUDA
# takes, against Pretext's CPU kernels on the reference side; so (b) still compares two
# different implementations of the same step. Sizes shrink to what 2 cores do in well under a
# minute, and the plugins' CUDA flag is shown but not required. It proves the script, the
# parsing and the table, not the GPU.
#
# Settings (environment; defaults for the GPU run, then the dry run):
#   PARITY_BACKBONE resnet18|convnet   PARITY_BATCH 32|8   PARITY_STEPS 5|3
#   TOL_FIRST 1e-3   TOL_LATER 1e-2    (relative loss difference, see below)
#   SPEED_BACKBONE resnet18|convnet    SPEED_BATCH 512|32  SPEED_STEPS 20|3 (steps per epoch)
#   WORKERS  loader threads (Pretext) and DataLoader processes (PyTorch): cores - 2, at most 14
#   PARITY_TASKS    the tasks (b) compares (default: the seven that train the ConvNet; mae needs a ViT)
#   GPU_CHECK_BUDGET_S 420  the time all steps together may take
#   PRETEXT  the pretext command (default: the bundle's run.sh, else target/release/pretext)
#   PYTHON   the Python with torch (default python3; bench/.venv/bin/python in a checkout)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dry=0
for arg in "$@"; do
    case $arg in
        --dry-run-cpu) dry=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done
[ "${GPU_CHECK_DEVICE:-cuda}" = cpu ] && dry=1

# The bundle has run.sh, gpu_check.py and bench/ beside this script; a checkout has them in
# their usual places. Either way nothing depends on the current directory but the output.
if [ -x "$here/run.sh" ]; then
    pretext_default=("$here/run.sh")
    helper=$here/gpu_check.py
    torch_tasks=$here/bench/torch_tasks.py
    python_default=python3
else
    repo=$(cd "$here/.." && pwd)
    pretext_default=("$repo/target/release/pretext")
    helper=$repo/scripts/gpu_check.py
    torch_tasks=$repo/bench/speed/torch_tasks.py
    python_default=python3
    [ -x "$repo/bench/.venv/bin/python" ] && python_default=$repo/bench/.venv/bin/python
fi
if [ -n "${PRETEXT:-}" ]; then pretext=("$PRETEXT"); else pretext=("${pretext_default[@]}"); fi
python=${PYTHON:-$python_default}
# run.sh asks PYTHON for the interpreter whose NVIDIA libraries it puts on the path. No
# .pyc files: the bundle's folder and a checkout stay as they were.
export PYTHON=$python PYTHONDONTWRITEBYTECODE=1

if [ "$dry" = 1 ]; then
    dev=cpu
    # candle's stock kernels stand in for the CUDA code path (see the header).
    dev_env=(PRETEXT_CONV=stock)
    dev_label="cpu (PRETEXT_CONV=stock)"
    mode="dry run on the CPU"
    PARITY_BACKBONE=${PARITY_BACKBONE:-convnet} PARITY_BATCH=${PARITY_BATCH:-8} PARITY_STEPS=${PARITY_STEPS:-3}
    SPEED_BACKBONE=${SPEED_BACKBONE:-convnet} SPEED_BATCH=${SPEED_BATCH:-32} SPEED_STEPS=${SPEED_STEPS:-3}
    step_only=2
    require_cuda=()
else
    dev=cuda
    dev_env=()
    dev_label=cuda
    mode="GPU"
    PARITY_BACKBONE=${PARITY_BACKBONE:-resnet18} PARITY_BATCH=${PARITY_BATCH:-32} PARITY_STEPS=${PARITY_STEPS:-5}
    SPEED_BACKBONE=${SPEED_BACKBONE:-resnet18} SPEED_BATCH=${SPEED_BATCH:-512} SPEED_STEPS=${SPEED_STEPS:-20}
    step_only=10
    require_cuda=(--require-cuda)
fi
# Tolerances of (b), relative to the loss. Step 1's loss is a forward pass of identical
# weights on identical inputs, so the devices differ only in float32 summation order (cuBLAS
# and candle's CUDA kernels against Pretext's CPU GEMM and fused batch norm): about 1e-6 is
# expected, 1e-3 is generous and still catches a wrong kernel. Later steps follow AdamW
# updates computed from slightly different gradients; Adam divides each gradient by its own
# scale, so the tiny differences of near-zero gradients become whole-size steps in some
# weights, and the losses drift apart a little more each step: 1e-2 for steps 2 onwards.
TOL_FIRST=${TOL_FIRST:-1e-3}
TOL_LATER=${TOL_LATER:-1e-2}
cores=$(getconf _NPROCESSORS_ONLN)
if [ "$dry" = 1 ]; then workers_default=1; else workers_default=$(( cores > 16 ? 14 : (cores > 3 ? cores - 2 : 1) )); fi
WORKERS=${WORKERS:-$workers_default}
budget=${GPU_CHECK_BUDGET_S:-420}
PARITY_TASKS=${PARITY_TASKS:-simclr jigsaw rotation byol dino barlow vicreg}

out=${OUT:-gpu-check-out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
records=$out/gpu-check.jsonl
losses=$out/gpu-check-losses.tsv
report=$out/gpu-check.md
rm -f "$records" "$losses" "$report"
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
sampler=
cleanup() {
    if [ "${GPU_CHECK_KEEP:-0}" = 1 ]; then echo "kept the run directories in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

have_smi=0
command -v nvidia-smi > /dev/null && have_smi=1

# Samples the GPU's used memory every 100 ms into $1 until stop_memory. nvidia-smi counts
# what the process holds from the driver (its context and its allocator's pools included),
# the one measure that means the same for candle and PyTorch.
start_memory() {
    : > "$1"
    [ "$have_smi" = 1 ] || return 0
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$1" 2>/dev/null &
    sampler=$!
}
stop_memory() {
    [ -n "$sampler" ] || return 0
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    sampler=
}

deadline=$(( SECONDS + budget ))
failures=0
last_timed_out=0
# step NAME CAP OUTPUT CMD...: runs CMD under a time limit of CAP seconds, or what is left of
# the budget if less, so that one hung step cannot eat the others' time. OUTPUT "-" lets its
# stdout through; a file keeps it there (and prints it after). A failure is counted and
# recorded, never fatal.
step() {
    local name=$1 cap=$2 output=$3
    shift 3
    local left=$(( deadline - SECONDS ))
    local limit=$(( cap < left ? cap : left ))
    last_timed_out=0
    if [ "$limit" -lt 5 ]; then
        echo "== $name: SKIPPED, the time budget (${budget}s) is spent"
        failures=$(( failures + 1 ))
        "$python" "$helper" step "$name" skipped 0 --records "$records" || true
        return 0
    fi
    echo "== $name (limit ${limit}s)"
    local start=$SECONDS rc=0
    if [ "$output" = - ]; then
        timeout -k 10 "$limit" "$@" || rc=$?
    else
        timeout -k 10 "$limit" "$@" > "$output" || rc=$?
        cat "$output"
    fi
    local took=$(( SECONDS - start )) status=ok
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        status="timed out"
        last_timed_out=1
    elif [ "$rc" != 0 ]; then
        status="failed (exit $rc)"
    fi
    [ "$status" = ok ] || failures=$(( failures + 1 ))
    echo "== $name: $status after ${took}s"
    "$python" "$helper" step "$name" "$status" "$took" --records "$records" || true
}

main() {
    # main runs in its own subshell (piped into tee): stop the memory sampler it may have
    # started, by its id, however it ends.
    trap stop_memory EXIT
    echo "Pretext GPU check, $mode, $(date -u +%Y-%m-%dT%H:%M:%SZ); output in $out"
    echo "pretext: ${pretext[*]}; python: $python; $cores cores, $WORKERS loader workers"
    local card=none driver=none
    if [ "$have_smi" = 1 ]; then
        nvidia-smi || true
        card=$(nvidia-smi -L 2>/dev/null | head -n 1 | sed 's/ (UUID:.*)//') || card=unknown
        driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1) || driver=unknown
    fi
    local torch_version
    torch_version=$("$python" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null) \
        || torch_version="not importable with $python"
    local pretext_version
    pretext_version=$("${pretext[@]}" --version 2>&1 | head -n 1) || pretext_version="does not start"
    echo "card: $card; driver: $driver; torch: $torch_version; $pretext_version"

    # A TOML config carries what has no flag: a metrics line after every step (the losses
    # that (b) compares, the per-step speed of (c)) and no checkpoint before the last.
    printf 'log_every = 1\ncheckpoint_every = 1000\n' > "$work/config.toml"

    # (a)
    step "(a) pretext plugins" 30 - "${pretext[@]}" plugins
    step "(a) plugins built with CUDA" 30 "$work/plugins.json" "${pretext[@]}" plugins --json
    "$python" "$helper" plugins "$work/plugins.json" --records "$records" "${require_cuda[@]}" \
        || { echo "(a) FAIL"; failures=$(( failures + 1 )); }

    # (b) Same seed (data order, augmentation and initial weights all come from it on the
    # host), one epoch of PARITY_STEPS + 1 batches: the last step of an epoch is logged only
    # in the epoch's mean, so the first PARITY_STEPS steps are compared one by one.
    local task
    for task in $PARITY_TASKS; do
        local args=(train --task "$task" --data shapes --backbone "$PARITY_BACKBONE" --batch-size "$PARITY_BATCH"
            --limit $(( PARITY_BATCH * (PARITY_STEPS + 1) )) --epochs 1 --seed 7 --workers 2 --knn-every 0
            --config "$work/config.toml")
        step "(b) $task on cpu" 60 - "${pretext[@]}" "${args[@]}" --device cpu --out "$work/parity-$task-cpu"
        step "(b) $task on $dev_label" 60 - env "${dev_env[@]}" "${pretext[@]}" "${args[@]}" --device "$dev" \
            --out "$work/parity-$task-dev"
        "$python" "$helper" parity --task "$task" --steps "$PARITY_STEPS" --first-rel "$TOL_FIRST" \
            --later-rel "$TOL_LATER" --ref-label cpu --dev-label "$dev_label" \
            "$work/parity-$task-cpu/metrics.jsonl" "$work/parity-$task-dev/metrics.jsonl" \
            --records "$records" --losses "$losses" || failures=$(( failures + 1 ))
    done

    # (c) gets the longest limit: candle's CUDA convolution backward is the least known
    # cost here. If it runs out, the steps it logged still give a per-step rate.
    # Two epochs of SPEED_STEPS batches of the built-in shapes (3x32x32, like CIFAR-10);
    # the first is the warm-up (PTX loading, cuBLAS handles, the allocator), the second is
    # timed from its first prefetch to its last step, as bench/speed/tasks.sh does on the CPU.
    local timed=()
    start_memory "$work/mem-pretext.txt"
    step "(c) Pretext SimCLR $SPEED_BACKBONE batch $SPEED_BATCH on $dev" 180 - "${pretext[@]}" train --task simclr \
        --data shapes --backbone "$SPEED_BACKBONE" --batch-size "$SPEED_BATCH" \
        --limit $(( SPEED_BATCH * SPEED_STEPS )) --epochs 2 --seed 0 --workers "$WORKERS" --knn-every 0 \
        --config "$work/config.toml" --device "$dev" --out "$work/speed-pretext"
    timed=()
    [ "$last_timed_out" = 1 ] && timed=(--timed-out)
    stop_memory
    "$python" "$helper" pretext-speed "$work/speed-pretext/metrics.jsonl" --batch "$SPEED_BATCH" \
        --mem "$work/mem-pretext.txt" --records "$records" "${timed[@]}" || failures=$(( failures + 1 ))

    # (d) The same model, batch and image size in PyTorch, with as many DataLoader worker
    # processes as Pretext had loader threads; a few warm-up steps, one timed epoch of the
    # same number of images, then the model step alone on one batch already on the GPU.
    start_memory "$work/mem-torch.txt"
    step "(d) PyTorch SimCLR $SPEED_BACKBONE batch $SPEED_BATCH on $dev" 120 "$work/torch.jsonl" \
        "$python" "$torch_tasks" train simclr --device "$dev" --backbone "$SPEED_BACKBONE" --data random \
        --batch "$SPEED_BATCH" --limit $(( SPEED_BATCH * SPEED_STEPS )) --workers "$WORKERS" --warmup 3 \
        --step-only "$step_only"
    timed=()
    [ "$last_timed_out" = 1 ] && timed=(--timed-out)
    stop_memory
    "$python" "$helper" torch-speed "$work/torch.jsonl" --mem "$work/mem-torch.txt" --records "$records" \
        "${timed[@]}" || failures=$(( failures + 1 ))

    # (e)
    local speed_model=$SPEED_BACKBONE
    [ "$SPEED_BACKBONE" = resnet18 ] && speed_model="ResNet-18 (CIFAR stem, full width)"
    local note="the real check"
    [ "$dry" = 1 ] && note="no GPU: cuda replaced by cpu with candle's stock kernels, tiny sizes; numbers mean nothing"
    "$python" "$helper" table --records "$records" --out "$report" \
        --info "mode=$mode" --info "mode_note=$note" --info "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        --info "card=$card" --info "driver=$driver" --info "pretext=$pretext_version" \
        --info "torch=$torch_version" --info "host=$cores cores" --info "workers=$WORKERS" \
        --info "speed_config=$speed_model, 3x32x32, batch $SPEED_BATCH, $SPEED_STEPS steps per epoch, on $dev" \
        || failures=$(( failures + 1 ))
    echo
    echo "wrote $report, $records, $losses and $out/gpu-check.log"
    if [ "$failures" -gt 0 ]; then
        echo "gpu-check: $failures step(s) or check(s) failed"
        return 1
    fi
    echo "gpu-check: all steps and checks passed"
}

main 2>&1 | tee "$out/gpu-check.log"
