"""The Python runner: answers cases through the public `karlton` package, in-process.

An answer is {"id", "ok": value} or {"id", "err": field-or-null, "msg": message}.
"""

from __future__ import annotations

import json
from typing import Any

import karlton

from gen import decode_str


class Unrepresentable(Exception):
    pass


def val(v: Any) -> Any:
    """An encoded value as the Python value a user would pass."""
    if v is None:
        return None
    if "s" in v:
        return decode_str(v["s"])
    if "i" in v:
        return int(v["i"])
    if "f" in v:
        return float(v["f"])
    if "b" in v:
        return v["b"]
    if "a" in v:
        return [val(x) for x in v["a"]]
    if "o" in v:
        return {decode_str(k): val(x) for k, x in v["o"]}
    if "n" in v:
        depth, kind, leaf = v["n"]
        out = val(leaf)
        for _ in range(depth):
            out = [out] if kind == "a" else {"k": out}
        return out
    raise ValueError(f"bad encoded value {v!r}")


def key_answer(c: dict) -> Any:
    kw: dict[str, Any] = {}
    if "params" in c:
        kw["params"] = val(c["params"])
    if "version" in c:
        kw["version"] = val(c["version"])
    if "hash_tag" in c:
        kw["hash_tag"] = c["hash_tag"]
    if "max_len" in c:
        kw["max_len"] = val(c["max_len"])
    k = karlton.Key(val(c["ns"]), *[val(s) for s in c["segs"]], **kw)
    return {"key": k.build(), "gen": k.generation_key, "tags": [k.tag_key(val(t)) for t in c.get("tags", [])]}


def policy_answer(c: dict) -> Any:
    kw: dict[str, Any] = {}
    for f, v in c["spec"]:
        x = val(v)
        if f.endswith("_ms"):
            name = f[: -len("_ms")]
            if name == "lock_backoff":
                x = [y / 1000 if isinstance(y, (int, float)) and not isinstance(y, bool) else y for y in x]
            elif isinstance(x, (int, float)) and not isinstance(x, bool):
                x = x / 1000
            kw[name] = x
        else:
            kw[f] = x
    return json.loads(karlton.Policy(**kw).to_json())


def entry_answer(c: dict) -> Any:
    e = karlton.decode_entry(bytes.fromhex(c["hex"]))
    return {
        "value": e["value"].hex(), "codec": e["codec"],
        "version": None if e["version"] is None else str(e["version"]),
        "generations": [str(g) for g in e["generations"]], "soft_at": str(e["soft_at"]),
        "hard_at": str(e["hard_at"]), "load_ms": str(e["load_ms"]), "negative": e["negative"],
        "tags": e["tags"],
    }


U64_FIELDS = ("soft_at", "hard_at", "usable_until", "load_ms")


def describe_answer(c: dict) -> Any:
    kw: dict[str, Any] = {"now_ms": val(c["now"])}
    if "sie" in c:
        kw["policy"] = karlton.Policy(stale_if_error=val(c["sie"]) / 1000)
    d = karlton.describe_entry(bytes.fromhex(c["hex"]), **kw)
    out = dict(d)
    for f in U64_FIELDS:
        out[f] = str(d[f])
    out["version"] = None if d["version"] is None else str(d["version"])
    out["generations"] = [str(g) for g in d["generations"]]
    return out


def answer(c: dict) -> dict:
    kind = c["kind"]
    try:
        if kind == "key":
            ok = key_answer(c)
        elif kind == "params_hash":
            ok = karlton.params_hash(val(c["params"]))
        elif kind == "policy":
            ok = policy_answer(c)
        elif kind == "entry":
            ok = entry_answer(c)
        elif kind == "describe":
            ok = describe_answer(c)
        else:
            return {"id": c["id"], "err": None, "msg": f"unknown kind {kind}"}
        return {"id": c["id"], "ok": ok}
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        return {"id": c["id"], "err": None, "msg": f"{type(e).__name__}: {e}"}
