"""``RedisStore``: runs the core's Lua scripts through the user's redis-py client."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any

from ._errors import describe as _describe
from ._karlton import redis_scripts


def _conn_args(pool: Any) -> tuple[str, ...]:
    """What ``pool.get_connection`` needs: nothing since redis-py 5.3 (which warns about a
    command name), a command name before."""
    try:
        p = inspect.signature(pool.get_connection).parameters.get("command_name")
    except (TypeError, ValueError):
        return ()
    return ("TIME",) if p is not None and p.default is inspect.Parameter.empty else ()


class RedisStore:
    """The store protocol on Redis, through your ``redis.Redis`` or ``redis.asyncio.Redis``.

    Every operation is one ``EVALSHA`` of a script shipped by karlton's core (``EVAL`` on
    ``NOSCRIPT``, so a restarted or flushed server needs nothing). The client must return bytes
    (``decode_responses=False``, redis-py's default): entries are binary.

    With ``fast_reads`` (the default), ``get_or_load`` and ``get`` first try a fresh hit as one
    pipelined round trip of plain commands (``TIME`` and one ``MGET`` of the entry's record and its counters; no Lua), which the
    core interprets; anything but a clean fresh hit runs the ``read`` script as usual. Off for
    ``single_connection_client`` clients.
    """

    __slots__ = ("client", "is_async", "fast_reads", "_conn_args", "_errors", "_noscript", "_response", "_sem")

    def __init__(self, client: Any, *, fast_reads: bool = True) -> None:
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
        if not isinstance(fast_reads, bool):
            raise TypeError(f"RedisStore(): fast_reads must be a bool, not {type(fast_reads).__name__}")
        self.client = client
        self.is_async = is_async
        # The fast read takes a pooled connection itself; a single-connection client's one
        # connection is the client's own business.
        single = (
            getattr(client, "single_connection_client", False) is True
            or getattr(client, "_single_connection_client", False) is True
            or getattr(client, "connection", None) is not None
        )
        self.fast_reads = fast_reads and not single
        self._conn_args = _conn_args(pool)
        # redis.asyncio fails calls beyond its pool size ("Too many connections") instead of
        # queueing them; queue here so a burst of tasks is not mistaken for a store outage.
        limit = getattr(pool, "max_connections", None)
        self._sem: Any = asyncio.Semaphore(limit) if is_async and isinstance(limit, int) and limit < 1 << 20 else None
        self._errors = (redis.exceptions.RedisError, OSError)
        self._noscript = redis.exceptions.NoScriptError
        self._response = redis.exceptions.ResponseError

    def _exec(self, x: Any) -> None:
        """Run a Call's pending script call (sync client) and feed the reply."""
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
        call = x.call
        c = self.client
        try:
            async with self._sem or contextlib.nullcontext():
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

    def _fast(self, packed: bytes, n: int) -> Any:
        """Send a fast read (sync client): one write of ``packed``, ``n`` replies read back
        (error replies as exceptions). A ``str`` instead when the server could not be reached.
        Retries and timeouts are the client's own (``retry``, ``socket_timeout``)."""
        pool = self.client.connection_pool
        try:
            conn = pool.get_connection(*self._conn_args)
            try:
                return conn.retry.call_with_retry(lambda: self._send(conn, packed, n), lambda _e: conn.disconnect())
            finally:
                pool.release(conn)
        except self._errors as e:
            return _describe(e)

    def _send(self, conn: Any, packed: bytes, n: int) -> list[Any]:
        conn.send_packed_command((packed,))
        out: list[Any] = []
        for _ in range(n):
            try:
                out.append(conn.read_response())
            except self._response as e:  # an error reply (WRONGTYPE…): the core decides
                out.append(e)
        return out

    async def _afast(self, packed: bytes, n: int) -> Any:
        """``_fast`` for an asyncio client."""
        async with self._sem or contextlib.nullcontext():
            return await self._afast1(packed, n)

    async def _afast1(self, packed: bytes, n: int) -> Any:
        pool = self.client.connection_pool
        try:
            conn = await pool.get_connection(*self._conn_args)
            try:

                async def send() -> list[Any]:
                    await conn.send_packed_command((packed,))
                    out: list[Any] = []
                    for _ in range(n):
                        try:
                            out.append(await conn.read_response())
                        except self._response as e:
                            out.append(e)
                    return out

                async def fail(_e: BaseException) -> None:
                    await conn.disconnect()

                return await conn.retry.call_with_retry(send, fail)
            finally:
                await pool.release(conn)
        except self._errors as e:
            return _describe(e)

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


