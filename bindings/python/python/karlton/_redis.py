"""``RedisStore``: runs the core's Lua scripts through the user's redis-py client."""

from __future__ import annotations

import asyncio
from typing import Any

from ._karlton import redis_scripts


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


class RedisStore:
    """The store protocol on Redis, through your ``redis.Redis`` or ``redis.asyncio.Redis``.

    Every operation is one ``EVALSHA`` of a script shipped by karlton's core (``EVAL`` on
    ``NOSCRIPT``, so a restarted or flushed server needs nothing). The client must return bytes
    (``decode_responses=False``, redis-py's default): entries are binary.
    """

    __slots__ = ("client", "is_async", "_errors", "_noscript", "_response", "_sem")

    def __init__(self, client: Any) -> None:
        try:
            import redis
            import redis.asyncio
            import redis.exceptions
        except ImportError as e:  # pragma: no cover
            raise ImportError("RedisStore needs redis-py: pip install redis") from e
        if isinstance(client, redis.asyncio.Redis):
            is_async = True
        elif isinstance(client, redis.Redis):
            is_async = False
        else:
            raise TypeError(
                f"RedisStore(): client must be a redis.Redis or redis.asyncio.Redis, not {type(client).__name__}"
            )
        pool = getattr(client, "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", {}) or {}
        if kwargs.get("decode_responses"):
            raise ValueError(
                "RedisStore(): client must not use decode_responses=True (entries are binary); "
                "create a second client without it"
            )
        self.client = client
        self.is_async = is_async
        # redis.asyncio fails calls beyond its pool size ("Too many connections") instead of
        # queueing them; queue here so a burst of tasks is not mistaken for a store outage.
        limit = getattr(pool, "max_connections", None)
        self._sem = asyncio.Semaphore(limit) if is_async and isinstance(limit, int) and limit < 1 << 20 else None
        self._errors = (redis.exceptions.RedisError, OSError)
        self._noscript = redis.exceptions.NoScriptError
        self._response = redis.exceptions.ResponseError

    def _exec(self, x: Any) -> None:
        """Run a Flow's or Op's pending call (sync client) and feed the reply."""
        call = x.call
        c = self.client
        try:
            try:
                reply = c.evalsha(*call)
            except self._noscript:
                reply = c.eval(x.source, *call[1:])
        except self._response as e:  # an error reply: the core decides what it means
            reply = e
        except self._errors as e:
            x.feed_store_error(_describe(e))
            return
        x.feed_reply(reply)

    async def _aexec(self, x: Any) -> None:
        """``_exec`` for an asyncio client."""
        if self._sem is not None:
            async with self._sem:
                await self._aexec1(x)
        else:
            await self._aexec1(x)

    async def _aexec1(self, x: Any) -> None:
        call = x.call
        c = self.client
        try:
            try:
                reply = await c.evalsha(*call)
            except self._noscript:
                reply = await c.eval(x.source, *call[1:])
        except self._response as e:
            reply = e
        except self._errors as e:
            x.feed_store_error(_describe(e))
            return
        x.feed_reply(reply)

    def load_scripts(self) -> Any:
        """``SCRIPT LOAD`` every script up front (optional: EVAL on NOSCRIPT covers it).
        Returns the result (awaitable for an asyncio client)."""
        if self.is_async:
            async def load() -> None:
                for _name, _sha, src in redis_scripts():
                    await self.client.script_load(src)
            return load()
        for _name, _sha, src in redis_scripts():
            self.client.script_load(src)
        return None

    def __repr__(self) -> str:
        return f"RedisStore({self.client!r})"


