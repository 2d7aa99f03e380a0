"""Wrong argument types and values: TypeError / ValueError naming the argument."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import karlton
from karlton import AsyncCache, Cache, Key, MemoryStore, Policy


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        ({"soft_ttl": "60"}, TypeError, "soft_ttl"),
        ({"soft_ttl": True}, TypeError, "soft_ttl"),
        ({"soft_ttl": -1}, ValueError, "soft_ttl"),
        ({"soft_ttl": 0}, ValueError, "soft_ttl"),
        ({"soft_ttl": float("nan")}, ValueError, "soft_ttl"),
        ({"soft_ttl": 10, "hard_ttl": 5}, ValueError, "hard_ttl"),
        ({"hard_ttl": timedelta(seconds=-1)}, ValueError, "hard_ttl"),
        ({"jitter": 1.5}, ValueError, "jitter"),
        ({"jitter": "x"}, TypeError, "jitter"),
        ({"early_refresh": -1}, ValueError, "early_refresh"),
        ({"lease_ttl": 0}, ValueError, "lease_ttl"),
        ({"lock_backoff": []}, ValueError, "lock_backoff"),
        ({"lock_backoff": 0.1}, TypeError, "lock_backoff"),
        ({"on_lock_timeout": "wait"}, ValueError, "on_lock_timeout"),
        ({"on_store_error": 1}, TypeError, "on_store_error"),
        ({"load_soft_timeout": 2, "load_hard_timeout": 1}, ValueError, "load_soft_timeout"),
    ],
)
def test_policy_errors_name_the_argument(kwargs: dict, exc: type, name: str) -> None:
    with pytest.raises(exc, match=name):
        Policy(**kwargs)


def test_policy_rejects_positional_and_unknown() -> None:
    with pytest.raises(TypeError):
        Policy(60)  # type: ignore[misc]
    with pytest.raises(TypeError, match="soft_tll"):
        Policy(soft_tll=1)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "call, exc, name",
    [
        (lambda: Key(1), TypeError, "namespace"),
        (lambda: Key(""), ValueError, "namespace"),
        (lambda: Key("n" * 100), ValueError, "namespace"),
        (lambda: Key("ns", 1.5), TypeError, "segment"),
        (lambda: Key("ns", None), TypeError, "segment"),
        (lambda: Key("ns", params={1: 2}), TypeError, "params"),
        (lambda: Key("ns", params={"a": object()}), TypeError, "params"),
        (lambda: Key("ns", params={"a": float("inf")}), ValueError, "params"),
        (lambda: Key("ns", version=-1), ValueError, "version"),
        (lambda: Key("ns", version="1"), TypeError, "version"),
        (lambda: Key("ns", hash_tag=1), TypeError, "hash_tag"),
        (lambda: Key("ns", max_len=10), ValueError, "max_len"),
        (lambda: MemoryStore(max_entries=0), ValueError, "max_entries"),
        (lambda: MemoryStore(max_bytes="1"), TypeError, "max_bytes"),
        (lambda: Cache(store={}), TypeError, "store"),
        (lambda: Cache(policy={"soft_ttl": 1}), TypeError, "policy"),
        (lambda: Cache(on_error=1), TypeError, "on_error"),
        (lambda: Cache(max_workers=0), ValueError, "max_workers"),
        (lambda: karlton.RedisStore("redis://localhost"), TypeError, "client"),
        (lambda: karlton.cached({}), TypeError, "cache"),
    ],
)
def test_constructor_errors_name_the_argument(call, exc: type, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exc, match=name):
        call()


def test_cache_method_errors_name_the_argument() -> None:
    cache = Cache()
    with pytest.raises(TypeError, match="key"):
        cache.get_or_load("user:1", lambda: 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="loader"):
        cache.get_or_load(Key("x"), 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tags"):
        cache.get_or_load(Key("x"), lambda: 1, tags="t")
    with pytest.raises(TypeError, match="tags"):
        cache.get_or_load(Key("x"), lambda: 1, tags=[1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="policy"):
        cache.get_or_load(Key("x"), lambda: 1, policy=60)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="version"):
        cache.set(Key("x"), 1, version="2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="version"):
        cache.set(Key("x"), 1, version=-2)
    with pytest.raises(ValueError, match="None"):
        cache.set(Key("x"), None)
    with pytest.raises(TypeError, match="mode"):
        cache.invalidate(Key("x"), mode=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key"):
        cache.bump(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tag"):
        cache.invalidate_tag("ns", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cache.get_or_load(Key("v"), lambda: object())  # not JSON-serializable


def test_codec_errors() -> None:
    class NoId:
        def encode(self, v: object) -> bytes:
            return b""

        def decode(self, b: bytes) -> object:
            return None

    with pytest.raises(TypeError, match="codec.id"):
        Cache(codec=NoId())

    class LowId(NoId):
        id = 5

    with pytest.raises(ValueError, match="codec.id"):
        Cache(codec=LowId())


def test_decorator_type_errors() -> None:
    with pytest.raises(TypeError, match="AsyncCache"):
        @karlton.cached(Cache())
        async def f() -> int:
            return 1

    with pytest.raises(TypeError, match="needs a Cache"):
        @karlton.cached(AsyncCache())
        def g() -> int:
            return 1

    cache = Cache()

    @karlton.cached(cache)
    def h(x: object) -> int:
        return 1

    with pytest.raises(TypeError, match="JSON-like"):
        h(object())


def test_async_wrong_key() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="key"):
            await AsyncCache().get_or_load(1, lambda: 1)  # type: ignore[arg-type]

    asyncio.run(main())
