"""The seeded case generator of the differential fuzz test (see README.md).

A case is one JSON object (one line of the cases file). Every value that a runner turns into a
value of its language is *encoded*, so that every runner can rebuild exactly the same input,
including what JSON text cannot carry (lone surrogates, NaN, integers beyond 64 bits):

    {"s": [u16, ...]}      a string, as UTF-16 code units (lone surrogates allowed)
    {"i": "-123"}          an integer of any size, in decimal
    {"f": "0.1"}           a float: Python's repr, or "nan", "inf", "-inf"
    {"b": true}            a boolean
    null                   null / None
    {"a": [v, ...]}        an array / list
    {"o": [[s, v], ...]}   an object / dict, members in order (s: u16 code units)
    {"n": [depth, "a"|"o", v]}  v nested `depth` times in one-element arrays or {"k": ...}
                           objects (deep params, without a deep case file)

Case kinds: key, params_hash, policy, entry, describe.
"""

from __future__ import annotations

import random
import struct

# -- encoding ---------------------------------------------------------------------------------


def units(s: str) -> list[int]:
    """The UTF-16 code units of a Python str (which may hold lone surrogates)."""
    b = s.encode("utf-16-le", "surrogatepass")
    return list(struct.unpack(f"<{len(b) // 2}H", b))


def S(s: str) -> dict:
    return {"s": units(s)}


def I(n: int) -> dict:
    return {"i": str(n)}


def F(x: float) -> dict:
    if x != x:
        return {"f": "nan"}
    if x in (float("inf"), float("-inf")):
        return {"f": "inf" if x > 0 else "-inf"}
    return {"f": repr(x)}


def decode_str(u: list[int]) -> str:
    return struct.pack(f"<{len(u)}H", *u).decode("utf-16-le", "surrogatepass")


# -- building blocks ----------------------------------------------------------------------------

BOUNDARY_INTS = [
    0, 1, -1, 2, 7, 42, 127, 128, 129, 199, 200, 255, 256, 1000, 65535, 2**31 - 1, 2**31, 2**32 - 1,
    2**32, 2**32 + 200, 2**40, 2**40 + 1, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1,
    2**64, 2**70, -(2**31), -(2**53), -(2**53) - 1, -(2**63), -(2**63) - 1, 10**21,
]
BOUNDARY_FLOATS = [
    0.1, 0.5, 1.5, 2.5, 1.0, -1.0, 1e21, 1e-7, -0.0, 0.0, 1e300, -1e300, 5e-324, 1e-300,
    123.456, 0.30000000000000004, 9007199254740993.0, 2.0**53, 2.0**64, 1e16, 1.7976931348623157e308,
    float("nan"), float("inf"), float("-inf"),
]

SPECIAL_STRINGS = [
    "", "a", "user", "ns", ":", "::", "{", "}", "{x}", "#", ":#", "!", "!gen", "%", "%3A", "\\", " ",
    "\x00", "\n", "\t", "\x7f", "é", "e\u0301", "中文", "\U0001f600", "\ufffd", "\ud800", "\udc00",
    "\udc00\ud800", "a\ud83d", "\ud83db", "\ufeff", "\u2028", "v1", ":v1", "__proto__", "constructor",
    "toString", "1e21", "-0", "null", "true", "0x10",
]
ALPHABET = "abcXYZ019:{}#!%\\ _-.é中\U0001f600\ud800\udfff\ufffd"


def rand_str(r: random.Random) -> str:
    p = r.random()
    if p < 0.45:
        return r.choice(SPECIAL_STRINGS)
    if p < 0.9:
        return "".join(r.choice(ALPHABET) for _ in range(r.randint(0, 12)))
    if p < 0.97:
        # long strings: namespaces at the 64-byte limit, keys past max_len
        c = r.choice(["a", "é", "\U0001f600", ":"])
        return c * r.choice([63, 64, 65, 100, 130, 200, 300])
    return "".join(chr(r.randint(1, 0x10FFFF)) for _ in range(r.randint(1, 6)))


def rand_int(r: random.Random) -> int:
    p = r.random()
    if p < 0.6:
        return r.choice(BOUNDARY_INTS)
    if p < 0.85:
        return r.randint(-1000, 100000)
    return r.randint(-(2**65), 2**65)


def rand_float(r: random.Random) -> float:
    p = r.random()
    if p < 0.6:
        return r.choice(BOUNDARY_FLOATS)
    if p < 0.8:
        return r.uniform(-1e6, 1e6)
    if p < 0.9:
        return round(r.uniform(-100, 100), r.randint(0, 4))
    return struct.unpack("<d", struct.pack("<Q", r.getrandbits(64)))[0]


def rand_value(r: random.Random, depth: int = 0) -> object:
    """A random params value, encoded."""
    p = r.random()
    if depth >= 3:
        p = p * 0.6
    if p < 0.08:
        return None
    if p < 0.14:
        return {"b": r.random() < 0.5}
    if p < 0.3:
        return I(rand_int(r))
    if p < 0.45:
        return F(rand_float(r))
    if p < 0.6:
        return S(rand_str(r))
    if p < 0.8:
        return {"a": [rand_value(r, depth + 1) for _ in range(r.randint(0, 4))]}
    if p < 0.97:
        # distinct member names: with duplicates, "the same input" would depend on each
        # language's map semantics (and the value a later member replaces is never checked)
        names = list(dict.fromkeys(rand_str(r) for _ in range(r.randint(0, 4))))
        return {"o": [[units(k), rand_value(r, depth + 1)] for k in names]}
    # deep nesting around the limit (128 containers)
    return {"n": [r.choice([1, 2, 64, 126, 127, 128, 129, 130, 200]), r.choice("ao"), rand_value(r, 3)]}


# -- case kinds -------------------------------------------------------------------------------


def clean_str(r: random.Random) -> str:
    """A random string that is valid Unicode (so that most keys build and their text is compared)."""
    while True:
        s = rand_str(r)
        try:
            s.encode("utf-8")
            return s
        except UnicodeEncodeError:
            pass


def case_key(r: random.Random) -> dict:
    # half the keys only from valid arguments, so that built keys (not only errors) are compared
    clean = r.random() < 0.5
    if clean:
        ns = clean_str(r)
        while not ns or len(ns.encode()) > 64:
            ns = clean_str(r)
    else:
        ns = rand_str(r) if r.random() < 0.7 else r.choice(["user", "ns", "a"])
    c: dict = {"kind": "key", "ns": S(ns)}
    segs = []
    for _ in range(r.choice([0, 1, 1, 2, 3, 5])):
        p = r.random()
        if clean:
            segs.append(S(clean_str(r)) if p < 0.7 else I(abs(rand_int(r)) % 2**63))
        elif p < 0.7:
            segs.append(S(rand_str(r)))
        elif p < 0.93:
            segs.append(I(rand_int(r)))
        elif p < 0.97:
            segs.append(F(rand_float(r)))
        else:
            segs.append({"b": r.random() < 0.5})
    c["segs"] = segs
    if r.random() < 0.5:
        c["params"] = rand_value(r)
    if clean:
        if r.random() < 0.35:
            c["version"] = I(r.choice([0, 1, 7, 2**31, 2**53 - 1, r.randint(0, 2**53 - 1)]))
        if r.random() < 0.3:
            c["hash_tag"] = r.random() < 0.7
        if r.random() < 0.3:
            c["max_len"] = I(r.choice([128, 129, 150, 200, 255, 256, 1000, 2**32 + 200]))
        if r.random() < 0.3:
            c["tags"] = [S(clean_str(r)) for _ in range(r.randint(1, 3))]
        return c
    if r.random() < 0.35:
        c["version"] = I(rand_int(r)) if r.random() < 0.9 else F(rand_float(r))
    if r.random() < 0.3:
        c["hash_tag"] = r.random() < 0.7
    if r.random() < 0.3:
        c["max_len"] = I(rand_int(r)) if r.random() < 0.9 else F(rand_float(r))
    if r.random() < 0.3:
        c["tags"] = [S(rand_str(r)) for _ in range(r.randint(1, 3))]
    return c


def case_params_hash(r: random.Random) -> dict:
    return {"kind": "params_hash", "params": rand_value(r)}


# Policy fields in the core's names; durations in ms.
DURATIONS = ["soft_ttl_ms", "hard_ttl_ms", "negative_ttl_ms", "stale_if_error_ms", "lease_ttl_ms",
             "lock_wait_ms", "load_soft_timeout_ms", "load_hard_timeout_ms"]
NULLABLE = {"hard_ttl_ms", "load_soft_timeout_ms", "load_hard_timeout_ms"}
MS_SPECIAL = [0, 1, 2, 5, 10, 100, 1000, 5000, 60000, 3_600_000, 3_600_001, 2**40, 2**40 + 1, 2**53,
              0.5, 1.5, 2.5, 0.25, 0.001, 1e-7, 0.4, 1234.5, -0.0, -1, -0.5, float("nan"),
              float("inf"), float("-inf"), 1e21, 2.0**40 + 0.5]


def exact_in_seconds(ms: float) -> bool:
    """Python takes seconds: only ms values with ms/1000*1000 == ms reach the core unchanged."""
    if ms != ms or ms in (float("inf"), float("-inf")):
        return True
    return (ms / 1000) * 1000 == ms


def rand_ms(r: random.Random) -> float | int:
    while True:
        p = r.random()
        if p < 0.5:
            v = r.choice(MS_SPECIAL)
        elif p < 0.8:
            v = r.randint(1, 100000)
        else:
            v = round(r.uniform(0, 10000), r.randint(1, 3))
        if exact_in_seconds(v):
            return v


def enc_ms(v: float | int) -> dict:
    return I(v) if isinstance(v, int) else F(v)


def case_policy(r: random.Random) -> dict:
    spec: list = []
    fields = DURATIONS + ["jitter", "early_refresh", "lock_backoff_ms", "on_lock_timeout",
                          "on_store_error", "max_value_bytes"]
    for f in r.sample(fields, r.randint(0, 5)):
        if f in DURATIONS:
            p = r.random()
            if f in NULLABLE and p < 0.1:
                v = None
            elif p < 0.13:
                v = {"b": True}
            else:
                v = enc_ms(rand_ms(r))
        elif f in ("jitter", "early_refresh"):
            v = F(r.choice([0.0, 0.1, 0.5, 0.999, 0.9999999, 1.0, -0.1, 1e-7, 2.0, 100.0, 100.5,
                            float("nan"), float("inf"), r.random()])) if r.random() < 0.9 else I(r.choice([0, 1, 2, 100, -1]))
        elif f == "lock_backoff_ms":
            v = {"a": [enc_ms(rand_ms(r)) for _ in range(r.randint(0, 3))]}
        elif f == "on_lock_timeout":
            v = S(r.choice(["load", "serve_stale", "error", "stale", "", "LOAD"]))
        elif f == "on_store_error":
            v = S(r.choice(["load", "error", "ignore"]))
        else:
            v = I(r.choice([0, 1, 1024, 16 << 20, 512 << 20, (512 << 20) + 1, -1, 2**64])) if r.random() < 0.9 else F(r.choice([1.5, 1024.0]))
        spec.append([f, v])
    if r.random() < 0.03:
        spec.append([r.choice(["bogus", "soft"]), I(5)])
    return {"kind": "policy", "spec": spec}


# -- entries ----------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def rand_u64(r: random.Random) -> int:
    return r.choice([0, 1, 1_700_000_000_000, 2**53 - 1, 2**53, 2**53 + 1, 2**63, 2**64 - 1, r.getrandbits(64), r.getrandbits(41)])


def valid_entry(r: random.Random) -> bytes:
    """An entry encoded by docs/entry-format.md (written here independently of the core)."""
    negative = r.random() < 0.2
    version = rand_u64(r) if r.random() < 0.5 else None
    soft = rand_u64(r)
    hard = soft + r.choice([0, 1, 1000, 2**64]) if r.random() < 0.9 else rand_u64(r)
    hard = min(hard, 2**64 - 1)
    tags = [rand_str(r).encode("utf-8", "replace")[:40] for _ in range(r.choice([0, 0, 1, 2]))]
    ngen = r.choice([0, 1, 1 + len(tags)])
    flags = (1 if negative else 0) | (2 if version is not None else 0)
    out = bytearray(b"KC\x01")
    out += bytes([flags, r.choice([0, 1, 1, 2, 128, 255])])
    out += struct.pack("<QQQ", soft, hard, rand_u64(r))
    if version is not None:
        out += struct.pack("<Q", version)
    out += varint(ngen)
    for _ in range(ngen):
        out += struct.pack("<Q", rand_u64(r))
    out += varint(len(tags))
    for t in tags:
        out += varint(len(t)) + t
    value = r.choice([b"", b"null", b'{"id":7}', bytes(r.getrandbits(8) for _ in range(r.randint(0, 20)))])
    out += varint(len(value)) + value
    return bytes(out)


def corrupt(r: random.Random, b: bytes) -> bytes:
    b = bytearray(b)
    for _ in range(r.randint(1, 3)):
        op = r.random()
        if op < 0.3 and b:
            b[r.randrange(len(b))] = r.getrandbits(8)
        elif op < 0.5 and b:
            del b[r.randrange(len(b)):]
        elif op < 0.65:
            b += bytes(r.getrandbits(8) for _ in range(r.randint(1, 3)))
        elif op < 0.8 and len(b) > 3:
            b[3] = r.getrandbits(8)
        elif op < 0.9 and len(b) > 29:
            # an over-long varint where the counts start
            b[29:29] = b"\x80\x00"
        elif b:
            i = r.randrange(len(b))
            b[i] ^= 1 << r.randrange(8)
    return bytes(b)


def case_entry(r: random.Random) -> dict:
    p = r.random()
    if p < 0.35:
        b = valid_entry(r)
    elif p < 0.85:
        b = corrupt(r, valid_entry(r))
    else:
        b = bytes(r.getrandbits(8) for _ in range(r.randint(0, 40)))
        if r.random() < 0.5:
            b = b"KC\x01" + b
    return {"kind": "entry", "hex": b.hex()}


SIE_MS = [0, 1, 1000, 60000, 3_600_000, 2**40, 2**40 + 1]


def case_describe(r: random.Random) -> dict:
    """describe_entry at a moment near the entry's windows, under a policy's stale_if_error."""
    c = {"kind": "entry", "hex": valid_entry(r).hex()} if r.random() < 0.6 else case_entry(r)
    b = bytes.fromhex(c["hex"])
    marks = [0, 1, 2**53 - 1, 2**53, 2**63, 2**64 - 1]
    if len(b) >= 21:
        soft, hard = struct.unpack("<QQ", b[5:21])
        marks += [soft, hard, soft - 1, hard - 1, soft + 1, hard + 1]
    now = r.choice(marks) if r.random() < 0.9 else r.choice([-1, 2**64, r.getrandbits(64)])
    if r.random() < 0.7 and 0 <= now < 2**64:
        now = min(now, 2**53 - 1)  # most callers pass a JavaScript-safe clock
    c.update(kind="describe", now=I(now))
    if r.random() < 0.6:
        c["sie"] = I(r.choice(SIE_MS))
        if len(b) >= 21 and r.random() < 0.5:
            c["now"] = I(min(hard + c_sie(c) + r.choice([-1, 0, 1]), 2**53 - 1) if hard < 2**53 else now)
    return c


def c_sie(c: dict) -> int:
    return int(c["sie"]["i"])


def _integral_float(v: object) -> bool:
    """An encoded float that JavaScript holds as a safe integer (1.0, -0.0, 1e16)."""
    if not (isinstance(v, dict) and "f" in v) or v["f"] in ("nan", "inf", "-inf"):
        return False
    x = float(v["f"])
    return x.is_integer() and abs(x) <= 2**53 - 1


def js_unrepresentable(c: dict) -> bool:
    """Whether the case holds an input JavaScript cannot express: an integral float where the
    API takes an integer (a segment, version, max_len, max_value_bytes). Python and Rust get a
    float there and refuse it; JavaScript has one number type, so `1.0` *is* `1` and its
    runtimes answer the case of the integer instead. Those runners are not compared on it."""
    if c["kind"] == "key":
        return any(_integral_float(v) for v in c["segs"] + [c.get("version"), c.get("max_len")])
    if c["kind"] == "policy":
        return any(_integral_float(v) for f, v in c["spec"] if f == "max_value_bytes")
    return False


KINDS = [(case_key, 0.4), (case_params_hash, 0.18), (case_policy, 0.18), (case_entry, 0.12), (case_describe, 0.12)]


def generate(seed: int, count: int) -> list[dict]:
    r = random.Random(seed)
    funcs = [f for f, _ in KINDS]
    weights = [w for _, w in KINDS]
    cases = []
    for i in range(count):
        c = r.choices(funcs, weights)[0](r)
        c["id"] = i
        cases.append(c)
    return cases
