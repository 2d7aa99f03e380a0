"""``Cache``: the synchronous, thread-safe driver."""

from __future__ import annotations

import threading
import weakref
import time
from concurrent import futures
from typing import Any, Callable, Iterable, Optional, TypeVar

from ._base import BaseCache, ErrorCallback, check_loader, describe, gen_key, native_policy, tag_key
from ._karlton import DONE, LOAD, SERVE, STORE, WAIT, Flow, Key, MemoryStore
from ._policy import Policy
from ._redis import RedisStore

T = TypeVar("T")


class _Flight:
    """One in-process load of a key that other threads wait on."""

    __slots__ = ("event", "served", "exc")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.served: Any = None
        self.exc: Optional[BaseException] = None


class Cache:
    """A synchronous, thread-safe read-through cache over a ``MemoryStore`` (default) or a
    ``RedisStore`` wrapping a ``redis.Redis``.

    ``get_or_load`` is single-flight across threads: one loader call per key per process at a
    time (and, through the store's lease, one per lease window across processes). Stale values
    are served at once while one background thread refreshes; failures of background work go to
    ``on_error(key, exception)`` (or the ``karlton`` logger), never nowhere.
    """

    def __init__(
        self,
        store: MemoryStore | RedisStore | None = None,
        policy: Policy | None = None,
        *,
        codec: Any = None,
        on_error: Optional[ErrorCallback] = None,
        max_workers: int = 4,
    ) -> None:
        if isinstance(store, RedisStore) and store.is_async:
            raise TypeError("store: Cache needs a sync redis.Redis client; use AsyncCache for redis.asyncio")
        if isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise TypeError(f"max_workers must be an int, not {type(max_workers).__name__}")
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self._b = BaseCache(store, policy, codec, on_error, False)
        self.store = self._b.store
        self.policy = self._b.policy
        self._read = self._b._read
        self._d = self._b._d
        self._exec = self._b._redis._exec if self._b._redis is not None else None
        self._lock = threading.Lock()
        self._inflight: dict[str, _Flight] = {}
        self._max_workers = max_workers
        self._bg: Optional[futures.ThreadPoolExecutor] = None
        self._loaders: Optional[futures.ThreadPoolExecutor] = None
        # The hit path is one native call: `get_or_load` is the driver's own method, which calls
        # back into `_slow` only when the flow needs a load, a wait or Redis.
        ref = weakref.ref(self)

        def slow(flow: Any, loader: Any, key: Any, tags: Any, pn: Any) -> Any:
            cache = ref()
            assert cache is not None
            return cache._slow(flow, loader, key, tags, pn)

        self._d.set_slow(slow)
        # Redis: a fresh hit is one pipelined round trip of plain commands (core decides).
        redis = self._b._redis
        self._fast = redis._fast if redis is not None and redis.fast_reads else None
        if self._fast is not None:
            self._d.set_fast(self._fast)
        self.get_or_load = self._d.get_or_load  # type: ignore[method-assign]

    # -- read path ---------------------------------------------------------------------------

    def get_or_load(
        self,
        key: Key,
        loader: Callable[[], T],
        *,
        tags: Optional[Iterable[str]] = None,
        policy: Optional[Policy] = None,
    ) -> T:
        """The cached value for ``key``, or ``loader()``'s (cached per the policy).

        A loader returning ``None`` is a "not found", cached for ``negative_ttl``. A loader
        exception propagates (unless ``stale_if_error`` serves a stale value). ``tags`` lets
        ``invalidate_tag`` orphan this entry; ``policy`` overrides the cache's for this call.
        """
        # (Instances call the native method directly; this is the same, for the docs.)
        return self._d.get_or_load(key, loader, tags=tags, policy=policy)  # type: ignore[no-any-return]

    def _slow(self, flow: Any, loader: Callable[[], Any], key_obj: Any, tags: Any, pn: Any) -> Any:
        check_loader(loader)
        if flow.kind == STORE:
            self._run_store(flow)
        kind = flow.kind
        if kind == DONE:
            return self._b._outcome(flow, None).value()
        if kind == SERVE:
            served = flow.served()
            flow.feed_continue()
            self._spawn(flow, loader, None, None)
            return served.value()
        # LOAD or WAIT: lead this key's in-process flight, or follow it.
        key = flow.key
        lead: Optional[_Flight] = None
        follow: Optional[_Flight] = None
        with self._lock:
            flight = self._inflight.get(key)
            if flight is None:
                lead = self._inflight[key] = _Flight()
            elif not flow.has_lease:  # holding the store's lease: load, without leading
                follow = flight
        if follow is None:
            return self._lead(flow, loader, lead)
        flow.abandon()
        follow.event.wait()
        if follow.exc is None:
            return follow.served.value()
        if isinstance(follow.exc, Exception):
            raise follow.exc
        # The leader was interrupted (KeyboardInterrupt, SystemExit): start over.
        r = self._read(key_obj, tags, pn)
        return self._slow(r, loader, key_obj, tags, pn) if r.__class__ is Flow else r

    def _run_store(self, flow: Any) -> None:
        ex = self._exec
        while flow.kind == STORE:
            ex(flow)  # type: ignore[misc]

    def _lead(self, flow: Any, loader: Callable[[], Any], flight: Optional[_Flight]) -> Any:
        try:
            fut, exc = self._run(flow, loader, None, None)
            if flow.kind == SERVE:
                served = flow.served()
                flow.feed_continue()
                self._spawn(flow, loader, fut, exc)
            else:
                served = self._b._outcome(flow, exc)
                if exc is not None:  # a stale value hid the loader's error
                    self._b._report(flow.key, exc)
        except BaseException as e:
            if flight is not None:
                self._resolve(flow.key, flight, None, e)
            raise
        if flight is not None:
            self._resolve(flow.key, flight, served, None)
        return served.value()

    def _resolve(self, key: str, flight: _Flight, served: Any, exc: Optional[BaseException]) -> None:
        with self._lock:
            if self._inflight.get(key) is flight:
                del self._inflight[key]
        flight.served, flight.exc = served, exc
        flight.event.set()

    def _run(
        self, flow: Any, loader: Callable[[], Any], fut: Optional[futures.Future[Any]], exc: Optional[BaseException]
    ) -> tuple[Optional[futures.Future[Any]], Optional[BaseException]]:
        """Step the flow until it serves or is done. Returns the loader future still running (a
        soft timeout served a stale value) and the loader's exception, if any."""
        while True:
            kind = flow.kind
            if kind == STORE:
                self._exec(flow)  # type: ignore[misc]
            elif kind == LOAD:
                timeout = flow.timeout
                if fut is None and timeout is None:
                    try:
                        value = loader()
                    except Exception as e:  # noqa: BLE001 - handed to the flow, re-raised by _outcome
                        exc = e
                        flow.feed_load_failed(describe(e))
                        continue
                    exc = self._b._feed(flow, value) or exc
                else:
                    if fut is None:
                        fut = self._pool("_loaders").submit(loader)
                    done, _ = futures.wait((fut,), timeout=timeout)
                    if not done:
                        flow.feed_timeout()
                        continue
                    f, fut = fut, None
                    err = f.exception()
                    if err is not None:
                        exc = err
                        flow.feed_load_failed(describe(err))
                        continue
                    exc = self._b._feed(flow, f.result()) or exc
            elif kind == WAIT:
                time.sleep(flow.delay)
                flow.feed_timeout()
            else:
                return fut, exc

    def _spawn(self, flow: Any, loader: Callable[[], Any], fut: Any, exc: Optional[BaseException]) -> None:
        """Finish a served flow (the refresh) on the background pool."""
        self._pool("_bg").submit(self._background, flow, loader, fut, exc)

    def _background(self, flow: Any, loader: Callable[[], Any], fut: Any, exc: Optional[BaseException]) -> None:
        try:
            while True:
                fut, exc = self._run(flow, loader, fut, exc)
                if flow.kind == SERVE:
                    flow.feed_continue()
                    continue
                break
            self._b._outcome(flow, exc)
        except BaseException as e:  # noqa: BLE001 - reported, never lost
            self._b._report(flow.key, e)

    def _pool(self, name: str) -> futures.ThreadPoolExecutor:
        pool = getattr(self, name)
        if pool is None:
            with self._lock:
                pool = getattr(self, name)
                if pool is None:
                    pool = futures.ThreadPoolExecutor(self._max_workers, thread_name_prefix=f"karlton{name}")
                    setattr(self, name, pool)
        return pool  # type: ignore[no-any-return]

    # -- write path --------------------------------------------------------------------------

    def _op(self, op: Any, default: Any = None) -> Any:
        if op.pending:
            self._exec(op)  # type: ignore[misc]
        return op.result(default)

    def get(self, key: Key, default: Any = None, *, tags: Optional[Iterable[str]] = None) -> Any:
        """The cached value if fresh or stale (never past hard expiry), else ``default``. No load."""
        op = self._d.get(key, tags)
        fast = self._fast
        if fast is not None:
            f = op.fast
            if f is not None:
                op.feed_fast(fast(*f))
        if op.pending:
            self._exec(op)  # type: ignore[misc]
        return op.result(default)

    def set(
        self,
        key: Key,
        value: Any,
        *,
        version: Optional[int] = None,
        tags: Optional[Iterable[str]] = None,
        policy: Optional[Policy] = None,
    ) -> bool:
        """Write-through: store ``value`` now, revoking any lease so a reader still loading an
        older value cannot overwrite it. With ``version``, refused (returns False) if a newer
        version is stored. Returns whether it was stored."""
        data, cid, negative = self._b._encode(value)
        if negative:
            raise ValueError("set(): value must not be None (use invalidate to remove a key)")
        return bool(self._op(self._d.set(key, data, cid, version, tags, native_policy(policy))))

    def invalidate(self, key: Key, *, mode: str = "delete") -> bool:
        """Delete the entry (``mode="delete"``) or mark it stale (``mode="stale"``: served while
        one caller refreshes); revokes the lease so a load in flight cannot fill (C2). Returns
        whether an entry was there."""
        if not isinstance(mode, str):
            raise TypeError(f"invalidate(): mode must be a str, not {type(mode).__name__}")
        return bool(self._op(self._d.invalidate(key, mode)))

    def bump(self, key: Key | str) -> int:
        """Orphan every entry of ``key``'s namespace (or the namespace ``key`` names)."""
        return int(self._op(self._d.bump(gen_key(key, "bump()"))))

    def invalidate_tag(self, key: Key | str, tag: str) -> int:
        """Orphan every entry filled with ``tag`` in ``key``'s namespace."""
        return int(self._op(self._d.bump(tag_key(key, tag))))

    def stats(self) -> dict[str, int]:
        """A snapshot of the counters (see ``karlton.Cache`` docs)."""
        return self._d.stats()  # type: ignore[no-any-return]

    def close(self, wait: bool = True) -> None:
        """Stop the background pools (waiting for running refreshes if ``wait``)."""
        for name in ("_bg", "_loaders"):
            pool = getattr(self, name)
            if pool is not None:
                pool.shutdown(wait=wait)
                setattr(self, name, None)

    def __enter__(self) -> "Cache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Cache({self.store!r}, {self.policy!r})"
