"""Behaviour on a real redis-server (started per test by the fixture)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import threading
import time
from typing import Any

import pytest

redis = pytest.importorskip("redis")

import karlton  # noqa: E402
from karlton import AsyncCache, Cache, Key, Policy, RedisStore  # noqa: E402
from conftest import record_entry  # noqa: E402


def make_cache(port: int, **kw: Any) -> Cache:
    # No client-side retries: redis-py's own retry/backoff policy (the user's choice) would
    # otherwise decide how long each call takes while the server is down.
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=0.3, retry=Retry(NoBackoff(), 0))
    return Cache(RedisStore(client), **kw)


def test_roundtrip_hit_miss_and_script_fallback(redis_server: Any, redis_client: Any) -> None:
    cache = make_cache(redis_server.port)
    k = Key("user", 7)
    calls = []
    assert cache.get_or_load(k, lambda: calls.append(1) or {"id": 7}) == {"id": 7}
    redis_client.script_flush()  # NOSCRIPT -> EVAL fallback
    assert cache.get_or_load(k, lambda: calls.append(1) or {"id": 0}) == {"id": 7}
    assert len(calls) == 1
    assert cache.get(k) == {"id": 7}
    assert cache.set(k, {"id": 8}, version=2)
    assert not cache.set(k, {"id": 1}, version=1)
    assert cache.get(k) == {"id": 8}
    assert cache.invalidate(k) is True
    assert cache.get(k) is None
    s = cache.stats()
    assert s["hits_fresh"] >= 1 and s["loads"] == 1 and s["fills_rejected"] == 1


def test_value_written_from_python_is_core_entry(redis_server: Any, redis_client: Any) -> None:
    """Cross-runtime: the bytes in Redis are the core's entry format with a JSON value, so the
    Rust driver (and Node) read exactly this. Decoded here with the core's own entry decoder
    (karlton.decode_entry is karlton_core::Entry::decode through the native module)."""
    cache = make_cache(redis_server.port, policy=Policy(soft_ttl=30, hard_ttl=60))
    k = Key("cross", "runtime", params={"q": [1, 2]})
    value = {"name": "Zoë", "n": [1, 2.5, None, True], "big": 2**53}
    cache.get_or_load(k, lambda: value, tags=["t1"])
    raw = record_entry(redis_client.get(str(k)))
    entry = karlton.decode_entry(raw)
    assert entry["codec"] == 1  # JSON
    assert json.loads(entry["value"]) == value
    assert entry["tags"] == ["t1"]
    assert entry["hard_at"] - entry["soft_at"] == 30_000
    # JSON is compact and UTF-8 (what Node's JSON.parse and serde_json read unchanged).
    assert entry["value"] == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_50_threads_one_loader_call(redis_server: Any) -> None:
    cache = make_cache(redis_server.port, policy=Policy(soft_ttl=30))
    k = Key("stampede")
    cache.get_or_load(k, lambda: "old", policy=Policy(soft_ttl=0.05))
    time.sleep(0.1)  # expired
    calls = 0
    lock = threading.Lock()

    def loader() -> str:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.05)
        return "new"

    barrier = threading.Barrier(50)
    out: list[Any] = []

    def worker() -> None:
        barrier.wait()
        out.append(cache.get_or_load(k, loader))

    ts = [threading.Thread(target=worker) for _ in range(50)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert calls == 1
    assert out == ["new"] * 50


def test_200_tasks_asyncio_client_one_loader_call(redis_server: Any) -> None:
    import redis.asyncio

    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "new"

    async def main() -> list[Any]:
        client = redis.asyncio.Redis(port=redis_server.port)
        cache = AsyncCache(RedisStore(client), Policy(soft_ttl=30))
        k = Key("astampede")
        await cache.get_or_load(k, lambda: "old", policy=Policy(soft_ttl=0.05))
        await asyncio.sleep(0.1)
        res = await asyncio.gather(*(cache.get_or_load(k, loader) for _ in range(200)))
        assert await cache.get(k) == "new"
        await client.aclose()
        return res

    assert asyncio.run(main()) == ["new"] * 200
    assert calls == 1


def _proc(port: int, barrier: Any, out: Any) -> None:
    r = redis.Redis(port=port)
    cache = Cache(RedisStore(r), Policy(soft_ttl=30, lock_backoff=[0.005, 0.01, 0.02]))

    def loader() -> str:
        r.incr("loader-calls")
        time.sleep(0.05)
        return "value"

    barrier.wait()
    t0 = time.perf_counter()
    v = cache.get_or_load(Key("mp"), loader)
    out.put((v, time.perf_counter() - t0))


def test_4_processes_one_loader_call(redis_server: Any, redis_client: Any) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    out = ctx.Queue()
    procs = [ctx.Process(target=_proc, args=(redis_server.port, barrier, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(10)
    assert [v for v, _ in results] == ["value"] * 4
    assert int(redis_client.get("loader-calls")) == 1  # C3 across processes
    assert max(t for _, t in results) < 1.0


def test_invalidate_during_load_no_stale_fill_c2(redis_server: Any) -> None:
    cache = make_cache(redis_server.port)
    other = make_cache(redis_server.port)  # a writer elsewhere
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
    other.invalidate(k)
    release.set()
    t.join()
    assert out == ["old"]
    assert cache.get(k) is None
    assert cache.stats()["fills_rejected"] == 1


def test_stale_while_revalidate_latency(redis_server: Any) -> None:
    cache = make_cache(redis_server.port, policy=Policy(soft_ttl=0.1, hard_ttl=30))
    k = Key("swr")
    cache.get_or_load(k, lambda: "v1")
    time.sleep(0.15)  # past soft (one-sided: any longer wait is still before hard)
    # The refresh blocks until released, so the stale answer provably did not wait for it
    # (explicit events, not "under 100 ms").
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(30)
        return "v2"

    assert cache.get_or_load(k, slow) == "v1"
    assert started.wait(10), "one refresh runs in the background"
    release.set()
    deadline = time.monotonic() + 10
    while cache.get(k) != "v2" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cache.get(k) == "v2"
    cache.close()


def test_redis_killed_answers_continue_and_recover(redis_server: Any) -> None:
    cache = make_cache(redis_server.port)
    k = Key("down")
    calls = 0

    def loader() -> str:
        nonlocal calls
        calls += 1
        return "v"

    assert cache.get_or_load(k, loader) == "v"
    assert cache.get_or_load(k, loader) == "v" and calls == 1
    redis_server.kill()
    for _ in range(3):
        t0 = time.perf_counter()
        assert cache.get_or_load(k, loader) == "v"  # answered by the loader
        assert time.perf_counter() - t0 < 1.0
    assert cache.stats()["store_errors"] >= 3
    with pytest.raises(karlton.StoreError):
        cache.invalidate(k)  # writes say so
    strict = make_cache(redis_server.port, policy=Policy(on_store_error="error"))
    with pytest.raises(karlton.StoreError):
        strict.get_or_load(k, loader)
    redis_server.start()  # same port, empty
    before = calls
    assert cache.get_or_load(k, loader) == "v"
    assert cache.get_or_load(k, loader) == "v"
    assert calls == before + 1  # recovered: cached again


def test_tag_invalidation_and_bump(redis_server: Any) -> None:
    cache = make_cache(redis_server.port)
    a = Key("t", "a")
    cache.get_or_load(a, lambda: 1, tags=["x"])
    cache.invalidate_tag("t", "x")
    assert cache.get_or_load(a, lambda: 2, tags=["x"]) == 2
    cache.bump(a)
    assert cache.get_or_load(a, lambda: 3, tags=["x"]) == 3


def test_sync_client_in_async_cache_and_async_client_in_sync_cache(redis_server: Any) -> None:
    import redis.asyncio

    with pytest.raises(TypeError, match="AsyncCache"):
        Cache(RedisStore(redis.asyncio.Redis(port=redis_server.port)))

    async def main() -> None:
        cache = AsyncCache(RedisStore(redis.Redis(port=redis_server.port)))
        assert await cache.get_or_load(Key("s"), lambda: 5) == 5
        assert await cache.get_or_load(Key("s"), lambda: 6) == 5

    asyncio.run(main())


def test_decode_responses_client_is_refused(redis_server: Any) -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        RedisStore(redis.Redis(port=redis_server.port, decode_responses=True))


def test_from_url_answers_from_the_loader_while_redis_hangs_or_is_gone(redis_server: Any) -> None:
    """With the store down or hung, a call is answered from its loader within the store's
    timeout (0.25 s by default, as in Rust and Node), not after redis-py's retry schedule."""
    import os
    import signal

    store = RedisStore.from_url(f"redis://127.0.0.1:{redis_server.port}")
    kw = store.client.connection_pool.connection_kwargs
    assert (kw["socket_timeout"], kw["socket_connect_timeout"]) == (0.25, 0.25)
    cache = Cache(store)
    k = Key("hung")
    assert cache.get_or_load(k, lambda: "cached") == "cached"
    assert redis_server.proc is not None
    pid = redis_server.proc.pid
    os.kill(pid, signal.SIGSTOP)  # hung: accepts nothing, answers nothing, until SIGCONT
    try:
        done: list[Any] = []
        t = threading.Thread(target=lambda: done.append(cache.get_or_load(k, lambda: "loaded")), daemon=True)
        t.start()
        t.join(timeout=20)  # a hang guard, not a timing claim: the server stays stopped meanwhile
        assert done == ["loaded"], "answered from the loader while the server is still stopped"
        assert cache.stats()["store_errors"] >= 1
    finally:
        os.kill(pid, signal.SIGCONT)
    redis_server.kill()
    assert cache.get_or_load(k, lambda: "gone") == "gone"
    redis_server.start()
    assert cache.get_or_load(Key("hung", "back"), lambda: 1) == 1
    cache.close()
