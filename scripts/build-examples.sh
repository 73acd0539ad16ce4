#!/usr/bin/env bash
# Builds the example contracts that need a compiler: examples/contracts/counter.c -> counter.wasm with
# Debian's clang and lld (apt-get install -y clang lld). Usage: scripts/build-examples.sh [OUT_DIR]
# (default: $CARGO_TARGET_DIR/contract-examples, or target/contract-examples). Prints the wasm's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-${CARGO_TARGET_DIR:-$root/target}/contract-examples}"
clang_bin="${CLANG:-$(command -v clang || true)}"
if [ -z "$clang_bin" ]; then
  echo "build-examples: clang is not installed (apt-get install -y clang lld)" >&2
  exit 1
fi
if ! command -v wasm-ld >/dev/null && ! ls /usr/bin/wasm-ld* /usr/lib/llvm-*/bin/wasm-ld >/dev/null 2>&1; then
  echo "build-examples: lld (wasm-ld) is not installed (apt-get install -y lld)" >&2
  exit 1
fi
mkdir -p "$out"
"$clang_bin" --target=wasm32 -O2 -nostdlib -ffreestanding -Wall -Werror \
  -Wl,--no-entry -Wl,--allow-undefined -Wl,--strip-all \
  -o "$out/counter.wasm" "$root/examples/contracts/counter.c"
echo "$out/counter.wasm"
