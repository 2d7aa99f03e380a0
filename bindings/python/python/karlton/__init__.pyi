from datetime import timedelta
from typing import Any, Awaitable, Callable, Iterable, Optional, Protocol, Sequence, TypeVar, Union, overload, runtime_checkable

from ._karlton import Key as Key
from ._karlton import MemoryStore as MemoryStore
from ._karlton import decode_entry as decode_entry
from ._karlton import describe_entry as describe_entry
from ._karlton import params_hash as params_hash

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

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])
_Seconds = Union[int, float, timedelta]
_ErrorCallback = Callable[[str, BaseException], None]

class KarltonError(Exception): ...
class StoreError(KarltonError): ...
class LoaderError(KarltonError): ...
class LoadTimeoutError(KarltonError, TimeoutError): ...
class LockTimeoutError(KarltonError, TimeoutError): ...
class CodecError(KarltonError, ValueError): ...
class ReentrantCallError(KarltonError, RuntimeError): ...

@runtime_checkable
class Codec(Protocol):
    id: int
    def encode(self, value: Any) -> bytes: ...
    def decode(self, data: bytes) -> Any: ...

class Policy:
    def __init__(
        self,
        *,
        soft_ttl: _Seconds = 60,
        hard_ttl: _Seconds | None = None,
        jitter: float = 0.0,
        early_refresh: float = 0.0,
        negative_ttl: _Seconds = 0,
        stale_if_error: _Seconds = 0,
        lease_ttl: _Seconds = 10,
        lock_wait: _Seconds = 5,
        lock_backoff: Sequence[_Seconds] = (0.002, 0.005, 0.01),
        on_lock_timeout: str = "load",
        load_soft_timeout: _Seconds | None = None,
        load_hard_timeout: _Seconds | None = None,
        on_store_error: str = "load",
        max_value_bytes: int = 16777216,
    ) -> None: ...
    def replace(self, **changes: Any) -> Policy: ...
    def to_json(self) -> str: ...
    def __getattr__(self, name: str) -> Any: ...
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class RedisStore:
    client: Any
    is_async: bool
    is_cluster: bool
    fast_reads: bool
    def __init__(self, client: Any, *, fast_reads: bool = True) -> None: ...
    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 0.25,
        asyncio: bool = False,
        cluster: bool = False,
        fast_reads: bool = True,
        **client_options: Any,
    ) -> RedisStore: ...
    def load_scripts(self) -> Any: ...

class Cache:
    store: MemoryStore | RedisStore
    policy: Policy
    def __init__(
        self,
        store: MemoryStore | RedisStore | None = None,
        policy: Policy | None = None,
        *,
        codec: Codec | None = None,
        on_error: Optional[_ErrorCallback] = None,
        max_workers: int = 4,
    ) -> None: ...
    def get_or_load(
        self, key: Key, loader: Callable[[], _T], *, tags: Optional[Iterable[str]] = None, policy: Optional[Policy] = None
    ) -> _T: ...
    def get(self, key: Key, default: Any = None, *, tags: Optional[Iterable[str]] = None) -> Any: ...
    def set(
        self,
        key: Key,
        value: Any,
        *,
        version: Optional[int] = None,
        tags: Optional[Iterable[str]] = None,
        policy: Optional[Policy] = None,
    ) -> bool: ...
    def invalidate(self, key: Key, *, mode: str = "delete") -> bool: ...
    def bump(self, key: Key | str) -> int: ...
    def invalidate_tag(self, key: Key | str, tag: str) -> int: ...
    def stats(self) -> dict[str, int]: ...
    def close(self, wait: bool = True) -> None: ...
    def __enter__(self) -> Cache: ...
    def __exit__(self, *exc: object) -> None: ...

class AsyncCache:
    store: MemoryStore | RedisStore
    policy: Policy
    def __init__(
        self,
        store: MemoryStore | RedisStore | None = None,
        policy: Policy | None = None,
        *,
        codec: Codec | None = None,
        on_error: Optional[_ErrorCallback] = None,
    ) -> None: ...
    @overload
    async def get_or_load(
        self,
        key: Key,
        loader: Callable[[], Awaitable[_T]],
        *,
        tags: Optional[Iterable[str]] = None,
        policy: Optional[Policy] = None,
    ) -> _T: ...
    @overload
    async def get_or_load(
        self, key: Key, loader: Callable[[], _T], *, tags: Optional[Iterable[str]] = None, policy: Optional[Policy] = None
    ) -> _T: ...
    async def get(self, key: Key, default: Any = None, *, tags: Optional[Iterable[str]] = None) -> Any: ...
    async def set(
        self,
        key: Key,
        value: Any,
        *,
        version: Optional[int] = None,
        tags: Optional[Iterable[str]] = None,
        policy: Optional[Policy] = None,
    ) -> bool: ...
    async def invalidate(self, key: Key, *, mode: str = "delete") -> bool: ...
    async def bump(self, key: Key | str) -> int: ...
    async def invalidate_tag(self, key: Key | str, tag: str) -> int: ...
    def stats(self) -> dict[str, int]: ...
    async def drain(self) -> None: ...

def cached(
    cache: Cache | AsyncCache,
    *,
    namespace: Optional[str] = None,
    policy: Optional[Policy] = None,
    tags: Optional[Iterable[str]] = None,
    ignore: Iterable[str] = ("self", "cls"),
    hash_tag: bool = False,
) -> Callable[[_F], _F]: ...
