"""Behaviour of Cache and AsyncCache on the MemoryStore."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

import karlton
from karlton import AsyncCache, Cache, Key, MemoryStore, Policy


class Counter:
    def __init__(self, value: Any = "v", delay: float = 0.0) -> None:
        self.calls = 0
        self.value = value
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self) -> Any:
        with self.lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return self.value


def test_hit_after_miss_and_json_roundtrip() -> None:
    cache = Cache()
    k = Key("user", 1)
    load = Counter({"name": "Ada", "tags": ["a", "b"], "n": 1.5, "ok": True, "none": None})
    assert cache.get_or_load(k, load) == load.value
    assert cache.get_or_load(k, load) == load.value
    assert load.calls == 1
    s = cache.stats()
    assert s["misses"] == 1 and s["loads"] == 1 and s["hits_fresh"] == 1


def test_each_caller_gets_its_own_object() -> None:
    cache = Cache()
    k = Key("obj")
    a = cache.get_or_load(k, lambda: {"x": [1]})
    a["x"].append(2)
    assert cache.get_or_load(k, lambda: None) == {"x": [1]}


@pytest.mark.parametrize("read", ["get_or_load", "get", "async"])
def test_hits_decode_once_but_every_caller_owns_its_object(read: str) -> None:
    """The documented choice (README "Values"): a memory-store hit does not decode the JSON
    again (the decoded value is kept with the entry), yet no two callers share a dict or list —
    each gets new containers all the way down, so changing one never changes what the cache
    serves, on the memory store as on Redis. Immutable leaves (str, int, …) are shared."""
    cache, acache = Cache(), AsyncCache()
    k = Key("own", read)
    value = {"id": 1, "name": "Ada", "roles": ["a", {"deep": [1, 2]}], "meta": {"n": None}}
    expected = {"id": 1, "name": "Ada", "roles": ["a", {"deep": [1, 2]}], "meta": {"n": None}}

    def hit() -> Any:
        if read == "get_or_load":
            return cache.get_or_load(k, lambda: pytest.fail("loaded twice"))
        if read == "get":
            return cache.get(k)
        return asyncio.run(acache.get_or_load(k, lambda: pytest.fail("loaded twice")))

    first = asyncio.run(acache.get_or_load(k, lambda: value)) if read == "async" else cache.get_or_load(k, lambda: value)
    a, b = hit(), hit()
    assert a == b == first == expected
    assert a is not b and a["roles"] is not b["roles"] and a["roles"][1] is not b["roles"][1]
    assert a["roles"][1]["deep"] is not b["roles"][1]["deep"] and a["meta"] is not b["meta"]
    assert a["name"] is b["name"]  # a str is immutable: shared
    a["roles"][1]["deep"].append(3)
    a["meta"]["n"] = 5
    del a["id"]
    first["roles"].clear()
    value.clear()
    assert hit() == expected
    # A write replaces the entry and what was decoded from it.
    if read == "async":
        asyncio.run(acache.set(k, {"id": 2}))
    else:
        cache.set(k, {"id": 2})
    assert hit() == {"id": 2}


def test_bytes_pass_through_raw() -> None:
    cache = Cache()
    k = Key("blob")
    assert cache.get_or_load(k, lambda: b"\x00\xffraw") == b"\x00\xffraw"
    assert cache.get(k) == b"\x00\xffraw"


def test_custom_codec() -> None:
    class Upper:
        id = 200

        def encode(self, value: Any) -> bytes:
            return str(value).upper().encode()

        def decode(self, data: bytes) -> Any:
            return "decoded:" + data.decode()

    cache = Cache(codec=Upper())
    k = Key("codec")
    assert cache.get_or_load(k, lambda: "hi") == "decoded:HI"
    assert cache.get(k) == "decoded:HI"


def test_loader_none_is_negative_cached() -> None:
    cache = Cache(policy=Policy(soft_ttl=60, negative_ttl=60))
    k = Key("missing")
    load = Counter(None)
    assert cache.get_or_load(k, load) is None
    assert cache.get_or_load(k, load) is None
    assert load.calls == 1
    assert cache.stats()["negative_hits"] == 1


def test_negative_not_cached_without_negative_ttl() -> None:
    cache = Cache()
    load = Counter(None)
    cache.get_or_load(Key("m"), load)
    cache.get_or_load(Key("m"), load)
    assert load.calls == 2


def test_loader_exception_propagates_and_is_not_cached() -> None:
    cache = Cache()
    k = Key("boom")

    class Boom(Exception):
        pass

    def bad() -> Any:
        raise Boom("nope")

    with pytest.raises(Boom):
        cache.get_or_load(k, bad)
    assert cache.get_or_load(k, lambda: 1) == 1
    assert cache.stats()["load_errors"] == 1


def test_stale_if_error_serves_stale_and_reports() -> None:
    errors: list[tuple[str, BaseException]] = []
    cache = Cache(policy=Policy(soft_ttl=0.05, hard_ttl=0.05, stale_if_error=60), on_error=lambda k, e: errors.append((k, e)))
    k = Key("sie")
    assert cache.get_or_load(k, lambda: "old") == "old"
    time.sleep(0.1)

    def bad() -> Any:
        raise RuntimeError("source down")

    assert cache.get_or_load(k, bad) == "old"
    assert cache.stats()["stale_if_error"] == 1
    assert errors and isinstance(errors[0][1], RuntimeError)


def test_stale_while_revalidate_returns_at_once() -> None:
    cache = Cache(policy=Policy(soft_ttl=0.1, hard_ttl=30))
    k = Key("swr")
    cache.get_or_load(k, lambda: "v1")
    time.sleep(0.15)  # past soft (one-sided: any longer wait is still before hard)
    # The refresh blocks until released: the stale answers below come while it is still running
    # (explicit events, not "under 100 ms").
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow() -> str:
        calls.append(1)
        started.set()
        release.wait(30)
        return "v2"

    assert cache.get_or_load(k, slow) == "v1"  # stale, served now
    assert started.wait(10), "one refresh runs in the background"
    assert not release.is_set()
    # Other callers keep getting the stale value while one refresh runs.
    assert cache.get_or_load(k, slow) == "v1"
    release.set()
    deadline = time.monotonic() + 10
    while cache.get(k) != "v2" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cache.get(k) == "v2"
    assert len(calls) == 1
    assert cache.stats()["hits_stale"] >= 1
    cache.close()


def test_background_refresh_error_goes_to_callback() -> None:
    seen = threading.Event()
    errors: list[BaseException] = []

    def on_error(key: str, e: BaseException) -> None:
        errors.append(e)
        seen.set()

    cache = Cache(policy=Policy(soft_ttl=0.05, hard_ttl=30), on_error=on_error)
    k = Key("bgerr")
    cache.get_or_load(k, lambda: 1)
    time.sleep(0.1)

    def bad() -> Any:
        raise ValueError("refresh failed")

    assert cache.get_or_load(k, bad) == 1
    assert seen.wait(3)
    assert isinstance(errors[0], ValueError)
    cache.close()


def test_single_flight_50_threads_one_loader_call() -> None:
    cache = Cache(policy=Policy(soft_ttl=30))
    k = Key("stampede")
    cache.get_or_load(k, lambda: "old", policy=Policy(soft_ttl=0.05))
    time.sleep(0.1)  # expired
    load = Counter("new", delay=0.05)
    barrier = threading.Barrier(50)
    results: list[Any] = []

    def worker() -> None:
        barrier.wait()
        results.append(cache.get_or_load(k, load))

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert load.calls == 1
    assert results == ["new"] * 50


def test_single_flight_200_tasks_one_loader_call() -> None:
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "new"

    async def main() -> list[Any]:
        cache = AsyncCache(policy=Policy(soft_ttl=30))
        k = Key("astampede")
        await cache.get_or_load(k, lambda: "old", policy=Policy(soft_ttl=0.05))
        await asyncio.sleep(0.1)
        return await asyncio.gather(*(cache.get_or_load(k, loader) for _ in range(200)))

    results = asyncio.run(main())
    assert calls == 1
    assert results == ["new"] * 200


def test_invalidate_during_load_no_stale_fill_c2() -> None:
    cache = Cache()
    k = Key("c2")
    started, release = threading.Event(), threading.Event()

    def slow_old() -> str:
        started.set()
        release.wait(5)
        return "old"

    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(cache.get_or_load(k, slow_old)))
    t.start()
    assert started.wait(5)
    cache.invalidate(k)  # the source changed while the load was in flight
    release.set()
    t.join()
    assert out == ["old"]  # the caller still gets its value ...
    assert cache.get(k) is None  # ... but it was not cached (C2)
    assert cache.stats()["fills_rejected"] == 1
    assert cache.get_or_load(k, lambda: "new") == "new"


def test_set_versions_never_go_back() -> None:
    cache = Cache()
    k = Key("ver")
    assert cache.set(k, "v5", version=5) is True
    assert cache.set(k, "v3", version=3) is False
    assert cache.get(k) == "v5"
    assert cache.set(k, "v6", version=6) is True
    assert cache.get(k) == "v6"


def test_invalidate_modes() -> None:
    cache = Cache(policy=Policy(soft_ttl=60, hard_ttl=120))
    k = Key("inv")
    cache.set(k, 1)
    assert cache.invalidate(k, mode="stale") is True
    # Marked stale: served while one caller refreshes.
    assert cache.get_or_load(k, lambda: 2) == 1
    assert cache.invalidate(k) is True
    assert cache.get(k, "gone") == "gone"
    with pytest.raises(ValueError, match="mode"):
        cache.invalidate(k, mode="nuke")
    cache.close()


def test_bump_and_invalidate_tag_t1() -> None:
    cache = Cache()
    a, b = Key("tenant", "a"), Key("tenant", "b")
    cache.get_or_load(a, lambda: "a1", tags=["t"])
    cache.get_or_load(b, lambda: "b1")
    cache.invalidate_tag("tenant", "t")
    assert cache.get_or_load(a, lambda: "a2", tags=["t"]) == "a2"
    assert cache.get_or_load(b, lambda: "b2") == "b1"
    cache.bump(b)
    assert cache.get_or_load(b, lambda: "b3") == "b3"


def test_lock_timeout_error() -> None:
    # Another process holds the lease: simulated by a second cache on the same store whose
    # loader blocks.
    store = MemoryStore()
    holder = Cache(store)
    waiter = Cache(store, Policy(lock_wait=0.1, on_lock_timeout="error"))
    k = Key("lock")
    go, holding = threading.Event(), threading.Event()
    # The holder's loader runs only once it holds the lease: it says so, then blocks.
    t = threading.Thread(target=lambda: holder.get_or_load(k, lambda: (holding.set(), go.wait(10))[1] and "x"))
    t.start()
    assert holding.wait(10), "the holder took the lease"
    with pytest.raises(karlton.LockTimeoutError):
        waiter.get_or_load(k, lambda: "y")
    go.set()
    t.join()


def test_load_hard_timeout() -> None:
    cache = Cache(policy=Policy(load_hard_timeout=0.1))
    with pytest.raises(karlton.LoadTimeoutError):
        cache.get_or_load(Key("slow"), lambda: time.sleep(1) or "late")
    cache.close(wait=False)


def test_policy_accepts_timedelta_and_seconds() -> None:
    p = Policy(soft_ttl=timedelta(minutes=1), hard_ttl=90.5, lock_backoff=[0.001, 0.002])
    assert '"soft_ttl_ms":60000' in p.to_json()
    assert '"hard_ttl_ms":90500' in p.to_json()
    assert p.replace(jitter=0.1).jitter == 0.1


def test_cached_decorator_positional_and_keyword_same_key() -> None:
    cache = Cache()
    calls: list[tuple[int, int]] = []

    @karlton.cached(cache)
    def add(a: int, b: int = 2) -> int:
        calls.append((a, b))
        return a + b

    assert add(1) == 3
    assert add(1, 2) == 3
    assert add(a=1, b=2) == 3
    assert add(b=2, a=1) == 3
    assert len(calls) == 1
    assert add.key(1) == add.key(a=1, b=2)
    assert add(2) == 4
    add.invalidate(1)
    assert add(1) == 3
    assert len(calls) == 3


def test_cached_async_and_methods() -> None:
    cache = AsyncCache()
    calls = 0

    class Repo:
        @karlton.cached(cache, namespace="repo.get")
        async def get(self, id: int) -> dict[str, int]:
            nonlocal calls
            calls += 1
            return {"id": id}

    async def main() -> None:
        r1, r2 = Repo(), Repo()
        assert await r1.get(1) == {"id": 1}
        assert await r2.get(id=1) == {"id": 1}  # self is ignored
        assert calls == 1

    asyncio.run(main())


def test_async_cache_memory_write_path() -> None:
    async def main() -> None:
        cache = AsyncCache()
        k = Key("a")
        assert await cache.set(k, [1, 2]) is True
        assert await cache.get(k) == [1, 2]
        assert await cache.invalidate(k) is True
        assert await cache.get(k) is None
        # bump orphans the namespace's entries and answers the new generation (a new one each time).
        assert await cache.set(k, [3]) is True
        assert await cache.get(k) == [3]
        g1 = await cache.bump("a")
        assert await cache.get(k) is None, "bump orphaned the entry"
        g2 = await cache.bump(k)
        assert isinstance(g1, int) and g1 > 0 and g2 != g1

    asyncio.run(main())


def test_key_scheme() -> None:
    assert str(Key("user", 42)) == "user:42"
    assert Key("a:b").build() != Key("a", "b").build()
    assert Key("u", params={"b": 1, "a": [1, 2]}) == Key("u", params={"a": [1, 2], "b": 1.0})
    assert str(Key("u", "x", version=7)).endswith(":v7")
    assert str(Key("u", hash_tag=True)).startswith("{u}")
    long = Key("u", "x" * 500)
    assert len(str(long)) <= 200
    assert karlton.params_hash({"a": 1}) == karlton.params_hash({"a": 1.0})


def test_memory_store_bounds_evict() -> None:
    store = MemoryStore(max_entries=64)
    cache = Cache(store)
    for i in range(1000):
        cache.set(Key("e", i), i)
    assert len(store) <= 64 + 16  # exact LRU per shard; each shard holds its share
    assert cache.stats()["evictions"] > 0
