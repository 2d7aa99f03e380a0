"""The Redis fresh-hit fast read: one pipelined round trip of plain commands (TIME, HMGET,
MGET; no Lua), interpreted by the core; anything else runs the `read` script as before."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any, Iterator

import pytest

redis = pytest.importorskip("redis")

import karlton  # noqa: E402
from karlton import AsyncCache, Cache, Key, Policy, RedisStore  # noqa: E402


class CountingConnection(redis.Connection):
    """Counts writes to the socket: one `send_packed_command` per round trip."""

    sends = 0

    def send_packed_command(self, *a: Any, **kw: Any) -> None:
        CountingConnection.sends += 1
        super().send_packed_command(*a, **kw)


def no_retry() -> Any:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def client(port: int, **kw: Any) -> Any:
    kw.setdefault("socket_timeout", 1)
    kw.setdefault("socket_connect_timeout", 0.3)
    return redis.Redis(port=port, retry=no_retry(), **kw)


def reset(r: Any) -> None:
    r.config_resetstat()


def calls(r: Any) -> dict[str, int]:
    """Commands run since `reset`, by name (INFO and CONFIG left out)."""
    out = {}
    for k, v in r.info("commandstats").items():
        name = k.removeprefix("cmdstat_")
        if not name.startswith(("info", "config")):
            out[name] = int(v["calls"])
    return out


FAST = {"time": 1, "mget": 1}


def test_fast_hit_is_one_round_trip_without_a_script(redis_server: Any, redis_client: Any) -> None:
    pool = redis.ConnectionPool(port=redis_server.port, connection_class=CountingConnection, retry=no_retry())
    cache = Cache(RedisStore(redis.Redis(connection_pool=pool)))
    k = Key("user", 42)
    loads = []
    assert cache.get_or_load(k, lambda: loads.append(1) or {"id": 42}) == {"id": 42}
    assert cache.stats()["hits_fresh"] == 0

    reset(redis_client)
    CountingConnection.sends = 0
    assert cache.get_or_load(k, lambda: loads.append(1) or {"id": 0}) == {"id": 42}
    assert calls(redis_client) == FAST  # no EVALSHA
    assert CountingConnection.sends == 1  # one round trip
    assert cache.stats()["hits_fresh"] == 1 and loads == [1]

    # `get` takes the same path.
    reset(redis_client)
    CountingConnection.sends = 0
    assert cache.get(k) == {"id": 42}
    assert calls(redis_client) == FAST and CountingConnection.sends == 1
    assert cache.stats()["hits_fresh"] == 2

    # A cached "not found" is a fresh hit too.
    none = Key("user", 0)
    neg = Policy(negative_ttl=30)
    assert cache.get_or_load(none, lambda: None, policy=neg) is None
    reset(redis_client)
    assert cache.get_or_load(none, lambda: loads.append(1) or "found", policy=neg) is None
    assert calls(redis_client) == FAST and loads == [1]
    assert cache.stats()["negative_hits"] == 1

    # Tags: their counters ride in the same MGET.
    t = Key("user", 43)
    cache.get_or_load(t, lambda: "tagged", tags=["org:5", "team:1"])
    reset(redis_client)
    assert cache.get_or_load(t, lambda: "x", tags=["org:5", "team:1"]) == "tagged"
    assert calls(redis_client) == FAST


def test_fast_reads_off_runs_the_script(redis_server: Any, redis_client: Any) -> None:
    with pytest.raises(TypeError, match="fast_reads"):
        RedisStore(client(redis_server.port), fast_reads=1)  # type: ignore[arg-type]
    assert RedisStore(client(redis_server.port)).fast_reads is True
    assert RedisStore(redis.Redis(port=redis_server.port, single_connection_client=True)).fast_reads is False
    cache = Cache(RedisStore(client(redis_server.port), fast_reads=False))
    k = Key("off")
    cache.get_or_load(k, lambda: 1)
    reset(redis_client)
    assert cache.get_or_load(k, lambda: 2) == 1
    seen = calls(redis_client)  # (commands a script runs count too)
    # the read script's own TIME and MGET, and no fast read's on top
    assert seen == {"evalsha": 1, "time": 1, "mget": 1}


def test_fast_hit_asyncio_client(redis_server: Any, redis_client: Any) -> None:
    import redis.asyncio

    async def main() -> None:
        c = redis.asyncio.Redis(port=redis_server.port)
        cache = AsyncCache(RedisStore(c))
        k = Key("auser", 1)
        assert await cache.get_or_load(k, lambda: {"a": 1}) == {"a": 1}
        reset(redis_client)
        assert await cache.get_or_load(k, lambda: {"a": 2}) == {"a": 1}
        assert calls(redis_client) == FAST
        reset(redis_client)
        assert await cache.get(k) == {"a": 1}
        assert calls(redis_client) == FAST
        # 100 concurrent hits through a small pool: queued, never a store error.
        small = redis.asyncio.Redis(port=redis_server.port, max_connections=4)
        c2 = AsyncCache(RedisStore(small))
        assert await asyncio.gather(*(c2.get_or_load(k, lambda: 0) for _ in range(100))) == [{"a": 1}] * 100
        assert c2.stats()["store_errors"] == 0 and c2.stats()["hits_fresh"] == 100
        assert cache.stats()["hits_fresh"] == 2
        await c.aclose()
        await small.aclose()

    asyncio.run(main())


def test_fast_hit_sync_client_in_async_cache(redis_server: Any, redis_client: Any) -> None:
    async def main() -> None:
        cache = AsyncCache(RedisStore(client(redis_server.port)))
        k = Key("s")
        assert await cache.get_or_load(k, lambda: 5) == 5
        reset(redis_client)
        assert await cache.get_or_load(k, lambda: 6) == 5
        assert calls(redis_client) == FAST

    asyncio.run(main())


@pytest.mark.parametrize(
    "garbage, counted",
    [
        (lambda r, k: r.set(k, b"not a record"), True),
        (lambda r, k: r.rpush(k, b"a", b"b"), True),  # another type: MGET answers nil
        (lambda r, k: r.hset(k, mapping={"e": b"x"}), True),  # the layout before records
        # a record under the current generation whose entry bytes do not decode
        (lambda r, k: (r.set("junk:!gen", b"0:1"),
                       r.set(k, b"k1|e|99999999999999|99999999999999|99999999999999||0:1||||\x00junk")), True),
        # stamped with generations that are not the current ones: orphaned, a plain miss
        (lambda r, k: r.set(k, b"k1|e|99999999999999|1|2||9:9||||x"), False),
        (lambda r, k: r.set(k, b"k1|e|99999999999999|1|2||zz,9||||x"), True),  # not a record
    ],
    ids=["string", "list", "hash", "bad-entry", "orphaned", "bad-gens"],
)
def test_garbage_under_the_key_is_a_miss_and_gets_overwritten(
    redis_server: Any, redis_client: Any, garbage: Any, counted: bool
) -> None:
    cache = Cache(RedisStore(client(redis_server.port)))
    k = Key("junk", 1)
    garbage(redis_client, str(k))
    loads = []
    assert cache.get(k) is None
    garbage(redis_client, str(k))
    assert cache.get_or_load(k, lambda: loads.append(1) or {"ok": True}) == {"ok": True}
    assert loads == [1]
    # counted by the get and by the get_or_load (the get deletes garbage, so it is planted twice)
    assert cache.stats()["corrupt_entries"] == (2 if counted else 0)
    assert redis_client.type(str(k)) == b"string"
    reset(redis_client)
    assert cache.get_or_load(k, lambda: loads.append(1) or {"ok": False}) == {"ok": True}
    assert calls(redis_client) == FAST and loads == [1]  # overwritten: a fast hit now


def test_garbage_under_the_key_asyncio(redis_server: Any, redis_client: Any) -> None:
    import redis.asyncio

    async def main() -> None:
        c = redis.asyncio.Redis(port=redis_server.port)
        cache = AsyncCache(RedisStore(c))
        k = Key("ajunk")
        redis_client.set(str(k), b"garbage")
        assert await cache.get(k, "dflt") == "dflt"
        assert await cache.get_or_load(k, lambda: "fresh") == "fresh"
        reset(redis_client)
        assert await cache.get_or_load(k, lambda: "again") == "fresh"
        assert calls(redis_client) == FAST
        await c.aclose()

    asyncio.run(main())


def test_bump_and_tag_invalidation_make_the_fast_path_miss_t1(redis_server: Any, redis_client: Any) -> None:
    cache = Cache(RedisStore(client(redis_server.port)))
    other = Cache(RedisStore(client(redis_server.port)))  # a writer elsewhere
    k = Key("t1", "a")
    n = iter(range(1, 100))
    assert cache.get_or_load(k, lambda: next(n), tags=["org:5"]) == 1
    assert cache.get_or_load(k, lambda: next(n), tags=["org:5"]) == 1
    other.bump("t1")
    assert cache.get(k, "gone", tags=["org:5"]) == "gone"
    reset(redis_client)
    assert cache.get_or_load(k, lambda: next(n), tags=["org:5"]) == 2
    assert calls(redis_client).get("evalsha", 0) >= 1  # the fast read missed: the flow ran
    assert cache.get_or_load(k, lambda: next(n), tags=["org:5"]) == 2
    other.invalidate_tag("t1", "org:5")
    assert cache.get_or_load(k, lambda: next(n), tags=["org:5"]) == 3
    # An entry filled without the tag does not see the tag's counter, one with it does.
    assert cache.get_or_load(Key("t1", "b"), lambda: "b") == "b"
    other.invalidate_tag("t1", "org:5")
    assert cache.get_or_load(Key("t1", "b"), lambda: "b2") == "b"
    # Marked stale: served (stale) by the script, refreshed in the background.
    other.invalidate(Key("t1", "b"), mode="stale")
    reset(redis_client)
    assert cache.get_or_load(Key("t1", "b"), lambda: "b3") == "b"
    assert calls(redis_client).get("evalsha", 0) >= 1
    cache.close()
    assert cache.get_or_load(Key("t1", "b"), lambda: "b4") == "b3"


class Blackhole(int):
    """The port of a TCP server that accepts connections and never answers, with a count of the
    connections clients opened to it. redis-py drops a connection whose read timed out, so each
    store op that timed out is one connection: counting them tells one timeout from two without
    measuring time."""

    accepted: list[socket.socket]
    probes: set[tuple[str, int]]

    def connections(self) -> int:
        """Client connections so far: every connection opened before this call is counted (a
        probe connection is opened and waited for; accepts are in order)."""
        probe = socket.create_connection(("127.0.0.1", int(self)))
        me = probe.getsockname()
        self.probes.add(me)
        deadline = time.monotonic() + 10
        while not any(c.getpeername() == me for c in list(self.accepted)):
            assert time.monotonic() < deadline, "the blackhole never accepted the probe"
            time.sleep(0.005)
        probe.close()
        return sum(1 for c in list(self.accepted) if c.getpeername() not in self.probes)


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    """A TCP server that accepts connections and never answers: every call times out."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.05)
    stop = threading.Event()
    port = Blackhole(srv.getsockname()[1])
    port.accepted, port.probes = [], set()

    def run() -> None:
        while not stop.is_set():
            try:
                port.accepted.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield port
    finally:
        stop.set()
        t.join()
        for c in port.accepted:
            c.close()
        srv.close()


TIMEOUT = 0.4


def test_redis_down_answers_from_the_loader_in_one_timeout(blackhole: Blackhole) -> None:
    cache = Cache(RedisStore(client(int(blackhole), socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)))
    k = Key("down")
    for i in range(2):
        t0 = time.perf_counter()
        assert cache.get_or_load(k, lambda: "from loader") == "from loader"
        took = time.perf_counter() - t0
        # One-sided: the answer came after the store op timed out (not from somewhere else).
        assert took >= TIMEOUT * 0.9, took
        # One timeout, not two: one store op (one connection) per call, no retry, no fill.
        assert blackhole.connections() == i + 1
        assert cache.stats()["store_errors"] == i + 1
    assert cache.get(k, "dflt") == "dflt"
    assert blackhole.connections() == 3
    strict = Cache(
        RedisStore(client(int(blackhole), socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)),
        Policy(on_store_error="error"),
    )
    with pytest.raises(karlton.StoreError):
        strict.get_or_load(k, lambda: "x")
    assert blackhole.connections() == 4
    with pytest.raises(karlton.StoreError):
        strict.get(k)
    assert blackhole.connections() == 5


def test_redis_down_asyncio_one_timeout(blackhole: Blackhole) -> None:
    import redis.asyncio

    async def main() -> None:
        c = redis.asyncio.Redis(
            port=int(blackhole), socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, retry=no_retry()
        )
        cache = AsyncCache(RedisStore(c))
        t0 = time.perf_counter()
        assert await cache.get_or_load(Key("adown"), lambda: "from loader") == "from loader"
        took = time.perf_counter() - t0
        assert took >= TIMEOUT * 0.9, took  # one-sided: it did wait for the store op
        assert blackhole.connections() == 1, "one store op, one timeout"
        assert cache.stats()["store_errors"] == 1
        assert await cache.get(Key("adown"), "dflt") == "dflt"
        assert blackhole.connections() == 2
        await c.aclose()

    asyncio.run(main())


def test_redis_killed_and_restarted_fast_path_recovers(redis_server: Any) -> None:
    cache = Cache(RedisStore(client(redis_server.port)))
    k = Key("restart")
    calls_ = []
    assert cache.get_or_load(k, lambda: calls_.append(1) or "v") == "v"
    redis_server.kill()
    assert cache.get_or_load(k, lambda: calls_.append(1) or "v") == "v"  # loader
    redis_server.start()
    assert cache.get_or_load(k, lambda: calls_.append(1) or "v") == "v"  # refilled
    n = len(calls_)
    assert cache.get_or_load(k, lambda: calls_.append(1) or "v") == "v"
    assert len(calls_) == n  # a fast hit again, over a fresh connection
