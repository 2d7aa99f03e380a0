#!/usr/bin/env bash
# Mutation-test only the core lines a change touches: `cargo mutants --in-diff` over
# karlton-core, within a time budget. The CI hook for docs/mutation.md.
#
#   scripts/mutants-diff.sh            # diff of HEAD against its merge base with origin/main (or main)
#   scripts/mutants-diff.sh BASE       # ... against BASE (a branch, tag or commit)
#
# Environment: MUTANTS_BUDGET_S (default 600: the whole run, baseline included),
# MUTANTS_TARGET_DIR (default ~/.cache/karlton-mutants-target: never the checkout's own target
# dir, which a mutant build would leave stale), MUTANTS_OUT (default target/mutants-diff).
#
# Exit: 0 every mutant in the diff caught (or no core change); 2 a mutant survived; 3 a mutant
# timed out; 4 the unmutated tree failed its tests; 124 over the budget (the run is cut: shard
# it with `cargo mutants --shard k/n --in-diff …`, or raise MUTANTS_BUDGET_S).
set -euo pipefail
cd "$(dirname "$0")/.."

base="${1:-}"
if [ -z "$base" ]; then
  for b in origin/main main; do
    if git rev-parse -q --verify "$b^{commit}" >/dev/null; then base="$b"; break; fi
  done
fi
[ -n "$base" ] || { echo "mutants-diff: no base (give one: scripts/mutants-diff.sh BASE)" >&2; exit 1; }
command -v cargo-mutants >/dev/null || {
  echo "mutants-diff: cargo-mutants is not installed (cargo install cargo-mutants --locked)" >&2
  exit 1
}

diff="$(mktemp)"
trap 'rm -f "$diff"' EXIT
# Three dots: what HEAD changed since it left `base`, not what `base` did meanwhile.
git diff "$base"...HEAD -- core/src >"$diff"
if [ ! -s "$diff" ]; then
  echo "mutants-diff: no change under core/src since $base: nothing to mutate"
  exit 0
fi

export CARGO_TARGET_DIR="${MUTANTS_TARGET_DIR:-$HOME/.cache/karlton-mutants-target}"
budget="${MUTANTS_BUDGET_S:-600}"
n="$(cargo mutants -p karlton-core --in-diff "$diff" --list | wc -l)"
echo "mutants-diff: $n mutants in core lines changed since $base (budget ${budget}s)"
[ "$n" -gt 0 ] || exit 0

# .cargo/mutants.toml names the tests (core's lib, vectors, tests/mutants) and the timeouts.
out="${MUTANTS_OUT:-target/mutants-diff}"
mkdir -p "$out"  # (cargo-mutants makes only the last level; a clone has no target/ when
                 # CARGO_TARGET_DIR points elsewhere)
rc=0
timeout --signal=INT --kill-after=30 "$budget" \
  cargo mutants -p karlton-core --in-diff "$diff" --timeout 60 --colors never \
  -o "$out" || rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 130 ]; then
  echo "mutants-diff: over the ${budget}s budget with $n mutants (see $out/mutants.out)" >&2
  exit 124
fi
exit "$rc"
