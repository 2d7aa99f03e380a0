"""karlton: a caching policy engine for Python.

One Rust core decides everything about a cache entry's life (freshness, jitter, leases,
stale-while-revalidate, negative caching, versions, generations); this package drives it from
Python, over the embedded ``MemoryStore`` or your own redis-py client::

    import karlton

    cache = karlton.Cache(policy=karlton.Policy(soft_ttl=60, hard_ttl=300))
    user = cache.get_or_load(karlton.Key("user", 42), lambda: db.load_user(42))
"""

from ._async import AsyncCache
from ._cache import Cache
from ._cached import cached
from ._codec import Codec
from ._errors import CodecError, KarltonError, LoaderError, LoadTimeoutError, LockTimeoutError, ReentrantCallError, StoreError
from ._karlton import Key, MemoryStore, decode_entry, describe_entry, params_hash
from ._policy import Policy
from ._redis import RedisStore

__all__ = [
    "AsyncCache",
    "Cache",
    "Codec",
    "CodecError",
    "Key",
    "KarltonError",
    "LoadTimeoutError",
    "LoaderError",
    "LockTimeoutError",
    "MemoryStore",
    "Policy",
    "RedisStore",
    "ReentrantCallError",
    "StoreError",
    "cached",
    "decode_entry",
    "describe_entry",
    "params_hash",
]
