#!/usr/bin/env bash
# The cross-runtime differential fuzz test (tests/differential/README.md): seeded random inputs
# through Python, Node, WASM in Node (the JS loader), Rust and WASM in wasmtime, compared case by
# case. Needs what the python, node and wasm parts of scripts/test.sh build (the karlton package
# in .venv, the Node addon, wasm/dist/karlton.wasm); builds its two Rust runners (release).
#
#   ./scripts/test-diff.sh                          # the CI budget: seed 1, 50000 cases, 0 differences,
#                                                   # every error naming the same argument (strict fields)
#   ./scripts/test-diff.sh --seed 7 --count 500000  # long mode (any run.py arguments)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
missing=()
[ -x .venv/bin/python ] && (cd / && "$OLDPWD/.venv/bin/python" -c "import karlton") 2>/dev/null || missing+=("the karlton package in .venv (./scripts/test.sh python)")
ls bindings/node/karlton.*.node >/dev/null 2>&1 || missing+=("the Node addon (./scripts/test.sh node)")
[ -f wasm/dist/karlton.wasm ] || missing+=("wasm/dist/karlton.wasm (./scripts/test.sh wasm)")
if [ ${#missing[@]} -gt 0 ]; then
  printf 'differential test: missing %s\n' "${missing[@]}" >&2
  exit 1
fi
exec .venv/bin/python tests/differential/run.py "$@"
