"""``Policy``: the cache policy in seconds, validated by the core."""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta
from typing import Any, Sequence, Union

from ._karlton import PolicyCore, duration_ms

Seconds = Union[int, float, timedelta]

_ON_LOCK_TIMEOUT = ("load", "serve_stale", "error")
_ON_STORE_ERROR = ("load", "error")
_MS_NAME = re.compile(r"`(\w+)_ms`")


def _ms(name: str, value: Any) -> int:
    """Seconds (int/float) or a timedelta as integer milliseconds; names the argument on error."""
    if isinstance(value, timedelta):
        secs = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        secs = float(value)
    else:
        raise TypeError(
            f"Policy(): {name} must be seconds (int or float) or a timedelta, not {type(value).__name__}"
        )
    # The core's one rounding rule (half away from zero), shared with Node's milliseconds.
    ms = duration_ms(secs, 1000.0)
    if ms is None:
        raise ValueError(f"Policy(): {name} must be a finite number of seconds >= 0, got {value!r}")
    return ms


def _backoff(value: Any) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"Policy(): lock_backoff must be a list of seconds, not {type(value).__name__}")
    return [_ms("lock_backoff", b) for b in value]


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Policy(): {name} must be an int (bytes), not {type(value).__name__}")
    return value


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Policy(): {name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        # JSON has no NaN or infinity: say so here rather than let the core report bad JSON.
        raise ValueError(f"Policy(): {name} must be a finite number, got {value!r}")
    return float(value)


def _choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"Policy(): {name} must be a str, not {type(value).__name__}")
    if value not in allowed:
        raise ValueError(f"Policy(): {name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


class Policy:
    """How entries live: every knob of the core's policy, durations in seconds.

    ``soft_ttl``: fresh for this long. ``hard_ttl`` (>= soft_ttl, default = soft_ttl): served
    stale until then while one caller refreshes in the background. ``jitter``: fraction in
    [0, 1) by which TTLs are shortened at random. ``early_refresh``: XFetch beta (0 = off).
    ``negative_ttl``: how long a loader's ``None`` is cached (0 = not cached).
    ``stale_if_error``: how long past hard expiry a value may still be served when the loader
    fails. ``lease_ttl``: how long one caller holds the right to load a key. ``lock_wait`` and
    ``lock_backoff``: how long and how often other callers re-check while waiting.
    ``on_lock_timeout``: ``"load"`` | ``"serve_stale"`` | ``"error"``. ``load_soft_timeout``:
    after this, a slow load with a stale value at hand serves it. ``load_hard_timeout``: a load
    is abandoned after this and its lease goes back (``None``: 30 s past ``load_soft_timeout``,
    or 30 s; every load has a deadline); a load running past half of ``lease_ttl`` extends its
    lease until then (``lease_extensions``). ``on_store_error``: ``"load"`` (answer from the loader) | ``"error"``.
    ``max_value_bytes``: the largest encoded value that is cached (default 16 MiB, at most
    512 MiB); a larger one is returned to its callers but not stored (``values_too_large``),
    and ``set`` of one removes the key.

    Invalid combinations raise ``ValueError`` (wrong types ``TypeError``) here, never later.
    """

    __slots__ = ("_native", "_kwargs")

    def __init__(
        self,
        *,
        soft_ttl: Seconds = 60,
        hard_ttl: Seconds | None = None,
        jitter: float = 0.0,
        early_refresh: float = 0.0,
        negative_ttl: Seconds = 0,
        stale_if_error: Seconds = 0,
        lease_ttl: Seconds = 10,
        lock_wait: Seconds = 5,
        lock_backoff: Sequence[Seconds] = (0.002, 0.005, 0.01),
        on_lock_timeout: str = "load",
        load_soft_timeout: Seconds | None = None,
        load_hard_timeout: Seconds | None = None,
        on_store_error: str = "load",
        max_value_bytes: int = 16 << 20,
    ) -> None:
        kwargs = dict(
            soft_ttl=soft_ttl, hard_ttl=hard_ttl, jitter=jitter, early_refresh=early_refresh,
            negative_ttl=negative_ttl, stale_if_error=stale_if_error, lease_ttl=lease_ttl,
            lock_wait=lock_wait, lock_backoff=lock_backoff, on_lock_timeout=on_lock_timeout,
            load_soft_timeout=load_soft_timeout, load_hard_timeout=load_hard_timeout,
            on_store_error=on_store_error, max_value_bytes=max_value_bytes,
        )
        # Each argument is converted in the core's field order (the order of this dict), so that
        # of several bad ones the same is reported in every runtime (docs/value-model.md).
        spec: dict[str, Any] = {
            "soft_ttl_ms": _ms("soft_ttl", soft_ttl),
            "hard_ttl_ms": None if hard_ttl is None else _ms("hard_ttl", hard_ttl),
            "jitter": _fraction("jitter", jitter),
            "early_refresh": _fraction("early_refresh", early_refresh),
            "negative_ttl_ms": _ms("negative_ttl", negative_ttl),
            "stale_if_error_ms": _ms("stale_if_error", stale_if_error),
            "lease_ttl_ms": _ms("lease_ttl", lease_ttl),
            "lock_wait_ms": _ms("lock_wait", lock_wait),
            "lock_backoff_ms": _backoff(lock_backoff),
            "on_lock_timeout": _choice("on_lock_timeout", on_lock_timeout, _ON_LOCK_TIMEOUT),
            "load_soft_timeout_ms": None if load_soft_timeout is None else _ms("load_soft_timeout", load_soft_timeout),
            "load_hard_timeout_ms": None if load_hard_timeout is None else _ms("load_hard_timeout", load_hard_timeout),
            "on_store_error": _choice("on_store_error", on_store_error, _ON_STORE_ERROR),
            "max_value_bytes": _int("max_value_bytes", max_value_bytes),
        }
        try:
            native = PolicyCore.from_json(json.dumps(spec))
        except ValueError as e:
            # The core names its fields in ms (`hard_ttl_ms`); name the Python argument (first:
            # a value only the core refuses, like max_value_bytes=-1, is "invalid JSON: `field`: ...").
            msg = _MS_NAME.sub(r"`\1`", str(e)).removeprefix("policy: ").removeprefix("invalid JSON: ")
            raise ValueError("Policy(): " + msg) from None
        self._native = native
        self._kwargs = kwargs

    def replace(self, **changes: Any) -> "Policy":
        """A copy with some arguments changed."""
        return Policy(**{**self._kwargs, **changes})

    def to_json(self) -> str:
        """The core's view of this policy (durations in ms)."""
        return self._native.to_json()

    def __getattr__(self, name: str) -> Any:
        try:
            return self._kwargs[name]
        except KeyError:
            raise AttributeError(name) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items())
        return f"Policy({args})"
