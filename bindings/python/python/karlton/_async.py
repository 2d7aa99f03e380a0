"""``AsyncCache``: the asyncio driver."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Awaitable, Callable, Iterable, Optional, TypeVar, Union

from ._base import BaseCache, ErrorCallback, check_loader, describe, gen_key, native_policy, tag_key
from ._karlton import DONE, LOAD, SERVE, STORE, WAIT, Flow, Key, MemoryStore
from ._policy import Policy
from ._redis import RedisStore

T = TypeVar("T")
Loader = Callable[[], Union[Awaitable[T], T]]


async def _call(loader: Callable[[], Any]) -> Any:
    r = loader()
    if inspect.isawaitable(r):
        r = await r
    return r


class AsyncCache:
    """An asyncio read-through cache over a ``MemoryStore`` (default) or a ``RedisStore``
    (``redis.asyncio.Redis``, or a sync ``redis.Redis`` run in a worker thread).

    ``get_or_load`` is single-flight across tasks (one loader call per key at a time, per
    future); stale values are served at once while a background task refreshes. Use one
    ``AsyncCache`` per event loop. The loader may be a coroutine function or a plain function.
    """

    def __init__(
        self,
        store: MemoryStore | RedisStore | None = None,
        policy: Policy | None = None,
        *,
        codec: Any = None,
        on_error: Optional[ErrorCallback] = None,
    ) -> None:
        self._b = BaseCache(store, policy, codec, on_error, True)
        self.store = self._b.store
        self.policy = self._b.policy
        self._read = self._b._read
        self._d = self._b._d
        redis = self._b._redis
        if redis is None:
            self._aexec: Any = None
        elif redis.is_async:
            self._aexec = redis._aexec
        else:
            sync_exec = redis._exec

            async def aexec(x: Any) -> None:
                await asyncio.to_thread(sync_exec, x)

            self._aexec = aexec
        # Redis: a fresh hit is one pipelined round trip of plain commands (core decides).
        if redis is None or not redis.fast_reads:
            self._afast: Any = None
        elif redis.is_async:
            self._afast = redis._afast if redis._sem is not None else redis._afast1
        else:
            sync_fast = redis._fast

            async def afast(packed: bytes, n: int) -> Any:
                return await asyncio.to_thread(sync_fast, packed, n)

            self._afast = afast
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def get_or_load(
        self,
        key: Key,
        loader: Loader[T],
        *,
        tags: Optional[Iterable[str]] = None,
        policy: Optional[Policy] = None,
    ) -> T:
        """The cached value for ``key``, or the loader's (awaited if it returns an awaitable).
        See ``Cache.get_or_load``."""
        pn = None if policy is None else native_policy(policy)
        afast = self._afast
        if afast is not None:
            fr = self._d.fast_read(key, tags, pn)
            r = fr.finish(await afast(*fr.command))
        else:
            r = self._read(key, tags, pn)
        if r.__class__ is Flow:
            check_loader(loader)
            return await self._slow(r, loader, key, tags, pn)  # type: ignore[no-any-return]
        return r  # type: ignore[no-any-return]

    async def _slow(self, flow: Any, loader: Callable[[], Any], key_obj: Any, tags: Any, pn: Any) -> Any:
        while True:
            while flow.kind == STORE:
                await self._aexec(flow)
            kind = flow.kind
            if kind == DONE:
                return self._b._outcome(flow, None).value()
            if kind == SERVE:
                served = flow.served()
                flow.feed_continue()
                self._spawn(flow, loader, None, None)
                return served.value()
            key = flow.key
            flight = self._inflight.get(key)
            if flight is None:
                flight = self._inflight[key] = asyncio.get_running_loop().create_future()
                return await self._lead(flow, loader, flight)
            if flow.has_lease:
                return await self._lead(flow, loader, None)
            flow.abandon()
            try:
                served = await asyncio.shield(flight)
                return served.value()
            except asyncio.CancelledError:
                if not flight.cancelled():
                    raise  # this caller was cancelled
            # The leader was cancelled: start over.
            r = self._read(key_obj, tags, pn)
            if r.__class__ is not Flow:
                return r
            flow = r

    async def _lead(self, flow: Any, loader: Callable[[], Any], flight: Optional[asyncio.Future[Any]]) -> Any:
        try:
            task, exc = await self._run(flow, loader, None, None)
            if flow.kind == SERVE:
                served = flow.served()
                flow.feed_continue()
                self._spawn(flow, loader, task, exc)
            else:
                served = self._b._outcome(flow, exc)
                if exc is not None:
                    self._b._report(flow.key, exc)
        except asyncio.CancelledError:
            if flight is not None:
                self._resolve(flow.key, flight)
                flight.cancel()
            raise
        except BaseException as e:
            if flight is not None:
                self._resolve(flow.key, flight)
                flight.set_exception(e)
                flight.exception()  # mark retrieved: followers may be none
            raise
        if flight is not None:
            self._resolve(flow.key, flight)
            flight.set_result(served)
        return served.value()

    def _resolve(self, key: str, flight: asyncio.Future[Any]) -> None:
        if self._inflight.get(key) is flight:
            del self._inflight[key]

    async def _run(
        self, flow: Any, loader: Callable[[], Any], task: Optional[asyncio.Task[Any]], exc: Optional[BaseException]
    ) -> tuple[Optional[asyncio.Task[Any]], Optional[BaseException]]:
        while True:
            kind = flow.kind
            if kind == STORE:
                await self._aexec(flow)
            elif kind == LOAD:
                timeout = flow.timeout
                if task is None and timeout is None:
                    try:
                        value = await _call(loader)
                    except Exception as e:  # noqa: BLE001 - handed to the flow, re-raised by _outcome
                        exc = e
                        flow.feed_load_failed(describe(e))
                        continue
                    exc = self._b._feed(flow, value) or exc
                else:
                    if task is None:
                        task = asyncio.ensure_future(_call(loader))
                    done, _ = await asyncio.wait((task,), timeout=timeout)
                    if not done:
                        flow.feed_timeout()
                        continue
                    t, task = task, None
                    err = t.exception()
                    if err is not None:
                        exc = err
                        flow.feed_load_failed(describe(err))
                        continue
                    exc = self._b._feed(flow, t.result()) or exc
            elif kind == WAIT:
                await asyncio.sleep(flow.delay)
                flow.feed_timeout()
            else:
                return task, exc

    def _spawn(self, flow: Any, loader: Callable[[], Any], task: Any, exc: Optional[BaseException]) -> None:
        t = asyncio.get_running_loop().create_task(self._background(flow, loader, task, exc))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _background(self, flow: Any, loader: Callable[[], Any], task: Any, exc: Optional[BaseException]) -> None:
        try:
            while True:
                task, exc = await self._run(flow, loader, task, exc)
                if flow.kind == SERVE:
                    flow.feed_continue()
                    continue
                break
            self._b._outcome(flow, exc)
        except BaseException as e:  # noqa: BLE001 - reported, never lost
            self._b._report(flow.key, e)

    async def _op(self, op: Any, default: Any = None) -> Any:
        if op.pending:
            await self._aexec(op)
        return op.result(default)

    async def get(self, key: Key, default: Any = None, *, tags: Optional[Iterable[str]] = None) -> Any:
        """See ``Cache.get``."""
        op = self._d.get(key, tags)
        afast = self._afast
        if afast is not None:
            f = op.fast
            if f is not None:
                op.feed_fast(await afast(*f))
        return await self._op(op, default)

    async def set(
        self,
        key: Key,
        value: Any,
        *,
        version: Optional[int] = None,
        tags: Optional[Iterable[str]] = None,
        policy: Optional[Policy] = None,
    ) -> bool:
        """See ``Cache.set``."""
        data, cid, negative = self._b._encode(value)
        if negative:
            raise ValueError("set(): value must not be None (use invalidate to remove a key)")
        return bool(await self._op(self._d.set(key, data, cid, version, tags, native_policy(policy))))

    async def invalidate(self, key: Key, *, mode: str = "delete") -> bool:
        """See ``Cache.invalidate``."""
        if not isinstance(mode, str):
            raise TypeError(f"invalidate(): mode must be a str, not {type(mode).__name__}")
        return bool(await self._op(self._d.invalidate(key, mode)))

    async def bump(self, key: Key | str) -> int:
        """See ``Cache.bump``."""
        return int(await self._op(self._d.bump(gen_key(key, "bump()"))))

    async def invalidate_tag(self, key: Key | str, tag: str) -> int:
        """See ``Cache.invalidate_tag``."""
        return int(await self._op(self._d.bump(tag_key(key, tag))))

    def stats(self) -> dict[str, int]:
        """See ``Cache.stats``."""
        return self._d.stats()  # type: ignore[no-any-return]

    async def drain(self) -> None:
        """Wait for the background refreshes running now."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def __repr__(self) -> str:
        return f"AsyncCache({self.store!r}, {self.policy!r})"
