#!/usr/bin/env python3
"""The cross-runtime differential fuzz test (see README.md).

    .venv/bin/python tests/differential/run.py                     # the CI budget: seed 1, 50000 cases
    .venv/bin/python tests/differential/run.py --seed 7 --count 500000   # long mode

Generates cases from the seed, answers them through Python (in-process), Node, WASM in Node
(the JS loader), Rust and WASM in wasmtime (subprocesses: cases JSONL on stdin, answers JSONL
on stdout), compares case by case, and on a difference not listed in known.txt prints the seed
and the smallest differing input with every runtime's answer. Exit status 1 on a difference.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import gen  # noqa: E402

RUNNERS = ["python", "node", "wasm-js", "rust", "wasmtime"]
JS_RUNNERS = {"node", "wasm-js"}


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def build() -> None:
    for pkg, ex in (("karlton-core", "diff_runner"), ("karlton-wasm-host", "diff_runner_wasm")):
        subprocess.run(["cargo", "build", "--release", "--quiet", "-p", pkg, "--example", ex], cwd=ROOT, check=True)


def commands(wasm: Path) -> dict[str, list[str]]:
    node = os.environ.get("NODE", "node")
    ex = target_dir() / "release" / "examples"
    return {
        "node": [node, str(HERE / "runner.mjs")],
        "wasm-js": [node, str(HERE / "runner_wasm.mjs"), str(wasm)],
        "rust": [str(ex / "diff_runner")],
        "wasmtime": [str(ex / "diff_runner_wasm")],
    }


# -- normalizing errors -------------------------------------------------------------------------

ALIASES = {"n": "max_len", "on": "hash_tag", "tag": "tags", "segment": "segments", "ns": "namespace"}
ENTRY_KINDS = [
    (r"entry too short", "too_short"), (r"bad magic", "bad_magic"),
    (r"unsupported entry format", "unsupported_format"), (r"unknown flag bits", "unknown_flags"),
    (r"entry truncated in (\w+)", "truncated"), (r"invalid varint in (\w+)", "invalid_varint"),
    (r"tag is not valid UTF-8", "invalid_utf8"), (r"trailing bytes after entry", "trailing_bytes"),
    (r"(\w+) too large: ", "too_large"), (r"inconsistent entry", "inconsistent"),
]


def norm_field(f: str | None) -> str | None:
    if f is None:
        return None
    f = f.removeprefix("policy.").removeprefix("options.")
    # a member path (`params[1].a`, `segments[0]`) names its argument
    m = re.match(r"[A-Za-z_]+", f)
    f = m.group(0) if m else f
    f = re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), f)
    f = f.removesuffix("_ms")
    return ALIASES.get(f, f)


KEY_ERROR_KINDS = {"empty_namespace": "namespace", "namespace_too_long": "namespace", "params": "params",
                   "invalid_json": "params", "max_len_too_small": "max_len"}


def error_field(kind: str, a: dict, runner: str = "") -> str | None:
    """The argument/field an error names (normalized), or None when it names none."""
    msg = a.get("msg", "")
    if kind == "params_hash":
        return "params"  # its one argument
    if runner.startswith("wasm") and kind not in ("entry", "describe") and a.get("code"):
        # the module's structured errors: `detail.field` (policy), the detail kind (key),
        # the member a `bad_request` names; `json` (unparsable request text) names none
        code = a["code"]
        if code == "key":
            return KEY_ERROR_KINDS.get(a.get("kind"))
        if code == "bad_request":
            m = re.search(r"`(\w+)`", msg)
            return norm_field(m.group(1)) if m else None
        if code == "policy":
            return norm_field(a.get("err"))
        return None
    if kind in ("entry", "describe"):
        for pat, name in ENTRY_KINDS:
            m = re.search(pat, msg)
            if m:
                return f"{name}:{m.group(1)}" if m.groups() else name
        # not a decode error: an argument refused (`now_ms`, the policy's `stale_if_error`)
    if a.get("err"):
        return norm_field(a["err"])
    if "invalid JSON" in msg:
        # the core's JSON errors name the field: unknown or duplicate, or the member whose value
        # is refused (`field`: ...); other backticked words there are values (`-1`, `1.5`)
        m = re.search(r"(?:unknown|duplicate) field `(\w+)`|invalid JSON: `(\w+)`: ", msg)
        return norm_field(m.group(1) or m.group(2)) if m else None
    m = (re.search(r"(?:Key|Policy)\(\): `?(\w+)", msg) or re.search(r"`([^`]+)`", msg)
         or re.search(r"unexpected keyword argument '(\w+)'", msg)
         or re.match(r"\w+Error: (?!karlton)([A-Za-z_]\w*(?:[.\[].*?)?)(?::| is | must )", msg, re.S))
    return norm_field(m.group(1)) if m else None


# -- known differences (known.txt names which of these are tolerated, each with its reason) -----


KNOWN_MATCHERS: dict = {}


def known(f):
    """Registers a matcher for known.txt: `f(case, answers)` returns the runtimes whose answers
    the known difference explains (from the input alone), or None."""
    KNOWN_MATCHERS[f.__name__.replace("_", "-")] = f
    return f


# (no known differences: known.txt is empty. A matcher for a new one goes here, with its line.)


def tolerated_by(c: dict, answers: dict, names) -> str | None:
    """The known.txt entries that explain this difference ("a+b"), or None."""
    explained: set = set()
    used = []
    for n in names:
        e = KNOWN_MATCHERS[n](c, answers)
        if e:
            explained |= e
            used.append(n)
    if not used:
        return None
    rest = {r: a for r, a in answers.items() if r not in explained}
    if len(rest) < len(answers) and (len(rest) == 0 or agree(c["kind"], rest)):
        return "+".join(used)
    return None


# -- comparison ---------------------------------------------------------------------------------


def outcome(kind: str, a: dict, runner: str) -> tuple:
    if "ok" in a:
        return ("ok", json.dumps(a["ok"], sort_keys=True))
    return ("err", error_field(kind, a, runner))


STRICT_FIELDS = True  # an error naming no argument differs from one naming one (--loose-fields: not)


def agree(kind: str, answers: dict) -> bool:
    outs = [outcome(kind, a, r) for r, a in answers.items()]
    if all(o[0] == "ok" for o in outs):
        first = json.loads(outs[0][1])
        return all(json.loads(o[1]) == first for o in outs[1:])
    if all(o[0] == "err" for o in outs):
        fields = {o[1] for o in outs if STRICT_FIELDS or o[1] is not None}
        return len(fields) <= 1
    return False


def readable(c: dict) -> str:
    """The case with its values decoded (Python reprs), for a report."""
    from runner_py import val

    out = {}
    for k, v in c.items():
        if k in ("ns", "params", "version", "max_len"):
            out[k] = val(v)
        elif k in ("segs", "tags"):
            out[k] = [val(x) for x in v]
        elif k == "spec":
            out[k] = [(f, val(x)) for f, x in v]
        else:
            out[k] = v
    return repr(out)


def load_known(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, reason = line.partition(" ")
        if name not in KNOWN_MATCHERS:
            raise SystemExit(f"known.txt: no matcher named {name!r} in run.py")
        out[name] = reason.strip()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=50000)
    ap.add_argument("--runners", default=",".join(RUNNERS), help="comma-separated subset of " + ",".join(RUNNERS))
    ap.add_argument("--no-build", action="store_true", help="do not (re)build the Rust runners with cargo")
    ap.add_argument("--serial", action="store_true", help="run the runners one after another (clean timings)")
    ap.add_argument("--wasm", default=str(ROOT / "wasm" / "dist" / "karlton.wasm"))
    ap.add_argument("--no-known", action="store_true", help="tolerate nothing: report every difference")
    ap.add_argument("--strict-fields", action="store_true",
                    help="an error that names no argument differs from one that does (the default)")
    ap.add_argument("--loose-fields", action="store_true",
                    help="an error that names no argument agrees with any error")
    ap.add_argument("--show", type=int, default=3, help="differing cases to print per class")
    ap.add_argument("--show-unnamed", action="store_true", help="print one refusal per kind that names no argument")
    args = ap.parse_args()
    runners = args.runners.split(",")
    global STRICT_FIELDS
    STRICT_FIELDS = not args.loose_fields
    t0 = time.monotonic()
    if not args.no_build and ({"rust", "wasmtime"} & set(runners)):
        build()
    cases = gen.generate(args.seed, args.count)
    t_gen = time.monotonic() - t0
    tmp = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False)
    with tmp:
        for c in cases:
            tmp.write(json.dumps(c, separators=(",", ":")) + "\n")
    results: dict[str, dict[int, dict]] = {}
    times: dict[str, float] = {}
    errors: list[str] = []
    cmds = commands(Path(args.wasm))

    def sub(name: str) -> None:
        s = time.monotonic()
        with open(tmp.name, "rb") as stdin:
            p = subprocess.run(cmds[name], stdin=stdin, capture_output=True, cwd=ROOT)
        times[name] = time.monotonic() - s
        if p.returncode != 0:
            errors.append(f"{name} exited {p.returncode}: {p.stderr.decode(errors='replace')[-2000:]}")
            return
        # split on "\n" only: answers may hold U+2028 and other characters splitlines() splits on
        results[name] = {a["id"]: a for a in map(json.loads, filter(None, p.stdout.decode().split("\n")))}

    def py() -> None:
        import runner_py

        s = time.monotonic()
        results["python"] = {c["id"]: runner_py.answer(c) for c in cases}
        times["python"] = time.monotonic() - s

    threads = [threading.Thread(target=sub, args=(n,)) for n in runners if n != "python"]
    for t in threads:
        t.start()
        if args.serial:
            t.join()
    if "python" in runners:
        py()
    for t in threads:
        t.join()
    os.unlink(tmp.name)
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    for name in runners:
        if len(results.get(name, {})) != len(cases):
            print(f"{name} answered {len(results.get(name, {}))} of {len(cases)} cases", file=sys.stderr)
            return 1

    known_list = {} if args.no_known else load_known(HERE / "known.txt")
    tolerated: dict[str, int] = {}
    diffs: list[tuple[dict, dict]] = []
    kinds: dict[str, int] = {}
    both: dict[str, dict[str, int]] = {k: {} for k in {c["kind"] for c in cases}}
    js_excluded = 0
    # refusals every runtime agrees on, none naming an argument (text that is not JSON, say)
    unnamed: dict[str, int] = {}
    unnamed_example: dict[str, tuple] = {}
    for c in cases:
        kinds[c["kind"]] = kinds.get(c["kind"], 0) + 1
        ans = {r: results[r][c["id"]] for r in runners}
        if gen.js_unrepresentable(c) and len(set(ans) - JS_RUNNERS) > 0:
            # JavaScript cannot express this input (README.md, "Inputs JavaScript cannot
            # express"): its runners answered another one, so they are not compared here
            js_excluded += 1
            ans = {r: a for r, a in ans.items() if r not in JS_RUNNERS}
        if agree(c["kind"], ans):
            first = next(iter(ans.items()))
            k = "ok" if "ok" in first[1] else "err"
            both[c["kind"]][k] = both[c["kind"]].get(k, 0) + 1
            if k == "err" and outcome(c["kind"], first[1], first[0])[1] is None:
                unnamed[c["kind"]] = unnamed.get(c["kind"], 0) + 1
                unnamed_example.setdefault(c["kind"], (c, ans))
            continue
        hit = tolerated_by(c, ans, known_list)
        if hit:
            for n in hit.split("+"):
                tolerated[n] = tolerated.get(n, 0) + 1
        else:
            diffs.append((c, ans))
    total = time.monotonic() - t0
    print(f"differential: seed {args.seed}, {len(cases)} cases ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}), "
          f"runners {', '.join(runners)}")
    print("  wall time per runner: " + ", ".join(f"{n} {times[n]:.2f}s" for n in runners)
          + f"; generate {t_gen:.2f}s; total {total:.2f}s" + (" (serial)" if args.serial else " (runners in parallel)"))
    print("  agreed: " + ", ".join(f"{k} {v.get('ok', 0)} ok / {v.get('err', 0)} refused" for k, v in sorted(both.items())))
    if unnamed:
        print("  refused naming no argument, in every runtime alike: " + ", ".join(f"{k} {v}" for k, v in sorted(unnamed.items())))
        if args.show_unnamed:
            for k, (c, ans) in sorted(unnamed_example.items()):
                print(f"     {k}: {json.dumps(c, separators=(',', ':'))[:300]}")
                for r, a in ans.items():
                    print(f"       {r:9} {json.dumps(a.get('msg'), ensure_ascii=False)[:200]}")
    if js_excluded:
        print(f"  not compared in {', '.join(sorted(JS_RUNNERS & set(runners)))}: {js_excluded} cases with an integral float "
              "where an integer is taken (JavaScript cannot tell 1.0 from 1)")
    for n, k in sorted(tolerated.items()):
        print(f"  tolerated (known.txt) {n}: {k} cases")
    if tolerated:
        print(f"  ({sum(1 for _ in tolerated)} known.txt entries used; a case two entries explain together counts for both)")
    if not diffs:
        print(f"  0 differences beyond known.txt")
        return 0
    # group by which runtimes disagree and how, then show the smallest of each group
    groups: dict[str, list] = {}
    for c, ans in diffs:
        sig = c["kind"] + " " + json.dumps({r: "ok" if "ok" in a else outcome(c["kind"], a, r) for r, a in ans.items()}, sort_keys=True)
        groups.setdefault(sig, []).append((c, ans))
    print(f"  {len(diffs)} DIFFERENCES in {len(groups)} classes (seed {args.seed}); the smallest input of each:")
    for sig, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        items.sort(key=lambda ca: len(json.dumps(ca[0])))
        print(f"\n  -- {len(items)} cases: {sig}")
        for c, ans in items[: args.show]:
            print(f"     input: {json.dumps(c, separators=(',', ':'))}")
            print(f"     as Python: {readable(c)}")
            for r, a in ans.items():
                shown = {"ok": a["ok"]} if "ok" in a else {"err": error_field(c["kind"], a, r), "msg": a.get("msg")}
                print(f"       {r:9} {json.dumps(shown, ensure_ascii=False)[:400]}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
