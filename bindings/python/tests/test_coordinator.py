"""The per-process rules the core's Coordinator decides, seen from Python (threads and asyncio,
memory store and real Redis): the same answers and counters as Rust, Node and WASM."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from karlton import AsyncCache, Cache, Key, MemoryStore, Policy, RedisStore
from conftest import record_entry  # noqa: E402


class _Forty:
    """A user codec (id 200) a second cache does not know: its values do not decode there."""

    id = 200

    def encode(self, value: Any) -> bytes:
        return repr(value).encode()

    def decode(self, data: bytes) -> Any:
        return data.decode()


POLICY = Policy(soft_ttl=10, hard_ttl=20, lock_wait=5, jitter=0)


def _stores(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    """(store for Cache, store for AsyncCache) of the parametrized kind."""
    if request.param == "memory":
        m = MemoryStore()
        return m, m
    import redis
    import redis.asyncio

    server = request.getfixturevalue("redis_server")
    return (
        RedisStore(redis.Redis(port=server.port, socket_timeout=2)),
        RedisStore(redis.asyncio.Redis(port=server.port, socket_timeout=2)),
    )


@pytest.fixture(params=["memory", "redis"])
def stores(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    return _stores(request)


# -- C5: a call that begins after a write returned never gets a value loaded before it --------


def _c5_threads(cache: Cache, write: str) -> dict[str, Any]:
    key = Key("c5", "k")
    source = {"v": "old"}
    a_read = threading.Event()
    release_a = threading.Event()
    out: dict[str, Any] = {}

    def slow_old() -> str:
        v = source["v"]
        a_read.set()
        release_a.wait(10)
        return v

    ta = threading.Thread(target=lambda: out.__setitem__("a", cache.get_or_load(key, slow_old)))
    ta.start()
    assert a_read.wait(10)
    source["v"] = "new"
    if write == "invalidate":
        cache.invalidate(key)
    else:
        cache.bump(key)
    # B and C start after the write returned: neither may join A's flight.
    tb = threading.Thread(target=lambda: out.__setitem__("b", cache.get_or_load(key, lambda: source["v"])))
    tb.start()
    tb.join(10)
    out["c"] = cache.get_or_load(key, lambda: source["v"])
    release_a.set()
    ta.join(10)
    out["after"] = cache.get_or_load(key, lambda: "loader must not run")
    return out


@pytest.mark.parametrize("write", ["invalidate", "bump"])
def test_c5_no_value_loaded_before_a_write_threads(stores: tuple[Any, Any], write: str) -> None:
    with Cache(stores[0], POLICY) as cache:
        out = _c5_threads(cache, write)
    assert out["a"] == "old"  # A's own caller began before the write
    assert out["b"] == "new" and out["c"] == "new"
    assert out["after"] == "new"  # A's fill was refused (C2)
    assert cache._d.pending() == (0, 0)


@pytest.mark.parametrize("write", ["invalidate", "bump"])
def test_c5_joiner_from_before_the_write_runs_again_asyncio(stores: tuple[Any, Any], write: str) -> None:
    async def main() -> dict[str, Any]:
        cache = AsyncCache(stores[1], POLICY)
        key = Key("c5a", "k")
        source = {"v": "old"}
        a_read = asyncio.Event()
        release_a = asyncio.Event()

        async def slow_old() -> str:
            v = source["v"]
            a_read.set()
            await release_a.wait()
            return v

        a = asyncio.ensure_future(cache.get_or_load(key, slow_old))
        await a_read.wait()
        joiner = asyncio.ensure_future(cache.get_or_load(key, lambda: source["v"]))  # joins A
        await asyncio.sleep(0.01)
        source["v"] = "new"
        await (cache.invalidate(key) if write == "invalidate" else cache.bump(key))
        c = await cache.get_or_load(key, lambda: source["v"])
        release_a.set()
        out = {"a": await a, "joiner": await joiner, "c": c}
        out["after"] = await cache.get_or_load(key, lambda: "loader must not run")
        assert cache._d.pending() == (0, 0)
        return out

    out = asyncio.run(main())
    assert out["a"] == "old"
    assert out["joiner"] == "new"  # joined before the write, but was answered after it: runs again
    assert out["c"] == "new" and out["after"] == "new"


# -- C3 / stats: one stampede counts the same as in every runtime ----------------------------


def test_stampede_counts_threads(stores: tuple[Any, Any]) -> None:
    with Cache(stores[0], POLICY) as cache:
        key = Key("st", "k")
        calls = []
        gate = threading.Barrier(20)

        def loader() -> int:
            calls.append(1)
            # Hold the flight open until all 20 calls are in the coordinator (an explicit signal,
            # not "they all arrive within 200 ms"), so the counts below are exact.
            deadline = time.monotonic() + 10
            while cache._d.pending()[0] < 20 and time.monotonic() < deadline:
                time.sleep(0.002)
            return 7

        def caller(out: list[Any]) -> None:
            gate.wait()
            out.append(cache.get_or_load(key, loader))

        out: list[Any] = []
        ts = [threading.Thread(target=caller, args=(out,)) for _ in range(20)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        s = cache.stats()
    assert out == [7] * 20
    assert len(calls) == 1
    # A leader (misses 1, loads 1) and 19 joiners (coalesced, each a miss: it got a load).
    assert (s["misses"], s["loads"], s["coalesced"], s["lease_waits"]) == (20, 1, 19, 0)
    assert cache._d.pending() == (0, 0)


def test_stampede_counts_asyncio(stores: tuple[Any, Any]) -> None:
    async def main() -> tuple[list[Any], int, dict[str, int], tuple[int, int]]:
        cache = AsyncCache(stores[1], POLICY)
        calls = []

        async def loader() -> int:
            calls.append(1)
            await asyncio.sleep(0.1)
            return 7

        out = await asyncio.gather(*(cache.get_or_load(Key("sta", "k"), loader) for _ in range(20)))
        return list(out), len(calls), cache.stats(), cache._d.pending()

    out, loads, s, pending = asyncio.run(main())
    assert out == [7] * 20 and loads == 1
    assert (s["misses"], s["loads"], s["coalesced"], s["lease_waits"]) == (20, 1, 19, 0)
    assert pending == (0, 0)


# -- corrupt values are counted and replaced, not a blocked key ------------------------------


def test_undecodable_value_is_counted_and_replaced(stores: tuple[Any, Any]) -> None:
    key = Key("bad", "k")
    with Cache(stores[0], POLICY, codec=_Forty()) as writer:
        writer.set(key, 40)
    with Cache(stores[0], POLICY) as reader:  # does not know codec 200
        assert reader.get(key, "dflt") == "dflt"
        assert reader.stats()["corrupt_entries"] == 1
        assert reader.stats()["misses"] == 1 and reader.stats()["hits_fresh"] == 0
        assert reader.get_or_load(key, lambda: {"n": 41}) == {"n": 41}
        assert reader.get_or_load(key, lambda: "loader must not run") == {"n": 41}
        s = reader.stats()
    assert s["corrupt_entries"] == 2 and s["loads"] == 1


def test_undecodable_value_replaced_once_for_many_tasks(stores: tuple[Any, Any]) -> None:
    key = Key("bada", "k")
    with Cache(stores[0], POLICY, codec=_Forty()) as writer:
        writer.set(key, 40)

    async def main() -> tuple[list[Any], int, dict[str, int]]:
        reader = AsyncCache(stores[1], POLICY)
        calls = []

        async def loader() -> int:
            calls.append(1)
            await asyncio.sleep(0.05)
            return 41

        out = await asyncio.gather(*(reader.get_or_load(key, loader) for _ in range(10)))
        return list(out), len(calls), reader.stats()

    out, loads, s = asyncio.run(main())
    assert out == [41] * 10 and loads == 1
    assert s["corrupt_entries"] >= 1


# -- an abandoned leader: joiners run again, its lease goes back -----------------------------


def test_cancelled_leader_releases_its_lease_and_joiners_run_again(stores: tuple[Any, Any]) -> None:
    async def main() -> tuple[Any, float, tuple[int, int]]:
        cache = AsyncCache(stores[1], POLICY)  # lock_wait 5 s: a kept lease would cost 5 s
        key = Key("cancel", "k")
        started = asyncio.Event()

        async def hangs() -> int:
            started.set()
            await asyncio.sleep(60)
            return 0

        leader = asyncio.ensure_future(cache.get_or_load(key, hangs))
        await started.wait()
        joiner = asyncio.ensure_future(cache.get_or_load(key, lambda: 2))
        await asyncio.sleep(0.01)
        t0 = time.monotonic()
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        got = await joiner
        waited = time.monotonic() - t0
        await asyncio.sleep(0.05)  # the release task
        return got, waited, cache._d.pending()

    got, waited, pending = asyncio.run(main())
    assert got == 2
    assert waited < 4.0, f"the joiner waited {waited:.1f}s: the cancelled leader kept its lease"
    assert pending == (0, 0)


def test_interrupted_sync_loader_lets_the_next_caller_load(stores: tuple[Any, Any]) -> None:
    with Cache(stores[0], POLICY) as cache:
        key = Key("intr", "k")

        def interrupted() -> int:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            cache.get_or_load(key, interrupted)
        t0 = time.monotonic()
        assert cache.get_or_load(key, lambda: 3) == 3
        assert time.monotonic() - t0 < 4.0  # the lease went back: no lock_wait
        assert cache._d.pending() == (0, 0)


def test_joiners_get_the_leaders_own_exception(stores: tuple[Any, Any]) -> None:
    with Cache(stores[0], POLICY) as cache:
        key = Key("exc", "k")
        gate = threading.Barrier(5)

        class Boom(Exception):
            pass

        def loader() -> int:
            time.sleep(0.2)
            raise Boom("db down")

        errors: list[BaseException] = []

        def caller() -> None:
            gate.wait()
            try:
                cache.get_or_load(key, loader)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        ts = [threading.Thread(target=caller) for _ in range(5)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
    assert len(errors) == 5 and all(isinstance(e, Boom) for e in errors), errors
    assert cache.stats()["load_errors"] >= 1


def test_undecodable_stale_value_is_replaced_not_served(stores: tuple[Any, Any]) -> None:
    """A stale entry whose value does not decode: the refresh is not let go with it — the lead
    gives its lease back and a load replaces the entry (Redis: through the release script)."""
    key = Key("badstale", "k")
    short = Policy(soft_ttl=0.05, hard_ttl=20, lock_wait=5, jitter=0)
    with Cache(stores[0], short, codec=_Forty()) as writer:
        writer.set(key, 40)
    time.sleep(0.1)
    with Cache(stores[0], short) as reader:
        t0 = time.monotonic()
        assert reader.get_or_load(key, lambda: 5) == 5
        assert time.monotonic() - t0 < 4.0  # not a lock_wait behind its own lease
        s = reader.stats()
        assert s["corrupt_entries"] == 1 and s["loads"] == 1
        assert reader.get_or_load(key, lambda: "loader must not run") == 5
        assert reader._d.pending() == (0, 0)


def test_caches_built_together_draw_different_jitter(redis_client: Any) -> None:
    """Seeds come from the OS (item 9): three caches built at once on one policy, each filling
    the same kind of entry, draw different jittered soft expiries. With a shared or clock-based
    seed the draws would be equal and the expiries would differ only by the milliseconds
    between the fills; the jitter range here is 12 hours."""
    import karlton

    policy = Policy(soft_ttl=86_400, hard_ttl=200_000, jitter=0.5)
    caches = [Cache(RedisStore(redis_client), policy) for _ in range(3)]
    soft = []
    for i, c in enumerate(caches):
        k = Key(f"seeds{i}", "same")
        c.get_or_load(k, lambda: "v")
        soft.append(karlton.decode_entry(record_entry(redis_client.get(k.build())))["soft_at"])
        c.close()
    gaps = [abs(a - b) for j, a in enumerate(soft) for b in soft[j + 1 :]]
    assert min(gaps) > 1_000, f"soft expiries {soft}: two caches drew the same jitter"
