"""AES-256-GCM over a stream of any length in bounded memory: the plaintext
is cut into chunks of ``CHUNK`` bytes, each sealed on its own (the STREAM
construction of Hoang, Reyhanitabar, Rogaway and Vizár, 2015).

Chunk i's nonce is a random 7-byte prefix (one per stream), i as 4 bytes
big-endian, and one byte that is 1 only for the last chunk; every chunk
carries the same associated data. So a chunk moved, repeated, dropped or
taken from another stream fails authentication, and so does a stream cut
short at a chunk boundary (its new last chunk was not sealed as the last).

The writer holds at most one chunk of plaintext; the reader one chunk of
ciphertext and one of plaintext. Every chunk but the last holds exactly
``CHUNK`` bytes of plaintext, so the reader knows from the stream's length
which chunk is the last before it decrypts it.

Each reader chunk is authenticated before it is returned, but a caller only
knows that the whole stream is intact once ``Opener.finish`` has passed:
whatever it built from the chunks read before must be dropped if it raises.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CHUNK = 1 << 20  # plaintext bytes per chunk (the last: 0 to CHUNK)
TAG = 16
PREFIX = 7  # random nonce bytes per stream
MAX_CHUNKS = 1 << 32


class StreamError(Exception):
    """A sealed stream that does not open: another key or associated data,
    altered, reordered or cut short."""


def _nonce(prefix: bytes, i: int, last: bool) -> bytes:
    if i >= MAX_CHUNKS:
        raise StreamError("the stream is longer than 2**32 chunks")
    return prefix + i.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class Sealer:
    """Writes the sealed form of what is written to it into ``out``:
    ``write`` the plaintext (any bytes-like: a large one is sealed in place,
    slice by slice, not copied), then ``close`` once."""

    def __init__(self, out: BinaryIO, key: bytes, aad: bytes) -> None:
        self.prefix = os.urandom(PREFIX)  # the caller writes it before the chunks
        self._out, self._aead, self._aad = out, AESGCM(key), aad
        self._pending = bytearray()
        self._chunks = 0
        self.sealed_bytes = 0

    def _seal(self, plain, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self.prefix, self._chunks, last), plain, self._aad)
        self._out.write(sealed)
        self._chunks += 1
        self.sealed_bytes += len(sealed)

    def write(self, data) -> int:
        mv = memoryview(data).cast("B")
        n, pos = len(mv), 0
        # A chunk is sealed only once more follows it: the last one is sealed by close.
        if self._pending:
            pos = min(CHUNK - len(self._pending), n)
            self._pending += mv[:pos]
            if pos < n:
                self._seal(bytes(self._pending), last=False)
                self._pending.clear()
        while n - pos > CHUNK:
            self._seal(mv[pos : pos + CHUNK], last=False)
            pos += CHUNK
        self._pending += mv[pos:]
        return n

    def close(self) -> None:
        self._seal(bytes(self._pending), last=True)
        self._pending = bytearray()


class Opener:
    """Reads the plaintext of a sealed stream of ``length`` bytes from
    ``src`` (positioned after the prefix), a chunk at a time."""

    def __init__(self, src: BinaryIO, length: int, key: bytes, aad: bytes, prefix: bytes) -> None:
        if length < TAG:
            raise StreamError("the stream is cut short")
        full, rest = divmod(length, CHUNK + TAG)
        if rest and rest < TAG:
            raise StreamError("the stream is cut short inside a chunk")
        self._count = full + (1 if rest else 0)
        self._src, self._aead, self._aad, self._prefix = src, AESGCM(key), aad, prefix
        self._next = 0  # the next chunk to open
        self._buf = b""
        self._at = 0  # read position in _buf

    def _open_next(self) -> bool:
        if self._next >= self._count:
            return False
        last = self._next == self._count - 1
        sealed = self._src.read(CHUNK + TAG)
        if len(sealed) < TAG or (not last and len(sealed) != CHUNK + TAG):
            raise StreamError("the stream is cut short")
        try:
            self._buf = self._aead.decrypt(
                _nonce(self._prefix, self._next, last), sealed, self._aad
            )
        except InvalidTag:
            raise StreamError(
                "a chunk does not open: another key or binding, altered, reordered or cut short"
            ) from None
        self._at = 0
        self._next += 1
        return True

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the stream)."""
        parts, want = [], n
        while want > 0:
            if self._at >= len(self._buf) and not self._open_next():
                break
            piece = self._buf[self._at : self._at + want]
            self._at += len(piece)
            want -= len(piece)
            parts.append(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def exactly(self, n: int) -> bytes:
        got = self.read(n)
        if len(got) != n:
            raise StreamError(f"the stream ended {n - len(got)} bytes early")
        return got

    def finish(self) -> None:
        """Authenticates the rest of the stream and requires that nothing of
        its plaintext was left unread."""
        if self._at < len(self._buf):
            raise StreamError("the stream holds more than its parts")
        while self._open_next():
            if self._buf:
                raise StreamError("the stream holds more than its parts")
