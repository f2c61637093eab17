#!/usr/bin/env bash
# Builds Pretext with CUDA on a machine that has neither a GPU nor a system CUDA toolkit.
#
# It fetches NVIDIA's CUDA 13.0 toolchain as PyPI wheels into .cuda/ (ignored by git),
# makes a link root with a stub libcuda.so (the real one comes with the GPU driver), and
# builds the workspace with CUDA into target/cuda/release, leaving the CPU build alone.
# 13.0 is pinned because the GPU machines run driver 580 (CUDA 13.0), which cannot load the
# PTX that nvcc 13.1+ emits. Takes about 20 minutes on 2 cores the first time.
#
# Usage: scripts/cuda-build.sh [COMPUTE_CAP]   (default 90: H100/H200)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cap=${1:-90}
root=$repo/.cuda
wheels=$root/wheels
prefix=$root/prefix
link=$root/link
cu=$prefix/nvidia/cu13

packages=(
  nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88
  nvidia-curand==10.4.0.35 nvidia-cublas==13.0.2.14
)

if [ ! -x "$cu/bin/nvcc" ]; then
  echo "fetching the CUDA 13.0 toolchain wheels into $wheels"
  mkdir -p "$wheels" "$prefix"
  python3 -m pip download --quiet --no-deps -d "$wheels" "${packages[@]}"
  for w in "$wheels"/*.whl; do
    python3 -m zipfile -e "$w" "$prefix"
  done
  # Wheels are zip files, which do not keep exec bits.
  chmod +x "$cu"/bin/* "$cu"/nvvm/bin/*
fi

# The link root: lib/ with unversioned names and a stub libcuda, include/ and bin/ from the wheels.
mkdir -p "$link/lib"
ln -sfn "$cu/include" "$link/include"
ln -sfn "$cu/bin" "$link/bin"
ln -sfn "$cu/nvvm" "$link/nvvm"
for name in cublas cublasLt curand nvrtc cudart; do
  versioned=$(ls "$cu"/lib/lib$name.so.* 2>/dev/null | sort | head -n 1)
  [ -n "$versioned" ] || { echo "error: lib$name.so.* is missing from the wheels in $cu/lib" >&2; exit 1; }
  ln -sfn "$versioned" "$link/lib/lib$name.so"
done

if [ ! -e "$link/lib/libcuda.so" ]; then
  # cudarc links the driver API directly; a library of empty functions with the driver's
  # soname satisfies the linker, and the GPU machine's real libcuda.so.1 replaces it at run time.
  cargo fetch --quiet
  cudarc=$(cargo metadata --format-version 1 --features pretext-core/cuda | python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="cudarc").rsplit("/",1)[0])')
  grep -ohE '^\s+fn (cu[A-Za-z0-9_]+)\(' "$cudarc"/src/driver/sys/*.rs | sed -E 's/^\s+fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u \
    | awk '{ print "int " $1 "(void) { return 999; }" }' > "$root/cuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$link/lib/libcuda.so" "$root/cuda_stub.c"
  ln -sfn libcuda.so "$link/lib/libcuda.so.1"
fi

echo "building with CUDA (compute capability $cap) into target/cuda"
PATH="$cu/bin:$PATH" CUDA_COMPUTE_CAP="$cap" CUDA_ROOT="$link" CUDA_PATH="$link" \
  CARGO_TARGET_DIR="$repo/target/cuda" \
  cargo build --release --workspace --features pretext-core/cuda
echo "built: target/cuda/release/pretext and target/cuda/release/libpretext_*.so"
echo "to run it here on the CPU: LD_LIBRARY_PATH=$link/lib:$cu/lib target/cuda/release/pretext plugins"
