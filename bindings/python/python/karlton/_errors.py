"""Exceptions raised by karlton."""

from __future__ import annotations


def describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


class KarltonError(Exception):
    """Base class of karlton's own errors."""


class StoreError(KarltonError):
    """The store failed (raised by writes; by reads only with ``on_store_error="error"``)."""


class LoaderError(KarltonError):
    """Another caller's load failed (raised when the original exception is not at hand)."""


class LoadTimeoutError(KarltonError, TimeoutError):
    """The loader ran past ``load_hard_timeout``."""


class LockTimeoutError(KarltonError, TimeoutError):
    """Waited ``lock_wait`` for another caller's load (``on_lock_timeout="error"``)."""


class ReentrantCallError(KarltonError, RuntimeError):
    """A loader called ``get_or_load`` on a key its own call chain is loading (directly or
    through other keys' loaders): waiting would deadlock, so the inner call raises this."""


class CodecError(KarltonError, ValueError):
    """A cached value could not be decoded (unknown codec id, invalid JSON)."""


_BY_KIND = {
    "load": LoaderError,
    "load_timeout": LoadTimeoutError,
    "lock_timeout": LockTimeoutError,
    "store": StoreError,
    "protocol": KarltonError,
    "reentrant": ReentrantCallError,
}


def flow_error(kind: str, message: str) -> KarltonError:
    """The exception for a core flow error ``(kind, message)``."""
    return _BY_KIND.get(kind, KarltonError)(message)
