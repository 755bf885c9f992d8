"""Chunked AES-256-GCM (``tanu.core.aead_stream``): a stream of any length
opens to exactly what was written, in whatever pieces it was written; a
chunk altered, moved, dropped, repeated or taken from another stream, a
stream cut short (at a chunk boundary too), another key or associated data
are each refused."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from tanu.core import aead_stream
from tanu.core.aead_stream import CHUNK, TAG, Opener, Sealer, StreamError

KEY = bytes(range(32))
AAD = b'{"partition": 0}'


def sealed(pieces, key=KEY, aad=AAD) -> tuple[bytes, bytes]:
    """(prefix, sealed bytes) of the pieces written in order."""
    out = io.BytesIO()
    s = Sealer(out, key, aad)
    for p in pieces:
        assert s.write(p) == len(memoryview(p).cast("B"))
    s.close()
    assert s.sealed_bytes == len(out.getvalue())
    return s.prefix, out.getvalue()


def opened(prefix: bytes, data: bytes, key=KEY, aad=AAD, step: int = 1 << 30) -> bytes:
    src = Opener(io.BytesIO(data), len(data), key, aad, prefix)
    parts = []
    while got := src.read(step):
        parts.append(got)
    src.finish()
    return b"".join(parts)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17])
def test_a_stream_opens_to_what_was_written_whatever_the_pieces(size):
    plain = os.urandom(size)
    rng = np.random.default_rng(size)
    cuts = sorted(set(rng.integers(0, size + 1, 6).tolist()) | {0, size})
    # small bytes, a large numpy array (sealed in place) and memoryviews
    pieces = [plain[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    pieces = [np.frombuffer(p, np.uint8) if i % 2 else memoryview(p) for i, p in enumerate(pieces)]
    prefix, data = sealed(pieces)
    chunks = max(1, -(-size // CHUNK))
    assert len(data) == size + chunks * TAG
    assert opened(prefix, data) == plain
    assert opened(prefix, data, step=CHUNK // 3 + 1) == plain  # reads across chunk edges


def _chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK + TAG] for i in range(0, len(data), CHUNK + TAG)]


def test_an_altered_reordered_dropped_or_foreign_chunk_is_refused():
    plain = os.urandom(3 * CHUNK + 5)
    prefix, data = sealed([plain])
    c = _chunks(data)
    assert len(c) == 4
    flipped = bytearray(data)
    flipped[CHUNK + TAG + 7] ^= 1
    other_prefix, other = sealed([os.urandom(3 * CHUNK + 5)])
    cases = {
        "altered": bytes(flipped),
        "swapped": c[1] + c[0] + c[2] + c[3],
        "dropped": c[0] + c[2] + c[3],
        "repeated": c[0] + c[0] + c[1] + c[2] + c[3],
        "foreign chunk": c[0] + _chunks(other)[1] + c[2] + c[3],
        "cut at a chunk edge": c[0] + c[1] + c[2],
        "cut inside a chunk": data[:-3],
        "cut inside a tag": data[: 3 * (CHUNK + TAG) + 10],
        "extended": data + c[3],
    }
    for what, bad in cases.items():
        with pytest.raises(StreamError):
            opened(prefix, bad)
            pytest.fail(what)
    with pytest.raises(StreamError):
        opened(prefix, data, key=bytes(32))
    with pytest.raises(StreamError):
        opened(prefix, data, aad=b'{"partition": 1}')
    with pytest.raises(StreamError):
        opened(other_prefix, data)
    with pytest.raises(StreamError, match="cut short"):
        Opener(io.BytesIO(b""), 0, KEY, AAD, prefix)


def test_finish_refuses_a_stream_with_unread_plaintext():
    prefix, data = sealed([b"parts", b"and more"])
    src = Opener(io.BytesIO(data), len(data), KEY, AAD, prefix)
    assert src.exactly(5) == b"parts"
    with pytest.raises(StreamError, match="more than its parts"):
        src.finish()
    src = Opener(io.BytesIO(data), len(data), KEY, AAD, prefix)
    with pytest.raises(StreamError, match="ended 1 bytes early"):
        src.exactly(14)


def test_every_nonce_is_unique_within_and_across_streams():
    a, _ = sealed([b"x"])
    b, _ = sealed([b"x"])
    assert a != b and len(a) == aead_stream.PREFIX
    seen = {aead_stream._nonce(a, i, last) for i in range(3) for last in (False, True)}
    assert len(seen) == 6 and all(len(n) == 12 for n in seen)
