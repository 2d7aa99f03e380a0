#!/usr/bin/env python3
"""Summarize cargo-mutants runs as the per-file table in docs/mutation.md.

  scripts/mutants-summary.py OUT_DIR/mutants.out/outcomes.json [more outcomes.json ...]

Later files win for a mutant seen twice (a re-run after tests were added), so pass the full run
first and the re-runs of its survivors after it. Prints the table, the totals and the survivors.
"""
import collections
import json
import sys

KIND = {"CaughtMutant": "caught", "MissedMutant": "missed", "Timeout": "timeout",
        "Unviable": "unviable"}

outcome = {}
for path in sys.argv[1:]:
    for o in json.load(open(path))["outcomes"]:
        m = o["scenario"].get("Mutant") if isinstance(o["scenario"], dict) else None
        if m:
            outcome[m["name"]] = (m["file"], KIND.get(o["summary"], o["summary"]))

per = collections.defaultdict(collections.Counter)
for name, (f, k) in outcome.items():
    per[f][k] += 1
print("| file | mutants | caught | missed | timeout | unviable | killed % of viable |")
print("|---|---:|---:|---:|---:|---:|---:|")
tot = collections.Counter()
for f in sorted(per):
    c = per[f]
    tot += c
    viable = c["caught"] + c["missed"] + c["timeout"]
    pct = 100 * (c["caught"] + c["timeout"]) / viable if viable else 100
    print(f"| `{f}` | {sum(c.values())} | {c['caught']} | {c['missed']} | {c['timeout']} | {c['unviable']} | {pct:.1f} |")
viable = tot["caught"] + tot["missed"] + tot["timeout"]
pct = 100 * (tot["caught"] + tot["timeout"]) / viable if viable else 100
print(f"| **total** | {sum(tot.values())} | {tot['caught']} | {tot['missed']} | {tot['timeout']} | {tot['unviable']} | **{pct:.1f}** |")
print()
for name, (f, k) in sorted(outcome.items()):
    if k == "missed":
        print(f"MISSED {name}")
