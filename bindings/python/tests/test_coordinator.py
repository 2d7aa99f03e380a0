"""The per-process rules the core's Coordinator decides, seen from Python (threads and asyncio,
memory store and real Redis): the same answers and counters as Rust, Node and WASM."""

from __future__ import annotations

import asyncio
import os
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


# -- issue 11: values over max_value_bytes are answered, never stored ------------------------


def test_value_over_max_value_bytes_is_answered_not_stored(stores: tuple[Any, Any]) -> None:
    key = Key("big", "k")
    small = POLICY.replace(max_value_bytes=64)
    big = "x" * 100
    with Cache(stores[0], small) as cache:
        barrier = threading.Barrier(8)
        calls = []

        def loader() -> str:
            calls.append(1)
            time.sleep(0.05)
            return big

        def caller() -> Any:
            barrier.wait()
            return cache.get_or_load(key, loader)

        threads = [threading.Thread(target=lambda: out.append(caller())) for _ in range(8)]
        out: list[Any] = []
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert out == [big] * 8, "every caller gets the value, joiners included"
        assert cache.get(key, "absent") == "absent", "not stored"
        s = cache.stats()
        assert s["values_too_large"] == 1 and s["fills_rejected"] == 0
        # The lease went back: the next caller loads at once (no lock_wait).
        assert cache.get_or_load(key, lambda: "small") == "small"
        assert cache.get(key) == "small"
        assert 1 <= sum(calls) <= 2, f"one load for the stampede (two only if a caller was late): {calls}"
        # A set over the limit removes the key instead of leaving the value it replaces.
        assert cache.set(key, big) is False
        assert cache.get(key, "absent") == "absent"
        assert cache.stats()["values_too_large"] == 2


def test_max_value_bytes_is_validated() -> None:
    with pytest.raises(ValueError, match="max_value_bytes"):
        Policy(max_value_bytes=0)
    with pytest.raises(ValueError, match="max_value_bytes"):
        Policy(max_value_bytes=(512 << 20) + 1)
    with pytest.raises(TypeError, match="max_value_bytes"):
        Policy(max_value_bytes=1.5)  # type: ignore[arg-type]
    assert Policy(max_value_bytes=512 << 20).max_value_bytes == 512 << 20


# -- issue 11: a loader asking for the key its own chain loads raises, never deadlocks -------


def test_reentrant_get_or_load_raises_instead_of_deadlocking(stores: tuple[Any, Any]) -> None:
    from karlton import ReentrantCallError

    key, other = Key("reent", "k"), Key("reent", "k2")
    for policy in (POLICY, POLICY.replace(load_hard_timeout=5)):  # inline loader / pool thread
        with Cache(stores[0], policy) as cache:
            cache.invalidate(key)
            seen: list[BaseException] = []

            def inner() -> str:
                try:
                    cache.get_or_load(key, lambda: "never")
                except ReentrantCallError as e:
                    seen.append(e)
                return "outer"

            done: list[Any] = []
            t = threading.Thread(target=lambda: done.append(cache.get_or_load(key, inner)), daemon=True)
            t.start()
            t.join(10)
            assert done == ["outer"], "the outer call answers (a deadlock leaves the thread hanging)"
            assert len(seen) == 1 and "re-entrant" in str(seen[0])

            # Through another key: key -> other -> key.
            cache.invalidate(key)
            cache.invalidate(other)
            got: list[Any] = []

            def via_other() -> Any:
                def deepest() -> str:
                    try:
                        cache.get_or_load(key, lambda: "never")
                        return "joined"
                    except ReentrantCallError:
                        return "refused"

                return cache.get_or_load(other, deepest)

            t = threading.Thread(target=lambda: got.append(cache.get_or_load(key, via_other)), daemon=True)
            t.start()
            t.join(10)
            assert got == ["refused"]
            # Other callers of the same key outside the chain still coalesce normally.
            assert cache.get_or_load(key, lambda: "x") == "refused"


def test_reentrant_get_or_load_raises_in_asyncio(stores: tuple[Any, Any]) -> None:
    from karlton import ReentrantCallError

    async def main() -> list[Any]:
        out: list[Any] = []
        for policy in (POLICY, POLICY.replace(load_hard_timeout=5)):  # awaited inline / a task
            cache = AsyncCache(stores[1], policy)
            key = Key("reenta", str(len(out)))
            await cache.invalidate(key)

            async def inner() -> str:
                try:
                    await cache.get_or_load(key, lambda: "never")
                    return "joined"
                except ReentrantCallError:
                    return "refused"

            out.append(await asyncio.wait_for(cache.get_or_load(key, inner), 10))
        return out

    assert asyncio.run(main()) == ["refused", "refused"]


# -- issue 11: an in-process joiner waits at most lock_wait ---------------------------------


def test_joiner_waits_at_most_lock_wait_then_loads_itself(stores: tuple[Any, Any]) -> None:
    key = Key("boundjoin", "k")
    policy = POLICY.replace(lock_wait=0.2)
    with Cache(stores[0], policy) as cache:
        cache.invalidate(key)
        started, go = threading.Event(), threading.Event()

        def slow() -> str:
            started.set()
            go.wait(30)  # released only after the joiner answered: an unbounded joiner hangs
            return "leader"

        out: list[Any] = []
        leader = threading.Thread(target=lambda: out.append(cache.get_or_load(key, slow)), daemon=True)
        leader.start()
        assert started.wait(10)
        joined: list[Any] = []
        j = threading.Thread(target=lambda: joined.append(cache.get_or_load(key, lambda: "joiner")), daemon=True)
        j.start()
        j.join(10)
        assert joined == ["joiner"], "past lock_wait the joiner answers from its own loader"
        go.set()
        leader.join(10)
        assert out == ["leader"]
        assert cache.get(key) == "leader", "only the lease holder filled"
        assert cache.stats()["lease_timeouts"] == 1


def test_async_joiner_waits_at_most_lock_wait(stores: tuple[Any, Any]) -> None:
    async def main() -> tuple[Any, Any]:
        cache = AsyncCache(stores[1], POLICY.replace(lock_wait=0.2, on_lock_timeout="error"))
        key = Key("boundjoina", "k")
        await cache.invalidate(key)
        started, go = asyncio.Event(), asyncio.Event()

        async def slow() -> str:
            started.set()
            await go.wait()
            return "leader"

        leader = asyncio.ensure_future(cache.get_or_load(key, slow))
        await started.wait()
        try:
            await asyncio.wait_for(cache.get_or_load(key, lambda: "joiner"), 10)
            joiner: Any = "no error"
        except Exception as e:  # noqa: BLE001 - the kind is asserted below
            joiner = e
        go.set()
        return joiner, await leader

    from karlton import LockTimeoutError

    joiner, leader = asyncio.run(main())
    assert isinstance(joiner, LockTimeoutError), joiner
    assert leader == "leader"


# -- C3: a load longer than its lease extends it, so another process waits instead of loading --


def test_c3_a_load_longer_than_its_lease_keeps_its_key_threads(stores: tuple[Any, Any]) -> None:
    policy = POLICY.replace(lease_ttl=1, lock_wait=10)
    # Two caches on one store: two processes sharing one Redis.
    with Cache(stores[0], policy) as a, Cache(stores[0], policy) as b:
        key = Key("longload", "k")
        a.invalidate(key)
        started = threading.Event()
        where: list[int] = []

        def long() -> str:
            where.append(threading.get_ident())
            started.set()
            time.sleep(2.5)
            return "long"

        out: list[Any] = []
        t = threading.Thread(target=lambda: out.append(a.get_or_load(key, long)))
        t.start()
        assert started.wait(10)
        time.sleep(1.5)  # past the first lease's end
        second: list[int] = []
        v = b.get_or_load(key, lambda: second.append(1) or "second")
        t.join(10)
        assert out == ["long"] and v == "long"
        assert second == [], "a second load started while the first held its key"
        # No load timeout in the policy: the loader ran on its caller's thread (the keeper
        # thread extended the lease meanwhile), not on the cache's loader pool.
        assert where == [t.ident]
        assert a.stats()["lease_extensions"] >= 2, a.stats()
        assert a.stats()["fills_rejected"] == 0 and b.stats()["lease_waits"] == 1


def test_keeper_gives_a_hung_inline_load_up_at_the_default_deadline() -> None:
    # No load timeout in the policy: the loader runs on its caller's thread, and the keeper
    # extends its lease until the default deadline (30 s), then releases it there.
    store = MemoryStore()
    with Cache(store, POLICY) as a, Cache(store, POLICY.replace(lock_wait=0.05, on_lock_timeout="error")) as b:
        key = Key("hungload", "k")
        started, go = threading.Event(), threading.Event()

        def hung() -> str:
            started.set()
            go.wait(60)
            return "late"

        out: list[Any] = []

        def lead() -> None:
            try:
                out.append(a.get_or_load(key, hung))
            except Exception as e:  # noqa: BLE001 - the kind is asserted below
                out.append(e)

        t = threading.Thread(target=lead, daemon=True)
        t0 = time.monotonic()
        t.start()
        assert started.wait(10)
        # Until the deadline the lease is held (and extended): another process times out.
        from karlton import LoadTimeoutError, LockTimeoutError

        with pytest.raises(LockTimeoutError):
            b.get_or_load(key, lambda: "other")
        give_up = time.monotonic() + 45
        while True:  # at the deadline the keeper releases the lease: b then loads at once
            try:
                v = b.get_or_load(key, lambda: "other")
                break
            except LockTimeoutError:
                assert time.monotonic() < give_up, "the lease was never given up"
                time.sleep(0.5)
        assert v == "other"
        assert time.monotonic() - t0 >= 29, "the lease lapsed before the deadline"
        # At 5, 10, 15, 20 and 25 s (lease 10 s); a sixth only if a wake fell a hair before 30 s.
        assert 5 <= a.stats()["lease_extensions"] <= 6, a.stats()
        go.set()
        t.join(10)
        assert len(out) == 1 and isinstance(out[0], LoadTimeoutError), out
        assert b.get(key) == "other", "the late value was not filled over the next load's"


def test_c3_a_load_longer_than_its_lease_keeps_its_key_asyncio(stores: tuple[Any, Any]) -> None:
    async def main() -> tuple[Any, Any, AsyncCache, AsyncCache, list[int]]:
        policy = POLICY.replace(lease_ttl=1, lock_wait=10)
        a, b = AsyncCache(stores[1], policy), AsyncCache(stores[1], policy)
        key = Key("longloada", "k")
        await a.invalidate(key)
        started = asyncio.Event()

        async def long() -> str:
            started.set()
            await asyncio.sleep(2.5)
            return "long"

        first = asyncio.ensure_future(a.get_or_load(key, long))
        await started.wait()
        await asyncio.sleep(1.5)  # past the first lease's end
        second: list[int] = []

        async def other() -> str:
            second.append(1)
            return "second"

        v = await asyncio.wait_for(b.get_or_load(key, other), 10)
        return await first, v, a, b, second

    first, v, a, b, second = asyncio.run(main())
    assert first == "long" and v == "long"
    assert second == [], "a second load started while the first held its key"
    assert a.stats()["lease_extensions"] >= 2, a.stats()
    assert a.stats()["fills_rejected"] == 0 and b.stats()["lease_waits"] == 1


# -- issue 11: forked workers never share lease tokens (C2) ---------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_workers_draw_different_lease_tokens(redis_server: Any, redis_client: Any) -> None:
    """A cache built before ``os.fork()`` (gunicorn --preload): each child takes a lease on
    its own key; their tokens must differ. Once every child drew the same token from the
    copied random stream; now the store issues them (read.lua: the server clock in µs)."""
    import redis

    cache = Cache(RedisStore(redis.Redis(port=redis_server.port, socket_timeout=2)), POLICY)
    cache.get_or_load(Key("fork", "warm"), lambda: 1)  # the stream is in use before the fork
    keys = [Key("fork", str(i)) for i in range(3)]
    for k in keys:
        cache.invalidate(k)
    pids = []
    for k in keys:
        pid = os.fork()
        if pid == 0:  # the child: hold a lease on its key for a moment
            code = 1
            try:
                cache.get_or_load(k, lambda: time.sleep(1.5) or "v")
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    try:
        tokens: dict[str, bytes] = {}
        deadline = time.monotonic() + 10
        while len(tokens) < len(keys) and time.monotonic() < deadline:
            for k in keys:
                raw = redis_client.get(str(k))
                if raw and raw.split(b"|")[8]:
                    tokens[str(k)] = raw.split(b"|")[8]
            time.sleep(0.01)
        assert len(tokens) == len(keys), f"every child took its lease: {tokens}"
        assert len(set(tokens.values())) == len(keys), f"children drew the same lease token: {tokens}"
    finally:
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_c2_forked_workers_and_an_invalidate_mid_load_leave_no_stale_fill(redis_server: Any, redis_client: Any) -> None:
    """C2 across pre-forked workers sharing one cache built before ``os.fork()``: worker A
    loads "old" under its lease; the parent's ``invalidate`` revokes it; worker B loads "new"
    under a new lease. A's late fill is refused and "new" stays. Before tokens were issued by
    the store, B could draw A's token from the random stream both copied, and A's fill passed."""
    import redis

    cache = Cache(RedisStore(redis.Redis(port=redis_server.port, socket_timeout=2)), POLICY)
    cache.get_or_load(Key("fork", "warm"), lambda: 1)  # the stream is in use before the fork
    k = Key("fork", "stale")
    started_r, started_w = os.pipe()
    release_r, release_w = os.pipe()

    def slow_old() -> str:
        os.write(started_w, b"1")  # A holds the lease and is loading
        os.read(release_r, 1)  # until the parent lets it finish, after B filled
        return "old"

    def child(loader: Any) -> None:
        code = 1
        try:
            cache.get_or_load(k, loader)
            code = 0
        finally:
            os._exit(code)

    pid_a = os.fork()
    if pid_a == 0:
        child(slow_old)
    pid_b = None
    try:
        assert os.read(started_r, 1) == b"1"
        token_a = int(redis_client.get(str(k)).split(b"|")[8])
        cache.invalidate(k)
        pid_b = os.fork()
        if pid_b == 0:
            child(lambda: "new")
        _, status = os.waitpid(pid_b, 0)
        pid_b = None
        assert os.waitstatus_to_exitcode(status) == 0
        # The record keeps its last token after the fill (the floor for the next one).
        token_b = int(redis_client.get(str(k)).split(b"|")[8])
        assert token_b > token_a, "a lease after a revoked one gets a larger token"
    finally:
        os.write(release_w, b"1")
        _, status = os.waitpid(pid_a, 0)
        if pid_b is not None:
            os.waitpid(pid_b, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    fresh = Cache(RedisStore(redis.Redis(port=redis_server.port, socket_timeout=2)), POLICY)
    assert fresh.get(k) == "new", "the revoked worker's fill must not land"
    assert fresh.stats()["hits_fresh"] == 1


# -- issue 11: nothing is stored that a reader would refuse ---------------------------------


def test_values_nested_deeper_than_readers_take_are_refused_not_stored(stores: tuple[Any, Any]) -> None:
    deep: Any = "leaf"
    for _ in range(130):
        deep = [deep]
    ok: Any = "leaf"
    for _ in range(127):
        ok = [ok]
    key = Key("deep", "k")
    with Cache(stores[0], POLICY) as cache:
        with pytest.raises(ValueError, match="128"):
            cache.set(key, deep)
        with pytest.raises(ValueError, match="128"):
            cache.get_or_load(key, lambda: deep)
        assert cache.get(key, "absent") == "absent", "nothing was stored"
        assert cache.get_or_load(key, lambda: ok) == ok, "127 levels (+1 for the value) round-trip"
        assert cache.get(key) == ok
        assert cache.stats()["corrupt_entries"] == 0


# -- issue 11: bump / invalidate_tag by namespace name reach hash-tagged keys ----------------


def test_bump_and_invalidate_tag_by_namespace_reach_hash_tagged_keys(stores: tuple[Any, Any]) -> None:
    tagged = Key("htns", "k", hash_tag=True)
    plain = Key("htns", "p")
    with Cache(stores[0], POLICY) as cache:
        cache.invalidate(tagged)
        cache.invalidate(plain)
        assert cache.get_or_load(tagged, lambda: "v1") == "v1"
        assert cache.get_or_load(plain, lambda: "p1") == "p1"
        cache.bump("htns")
        assert cache.get(tagged, "gone") == "gone", "a hash-tagged key of the namespace is orphaned"
        assert cache.get(plain, "gone") == "gone", "and a plain one"
        assert cache.get_or_load(tagged, lambda: "v2", tags=["team"]) == "v2"
        cache.invalidate_tag("htns", "team")
        assert cache.get(tagged, "gone", tags=["team"]) == "gone"

    async def main() -> Any:
        c = AsyncCache(stores[1], POLICY)
        await c.invalidate(tagged)
        await c.get_or_load(tagged, lambda: "a1")
        await c.bump("htns")
        return await c.get(tagged, "gone")

    assert asyncio.run(main()) == "gone"


def test_event_loop_shutdown_releases_the_leases_of_pending_loads(redis_server: Any) -> None:
    """asyncio.run() returning with a load still running (a task nobody awaited, a background
    refresh) cancels it: its lease must go back before the loop closes, so the next caller
    anywhere loads at once instead of waiting out lock_wait (issue 11: every exit releases)."""
    import redis
    import redis.asyncio

    key, stale_key = Key("shutdown", "pending"), Key("shutdown", "refresh")
    policy = Policy(soft_ttl=0.05, hard_ttl=60, lock_wait=5)

    loop_errors: list[str] = []

    async def main() -> None:
        # "Task was destroyed but it is pending!" (a release task the closing loop dropped)
        # comes through the loop's exception handler.
        asyncio.get_running_loop().set_exception_handler(lambda _l, ctx: loop_errors.append(str(ctx.get("message"))))
        cache = AsyncCache(RedisStore(redis.asyncio.Redis(port=redis_server.port, socket_timeout=2)), policy)
        await cache.get_or_load(stale_key, lambda: "old")
        await asyncio.sleep(0.1)  # now stale: the next call serves it and refreshes in the background
        started = asyncio.Event()

        async def hangs() -> str:
            started.set()
            await asyncio.sleep(60)
            return "never"

        asyncio.ensure_future(cache.get_or_load(key, hangs))  # never awaited
        await started.wait()
        started.clear()
        assert await cache.get_or_load(stale_key, hangs) == "old"
        await started.wait()  # the background refresh holds the lease now
        # main returns: asyncio.run cancels both loads, then closes the loop

    asyncio.run(main())
    import gc

    gc.collect()
    assert loop_errors == [], "every release finished before the loop closed"
    with Cache(RedisStore(redis.Redis(port=redis_server.port, socket_timeout=2)), policy) as cache:
        assert cache.get_or_load(key, lambda: "next") == "next"
        assert cache.get_or_load(stale_key, lambda: "fresh") in ("old", "fresh")
        s = cache.stats()
        assert s["lease_waits"] == 0 and s["lease_timeouts"] == 0, f"a lease outlived its loop: {s}"
