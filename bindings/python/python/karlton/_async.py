"""``AsyncCache``: the asyncio driver."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Awaitable, Callable, Iterable, Optional, TypeVar, Union

from ._base import LOADING, BaseCache, ErrorCallback, check_loader, gen_keys, loading, native_policy, tag_keys
from ._karlton import AWAIT, FAST, FINISHED, JOIN, LOAD, SERVE, STORE, WAIT, Call, Key, MemoryStore
from ._policy import Policy
from ._redis import RedisStore

T = TypeVar("T")
Loader = Callable[[], Union[Awaitable[T], T]]


def _woken(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


def _waker(loop: asyncio.AbstractEventLoop, fut: "asyncio.Future[None]") -> Callable[[], None]:
    """A wake-up for a joiner, callable from any thread (the flight may end in a worker)."""

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(_woken, fut)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    return wake


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
        self._d = self._b._d
        redis = self._b._redis
        if redis is None:
            self._aexec: Any = None
        elif redis.is_async:
            self._aexec = redis._xaexec
        else:
            sync_exec = redis._xexec

            async def aexec(x: Any) -> None:
                await asyncio.to_thread(sync_exec, x)

            self._aexec = aexec
        # Redis: a fresh hit is one pipelined round trip of plain commands (core decides).
        if redis is None or not redis.fast_reads:
            self._afast: Any = None
        elif redis.is_async:
            self._afast = redis._xafast
        else:
            sync_fast = redis._xfast

            async def afast(packed: bytes, n: int) -> Any:
                return await asyncio.to_thread(sync_fast, packed, n)

            self._afast = afast
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
        r = self._d.start(key, tags, policy)
        if r.__class__ is Call:
            check_loader(loader)
            return await self._slow(r, loader)  # type: ignore[no-any-return]
        return r  # type: ignore[no-any-return]

    async def _slow(self, call: Any, loader: Callable[[], Any]) -> Any:
        """Drive a call the native hit path could not finish (see ``Cache._slow``)."""
        task: Optional[asyncio.Task[Any]] = None
        exc: Optional[BaseException] = None
        try:
            task, exc = await self._run(call, loader, task, exc)
            return self._b._answer(call, exc, lambda: self._spawn(self._background(call, loader, task, exc)))
        except BaseException:
            await self._abandon(call)
            raise

    async def _abandon(self, call: Any) -> None:
        """The caller went away (cancelled, an exception): joiners run again, and the lease
        held goes back before this task ends. The release runs in a task of its own (a second
        cancellation of this one must not stop it) that this one awaits: when asyncio.run()
        shuts down it cancels pending tasks once and waits for them, so the release is on Redis
        before the loop closes (a release left as a separate task would be destroyed pending)."""
        call.cancel()
        if call.kind == STORE and self._aexec is not None:

            async def release() -> None:
                try:
                    await self._aexec(call)
                except Exception:  # noqa: BLE001 - best effort: the lease expires by itself
                    pass

            t = asyncio.get_running_loop().create_task(release())
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
            try:
                await asyncio.shield(t)
            except BaseException:  # noqa: BLE001 - cancelled again: the release task goes on
                pass

    async def _run(
        self, call: Any, loader: Callable[[], Any], task: Optional[asyncio.Task[Any]], exc: Optional[BaseException]
    ) -> tuple[Optional[asyncio.Task[Any]], Optional[BaseException]]:
        while True:
            kind = call.kind
            if kind == STORE:
                await self._aexec(call)
            elif kind == FAST:
                call.feed_fast(await self._afast(*call.packed))  # type: ignore[misc]
            elif kind == LOAD or kind == AWAIT:
                timeout = call.timeout
                err: Optional[BaseException] = None
                if task is None and timeout is None:
                    tok = loading(call)
                    try:
                        value, err = await _call(loader), None
                    except Exception as e:  # noqa: BLE001 - handed to the core, re-raised by outcome
                        value, err = None, e
                    finally:
                        LOADING.reset(tok)
                else:
                    if task is None:
                        # The task copies this context, marked as loading.
                        tok = loading(call)
                        task = asyncio.ensure_future(_call(loader))
                        LOADING.reset(tok)
                    done, _ = await asyncio.wait((task,), timeout=timeout)
                    if not done:
                        call.feed_timeout()
                        continue
                    t, task = task, None
                    err = t.exception()
                    value = None if err is not None else t.result()
                exc = self._b._feed(call, value, err) or exc
            elif kind == WAIT:
                await asyncio.sleep(call.delay)
                call.feed_timeout()
            elif kind == JOIN:
                loop = asyncio.get_running_loop()
                woken = loop.create_future()
                if call.on_wake(_waker(loop, woken)):
                    # At most until lock_wait runs out; then the core decides.
                    await asyncio.wait((woken,), timeout=call.delay)
                call.joined()
            else:
                return task, exc

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _background(self, call: Any, loader: Callable[[], Any], task: Any, exc: Optional[BaseException]) -> None:
        try:
            while True:
                task, exc = await self._run(call, loader, task, exc)
                if call.kind != SERVE:
                    break
                call.feed_continue()
            if call.kind == FINISHED:
                self._b._finished(call, exc)
        except BaseException as e:  # noqa: BLE001 - reported, never lost
            await self._abandon(call)
            self._b._report(call.key, e)

    async def _op(self, r: Any, default: Any = None) -> Any:
        """A one-op call's answer (the native side answers the memory store itself)."""
        if r.__class__ is not Call:
            return r
        while True:
            kind = r.kind
            if kind == STORE:
                await self._aexec(r)
            elif kind == FAST:
                r.feed_fast(await self._afast(*r.packed))  # type: ignore[misc]
            else:
                return r.result(default)

    async def get(self, key: Key, default: Any = None, *, tags: Optional[Iterable[str]] = None) -> Any:
        """See ``Cache.get``."""
        r = self._d.get(key, default, tags=tags)
        if r.__class__ is not Call:
            return r
        return await self._op(r, default)

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
        # A namespace str moves both forms' counters; the answer is the first (plain) one's.
        return [int(await self._op(self._d.bump(g))) for g in gen_keys(key, "bump()")][0]

    async def invalidate_tag(self, key: Key | str, tag: str) -> int:
        """See ``Cache.invalidate_tag``."""
        return [int(await self._op(self._d.bump(g))) for g in tag_keys(key, tag)][0]

    def stats(self) -> dict[str, int]:
        """See ``Cache.stats``."""
        return self._d.stats()  # type: ignore[no-any-return]

    async def drain(self) -> None:
        """Wait for the background refreshes running now."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def __repr__(self) -> str:
        return f"AsyncCache({self.store!r}, {self.policy!r})"
