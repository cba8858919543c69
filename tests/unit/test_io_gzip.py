"""The content-sniffed gzip helper shared by the ONNX and VNN-LIB readers."""
from __future__ import annotations

import gzip

import pytest

from certnn.errors import DataError, ModelImportError, SpecError
from certnn.io_gzip import gunzip_if_gzipped


def test_plain_bytes_pass_through_unchanged():
    raw = b"(declare-const X_0 Real)\n"
    assert gunzip_if_gzipped(raw, "q.vnnlib", SpecError) is raw
    assert gunzip_if_gzipped(b"", "empty", SpecError) == b""
    assert gunzip_if_gzipped(b"\x1f", "one magic byte", SpecError) == b"\x1f"


def test_gzipped_bytes_decompress():
    payload = bytes(range(256)) * 7
    assert gunzip_if_gzipped(gzip.compress(payload), "m.onnx.gz", ModelImportError) == payload


@pytest.mark.parametrize("error", [SpecError, ModelImportError, DataError])
def test_truncated_gzip_raises_the_callers_error_naming_the_source(error):
    data = gzip.compress(b"x" * 1000)
    for broken in (data[:len(data) // 2], data[:2], data[:-3]):
        with pytest.raises(error, match=r"^broken\.gz: corrupt gzip data \(") as info:
            gunzip_if_gzipped(broken, "broken.gz", error)
        assert isinstance(info.value.__cause__, (OSError, EOFError))
