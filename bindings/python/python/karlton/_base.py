"""What the sync and asyncio caches share: construction, argument checks, error reporting."""

from __future__ import annotations

import logging
import os
import weakref
from contextvars import ContextVar, Token
from typing import Any, Callable, Optional

from ._codec import check_codec, encoder
from ._errors import describe, flow_error
from ._karlton import SERVE, Driver, Key, MemoryStore
from ._policy import Policy
from ._redis import RedisStore

#: The flights whose loaders the current context runs in, as ``(cache, flight)`` pairs. The
#: native driver reads it when a ``get_or_load`` starts: one for a key this chain is loading
#: would wait for itself, so the core answers it ``ReentrantCallError`` instead.
LOADING: ContextVar[tuple[tuple[int, int], ...]] = ContextVar("karlton_loading", default=())


#: Every live native driver, so a forked child can re-seed them all (see ``_after_fork``).
_DRIVERS: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _after_fork() -> None:
    """In a child after ``os.fork()`` (gunicorn ``--preload``, Celery prefork, multiprocessing
    fork): each driver draws a new OS seed, so workers forked from one parent never share jitter
    or XFetch draws (lease tokens come from the store)."""
    for d in list(_DRIVERS):
        d.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def loading(call: Any) -> Token[tuple[tuple[int, int], ...]]:
    """Mark the current context as running ``call``'s loader, until ``LOADING.reset``."""
    return LOADING.set(LOADING.get() + (call.loading,))

log = logging.getLogger("karlton")

ErrorCallback = Callable[[str, BaseException], None]


def native_policy(policy: Any) -> Any:
    if policy is None:
        return None
    if isinstance(policy, Policy):
        return policy._native
    raise TypeError(f"policy must be a karlton.Policy, not {type(policy).__name__}")


def gen_keys(key: Any, what: str) -> list[str]:
    """The generation counters ``bump`` moves: a Key's own (its form: plain or hash-tagged), or
    for a namespace ``str`` both forms' — the str does not say which form its keys were built
    in, and bumping only the plain one left hash-tagged keys (``Key(..., hash_tag=True)``, for
    Redis Cluster) silently untouched."""
    if isinstance(key, Key):
        return [key.generation_key]
    if isinstance(key, str):
        return [Key(key).generation_key, Key(key, hash_tag=True).generation_key]
    raise TypeError(f"{what}: key must be a karlton.Key or a namespace str, not {type(key).__name__}")


def tag_keys(key: Any, tag: Any) -> list[str]:
    """The tag counters ``invalidate_tag`` moves (both forms for a namespace ``str``, as
    ``gen_keys``)."""
    if not isinstance(tag, str):
        raise TypeError(f"invalidate_tag(): tag must be a str, not {type(tag).__name__}")
    if isinstance(key, str):
        return [Key(key).tag_key(tag), Key(key, hash_tag=True).tag_key(tag)]
    if not isinstance(key, Key):
        raise TypeError(f"invalidate_tag(): key must be a karlton.Key or a namespace str, not {type(key).__name__}")
    return [key.tag_key(tag)]


def check_loader(loader: Any) -> None:
    if not callable(loader):
        raise TypeError(f"get_or_load(): loader must be callable, not {type(loader).__name__}")


class BaseCache:
    """Construction and the parts that do not depend on sync vs asyncio."""

    def __init__(
        self,
        store: MemoryStore | RedisStore | None,
        policy: Policy | None,
        codec: Any,
        on_error: Optional[ErrorCallback],
        want_async: bool,
    ) -> None:
        if store is None:
            store = MemoryStore()
        if isinstance(store, MemoryStore):
            native_store: MemoryStore | None = store
            redis: RedisStore | None = None
        elif isinstance(store, RedisStore):
            native_store = None
            redis = store
        else:
            raise TypeError(f"store must be a karlton.MemoryStore or karlton.RedisStore, not {type(store).__name__}")
        if policy is None:
            policy = Policy()
        elif not isinstance(policy, Policy):
            raise TypeError(f"policy must be a karlton.Policy, not {type(policy).__name__}")
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be callable, not {type(on_error).__name__}")
        codec = check_codec(codec)
        self.store = store
        self.policy = policy
        self._redis = redis
        self._on_error = on_error
        self._encode = encoder(codec)
        fast = redis is not None and redis.fast_reads
        self._d = Driver(native_store, policy._native, codec.id if codec else None, codec.decode if codec else None, fast)
        _DRIVERS.add(self._d)

    def _report(self, key: str, exc: BaseException) -> None:
        """A background refresh failed, or a stale value hid a loader error: tell someone."""
        cb = self._on_error
        if cb is not None:
            try:
                cb(key, exc)
                return
            except Exception:  # noqa: BLE001 - a failing callback must not kill the refresh
                log.exception("karlton: on_error callback failed")
        log.warning("karlton: background load of %r failed: %s", key, describe(exc), exc_info=exc)

    def _feed(self, call: Any, value: Any, err: Optional[BaseException]) -> Optional[BaseException]:
        """Hand the loader's outcome to the call: its value, encoded, or its exception (also
        when the value does not encode). Returns that exception, if any."""
        if err is None:
            try:
                data, cid, negative = self._encode(value)
            except Exception as e:  # noqa: BLE001 - unencodable value: a load failure, re-raised
                err = e
            else:
                call.feed_loaded(data, cid, negative)
                return None
        call.feed_load_failed(describe(err), err)
        return err

    def _answer(self, call: Any, exc: Optional[BaseException], background: Callable[[], Any]) -> Any:
        """A driven call's answer: the value served (its refresh goes on: ``background()``), or
        the outcome; a stale value that hid the loader's error reports it."""
        if call.kind == SERVE:
            value = call.value()
            call.feed_continue()
            background()
            return value
        value = call.outcome(exc)
        if exc is not None:
            self._report(call.key, exc)
        return value

    def _finished(self, call: Any, exc: Optional[BaseException]) -> None:
        """A refresh after a stale serve ended: report its failure, if any."""
        err = call.bg_error
        if err is not None:
            kind, msg = err
            self._report(call.key, exc if kind == "load" and exc is not None else flow_error(kind, msg))

    def stats(self) -> dict[str, int]:
        """A snapshot of the counters: hits_fresh, hits_stale, misses, loads, load_errors,
        lease_waits, lease_timeouts, fills_rejected, negative_hits, store_errors,
        corrupt_entries, stale_if_error, early_refreshes, coalesced, evictions, values_too_large,
        lease_extensions."""
        return self._d.stats()
