#!/usr/bin/env bash
# Install what the tests need and a fresh machine lacks: the wasm target, redis-server.
# Idempotent: does nothing for what is already there. (Python and Node set-up live in
# scripts/test-python.sh and scripts/test-node.sh next to the tests that need them.)
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "==> rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# redis-cli (package redis-tools, a dependency of redis-server) starts the test clusters.
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "==> apt-get install redis-server redis-tools"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server redis-tools >/dev/null
  # The package starts a system service on 6379; the tests start their own servers.
  as_root service redis-server stop >/dev/null 2>&1 || true
fi
redis-server --version
