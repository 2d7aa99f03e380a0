"""The shared conformance vectors (tests/vectors/*.json), run from pytest.

Two ways, both through the installed native module:
- every case of every file through ``_karlton.vector_eval`` (the core's own evaluator compiled
  into the test build of the module): the binary Python ships agrees with the corpus;
- ``keys``, ``policy`` and ``entry`` cases also through the *Python API* (``Key``,
  ``params_hash``, ``Policy``'s core, ``decode_entry``), which is what Python users call.

A case with ``pending`` is an expected failure (and must fail), as the README says.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from karlton import _karlton

VECTORS = Path(__file__).resolve().parents[3] / "tests" / "vectors"
STRICT = os.environ.get("KARLTON_VECTORS_STRICT") == "1"


def _floors() -> tuple[dict[str, int], int]:
    """``floors.txt``: every vector file with its case floor, and the total floor (the manifest
    every runtime's runner reads). A missing manifest or directory raises: collection fails."""
    files: dict[str, int] = {}
    total = None
    for raw in (VECTORS / "floors.txt").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, n = line.split()
        if name == "total":
            total = int(n)
        else:
            files[name] = int(n)
    assert total is not None, "floors.txt: no `total` line"
    return files, total


FLOORS, TOTAL_FLOOR = _floors()


def _cases() -> list[Any]:
    out = []
    # The listed files, so a missing one raises here (the whole module then errors, not skips).
    for name in FLOORS:
        f = VECTORS / name
        doc = json.loads(f.read_text())
        for c in doc["cases"]:
            out.append(pytest.param(doc["kind"], c, id=f"{f.stem}:{c['name']}"))
    return out


CASES = _cases()


def _check(case: dict[str, Any], got: Any) -> None:
    ok = _same(got, case["expect"])
    if "pending" in case and not STRICT:
        assert not ok, f"pending case now passes (drop `pending`): {case['pending']}"
        pytest.xfail(case["pending"])
    assert ok, f"expected {case['expect']!r}, got {got!r}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def test_vector_files_and_floors() -> None:
    """What the parametrized tests below run, checked against the files: every ``*.json`` here is
    listed in floors.txt, every file holds at least its floor, and the cases collected are exactly
    the cases the files hold. Also: the module must carry ``vector_eval`` (scripts/test-python.sh
    builds it with ``--features vectors``); without it this fails instead of skipping 600 cases."""
    on_disk = sorted(p.name for p in VECTORS.glob("*.json"))
    assert [n for n in on_disk if n not in FLOORS] == [], "vector files not listed in floors.txt"
    per_file: dict[str, int] = {}
    for p in CASES:
        stem = p.id.split(":", 1)[0]
        per_file[stem + ".json"] = per_file.get(stem + ".json", 0) + 1
    for name, floor in FLOORS.items():
        held = len(json.loads((VECTORS / name).read_text())["cases"])
        assert per_file.get(name, 0) == held, f"{name}: collected {per_file.get(name, 0)} of its {held} cases"
        assert held >= floor, f"{name}: {held} cases, fewer than its floor {floor}"
    assert len(CASES) >= TOTAL_FLOOR, f"{len(CASES)} cases in all, fewer than the floor {TOTAL_FLOOR}"
    assert hasattr(_karlton, "vector_eval"), (
        "the native module was built without the `vectors` feature: "
        "build it as scripts/test-python.sh does (maturin develop --features vectors)"
    )


@pytest.mark.parametrize("kind, case", CASES)
def test_vector_native(kind: str, case: dict[str, Any]) -> None:
    got = json.loads(_karlton.vector_eval(kind, json.dumps(case["input"])))
    _check(case, got)


# What each error `kind` reads like in an exception message (the core's Display, one text per
# kind: core/src/{key,policy,entry}.rs). A raised error of another kind fails the case.
ERROR_TEXT: dict[str, dict[str, str]] = {
    "keys": {
        "empty_namespace": r"namespace must not be empty",
        "namespace_too_long": r"namespace is \d+ bytes after escaping",
        "max_len_too_small": r"below the minimum",
    },
    "policy": {
        "zero": r"must be greater than 0|must not be empty",
        "too_long": r"exceeds the maximum",
        "hard_before_soft": r"must be >= `soft_ttl_ms`",
        "load_timeouts": r"must be < `load_hard_timeout_ms`",
        "out_of_range": r"out of range",
        "json": r"invalid JSON",
    },
    "entry": {
        "too_short": r"entry too short",
        "bad_magic": r"bad magic",
        "unsupported_format": r"unsupported entry format",
        "unknown_flags": r"unknown flag bits",
        "truncated": r"entry truncated in",
        "invalid_varint": r"invalid varint in",
        "invalid_utf8": r"not valid UTF-8",
        "trailing_bytes": r"trailing bytes after entry",
        "too_large": r"too large",
        "inconsistent": r"inconsistent entry",
    },
}


def _error_mismatch(kind: str, msg: str, expect: dict[str, Any]) -> str | None:
    import re

    pattern = ERROR_TEXT.get(kind, {}).get(expect["kind"])
    if pattern is None:
        return f"no message pattern for {kind} error kind {expect['kind']} (add one to ERROR_TEXT)"
    if not re.search(pattern, msg):
        return f"{msg!r} is not a {expect['kind']} error"
    if expect.get("field") and expect["field"] not in msg:
        return f"{msg!r} does not name the field {expect['field']}"
    for k, v in expect.items():
        if isinstance(v, int) and not isinstance(v, bool) and not re.search(rf"\b({v}|0x0*{v:x})\b", msg, re.I):
            return f"{msg!r} lacks {k} = {v}"
        if k == "reason" and v not in msg:
            return f"{msg!r} lacks the reason {v!r}"
    return None


def _key_api(inp: dict[str, Any]) -> Any:
    from karlton import Key, params_hash

    op = inp["op"]
    params = json.loads(inp["params_json"]) if "params_json" in inp else None
    if "params_json" in inp and params is None:
        pytest.skip("Key(params=None) means no params in Python; JSON null params need params_hash(None)")
    if op == "params_hash":
        return {"hash": params_hash(params)}
    kw: dict[str, Any] = {}
    if params is not None:
        kw["params"] = params
    if "version" in inp:
        kw["version"] = int(inp["version"])
    if "hash_tag" in inp:
        kw["hash_tag"] = inp["hash_tag"]
    if "max_len" in inp:
        kw["max_len"] = inp["max_len"]
    k = Key(inp["namespace"], *inp.get("segments", []), **kw)
    if op == "build":
        return str(k)
    if op == "generation_key":
        return k.generation_key
    if op == "tag_key":
        return k.tag_key(inp["tag"])
    raise AssertionError(op)


API_CASES = [
    p for p in CASES
    if p.values[0] in ("keys", "policy", "entry") and not p.values[1]["input"].get("exact_text")
]


@pytest.mark.parametrize("kind, case", API_CASES)
def test_vector_python_api(kind: str, case: dict[str, Any]) -> None:
    import karlton

    inp, expect = case["input"], case["expect"]
    try:
        if kind == "keys":
            got = _key_api(inp)
            if inp["op"] == "params_hash":
                expect = {"ok": {"hash": expect["ok"]["hash"]}} if "ok" in expect else expect
        elif kind == "policy":
            text = inp["spec_json"] if "spec_json" in inp else json.dumps(inp["spec"])
            got = json.loads(_karlton.PolicyCore.from_json(text).to_json())
        elif kind == "entry":
            if inp["op"] != "decode":
                pytest.skip("encoding entries is not part of the Python API")
            e = karlton.decode_entry(bytes.fromhex(inp["hex"]))
            got = {
                "value_hex": e["value"].hex(), "codec": e["codec"],
                "version": None if e["version"] is None else str(e["version"]),
                "generations": e["generations"], "soft_at": e["soft_at"], "hard_at": e["hard_at"],
                "load_ms": e["load_ms"], "negative": e["negative"], "tags": e["tags"],
            }
        else:
            raise AssertionError(kind)
    except (TypeError, ValueError) as err:
        # The Python API raises instead of returning an error object: one must be expected, and
        # the message (the core's Display of the error) must be of the expected kind, name the
        # field and carry the numbers.
        if "pending" in case and not STRICT:
            pytest.xfail(case["pending"])
        assert "error" in expect, f"unexpected {type(err).__name__}: {err}"
        # Params errors are the exception: the test parses `params_json` with Python's json and
        # karlton converts Python values, so their messages are Python's, not the core's (the
        # native test above checks those cases' kind exactly).
        if not (kind == "keys" and expect["error"]["kind"] in ("params", "invalid_json")):
            why = _error_mismatch(kind, str(err), expect["error"])
            assert why is None, why
        return
    _check({**case, "expect": expect}, {"ok": got})
