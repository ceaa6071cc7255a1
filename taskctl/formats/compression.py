"""One guarded decompression for message bodies and stored results: zlib/gzip, bz2, lzma (and brotli, zstd when
installed), output capped so that a compression bomb is refused instead of filling memory.

kombu's ``compression`` message header and Celery 5.7's in-band result prefix
(``\\x00celery-compressed\\x00<content type>\\x00<body>``) name the codec by content type; the short names
(``gzip``, ``bzip2``, ``xz``...) are accepted too. kombu's "gzip" is really zlib; real gzip data (``1f 8b``) is
read as well. Every error is a :class:`DecompressionError` (a ValueError) with a one-line reason.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CELERY_COMPRESSED_MAGIC",
    "MAX_DECOMPRESSED",
    "DecompressionError",
    "codec_of",
    "compress",
    "decompress",
    "unwrap_celery",
]

#: what one value or body may decompress to; a bomb passes it and is refused
MAX_DECOMPRESSED = 64 * 1024 * 1024
CELERY_COMPRESSED_MAGIC = b"\x00celery-compressed\x00"

_CODECS = {
    "application/x-gzip": "zlib",
    "application/gzip": "zlib",
    "gzip": "zlib",
    "zlib": "zlib",
    "application/x-bz2": "bz2",
    "bzip2": "bz2",
    "bzip": "bz2",
    "bz2": "bz2",
    "application/x-lzma": "lzma",
    "application/x-xz": "lzma",
    "lzma": "lzma",
    "xz": "lzma",
    "application/x-brotli": "brotli",
    "brotli": "brotli",
    "application/zstd": "zstd",
    "zstd": "zstd",
    "zstandard": "zstd",
}


class DecompressionError(ValueError):
    """The data cannot be decompressed, or would decompress to more than the cap."""


def codec_of(name: str) -> str | None:
    """The codec (zlib, bz2, lzma, brotli, zstd) a content type or short name stands for, or None."""
    return _CODECS.get(name.strip().lower())


def _too_large(name: str, limit: int) -> DecompressionError:
    return DecompressionError(f"{name} data decompresses to more than {limit:,} bytes (refused as a bomb)")


_CHUNK = 1024 * 1024


def _streams(decompressor: Any, data: bytes, name: str, limit: int) -> bytes:
    """bz2/lzma: every concatenated stream, in pieces, refused as soon as LIMIT bytes are passed."""
    out: list[bytes] = []
    total = 0
    while True:
        d = decompressor()
        chunk = d.decompress(data, _CHUNK)
        while True:
            total += len(chunk)
            if total > limit:
                raise _too_large(name, limit)
            out.append(chunk)
            if d.eof or d.needs_input:
                break
            chunk = d.decompress(b"", _CHUNK)
        if not d.eof:
            raise DecompressionError(f"{name} data ends early")
        data = d.unused_data
        if not data:
            return b"".join(out)


def _zlib(data: bytes, name: str, limit: int) -> bytes:
    import zlib

    d = zlib.decompressobj(wbits=47)  # 32 + 15: zlib or gzip, told by the header
    out: list[bytes] = []
    total = 0
    while True:
        chunk = d.decompress(data, _CHUNK)
        total += len(chunk)
        if total > limit:
            raise _too_large(name, limit)
        out.append(chunk)
        data = d.unconsumed_tail
        if d.eof or (not data and len(chunk) < _CHUNK):
            break
    if not d.eof:
        raise DecompressionError(f"{name} data ends early")
    return b"".join(out)


def decompress(data: bytes, name: str, *, limit: int = MAX_DECOMPRESSED) -> bytes:
    """DATA decompressed with the codec NAME (a content type or short name), at most LIMIT bytes of it."""
    codec = codec_of(name)
    try:
        if codec == "zlib":
            return _zlib(data, name, limit)
        if codec == "bz2":
            import bz2

            return _streams(bz2.BZ2Decompressor, data, name, limit)
        if codec == "lzma":
            import lzma

            return _streams(lzma.LZMADecompressor, data, name, limit)
        if codec == "brotli":
            return _brotli(data, name, limit)
        if codec == "zstd":
            return _zstd(data, name, limit)
    except DecompressionError:
        raise
    except MemoryError:
        raise _too_large(name, limit) from None
    except Exception as exc:  # zlib.error, OSError, lzma.LZMAError, EOFError, the optional libraries' errors
        raise DecompressionError(f"{name} data cannot be decompressed: {str(exc)[:120]}") from None
    raise DecompressionError(f"unknown compression {name!r}")


def _brotli(data: bytes, name: str, limit: int) -> bytes:
    try:
        import brotli
    except ImportError:
        raise DecompressionError("brotli-compressed: install the Python package 'brotli' to read it") from None
    d = brotli.Decompressor()
    try:
        out = bytes(d.process(data, output_buffer_limit=limit + 1))
    except TypeError:  # brotli < 1.1 cannot cap its output
        raise DecompressionError("brotli-compressed: brotli >= 1.1 is needed to read it safely") from None
    if len(out) > limit or not d.is_finished():
        raise _too_large(name, limit)
    return out


def _zstd(data: bytes, name: str, limit: int) -> bytes:
    try:
        import zstandard
    except ImportError:
        raise DecompressionError("zstd-compressed: install the Python package 'zstandard' to read it") from None
    reader = zstandard.ZstdDecompressor().stream_reader(data)
    out = reader.read(limit + 1)
    if len(out) > limit:
        raise _too_large(name, limit)
    return bytes(out)


def compress(data: bytes, name: str) -> bytes:
    """DATA compressed as kombu and Celery do for NAME (zlib for "gzip", bz2, lzma)."""
    codec = codec_of(name)
    if codec == "zlib":
        import zlib

        return zlib.compress(data)
    if codec == "bz2":
        import bz2

        return bz2.compress(data)
    if codec == "lzma":
        import lzma

        return lzma.compress(data)
    raise DecompressionError(f"cannot write {name!r} compression (use gzip, bzip2 or lzma)")


def unwrap_celery(raw: bytes, *, limit: int = MAX_DECOMPRESSED) -> tuple[bytes, str | None]:
    """Undo Celery 5.7's in-band result compression: (the value, its content type or None when uncompressed)."""
    if not raw.startswith(CELERY_COMPRESSED_MAGIC):
        return raw, None
    ctype_b, sep, body = raw[len(CELERY_COMPRESSED_MAGIC) :].partition(b"\x00")
    if not sep:
        raise DecompressionError("compression marker without content type")
    ctype = ctype_b[:100].decode("ascii", "replace")
    return decompress(body, ctype, limit=limit), ctype
