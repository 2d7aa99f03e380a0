"""The ``cached`` decorator: read-through caching of a function's result."""

from __future__ import annotations

import functools
import hashlib
import inspect
from typing import Any, Callable, Iterable, Optional

from ._async import AsyncCache
from ._cache import Cache
from ._karlton import Key
from ._policy import Policy


def _namespace(fn: Callable[..., Any]) -> str:
    full = f"{fn.__module__}.{fn.__qualname__}"
    try:
        Key(full)
        return full
    except ValueError:  # longer than a namespace may be: keep the end, add a hash
        return f"{full[-40:]}~{hashlib.sha256(full.encode()).hexdigest()[:16]}"


def cached(
    cache: Cache | AsyncCache,
    *,
    namespace: Optional[str] = None,
    policy: Optional[Policy] = None,
    tags: Optional[Iterable[str]] = None,
    ignore: Iterable[str] = ("self", "cls"),
    hash_tag: bool = False,
) -> Callable[[Callable[..., Any]], Any]:
    """Cache a function's results through ``cache.get_or_load``.

    The key is ``Key(namespace, params={argument: value, …})``: arguments are bound to the
    signature with defaults applied, so ``f(1, b=2)``, ``f(a=1, b=2)`` and ``f(1)`` (when
    ``b=2`` is the default) share one entry. Arguments must be JSON-like (dict, list, str, int,
    float, bool, None); those named in ``ignore`` are left out. ``namespace`` defaults to
    ``module.qualname``. Coroutine functions need an ``AsyncCache``, plain ones a ``Cache``.

    The wrapper has ``.key(*args, **kwargs)`` (the key a call uses), ``.invalidate(*args,
    **kwargs)`` and ``.cache``.
    """
    if not isinstance(cache, (Cache, AsyncCache)):
        raise TypeError(f"cached(): cache must be a karlton.Cache or karlton.AsyncCache, not {type(cache).__name__}")
    if namespace is not None and not isinstance(namespace, str):
        raise TypeError(f"cached(): namespace must be a str, not {type(namespace).__name__}")
    if policy is not None and not isinstance(policy, Policy):
        raise TypeError(f"cached(): policy must be a karlton.Policy, not {type(policy).__name__}")
    tag_list = None if tags is None else list(tags)
    ignored = frozenset(ignore)

    def decorate(fn: Callable[..., Any]) -> Any:
        if not callable(fn):
            raise TypeError(f"cached(): expected a function, got {type(fn).__name__}")
        is_async = inspect.iscoroutinefunction(fn)
        if is_async and not isinstance(cache, AsyncCache):
            raise TypeError(f"cached(): {fn.__qualname__} is a coroutine function and needs an AsyncCache")
        if not is_async and not isinstance(cache, Cache):
            raise TypeError(f"cached(): {fn.__qualname__} is a plain function and needs a Cache (not AsyncCache)")
        sig = inspect.signature(fn)
        ns = namespace or _namespace(fn)

        def key(*args: Any, **kwargs: Any) -> Key:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            params = {k: v for k, v in bound.arguments.items() if k not in ignored}
            try:
                return Key(ns, params=params, hash_tag=hash_tag)
            except (TypeError, ValueError) as e:
                raise type(e)(f"cached {fn.__qualname__}(): arguments must be JSON-like to build a key: {e}") from None

        if is_async:
            acache: AsyncCache = cache  # type: ignore[assignment]

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                return await acache.get_or_load(
                    key(*args, **kwargs), lambda: fn(*args, **kwargs), tags=tag_list, policy=policy
                )

            async def ainvalidate(*args: Any, **kwargs: Any) -> bool:
                return await acache.invalidate(key(*args, **kwargs))

            wrapper: Any = awrapper
            wrapper.invalidate = ainvalidate
        else:
            scache: Cache = cache  # type: ignore[assignment]

            @functools.wraps(fn)
            def swrapper(*args: Any, **kwargs: Any) -> Any:
                return scache.get_or_load(key(*args, **kwargs), lambda: fn(*args, **kwargs), tags=tag_list, policy=policy)

            wrapper = swrapper
            wrapper.invalidate = lambda *a, **kw: scache.invalidate(key(*a, **kw))
        wrapper.key = key
        wrapper.cache = cache
        return wrapper

    return decorate
