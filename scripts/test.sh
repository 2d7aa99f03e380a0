#!/usr/bin/env bash
# Build everything and run every test: Rust (core, cache, Redis against real servers),
# WASM (wasmtime host + Node loader), Python, Node, then the cross-runtime differential fuzz test
# (which uses what the wasm, python and node parts built). Fails if any test fails.
#
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh rust       # one part: rust | wasm | python | node | diff
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(rust wasm python node diff)

scripts/setup.sh

for part in "${parts[@]}"; do
  echo
  echo "==================== $part ===================="
  case "$part" in
    rust)
      # default-members: core, cache, redis, demo (not the wasmtime host or the bindings).
      cargo test --locked
      # Boundary values again with release arithmetic (overflow wraps there instead of panicking,
      # so an unchecked one shows up as a wrong answer).
      cargo test --locked --release -p karlton-core --test boundaries
      # The simulator's CI seed set (>= 1,000,000 simulated calls) needs an optimized build.
      cargo run --locked --release -q -p karlton-sim -- --ci
      ;;
    wasm)   scripts/test-wasm.sh ;;
    python) scripts/test-python.sh ;;
    node)   scripts/test-node.sh ;;
    diff)   scripts/test-diff.sh ;;
    *) echo "unknown part: $part (rust | wasm | python | node | diff)" >&2; exit 2 ;;
  esac
done
echo
echo "all tests passed: ${parts[*]}"
