#!/usr/bin/env python3
"""Mutation testing of core's Redis Lua scripts (core/src/redis/*.lua).

For every `if`/`elseif` guard it makes one mutant per operand of each `and`/`or` chain with that
operand dropped, one per operand negated, and one with the whole guard negated; for every `<`,
`<=`, `>`, `>=` on a code line it makes the swap (`<` <-> `<=`, `>` <-> `>=`). Each mutant is
written into a *copy* of the tree (never into the checkout), the Redis tests that run the scripts
against a real redis-server are run there, and the original file is put back from a backup copy
(checked by SHA-256) before the next mutant. A mutant is killed when the tests fail.

  scripts/mutate-lua.py --list                 # print the mutants, run nothing
  scripts/mutate-lua.py                        # run them all (about a minute each)
  scripts/mutate-lua.py --only fill.lua,read.lua --kinds drop,swap --json out.json

The tree copy lives in $KARLTON_LUA_MUT_DIR (default ~/.cache/karlton-lua-mut/tree) with its own
target dir next to it, so the checkout and its target dir are never touched.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = "core/src/redis"
# The tests that load the scripts from core and run them on a real redis-server; the Cluster
# differential is left out by default (it starts three servers and adds nothing per script).
DEFAULT_TESTS = [
    ["--test", "conformance", "--", "--skip", "memory_and_redis_cluster_agree"],
    ["--test", "faults"],
    ["--test", "counter_ttl"],
]


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------- parsing a guard

def scan(s):
    """Yield (index, char, depth, in_string) for each char of a Lua expression."""
    depth, quote = 0, None
    for i, c in enumerate(s):
        if quote:
            yield i, c, depth, True
            if c == quote and s[i - 1] != "\\":
                quote = None
            continue
        if c in "'\"":
            quote = c
            yield i, c, depth, True
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        yield i, c, depth, False


def split_top(expr, word):
    """Split `expr` on ` word ` at parenthesis depth 0 (outside strings)."""
    parts, start, pat = [], 0, f" {word} "
    for i, c, depth, in_str in scan(expr):
        if not in_str and depth == 0 and c == " " and expr.startswith(pat, i) and i >= start:
            parts.append(expr[start:i])
            start = i + len(pat)
    parts.append(expr[start:])
    return [p.strip() for p in parts]


def find_then(rest):
    """Index of the ` then` that ends the guard in `rest` (text after `if `)."""
    for i, c, depth, in_str in scan(rest):
        if not in_str and depth == 0 and rest.startswith(" then", i):
            after = rest[i + 5:i + 6]
            if after in ("", " ", "\n"):
                return i
    return None


def operand_mutants(expr):
    """(description, new expression) for each operand of `expr` dropped or negated, recursively."""
    out = []
    for word in ("or", "and"):
        parts = split_top(expr, word)
        if len(parts) > 1:
            for i, p in enumerate(parts):
                rest = parts[:i] + parts[i + 1:]
                out.append((f"drop `{p}`", f" {word} ".join(rest)))
                for d, sub in operand_mutants(p):
                    out.append((d, f" {word} ".join(parts[:i] + [sub] + parts[i + 1:])))
            return out
    if expr.startswith("(") and expr.endswith(")"):
        inner = expr[1:-1]
        return [(d, f"({sub})") for d, sub in operand_mutants(inner)]
    neg = expr[4:] if expr.startswith("not ") else f"not ({expr})"
    out.append((f"negate `{expr}`", neg))
    return out


CMP = re.compile(r"<=|>=|<|>")
SWAP = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}


def code_part(line):
    """The line without a trailing `--` comment (outside strings)."""
    for i, c, _, in_str in scan(line):
        if not in_str and line.startswith("--", i):
            return line[:i]
    return line


def mutants_of(path):
    """Every mutant of one Lua file: dicts with file, line (1-based), what, new_line."""
    rel = os.path.relpath(path, ROOT)
    lines = open(path).read().split("\n")
    out = []
    for n, line in enumerate(lines, 1):
        code = code_part(line)
        if not code.strip():
            continue
        m = re.search(r"\b(elseif|if) ", code)
        if m:
            start = m.end()
            t = find_then(code[start:])
            if t is not None:
                cond = code[start:start + t].strip()
                head, tail = line[:start], line[start + t:]
                seen = set()
                ops = operand_mutants(cond)
                # The whole guard negated, when it is a chain (a single operand's negation is
                # the same mutant).
                cands = [(f"negate guard `{cond}`", f"not ({cond})")] if len(ops) > 1 else []
                for what, new in cands + ops:
                    if new in seen or new == cond or not new.strip():
                        continue
                    seen.add(new)
                    kind = "drop" if what.startswith("drop") else "negate"
                    out.append(dict(file=rel, line=n, kind=kind, what=what, new_line=head + new + tail))
        # Comparison swaps anywhere on the code line (outside strings; `~=`/`==` untouched).
        strs = {i for i, _, _, s in scan(code) if s}
        for cm in CMP.finditer(code):
            if cm.start() in strs:
                continue
            op = cm.group()
            if op in ("<", ">") and code[cm.end():cm.end() + 1] == "=":
                continue
            new = line[:cm.start()] + SWAP[op] + line[cm.end():]
            out.append(dict(file=rel, line=n, kind="swap", what=f"`{op}` -> `{SWAP[op]}`", new_line=new))
    return out


# ---------------------------------------------------------------- running

def copy_tree(dst):
    """Copy the checkout's files (tracked and untracked, not ignored) to `dst`."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    if os.path.exists(dst):
        shutil.rmtree(dst)
    for f in filter(None, files):
        src = os.path.join(ROOT, f)
        if not os.path.isfile(src):
            continue
        os.makedirs(os.path.dirname(os.path.join(dst, f)), exist_ok=True)
        shutil.copy2(src, os.path.join(dst, f))
    # copy2 keeps the checkout's mtimes, which can be older than the last build in the target
    # dir, and that build may have been of a mutant (restored with a new mtime after its run):
    # cargo would then call the scripts fresh and test the mutant as the baseline. Newer mtimes
    # for the scripts make every run rebuild what includes them.
    for f in os.listdir(os.path.join(dst, LUA)):
        os.utime(os.path.join(dst, LUA, f))


def run_tests(tree, env, tests, timeout):
    """0 = tests passed, 1 = failed, 2 = timed out, 3 = did not build."""
    build = subprocess.run(["cargo", "test", "-p", "karlton-redis", "--no-run", "--tests"],
                           cwd=tree, env=env, capture_output=True)
    if build.returncode != 0:
        return 3, build.stderr.decode()[-2000:]
    for args in tests:
        try:
            r = subprocess.run(["cargo", "test", "-p", "karlton-redis"] + args, cwd=tree, env=env,
                               capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return 2, f"timeout in {args}"
        if r.returncode != 0:
            text = (r.stdout + r.stderr).decode()
            fails = [l for l in text.split("\n") if "panicked" in l or l.startswith("test ") and "FAILED" in l]
            return 1, "\n".join(fails[:6]) or text[-1500:]
    return 0, ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="print the mutants and exit")
    ap.add_argument("--only", help="comma-separated Lua file names (default: all)")
    ap.add_argument("--match", help="run only mutants whose `file:line what` contains this")
    ap.add_argument("--kinds", default="drop,swap,negate",
                    help="mutant kinds to make: drop (an operand), swap (a comparison), negate")
    ap.add_argument("--json", help="write the outcomes here")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per test command")
    ap.add_argument("--with-cluster", action="store_true", help="also run the Cluster differential")
    a = ap.parse_args()

    names = sorted(f for f in os.listdir(os.path.join(ROOT, LUA)) if f.endswith(".lua"))
    if a.only:
        want = set(a.only.split(","))
        names = [n for n in names if n in want]
    muts = [m for n in names for m in mutants_of(os.path.join(ROOT, LUA, n))]
    kinds = set(a.kinds.split(","))
    muts = [m for m in muts if m["kind"] in kinds]
    if a.match:
        muts = [m for m in muts if a.match in f"{m['file']}:{m['line']} {m['what']}"]
    if a.list:
        for m in muts:
            print(f"{m['file']}:{m['line']}: {m['what']}\n    {m['new_line'].strip()}")
        print(f"{len(muts)} mutants")
        return 0

    base = os.environ.get("KARLTON_LUA_MUT_DIR", os.path.expanduser("~/.cache/karlton-lua-mut"))
    tree, backup = os.path.join(base, "tree"), os.path.join(base, "backup")
    copy_tree(tree)
    os.makedirs(backup, exist_ok=True)
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(base, "target"), CARGO_TERM_COLOR="never")
    tests = [list(t) for t in DEFAULT_TESTS]
    if a.with_cluster:
        tests[0] = ["--test", "conformance"]

    state = {"path": None}

    def restore():
        p = state["path"]
        if p:
            # copyfile (not copy2): a new mtime, so cargo rebuilds what the mutant built.
            shutil.copyfile(os.path.join(backup, os.path.basename(p)), p)
            state["path"] = None

    def on_signal(signum, _frame):
        restore()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t0 = time.time()
    code, why = run_tests(tree, env, tests, a.timeout)
    print(f"baseline: {'ok' if code == 0 else 'FAILED'} in {time.time() - t0:.0f}s", flush=True)
    if code != 0:
        print(why)
        return 1
    results = []
    try:
        for i, m in enumerate(muts, 1):
            path = os.path.join(tree, m["file"])
            original = sha(path)
            shutil.copyfile(path, os.path.join(backup, os.path.basename(path)))
            lines = open(path).read().split("\n")
            lines[m["line"] - 1] = m["new_line"]
            state["path"] = path
            with open(path, "w") as f:
                f.write("\n".join(lines))
            t = time.time()
            try:
                code, why = run_tests(tree, env, tests, a.timeout)
            finally:
                restore()
                assert sha(path) == original, f"{path} not restored"
            outcome = {0: "SURVIVED", 1: "killed", 2: "timeout", 3: "unviable"}[code]
            m = dict(m, outcome=outcome, seconds=round(time.time() - t), why=why.strip()[:600])
            results.append(m)
            print(f"[{i}/{len(muts)}] {outcome:8} {m['file']}:{m['line']}: {m['what']} ({m['seconds']}s)",
                  flush=True)
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(results, f, indent=1)
    finally:
        restore()
    killed = sum(r["outcome"] in ("killed", "timeout") for r in results)
    viable = sum(r["outcome"] != "unviable" for r in results)
    print(f"{killed}/{viable} viable Lua mutants killed")
    for r in results:
        if r["outcome"] == "SURVIVED":
            print(f"  survived: {r['file']}:{r['line']}: {r['what']}: {r['new_line'].strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
