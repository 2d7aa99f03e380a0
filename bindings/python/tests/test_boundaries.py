"""Every input means the same thing in every runtime (issue 9): one rounding rule for durations,
one value model, the full u64 version range, `None` params are no params. The Node suite
(`bindings/node/test/boundaries.test.mjs`) asserts the same cases."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest

from karlton import Cache, Key, Policy


@pytest.mark.parametrize(
    "seconds, ms",
    [
        (0.0025, 3),  # half away from zero, as Node's 2.5 ms (Python's round() would give 2)
        (0.0015, 2),
        (0.0005, 1),  # 0.5 ms is 1 ms in every runtime, not "must be greater than 0"
        (timedelta(microseconds=2500), 3),
        (1.0004, 1000),
        (2**40 / 1000, 2**40),
    ],
)
def test_durations_round_half_away_from_zero_like_every_runtime(seconds: Any, ms: int) -> None:
    p = Policy(soft_ttl=seconds, hard_ttl=2**40 / 1000)
    assert json.loads(p.to_json())["soft_ttl_ms"] == ms


@pytest.mark.parametrize("seconds", [0.0004, 2**40 / 1000 + 1, float("inf"), -0.001])
def test_durations_out_of_range_are_refused_naming_the_argument(seconds: float) -> None:
    with pytest.raises(ValueError, match="soft_ttl"):
        Policy(soft_ttl=seconds)


def test_a_nan_fraction_names_its_argument_not_the_json() -> None:
    with pytest.raises(ValueError, match="jitter must be a finite number"):
        Policy(jitter=float("nan"))


@pytest.mark.parametrize(
    "value, exc, says",
    [
        ({1: "a"}, TypeError, "dict keys must be str"),  # json would store {"1": "a"}
        ({"a": {(1, 2): 3}}, TypeError, "dict keys must be str"),
        (2**64, ValueError, "does not fit in 64 bits"),  # would come back as a float
        (-(2**63) - 1, ValueError, "does not fit in 64 bits"),
        (float("nan"), ValueError, "not a finite number"),
        ([1, float("-inf")], ValueError, "not a finite number"),
        ({"s": {1, 2}}, TypeError, "values must be"),
        ("\ud800", ValueError, "surrogate"),
    ],
)
def test_values_json_would_change_are_refused_and_nothing_is_stored(value: Any, exc: type, says: str) -> None:
    c = Cache()
    k = Key("boundary", "v")
    c.set(k, "before")
    with pytest.raises(exc, match=says):
        c.set(k, value)
    assert c.get(k) == "before", "a refused value leaves what was stored"
    with pytest.raises(exc, match=says):
        c.get_or_load(Key("boundary", "loaded"), lambda: value)
    assert c.get(Key("boundary", "loaded")) is None


def test_values_come_back_as_written_with_dict_order_kept() -> None:
    c = Cache()
    v = {"z": 1, "a": [2**63 - 1, -(2**63), 2**64 - 1, 0.1, 1e21, -0.0, 1e-7], "m": {"é": "\u2028"}, "t": None}
    c.set(Key("boundary", "rt"), v)
    got = c.get(Key("boundary", "rt"))
    assert got == v and list(got) == ["z", "a", "m", "t"]
    assert str(got["a"][5]) == "-0.0"


def test_versions_take_the_full_u64_range_as_in_node() -> None:
    c = Cache()
    k = Key("boundary", "ver")
    assert c.set(k, "new", version=2**64 - 1)
    assert not c.set(k, "older", version=2**53), "a lower version never replaces a higher one"
    assert c.get(k) == "new"
    for bad in (2**64, -1):
        with pytest.raises(ValueError, match="version"):
            c.set(k, "x", version=bad)


def test_none_params_are_no_params_in_every_runtime() -> None:
    assert str(Key("ns", params=None)) == str(Key("ns")) == "ns"
    assert str(Key("ns", params={"a": 1})).startswith("ns:#")


def _entry_vectors() -> list[dict[str, Any]]:
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "tests" / "vectors" / "entry.json"
    cases = [c for c in json.loads(path.read_text())["cases"] if c["input"]["op"] == "decode"]
    assert len(cases) >= 30, "the entry vectors are there"
    return cases


def test_describe_entry_reads_every_vector_entry_as_the_core_decodes_it() -> None:
    """`describe_entry` (the same answer in every runtime): the decoded fields, the windows
    classified at their edges, `usable_until` from the policy; corrupt bytes raise."""
    from karlton import describe_entry

    policy = Policy(soft_ttl=1, stale_if_error=0.5)
    ok = err = 0
    for c in _entry_vectors():
        data = bytes.fromhex(c["input"]["hex"])
        want = c["expect"]
        if "error" in want:
            with pytest.raises(ValueError, match="describe_entry"):
                describe_entry(data, now_ms=0)
            err += 1
            continue
        e = want["ok"]
        d = describe_entry(data, now_ms=e["soft_at"], policy=policy)
        version = None if e["version"] is None else int(e["version"])
        for k in ("soft_at", "hard_at", "load_ms", "negative", "codec", "generations", "tags"):
            assert d[k] == e[k], (c["name"], k)
        assert d["version"] == version and d["value_len"] == len(e["value_hex"]) // 2
        assert d["usable_until"] == min(e["hard_at"] + 500, 2**64 - 1)
        if e["soft_at"] > 0:
            assert describe_entry(data, now_ms=e["soft_at"] - 1, policy=policy)["freshness"] == "fresh"
        if e["hard_at"] > e["soft_at"]:
            assert d["freshness"] == "stale", c["name"]
        if e["hard_at"] < 2**64 - 501:
            assert describe_entry(data, now_ms=e["hard_at"], policy=policy)["freshness"] == "usable_on_error"
            assert describe_entry(data, now_ms=e["hard_at"] + 500, policy=policy)["freshness"] == "gone"
        ok += 1
    assert ok >= 15 and err >= 10, (ok, err)
    with pytest.raises(TypeError, match="policy"):
        describe_entry(b"", policy="soft")  # type: ignore[arg-type]


def test_one_vocabulary_every_concept_is_spelled_as_in_node() -> None:
    """tests/vocabulary.txt: the names Node spells in camelCase, here in snake_case."""
    from pathlib import Path

    import karlton

    text = (Path(__file__).resolve().parents[3] / "tests" / "vocabulary.txt").read_text()
    rows = [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert len(rows) >= 40
    stats = karlton.Cache().stats()
    scopes = {"module": karlton, "Cache": karlton.Cache, "Key": karlton.Key("ns"), "MemoryStore": karlton.MemoryStore(),
              "RedisStore": karlton.RedisStore}
    missing = [f"{scope}.{name}" for scope, name in rows
               if (name not in stats if scope == "stats" else not hasattr(scopes[scope], name))]
    assert missing == []
    assert set(stats) == {name for scope, name in rows if scope == "stats"}, "stats() has exactly the listed counters"


@pytest.mark.parametrize(
    "build, names",
    [
        (lambda: Key("ns\ud800"), "Key(): namespace is not valid Unicode"),
        (lambda: Key("ns", "ok", "a\udc00"), "Key(): segment 1 is not valid Unicode"),
        (lambda: Key("ns", params={"a": ["x", "\ud800"]}), "Key(): params is not valid Unicode"),
        (lambda: Key("ns", params={"\ud800": 1}), "Key(): params: a dict key is not valid Unicode"),
        (lambda: Key("ns").tag_key("t\ud800"), "tag is not valid Unicode"),
        (lambda: Cache().set(Key("ns"), 1, tags=["ok", "\ud83d"]), "tags[1] is not valid Unicode"),
    ],
)
def test_a_lone_surrogate_is_refused_naming_its_argument(build: Any, names: str) -> None:
    # (issue 9) not Python's UnicodeEncodeError ("'utf-8' codec can't encode ..."), which names none
    with pytest.raises(ValueError, match=re.escape(names)) as e:
        build()
    assert not isinstance(e.value, UnicodeError)


@pytest.mark.parametrize("value", [-1, 2**64])
def test_max_value_bytes_only_the_core_refuses_names_the_field(value: int) -> None:
    with pytest.raises(ValueError, match=r"^Policy\(\): `max_value_bytes`: invalid"):
        Policy(max_value_bytes=value)


def test_several_bad_arguments_report_the_first_in_the_one_order() -> None:
    # keys: the namespace is checked before the segments (docs/value-model.md, "Which error")
    with pytest.raises(ValueError, match="namespace"):
        Key("", "\ud800")
    with pytest.raises(ValueError, match="namespace"):
        Key("n" * 65, 1.5)  # type: ignore[arg-type]
    # policies: fields in PolicySpec's order, whatever the keyword order
    with pytest.raises(TypeError, match="lock_backoff"):
        Policy(on_store_error="nope", lock_backoff="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="jitter"):
        Policy(max_value_bytes=-1, jitter=float("nan"))


@pytest.mark.parametrize("now", [-1, 2**64])
def test_describe_entry_names_now_ms_out_of_range(now: int) -> None:
    # (issue 9) pyo3's own conversion raised "OverflowError: int too big to convert", naming none
    import karlton

    with pytest.raises(ValueError, match="`now_ms` must be a non-negative int below 2\\*\\*64"):
        karlton.describe_entry(b"KC\x01", now_ms=now)
    with pytest.raises(TypeError, match="`now_ms` must be an int"):
        karlton.describe_entry(b"KC\x01", now_ms=1.5)  # type: ignore[arg-type]
