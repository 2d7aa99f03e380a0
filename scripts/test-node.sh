#!/usr/bin/env bash
# The Node package: install its dev dependencies against the committed lockfile, build the
# native addon (release), run its node:test suite (memory store, a redis-server the tests start
# on a free port, the shared conformance vectors), then the example service's test.
# Exits non-zero on any failure. Starts nothing that outlives it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

command -v node >/dev/null || { echo "node is required (>= 18)" >&2; exit 1; }
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { echo "redis-server and redis-cli are required (scripts/setup.sh installs them)" >&2; exit 1; }

cd bindings/node
echo "==> npm install (bindings/node, committed package-lock.json)"
# `npm ci` refuses this lockfile (optional platform packages of a @napi-rs/cli dependency that
# the registry does not serve); `npm install` honours the lockfile and works.
npm install --no-save --no-audit --no-fund --loglevel=error
echo "==> npm run build"
npm run build
status=0
echo "==> npm test"
npm test || status=1
echo "==> examples/node"
cd ../../examples/node
npm install --no-save --no-audit --no-fund --loglevel=error
npm test || status=1
exit $status
