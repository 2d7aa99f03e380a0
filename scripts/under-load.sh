#!/usr/bin/env bash
# Run a command several times in a row while busy processes keep every core loaded: the check
# that the suite does not depend on a quiet machine (issue 12: no timing-fragile assertions).
#
#   ./scripts/under-load.sh                      # ./scripts/test.sh, 3 runs, one busy process per core
#   RUNS=3 BUSY=2 ./scripts/under-load.sh ./scripts/test.sh python node
#
# Exits non-zero as soon as one run fails; prints each run's wall time and the load average.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-3}"
busy="${BUSY:-$(nproc)}"
[ $# -gt 0 ] || set -- ./scripts/test.sh

pids=()
stop() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq "$busy"); do
  # A pure CPU spinner (no IO, no memory): what a noisy neighbour on a shared machine does.
  sh -c 'while :; do :; done' &
  pids+=($!)
done

for i in $(seq "$runs"); do
  start=$(date +%s)
  echo "==> under-load run $i/$runs ($busy busy processes): $*"
  if ! "$@" > "/tmp/karlton-under-load-$i.log" 2>&1; then
    echo "run $i FAILED after $(( $(date +%s) - start )) s (log: /tmp/karlton-under-load-$i.log)" >&2
    tail -40 "/tmp/karlton-under-load-$i.log" >&2
    exit 1
  fi
  echo "run $i passed in $(( $(date +%s) - start )) s; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
done
echo "all $runs runs passed under load"
