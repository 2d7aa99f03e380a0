"""Value codecs: JSON by default (every runtime reads it), bytes pass through, or your own."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ._karlton import CODEC_JSON, CODEC_RAW, encode_json


@runtime_checkable
class Codec(Protocol):
    """A pluggable value codec: ``id`` (128..255, stored in each entry), ``encode``, ``decode``."""

    id: int

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


def check_codec(codec: Any) -> Codec | None:
    if codec is None:
        return None
    for attr in ("encode", "decode"):
        if not callable(getattr(codec, attr, None)):
            raise TypeError(f"codec must have callable encode() and decode(); missing {attr}")
    cid = getattr(codec, "id", None)
    if isinstance(cid, bool) or not isinstance(cid, int):
        raise TypeError(f"codec.id must be an int in 128..255, not {type(cid).__name__}")
    if not 128 <= cid <= 255:
        raise ValueError(f"codec.id must be in 128..255 (0..127 are karlton's), got {cid}")
    return codec


def encoder(codec: Codec | None):  # type: ignore[no-untyped-def]
    """``value -> (bytes, codec_id, negative)``."""
    if codec is None:
        def encode(value: Any) -> tuple[bytes, int, bool]:
            if value is None:
                return b"", CODEC_JSON, True
            if isinstance(value, (bytes, bytearray, memoryview)):
                return bytes(value), CODEC_RAW, False
            # Refuses what a reader in any runtime would get back changed or could not decode.
            return encode_json(value), CODEC_JSON, False
    else:
        cid, enc = codec.id, codec.encode

        def encode(value: Any) -> tuple[bytes, int, bool]:
            if value is None:
                return b"", CODEC_JSON, True
            data = enc(value)
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"codec.encode() must return bytes, not {type(data).__name__}")
            return bytes(data), cid, False
    return encode
