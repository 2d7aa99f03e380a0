#!/usr/bin/env bash
# Build the Python package into .venv and run its tests (pytest + mypy.stubtest).
#
#   ./scripts/test-python.sh            # build (maturin develop --release) and test
#   ./scripts/test-python.sh -k redis   # extra arguments go to pytest
#
# Creates .venv at the repo root if missing and installs what the tests need from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
VPY="$PWD/.venv/bin/python"
need=()
for mod in maturin pytest redis mypy; do
  # Checked from / : the repo root has a redis/ folder (the Rust crate) that would shadow redis-py.
  (cd / && "$VPY" -c "import $mod") 2>/dev/null || need+=("$mod")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "==> pip install ${need[*]}"
  "$VPY" -m pip install -q --disable-pip-version-check "${need[@]}"
fi

echo "==> maturin develop --release (bindings/python)"
(cd bindings/python && VIRTUAL_ENV="$PWD/../../.venv" "$VPY" -m maturin develop --release -q --features vectors)

echo "==> mypy.stubtest karlton"
(cd /tmp && "$VPY" -m mypy.stubtest karlton --allowlist "$OLDPWD/bindings/python/stubtest-allowlist.txt")

echo "==> pytest"
"$VPY" -m pytest -q bindings/python/tests examples/python "$@"
