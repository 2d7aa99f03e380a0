"""Redis Cluster vs one node: hit latency through karlton (sync), one run. Prints a markdown table;
then callers' latency and loads while a master is killed and while a hot slot migrates.

    python bindings/python/bench/cluster.py   # starts its own redis-server and 3+3 clusters

Rounds of 200 fresh hits on 20 hash-tag keys, the workloads taking turns in each round (bench.py's
`paired`): per workload the best round (µs per hit) and the median over rounds of its time / the
single-node karlton hit's time in the same round.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import paired  # noqa: E402
from conftest import RedisClusterProcs, RedisServer  # noqa: E402

import redis  # noqa: E402
import redis.cluster  # noqa: E402

from karlton import Cache, Key, Policy, RedisStore  # noqa: E402

VALUE = {"id": 42, "name": "Ada Lovelace", "roles": ["admin", "dev"]}
N = 200


def main() -> None:
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        single = RedisServer(Path(d1))
        single.start()
        cluster = RedisClusterProcs(Path(d2))
        cluster.start()
        try:
            r1 = redis.Redis(port=single.port)
            rc = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
            keys = [Key(f"bench{i}", "k", hash_tag=True) for i in range(20)]
            caches = {
                "one node: karlton get_or_load hit (fast read)": Cache(RedisStore(r1), Policy(soft_ttl=3600)),
                "cluster: karlton get_or_load hit (fast read, routed by slot)": Cache(RedisStore(rc), Policy(soft_ttl=3600)),
                "cluster: karlton get_or_load hit (fast_reads=False: read script)": Cache(
                    RedisStore(rc, fast_reads=False), Policy(soft_ttl=3600)
                ),
            }
            for c in caches.values():
                for k in keys:
                    c.get_or_load(k, lambda: VALUE)
            for k in keys:
                r1.set(str(k) + "raw", b"x" * 60)
                rc.set(str(k) + "raw", b"x" * 60)
            raw = [str(k) + "raw" for k in keys]

            def hits(c: Cache):  # type: ignore[no-untyped-def]
                def run() -> float:
                    t0 = time.perf_counter()
                    for i in range(N):
                        c.get_or_load(keys[i % 20], lambda: VALUE)
                    return (time.perf_counter() - t0) / N

                return run

            def gets(r):  # type: ignore[no-untyped-def]
                def run() -> float:
                    t0 = time.perf_counter()
                    for i in range(N):
                        r.get(raw[i % 20])
                    return (time.perf_counter() - t0) / N

                return run

            runs = {name: hits(c) for name, c in caches.items()}
            runs["one node: redis-py GET"] = gets(r1)
            runs["cluster: redis-py RedisCluster GET"] = gets(rc)
            res = paired(runs, rounds=40)
            print("| workload | best µs/hit | ratio to one-node karlton hit (median of rounds) |")
            print("|---|---|---|")
            for name, (best, ratio) in res.items():
                print(f"| {name} | {best * 1e6:.1f} | {ratio:.2f} |")
            for c in caches.values():
                assert c.stats()["store_errors"] == 0 and c.stats()["loads"] <= 20, c.stats()
        finally:
            cluster.stop()
            single.kill()


def faults() -> None:
    """8 threads hammering 4 hot keys of one slot through a failover and through a migration."""
    import threading

    from test_cluster import _hammer, _migrate_slot

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] * 1000

    print()
    print("| event | calls | loads (4 keys) | store errors | caller p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    for event in ("failover", "migration"):
        with tempfile.TemporaryDirectory() as d:
            c = RedisClusterProcs(Path(d))
            c.start()
            try:
                rc = redis.cluster.RedisCluster(host="127.0.0.1", port=c.ports[0], socket_connect_timeout=0.3)
                cache = Cache(RedisStore(rc), Policy(soft_ttl=60), max_workers=8)
                keys = [Key("hot", i, hash_tag=True) for i in range(4)]
                loads = [0]

                def loader(k: Key) -> str:
                    loads[0] += 1
                    time.sleep(0.02)
                    return str(k)

                for k in keys:
                    cache.get_or_load(k, lambda k=k: loader(k))
                time.sleep(0.5)  # replicated
                lat: list[float] = []
                stop = threading.Event()
                answers, errors, ts = _hammer(cache, keys, loader, stop, latencies=lat)
                time.sleep(0.3)
                src = c.master_of(str(keys[0]))
                if event == "failover":
                    c.kill(src)
                    c.wait_ok()
                else:
                    dst = next(m for m in c.masters() if m != src)
                    slot = int(c.cli(src, "cluster", "keyslot", str(keys[0])).strip())
                    _migrate_slot(c, slot, src, dst, lambda: time.sleep(0.2))
                time.sleep(0.3)
                stop.set()
                for t in ts:
                    t.join()
                st = cache.stats()
                print(
                    f"| {event} | {len(answers)} (+{len(errors)} errors) | {loads[0]} | {st['store_errors']} "
                    f"| {pct(lat, 0.5):.2f} | {pct(lat, 0.99):.1f} | {pct(lat, 1):.1f} |"
                )
            finally:
                c.stop()


if __name__ == "__main__":
    main()
    faults()
