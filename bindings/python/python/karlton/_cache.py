"""``Cache``: the synchronous, thread-safe driver."""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
import weakref
from concurrent import futures
from typing import Any, Callable, Iterable, Optional, TypeVar

import contextvars

from ._base import LOADING, BaseCache, ErrorCallback, check_loader, gen_keys, loading, native_policy, tag_keys
from ._karlton import AWAIT, FAST, FINISHED, JOIN, LOAD, SERVE, STORE, WAIT, Key, MemoryStore
from ._policy import Policy
from ._redis import RedisStore

T = TypeVar("T")


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
        self._d = self._b._d
        self._exec = self._b._redis._xexec if self._b._redis is not None else None
        self._lock = threading.Lock()
        self._max_workers = max_workers
        self._bg: Optional[futures.ThreadPoolExecutor] = None
        self._loaders: Optional[futures.ThreadPoolExecutor] = None
        self._keep: Optional[_Keeper] = None
        # The hit path is one native call: `get_or_load` and `get` are the driver's own methods,
        # which call back into `_slow` / `_op` only when the flow needs a load, a wait or Redis.
        ref = weakref.ref(self)

        def slow(call: Any, loader: Any) -> Any:
            cache = ref()
            assert cache is not None
            return cache._slow(call, loader)

        def op(call: Any, default: Any) -> Any:
            cache = ref()
            assert cache is not None
            return cache._op(call, default)

        self._d.set_slow(slow, op)
        # Redis: a fresh hit is one pipelined round trip of plain commands (core decides).
        redis = self._b._redis
        self._fast = redis._xfast if redis is not None and redis.fast_reads else None
        if self._fast is not None:
            self._d.set_fast(self._fast)
        self.get_or_load = self._d.get_or_load  # type: ignore[method-assign]
        self.get = self._d.get  # type: ignore[method-assign]

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

    def _slow(self, call: Any, loader: Callable[[], Any]) -> Any:
        """Drive a call the native hit path could not finish: Redis, the loader, a wait for
        another caller's load. The coordinator decides every step; this runs them."""
        check_loader(loader)
        fut: Optional[futures.Future[Any]] = None
        exc: Optional[BaseException] = None
        try:
            fut, exc = self._run(call, loader, fut, exc)
            return self._b._answer(call, exc, lambda: self._pool("_bg").submit(self._background, call, loader, fut, exc))
        except BaseException:
            self._cancel(call)
            raise

    def _cancel(self, call: Any) -> None:
        """The caller went away (an exception, Ctrl-C): the coordinator lets joiners run again
        and the lease held goes back."""
        call.cancel()
        if call.kind == STORE:
            try:
                self._exec(call)  # type: ignore[misc]
            except Exception:  # noqa: BLE001 - best effort: the lease expires by itself
                pass

    def _run(
        self, call: Any, loader: Callable[[], Any], fut: Optional[futures.Future[Any]], exc: Optional[BaseException]
    ) -> tuple[Optional[futures.Future[Any]], Optional[BaseException]]:
        """Step the call until it serves, answers or finishes. Returns the loader future still
        running (a soft timeout served a stale value) and the loader's exception, if any."""
        while True:
            kind = call.kind
            if kind == STORE:
                self._exec(call)  # type: ignore[misc]
            elif kind == FAST:
                call.feed_fast(self._fast(*call.packed))  # type: ignore[misc]
            elif kind == LOAD or kind == AWAIT:
                timeout = call.timeout
                err: Optional[BaseException] = None
                if fut is None and (timeout is None or call.inline):
                    # On this thread (its thread-locals, no pool limit); the keeper wakes the
                    # call meanwhile to extend its lease, or to give it up at its deadline.
                    slot = None if timeout is None else self._keeper().watch(call, timeout)
                    tok = loading(call)
                    try:
                        value, err = loader(), None
                    except Exception as e:  # noqa: BLE001 - handed to the core, re-raised by outcome
                        value, err = None, e
                    finally:
                        LOADING.reset(tok)
                        ended = slot is not None and slot.settle()
                    if ended:
                        # The deadline passed during the load: the core already gave the lease
                        # up and answered (LoadTimeout, or stale-if-error); this value is late.
                        continue
                else:
                    if fut is None:
                        # The pool thread runs the loader in this context, marked as loading.
                        tok = loading(call)
                        ctx = contextvars.copy_context()
                        LOADING.reset(tok)
                        fut = self._pool("_loaders").submit(ctx.run, loader)
                    done, _ = futures.wait((fut,), timeout=timeout)
                    if not done:
                        call.feed_timeout()
                        continue
                    f, fut = fut, None
                    err = f.exception()
                    value = None if err is not None else f.result()
                exc = self._b._feed(call, value, err) or exc
            elif kind == WAIT:
                time.sleep(call.delay)
                call.feed_timeout()
            elif kind == JOIN:
                call.wait(call.delay)  # at most until lock_wait runs out; then the core decides
                call.joined()
            else:
                return fut, exc

    def _background(self, call: Any, loader: Callable[[], Any], fut: Any, exc: Optional[BaseException]) -> None:
        """Finish a served call (the refresh) on the background pool."""
        try:
            while True:
                fut, exc = self._run(call, loader, fut, exc)
                if call.kind != SERVE:
                    break
                call.feed_continue()
            if call.kind == FINISHED:
                self._b._finished(call, exc)
        except BaseException as e:  # noqa: BLE001 - reported, never lost
            self._cancel(call)
            self._b._report(call.key, e)

    def _keeper(self) -> "_Keeper":
        k = self._keep
        if k is None or k.pid != os.getpid():
            with self._lock:
                k = self._keep
                if k is None or k.pid != os.getpid():  # (a forked child starts its own thread)
                    k = self._keep = _Keeper(self._exec, self._b._report)
        return k

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

    def _op(self, r: Any, default: Any = None) -> Any:
        """Finish a one-op call on Redis (the native side answers the memory store itself)."""
        while True:
            kind = r.kind
            if kind == STORE:
                self._exec(r)  # type: ignore[misc]
            elif kind == FAST:
                r.feed_fast(self._fast(*r.packed))  # type: ignore[misc]
            else:
                return r.result(default)

    def get(self, key: Key, default: Any = None, *, tags: Optional[Iterable[str]] = None) -> Any:
        """The cached value if fresh or stale (never past hard expiry), else ``default``. No load."""
        # (Instances call the native method directly; this is the same, for the docs.)
        return self._d.get(key, default, tags=tags)

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
        return bool(self._d.set(key, data, cid, version, tags, native_policy(policy)))

    def invalidate(self, key: Key, *, mode: str = "delete") -> bool:
        """Delete the entry (``mode="delete"``) or mark it stale (``mode="stale"``: served while
        one caller refreshes); revokes the lease so a load in flight cannot fill (C2). Returns
        whether an entry was there."""
        if not isinstance(mode, str):
            raise TypeError(f"invalidate(): mode must be a str, not {type(mode).__name__}")
        return bool(self._d.invalidate(key, mode))

    def bump(self, key: Key | str) -> int:
        """Orphan every entry of ``key``'s namespace (or the namespace ``key`` names)."""
        # A namespace str moves both forms' counters; the answer is the first (plain) one's.
        return [int(self._d.bump(g)) for g in gen_keys(key, "bump()")][0]

    def invalidate_tag(self, key: Key | str, tag: str) -> int:
        """Orphan every entry filled with ``tag`` in ``key``'s namespace."""
        return [int(self._d.bump(g)) for g in tag_keys(key, tag)][0]

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


class _Slot:
    """One inline load the keeper watches. ``lock`` orders the keeper's feeds against the
    loading thread's own: whichever comes second sees what the first did."""

    __slots__ = ("call", "lock", "ended")

    def __init__(self, call: Any) -> None:
        self.call: Any = call
        self.lock = threading.Lock()
        self.ended = False

    def settle(self) -> bool:
        """The loader returned (or raised): stop watching. Whether the keeper ended the load
        first (its deadline passed), so the loader's result must not be fed."""
        with self.lock:
            self.call = None
            return self.ended


class _Keeper:
    """Wakes loads that run on their caller's thread at the times the core asks for: to extend
    the lease of a long load (so it can still fill), and to give the lease up at the load's
    deadline (so a hung loader does not hold its key for good). One daemon thread per cache,
    started on the first load that needs it; almost every load settles before its first wake,
    and a settled slot only waits in the heap, without its call, until its time."""

    def __init__(self, exec_store: Optional[Callable[[Any], None]], report: Callable[[str, BaseException], None]) -> None:
        self.pid = os.getpid()
        self._exec = exec_store
        self._report = report
        self._cv = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Slot]] = []
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def watch(self, call: Any, delay: float) -> _Slot:
        slot = _Slot(call)
        self._push(slot, delay)
        return slot

    def _push(self, slot: _Slot, delay: float) -> None:
        when = time.monotonic() + max(delay, 0.0)
        with self._cv:
            earliest = not self._heap or when < self._heap[0][0]
            heapq.heappush(self._heap, (when, next(self._seq), slot))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="karlton-keeper", daemon=True)
                self._thread.start()
            elif earliest:
                self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while True:
                    while self._heap and self._heap[0][2].call is None:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cv.wait()
                        continue
                    left = self._heap[0][0] - time.monotonic()
                    if left <= 0:
                        slot = heapq.heappop(self._heap)[2]
                        break
                    self._cv.wait(left)
            self._wake(slot)

    def _wake(self, slot: _Slot) -> None:
        with slot.lock:
            call = slot.call
            if call is None:
                return
            try:
                call.feed_timeout()  # the core extends the lease, or ends the load
                while call.kind == STORE:
                    self._exec(call)  # type: ignore[misc]
                if call.kind in (LOAD, AWAIT) and call.timeout is not None:
                    self._push(slot, call.timeout)
                    return
            except Exception as e:  # noqa: BLE001 - reported; the lease runs out by itself
                self._report(call.key, e)
            slot.ended = True
            slot.call = None
