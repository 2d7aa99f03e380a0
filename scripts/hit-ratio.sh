#!/usr/bin/env bash
# Hit-ratio benchmark: karlton's memory store (W-TinyLFU) vs moka vs plain LRU, one run.
#   ./scripts/hit-ratio.sh [--requests N | --quick] [--capacities 1000,10000] [--trace NAME] [--no-synced]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -q -p karlton-hit-ratio -- "$@"
