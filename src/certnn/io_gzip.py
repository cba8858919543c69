"""Content-sniffed gzip: files certnn reads (ONNX models, VNN-LIB queries, counterexamples) may be
gzip-compressed whatever their name; the two magic bytes decide."""
from __future__ import annotations

import gzip

_MAGIC = b"\x1f\x8b"


def gunzip_if_gzipped(raw: bytes, what: str, error: type[Exception]) -> bytes:
    """``raw`` decompressed if it starts with gzip's magic bytes, else ``raw`` unchanged.

    Corrupt or truncated gzip data raises ``error("{what}: corrupt gzip data (...)")``; ``what`` names the
    file (or source) for the message.
    """
    if raw[:2] != _MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise error(f"{what}: corrupt gzip data ({exc})") from exc
