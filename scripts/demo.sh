#!/bin/sh
# Run the karlton demo: the same workload through naive cache-aside and through karlton, side by side.
# Needs only a Rust toolchain (dependencies come from crates.io). Takes ~15 s after the build.
set -eu
cd "$(dirname "$0")/.."
exec cargo run --release --quiet -p karlton-demo -- "$@"
