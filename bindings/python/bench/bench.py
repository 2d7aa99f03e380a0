"""karlton benchmarks in one run (issue 4 §8). Prints a markdown table of ratios.

    python bindings/python/bench/bench.py            # starts its own redis-server on a free port

Hit latency: best-of-N `timeit` per call. Redis hits: the best of 60 short rounds taken in turns
with the raw redis-py GET; the ratio is the median of the per-round ratios (robust to a busy
machine). Stampede: a missing key, a 50 ms loader, N concurrent callers; loader calls, caller
p50/p99, and Redis commands (INFO commandstats delta).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import RedisServer  # noqa: E402

import karlton  # noqa: E402
from karlton import AsyncCache, Cache, Key, Policy, RedisStore  # noqa: E402

VALUE = {"id": 42, "name": "Ada Lovelace", "roles": ["admin", "dev"]}


def paired(runs: dict[str, Callable[[], float]], rounds: int = 60) -> dict[str, tuple[float, float]]:
    """Hit latency on a busy machine: many short rounds, the workloads taking turns in each
    (`runs[name]()` times one round, per call). Per workload: the best round, and the median
    over rounds of its time / the first workload's time in the same round (paired, so load
    that comes and goes cancels out)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(run())
    base = times[next(iter(runs))]
    return {
        name: (min(ts), statistics.median(t / b for t, b in zip(ts, base)))
        for name, ts in times.items()
    }


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def commands(r) -> int:  # type: ignore[no-untyped-def]
    return sum(v["calls"] for k, v in r.info("commandstats").items() if not k.endswith("info"))


def memory_hits(rows: list[tuple[str, str, str]]) -> None:
    """Memory hits: 40 short rounds taken in turns with `dict.get`; each the best round, the
    ratio best / best (a longer round is likelier to be preempted on a shared machine, so the
    median of per-round ratios would favour the baseline)."""
    d = {"user:42": VALUE}
    cache = Cache()
    k = Key("user", 42)
    cache.get_or_load(k, lambda: VALUE)
    g = {"d": d, "c": cache, "k": k, "f": lambda: VALUE, "Key": Key}
    stmts = {
        "memory hit: dict.get": 'd.get("user:42")',
        "memory hit: karlton Cache.get_or_load": "c.get_or_load(k, f)",
        "memory hit: karlton Cache.get": "c.get(k)",
        "Key(\"user\", 42) build": 'Key("user", 42)',
        "memory hit incl. Key build": 'c.get_or_load(Key("user", 42), f)',
    }
    try:
        import cachetools

        t = cachetools.TTLCache(maxsize=10_000, ttl=60)
        t["user:42"] = VALUE
        g["t"] = t
        stmts["memory hit: cachetools.TTLCache[key]"] = 't["user:42"]'
    except ImportError:
        rows.append(("memory hit: cachetools.TTLCache[key]", "not installed", "-"))
    n = 20_000

    def timer(stmt: str) -> Callable[[], float]:
        t = timeit.Timer(stmt, globals=g)
        return lambda: t.timeit(n) / n

    res = {label: best for label, (best, _) in paired({k: timer(v) for k, v in stmts.items()}, rounds=40).items()}
    base = res["memory hit: dict.get"]
    for label, best in res.items():
        rows.append((label, f"{best * 1e9:.0f} ns", f"{best / base:.1f}×"))
    get_ratio = res["memory hit: karlton Cache.get"] / res["memory hit: karlton Cache.get_or_load"]
    rows.append(("memory hit: get / get_or_load", "-", f"{get_ratio:.2f}×"))

    async def aloop() -> float:
        acache = AsyncCache()
        f = lambda: VALUE  # noqa: E731
        await acache.get_or_load(k, f)
        best = float("inf")
        for _ in range(40):
            t0 = time.perf_counter()
            for _ in range(n):
                await acache.get_or_load(k, f)
            best = min(best, (time.perf_counter() - t0) / n)
        return best

    x = asyncio.run(aloop())
    rows.append(("memory hit: karlton AsyncCache.get_or_load (awaited)", f"{x * 1e9:.0f} ns", f"{x / base:.1f}×"))


def memory_misses(rows: list[tuple[str, str, str]]) -> None:
    """Memory misses (a new key each call: read, lease, load, fill), in turns: the default
    policy runs the loader on the calling thread with the keeper watching it; a policy with a
    load timeout runs it on the loader pool (a thread hop each way). Ratios to the inline path,
    best round each."""
    inline, pooled = Cache(), Cache(policy=Policy(load_hard_timeout=30))
    seq = iter(range(10**9))
    f = lambda: VALUE  # noqa: E731
    n = 2_000

    def timer(cache: Cache) -> Callable[[], float]:
        def run() -> float:
            keys = [Key("miss", next(seq)) for _ in range(n)]
            t0 = time.perf_counter()
            for k in keys:
                cache.get_or_load(k, f)
            return (time.perf_counter() - t0) / n

        return run

    res = paired({"inline": timer(inline), "pooled": timer(pooled)}, rounds=20)
    base = res["inline"][0]
    rows.append(("memory miss: default policy (loader inline, keeper watching)", f"{base * 1e6:.1f} µs", "1.00×"))
    rows.append(("memory miss: with load_hard_timeout (loader on the pool)", f"{res['pooled'][0] * 1e6:.1f} µs", f"{res['pooled'][0] / base:.2f}×"))


def value_encoding(rows: list[tuple[str, str, str]]) -> None:
    """Writing a value (set, a fill): karlton's JSON writer (which also refuses what another
    runtime would read back changed) against the json module's compact encoder."""
    import json

    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
    from karlton._karlton import encode_json

    g = {"v": VALUE, "dumps": dumps, "enc": encode_json}
    n = 20_000

    def timer(stmt: str) -> Callable[[], float]:
        t = timeit.Timer(stmt, globals=g)
        return lambda: t.timeit(n) / n

    res = paired({"json": timer("dumps(v).encode()"), "karlton": timer("enc(v)")}, rounds=20)
    base = res["json"][0]
    rows.append(("encode a value: json.dumps(...).encode()", f"{base * 1e9:.0f} ns", "1.0×"))
    rows.append(("encode a value: karlton's JSON writer", f"{res['karlton'][0] * 1e9:.0f} ns", f"{res['karlton'][0] / base:.2f}×"))


def redis_hits(rows: list[tuple[str, str, str]], port: int) -> None:
    import redis

    r = redis.Redis(port=port)
    r.set("plain:42", b'{"id":42}')
    cache = Cache(RedisStore(redis.Redis(port=port)))
    script = Cache(RedisStore(redis.Redis(port=port), fast_reads=False))
    k = Key("user", 42)
    cache.get_or_load(k, lambda: VALUE)
    g = {"r": r, "c": cache, "s": script, "k": k, "f": lambda: VALUE}
    n = 300

    def timer(stmt: str) -> Callable[[], float]:
        t = timeit.Timer(stmt, globals=g)
        return lambda: t.timeit(n) / n

    t = paired({
        "base": timer('r.get("plain:42")'),
        "fast": timer("c.get_or_load(k, f)"),
        "get": timer("c.get(k)"),
        "script": timer("s.get_or_load(k, f)"),
    })
    rows.append(("redis hit: redis-py GET", f"{t['base'][0] * 1e6:.0f} µs", "1.0×"))
    for label, name in (
        ("redis hit: karlton get_or_load (fast read: 1 round trip, no Lua)", "fast"),
        ("redis hit: karlton get (fast read)", "get"),
        ("redis hit: karlton get_or_load, fast_reads=False (1 EVALSHA)", "script"),
    ):
        rows.append((label, f"{t[name][0] * 1e6:.0f} µs", f"{t[name][1]:.2f}×"))


def redis_hits_async(rows: list[tuple[str, str, str]], port: int) -> None:
    import redis.asyncio

    async def main() -> dict[str, tuple[float, float]]:
        r = redis.asyncio.Redis(port=port)
        await r.set("plain:42", b'{"id":42}')
        cache = AsyncCache(RedisStore(redis.asyncio.Redis(port=port)))
        script = AsyncCache(RedisStore(redis.asyncio.Redis(port=port), fast_reads=False))
        k = Key("user", "async")
        await cache.get_or_load(k, lambda: VALUE)
        f = lambda: VALUE  # noqa: E731
        calls = {
            "base": lambda: r.get("plain:42"),
            "fast": lambda: cache.get_or_load(k, f),
            "script": lambda: script.get_or_load(k, f),
        }
        times: dict[str, list[float]] = {name: [] for name in calls}
        n = 200
        for _ in range(60):
            for name, call in calls.items():
                t0 = time.perf_counter()
                for _ in range(n):
                    await call()
                times[name].append((time.perf_counter() - t0) / n)
        await r.aclose()
        return {
            name: (min(ts), statistics.median(a / b for a, b in zip(ts, times["base"])))
            for name, ts in times.items()
        }

    t = asyncio.run(main())
    rows.append(("redis hit: redis.asyncio GET", f"{t['base'][0] * 1e6:.0f} µs", "1.0×"))
    rows.append(("redis hit: karlton AsyncCache.get_or_load (fast read)", f"{t['fast'][0] * 1e6:.0f} µs",
                 f"{t['fast'][1]:.2f}×"))
    rows.append(("redis hit: karlton AsyncCache.get_or_load, fast_reads=False", f"{t['script'][0] * 1e6:.0f} µs",
                 f"{t['script'][1]:.2f}×"))


def stampede_threads(rows: list[tuple[str, str, str]], store_factory, label: str, r=None) -> None:  # type: ignore[no-untyped-def]
    cache = Cache(store_factory(), Policy(soft_ttl=60))
    k = Key("stampede", label)
    calls = 0
    lock = threading.Lock()

    def loader() -> dict:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.05)
        return VALUE

    barrier = threading.Barrier(50)
    lat: list[float] = []

    def worker() -> None:
        barrier.wait()
        t0 = time.perf_counter()
        cache.get_or_load(k, loader)
        lat.append(time.perf_counter() - t0)

    # A warm process: connection open, scripts loaded, the namespace's counter created (what a
    # stampede meets in steady state; the first fill ever in a namespace also creates it).
    cache.get_or_load(Key("stampede", "warm"), lambda: VALUE)
    before = commands(r) if r is not None else 0
    ts = [threading.Thread(target=worker) for _ in range(50)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    cmds = f", {commands(r) - before} Redis cmds" if r is not None else ""
    rows.append((f"stampede 50 threads ({label})", f"{calls} loader call(s){cmds}",
                 f"p50 {pct(lat, 50) * 1e3:.0f} ms / p99 {pct(lat, 99) * 1e3:.0f} ms"))


def stampede_tasks(rows: list[tuple[str, str, str]], port: int | None) -> None:
    async def main() -> tuple[int, list[float]]:
        if port is None:
            cache = AsyncCache(policy=Policy(soft_ttl=60))
        else:
            import redis.asyncio

            cache = AsyncCache(RedisStore(redis.asyncio.Redis(port=port)), Policy(soft_ttl=60))
        calls = 0

        async def loader() -> dict:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return VALUE

        lat: list[float] = []

        async def one() -> None:
            t0 = time.perf_counter()
            await cache.get_or_load(Key("stampede", "tasks"), loader)
            lat.append(time.perf_counter() - t0)

        await cache.get_or_load(Key("stampede", "warm-tasks"), lambda: VALUE)  # a warm process
        nonlocal before
        before = commands(r) if r is not None else 0
        await asyncio.gather(*(one() for _ in range(200)))
        return calls, lat

    r = None
    if port is not None:
        import redis

        r = redis.Redis(port=port)
    before = 0
    calls, lat = asyncio.run(main())
    cmds = f", {commands(r) - before} Redis cmds" if r is not None else ""
    label = "memory" if port is None else "redis"
    rows.append((f"stampede 200 asyncio tasks ({label})", f"{calls} loader call(s){cmds}",
                 f"p50 {pct(lat, 50) * 1e3:.0f} ms / p99 {pct(lat, 99) * 1e3:.0f} ms"))


def _proc(port: int, barrier, out) -> None:  # type: ignore[no-untyped-def]
    import redis

    r = redis.Redis(port=port)
    cache = Cache(RedisStore(r), Policy(soft_ttl=60))
    cache.get(Key("warm"))  # connect and load scripts before the clock starts

    def loader() -> dict:
        r.incr("bench:loader-calls")
        time.sleep(0.05)
        return VALUE

    barrier.wait()
    t0 = time.perf_counter()
    cache.get_or_load(Key("stampede", "procs"), loader)
    out.put(time.perf_counter() - t0)


def stampede_procs(rows: list[tuple[str, str, str]], port: int) -> None:
    import redis

    r = redis.Redis(port=port)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_proc, args=(port, barrier, out)) for _ in range(4)]
    for p in procs:
        p.start()
    lat = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    calls = int(r.get("bench:loader-calls") or 0)
    rows.append(("stampede 4 processes (redis)", f"{calls} loader call(s)",
                 f"p50 {pct(lat, 50) * 1e3:.0f} ms / p99 {pct(lat, 99) * 1e3:.0f} ms (loader 50 ms: {max(lat) / 0.05:.2f}×)"))


def main() -> None:
    rows: list[tuple[str, str, str]] = []
    memory_hits(rows)
    memory_misses(rows)
    value_encoding(rows)
    stampede_threads(rows, lambda: None, "memory")
    stampede_tasks(rows, None)
    if shutil.which("redis-server"):
        import redis

        server = RedisServer(Path(tempfile.mkdtemp()))
        server.start()
        try:
            redis_hits(rows, server.port)
            redis_hits_async(rows, server.port)
            r = redis.Redis(port=server.port)
            stampede_threads(rows, lambda: RedisStore(redis.Redis(port=server.port)), "redis", r)
            stampede_tasks(rows, server.port)
            stampede_procs(rows, server.port)
        finally:
            server.kill()
    for lib in ("cashews", "dogpile.cache"):
        try:
            __import__(lib)
            rows.append((lib, "installed", "comparison not implemented yet"))
        except ImportError:
            rows.append((lib, "not installed", "-"))
    print(f"python {sys.version.split()[0]}, karlton {karlton.__name__}, {os.cpu_count()} cpus\n")
    print("| workload | result | ratio / latency |")
    print("|---|---|---|")
    for a, b, c in rows:
        print(f"| {a} | {b} | {c} |")


if __name__ == "__main__":
    main()
