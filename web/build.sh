#!/usr/bin/env bash
# Builds the browser viewer into web/dist (or $1): the app's UI for wasm32 with cargo, bound
# with the wasm-bindgen CLI at the exact version Cargo.lock pins (the two must match), plus
# index.html. `pretext serve` finds web/dist by itself.
#
# Needs: rustup target add wasm32-unknown-unknown
#        cargo install wasm-bindgen-cli --version <the version in Cargo.lock>
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/web/dist}"
cd "$root"

want=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "web/build.sh: wasm-bindgen $want is needed (found: ${have:-none});" \
       "run: cargo install wasm-bindgen-cli --version $want" >&2
  exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
  echo "web/build.sh: the wasm32 target is missing; run: rustup target add wasm32-unknown-unknown" >&2
  exit 1
fi

# simd128: without it gemm (through candle) leaves out its SIMD kernels. The `web` profile
# (Cargo.toml) trades a little speed for a much quicker build.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+simd128" \
  cargo build --profile web -p pretext-web --target wasm32-unknown-unknown

mkdir -p "$out"
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
wasm-bindgen --target web --no-typescript --out-dir "$tmp" \
  "target/wasm32-unknown-unknown/web/viewer.wasm"
cp web/index.html "$tmp/"
# Replace the files one by one with renames, so a server reading the folder never sees half a file.
for f in "$tmp"/*; do mv -f "$f" "$out/"; done
echo "built the viewer into $out ($(du -sh "$out/viewer_bg.wasm" | cut -f1) of wasm)"
