#!/usr/bin/env bash
# Packs the CUDA build (scripts/cuda-build.sh) for the GPU machine: the pretext binary, the
# plugins, libcudart from the CUDA wheels, and run.sh, which finds NVIDIA's cu13 libraries
# in the Python environment there; plus the GPU check (scripts/gpu-check.sh, its helper
# scripts/gpu_check.py, and the PyTorch baseline bench/speed/torch_tasks.py with the
# torch_step.py it imports). xz-compressed, because everything that travels to the GPU
# machine must fit in 64 MiB. See docs/gpu.md.
#
# Usage: scripts/gpu-bundle.sh [OUT.tar.xz]      (default dist/pretext-gpu.tar.xz)
# On the GPU machine: tar -xJf pretext-gpu.tar.xz && pretext-gpu/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist/pretext-gpu.tar.xz}
release=target/cuda/release
cudalib=.cuda/prefix/nvidia/cu13/lib
[ -x "$release/pretext" ] || { echo "error: $release/pretext is missing; run scripts/cuda-build.sh first" >&2; exit 1; }
# A bundle of an old build wastes the scarce GPU time on code that is no longer there.
stale=$(find core app plugins -name '*.rs' -newer "$release/pretext" -print -quit)
[ -z "$stale" ] || echo "warning: $stale is newer than $release/pretext; rerun scripts/cuda-build.sh" >&2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/pretext-gpu
mkdir -p "$stage/lib" "$(dirname "$out")"
cp "$release/pretext" "$release"/libpretext_*.so "$stage/"
# The GPU machine's venv may lack the CUDA runtime; the wheels' copy matches the build.
cp -L "$cudalib"/libcudart.so.13 "$stage/lib/"
cat > "$stage/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs the bundled pretext with NVIDIA's cu13 libraries from this machine's Python packages
# (PYTHON picks the interpreter; default python3) and the bundled CUDA runtime.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
libs=$("${PYTHON:-python3}" - <<'PY'
import glob, os, site
bases = site.getsitepackages() + [site.getusersitepackages()]
print(":".join(sorted({d for b in bases for d in glob.glob(os.path.join(b, "nvidia", "*", "lib"))})))
PY
)
export LD_LIBRARY_PATH="$here/lib${libs:+:$libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$here/pretext" "$@"
RUN
chmod +x "$stage/run.sh"
mkdir -p "$stage/bench"
cp scripts/gpu-check.sh scripts/gpu_check.py "$stage/"
cp bench/speed/torch_tasks.py bench/speed/torch_step.py "$stage/bench/"
tar -C "$work" -cJf "$out" pretext-gpu
size=$(stat -c %s "$out")
echo "wrote $out ($(( size / 1024 / 1024 )) MiB)"
[ "$size" -lt $(( 64 * 1024 * 1024 )) ] || { echo "error: the bundle exceeds 64 MiB" >&2; exit 1; }
