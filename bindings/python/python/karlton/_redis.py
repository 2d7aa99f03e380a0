"""``RedisStore``: runs the core's Lua scripts through the user's redis-py client."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any

from ._errors import describe as _describe
from ._karlton import fast_read_slot, keys_slot, redis_scripts


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

    **Redis Cluster**: pass a ``redis.cluster.RedisCluster`` or ``redis.asyncio.cluster.RedisCluster``.
    Every script call names all its keys (the entry key, then its generation counters), which
    must hash to one slot: build keys in hash-tag form (``Key(ns, ..., hash_tag=True)`` →
    ``{ns}:…``). A call whose keys would span slots raises ``ValueError`` before any IO (Redis
    would answer ``CROSSSLOT``). Scripts go through the cluster client, which routes them by
    slot and follows ``MOVED``/``ASK``/``TRYAGAIN`` and failovers by its own retry settings; the
    fast read goes straight to the node that owns the entry's slot (core's slot rule), and
    anything but a clean reply from it (a ``MOVED``, a dead node) falls back to the script path.

    **Failure behaviour is your client's**: karlton changes none of its settings, so a call
    against a dead Redis takes as long as the client's timeouts and retries allow — about 3–4 s
    with redis-py's defaults (no socket timeout, retries with backoff), where the Rust and Node
    stores give up after 250 ms. :meth:`from_url` builds a client with that bound; on your own
    client set ``socket_timeout=0.25, socket_connect_timeout=0.25`` and
    ``retry=Retry(NoBackoff(), 0)`` for the same.
    """

    __slots__ = (
        "client", "is_async", "is_cluster", "fast_reads", "_conn_args", "_errors", "_noscript", "_response", "_sem",
        "_xexec", "_xaexec", "_xfast", "_xafast", "_pool_args",
    )

    def __init__(self, client: Any, *, fast_reads: bool = True) -> None:
        try:
            import redis
            import redis.asyncio
            import redis.exceptions
        except ImportError as e:  # pragma: no cover
            raise ImportError("RedisStore needs redis-py: pip install redis") from e
        import redis.asyncio.cluster
        import redis.cluster

        is_cluster = False
        if isinstance(client, redis.asyncio.Redis):
            is_async = True
        elif isinstance(client, redis.Redis):
            is_async = False
        elif isinstance(client, redis.asyncio.cluster.RedisCluster):
            is_async = is_cluster = True
        elif isinstance(client, redis.cluster.RedisCluster):
            is_async, is_cluster = False, True
        else:
            raise TypeError(
                "RedisStore(): client must be a redis.Redis, redis.asyncio.Redis, redis.cluster.RedisCluster "
                f"or redis.asyncio.cluster.RedisCluster, not {type(client).__name__}"
            )
        pool = getattr(client, "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", {}) or {}
        encoder = getattr(client, "get_encoder", None)
        if kwargs.get("decode_responses") or (
            is_cluster and callable(encoder) and getattr(encoder(), "decode_responses", False)
        ):
            raise ValueError(
                "RedisStore(): client must not use decode_responses=True (entries are binary); "
                "create a second client without it"
            )
        if not isinstance(fast_reads, bool):
            raise TypeError(f"RedisStore(): fast_reads must be a bool, not {type(fast_reads).__name__}")
        self.client = client
        self.is_async = is_async
        self.is_cluster = is_cluster
        # The fast read takes a pooled connection itself; a single-connection client's one
        # connection is the client's own business.
        single = not is_cluster and (
            getattr(client, "single_connection_client", False) is True
            or getattr(client, "_single_connection_client", False) is True
            or getattr(client, "connection", None) is not None
        )
        self.fast_reads = fast_reads and not single
        self._conn_args = _conn_args(pool) if pool is not None else ()
        # redis.asyncio fails calls beyond its pool size ("Too many connections") instead of
        # queueing them; queue here so a burst of tasks is not mistaken for a store outage.
        limit = getattr(pool, "max_connections", None)
        self._sem: Any = asyncio.Semaphore(limit) if is_async and isinstance(limit, int) and limit < 1 << 20 else None
        # (RedisClusterException is not a RedisError: a slot no node covers, no node reachable.)
        self._errors = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError)
        self._noscript = redis.exceptions.NoScriptError
        self._response = redis.exceptions.ResponseError
        self._pool_args: dict[type, tuple[str, ...]] = {}
        # What the caches call: the single-node senders, or the cluster ones (slot-checked).
        if is_cluster:
            self._xexec, self._xaexec = self._cexec, self._caexec
            self._xfast, self._xafast = self._cfast, self._cafast
        else:
            self._xexec, self._xaexec = self._exec, self._aexec
            self._xfast, self._xafast = self._fast, (self._afast if self._sem is not None else self._afast1)

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
    ) -> "RedisStore":
        """A store on a new redis-py client with karlton's failure behaviour, the Rust and Node
        stores' default: every command and connect gives up after ``timeout`` seconds (0.25)
        and is not retried, so a dead Redis costs a call about that much before it is answered
        from its loader (``on_store_error="load"``). redis-py's own defaults retry with backoff:
        3–4 s per call against a dead server. ``client_options`` go to redis-py and win.
        """
        import redis
        import redis.asyncio
        import redis.asyncio.cluster
        import redis.cluster
        from redis.backoff import NoBackoff

        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"RedisStore.from_url(): timeout must be a number of seconds > 0, got {timeout!r}")
        opts: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if cluster:
            client_cls: Any = redis.asyncio.cluster.RedisCluster if asyncio else redis.cluster.RedisCluster
        else:
            client_cls = redis.asyncio.Redis if asyncio else redis.Redis
            retry_cls = redis.asyncio.retry.Retry if asyncio else redis.retry.Retry
            opts["retry"] = retry_cls(NoBackoff(), 0)
        opts.update(client_options)
        return cls(client_cls.from_url(url, **opts), fast_reads=fast_reads)

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

    async def _asend(self, conn: Any, packed: bytes, n: int) -> list[Any]:
        """``_send`` on an asyncio connection."""
        await conn.send_packed_command((packed,))
        out: list[Any] = []
        for _ in range(n):
            try:
                out.append(await conn.read_response())
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
                    return await self._asend(conn, packed, n)

                async def fail(_e: BaseException) -> None:
                    await conn.disconnect()

                return await conn.retry.call_with_retry(send, fail)
            finally:
                await pool.release(conn)
        except self._errors as e:
            return _describe(e)

    # -- Redis Cluster ------------------------------------------------------------------------

    @staticmethod
    def _check_slot(call: Any) -> None:
        """Refuse a script call whose keys span slots, before any IO (``ValueError``)."""
        keys_slot(list(call[2 : 2 + call[1]]))

    def _cexec(self, x: Any) -> None:
        """``_exec`` on a cluster: the cluster client routes by the keys' slot."""
        self._check_slot(x.call)
        self._exec(x)

    async def _caexec(self, x: Any) -> None:
        """``_aexec`` on a cluster."""
        self._check_slot(x.call)
        await self._aexec(x)

    def _cfast(self, packed: bytes, n: int) -> Any:
        """The fast read on a cluster: to the primary that owns the keys' slot. A reply that is
        not clean (the node is gone, ``MOVED``/``ASK``) comes back as error replies, so the
        core runs the script path, which the cluster client routes, redirects and retries."""
        slot = fast_read_slot(packed)  # ValueError: cross-slot, before any IO
        c = self.client
        try:
            node = c.nodes_manager.get_node_from_slot(slot)
            pool = c.get_redis_connection(node).connection_pool
            args = self._pool_args.get(type(pool))
            if args is None:
                args = self._pool_args[type(pool)] = _conn_args(pool)
            conn = pool.get_connection(*args)
            try:
                return self._send(conn, packed, n)
            except BaseException:
                conn.disconnect()  # a reply may be pending on it
                raise
            finally:
                pool.release(conn)
        except self._errors as e:
            return [e] * n

    async def _cafast(self, packed: bytes, n: int) -> Any:
        """``_cfast`` for an asyncio cluster client."""
        slot = fast_read_slot(packed)
        c = self.client
        try:
            if c._initialize:  # no topology yet, or a refresh was asked for: the client's own step
                await c.initialize()
            node = c.nodes_manager.get_node_from_slot(slot)
            conn = node.acquire_connection()
            try:
                return await self._asend(conn, packed, n)
            except BaseException:
                await conn.disconnect()  # a reply may be pending on it
                raise
            finally:
                node.release(conn)
        except self._errors as e:
            return [e] * n

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


