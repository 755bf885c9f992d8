"""Searcher snapshots: the index, its id → subject map (arrays), each
template's gallery membership and active flag (bitmaps), its tombstones and
the last applied stream sequence, encrypted at rest with AES-256-GCM.

A restarted searcher loads its latest snapshot and replays only the stream
after that sequence, instead of the whole partition. A snapshot holds
biometric data, so it is never written in the clear: the key comes from a
key file or the environment (the KMS/HSM key provider of the security work
can supply it the same way), and the associated data binds a snapshot to
its partition, dimension, metric, model and index kind, so a snapshot of
another partition or layout is refused even if it decrypts.

File (format 5): ``MAGIC | binding length (4 bytes, big-endian) | binding
(JSON) | 7-byte nonce prefix | chunks``: the plaintext (the length of the
id-map archive, that npz, then the FAISS indexes' bytes) sealed in chunks
of 1 MiB with AES-256-GCM (``tanu.core.aead_stream``; associated data: the
binding), so neither writing nor reading holds a second copy of the
partition: a 20M x 128 flat partition of 2.5 GB was written with 2.2x that
beside it by format 4, and read with 3x. It is written to a temporary file,
fsynced and renamed, so a crash never leaves a torn one. The binding is in
the clear (partition, layout, model, kind: no personal data) so that a
snapshot of another kind or layout is named as such (an operator changed
``TANU_INDEX_KIND``) rather than reported as altered; it is authenticated,
so editing it only makes the file refused. Files of format 4 (the same
header, one AES-GCM message over an npz of every part) and of formats 3 and
2 (no binding in the clear) are still read.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tanu.core import aead_stream

from .galleries import ALL, is_name

# 5: the plaintext sealed in chunks (``tanu.core.aead_stream``), the
# indexes' bytes after the id map; 4: the binding in the clear before
# one ciphertext of the whole npz; 3: with gallery
# membership and inactive flags; 2: the id map as arrays, every template in
# ALL and active (3 and 2 still read); 1: one string per template
MAGIC = b"TANUSNAP5\n"
BOUND = b"TANUSNAP4\n"  # the binding in the clear, then one AES-GCM message
OLDER = (b"TANUSNAP3\n", b"TANUSNAP2\n")  # same length as MAGIC, no binding header
_BINDING_MAX = 4096


class SnapshotError(Exception):
    """A snapshot that cannot be used (wrong key, tampered, other layout)."""


class SnapshotMismatch(SnapshotError):
    """A well-formed snapshot written for another partition, layout or index
    kind (e.g. after ``TANU_INDEX_KIND`` changed): not an attack, but not
    usable either. ``differs`` names each field: (on disk, wanted)."""

    def __init__(self, path: Path, differs: dict[str, tuple]) -> None:
        self.differs = differs
        # Unquoted: the logs pseudonymise quoted values in a reason.
        said = ", ".join(f"{k} {a} (this searcher: {b})" for k, (a, b) in sorted(differs.items()))
        super().__init__(f"{path} was written for another searcher: {said}")


def load_key(key_file: str, key_b64: str) -> bytes:
    """A 32-byte key from a file (raw or base64) or a base64 string."""
    raw = b""
    if key_file:
        data = Path(key_file).read_bytes().strip()
        raw = data if len(data) == 32 else base64.b64decode(data)
    elif key_b64:
        raw = base64.b64decode(key_b64)
    if len(raw) != 32:
        raise ValueError("the snapshot key must be 32 bytes (AES-256), raw or base64")
    return raw


def new_key_file(path: Path) -> Path:
    """Creates a random key file readable by its owner only (for `tanu up`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(os.urandom(32)) + b"\n")
    return path


@dataclass
class Snapshot:
    index: faiss.Index  # vectors by position
    template_ids: np.ndarray  # int64, the template id at each position
    codes: np.ndarray  # int32, each position's subject: an index into starts
    blob: bytes  # subject ids, UTF-8, each followed by "\n"
    starts: np.ndarray  # int64, subject i is blob[starts[i]:starts[i + 1] - 1]
    removed: np.ndarray  # int64 tombstones
    sequence: int
    extra: faiss.Index | None = None  # the trained IVF index of kind "ivf"
    galleries: list[str] = field(default_factory=list)  # named galleries (not ALL)
    # uint8 (galleries, ceil(n / 8)): each gallery's bitmap over positions,
    # LSB-first; None (a format-2 file): every template only in ALL
    gallery_bits: np.ndarray | None = None
    inactive: np.ndarray | None = None  # uint8 ceil(n / 8): inactive positions
    # (index, ivf) already serialised by ``PartitionIndex.export`` on the
    # index's own thread (``pieces``): the consistent cut. ``index`` and
    # ``extra`` are then the live indexes, which that thread goes on
    # changing; ``write`` (on another thread) must not serialise them
    # itself, and consumes these (sets the field to None).
    serialized: tuple[list[bytes], list[bytes] | None] | None = None

    @property
    def subjects(self) -> list[str]:
        """Every position's subject id (for inspection and tests)."""
        names = self.blob.decode("utf-8").split("\n")[:-1]
        return [names[c] for c in self.codes.tolist()]


def pieces(index: faiss.Index) -> list[bytes]:
    """An index's serialised bytes, in pieces of at most 1 MiB.
    ``faiss.serialize_index`` builds them in a vector that grows by
    doubling and then copies it into an array: twice the index at its peak,
    where these hold it once."""
    out: list[bytes] = []
    faiss.write_index(index, faiss.PyCallbackIOWriter(out.append))
    return out


def _sealed_pieces(sealer: aead_stream.Sealer, parts: list[bytes]) -> None:
    """Writes and releases each piece (the snapshot's memory falls as it is written)."""
    for i, piece in enumerate(parts):
        sealer.write(piece)
        parts[i] = b""


def _aad(binding: dict) -> bytes:
    return json.dumps(binding, sort_keys=True).encode()


def write(path: Path, key: bytes, binding: dict, snap: Snapshot) -> int:
    """Encrypts and writes ``snap`` atomically; returns the bytes written.
    Beyond the serialised index (``Snapshot.serialized``, the consistent
    cut), it holds one chunk of the stream at a time."""
    if snap.serialized is not None:
        (index_bytes, ivf_bytes), snap.serialized = snap.serialized, None
    else:
        index_bytes = pieces(snap.index)
        ivf_bytes = pieces(snap.extra) if snap.extra is not None else None
    n = len(snap.template_ids)
    parts = io.BytesIO()  # the id map and membership: small beside the vectors
    np.savez(
        parts,
        ids=np.asarray(snap.template_ids, dtype=np.int64),
        codes=np.asarray(snap.codes, dtype=np.int32),
        blob=np.frombuffer(snap.blob, dtype=np.uint8),
        starts=np.asarray(snap.starts, dtype=np.int64),
        removed=np.asarray(snap.removed, dtype=np.int64),
        sequence=np.array([snap.sequence], dtype=np.int64),
        galleries=np.frombuffer("\n".join(snap.galleries).encode(), dtype=np.uint8),
        gallery_bits=(
            np.zeros((0, (n + 7) // 8), np.uint8)
            if snap.gallery_bits is None
            else np.asarray(snap.gallery_bits, np.uint8)
        ),
        inactive=(
            np.zeros((n + 7) // 8, np.uint8)
            if snap.inactive is None
            else np.asarray(snap.inactive, np.uint8)
        ),
        sizes=np.array(
            [sum(map(len, index_bytes)), -1 if ivf_bytes is None else sum(map(len, ivf_bytes))],
            np.int64,
        ),
    )
    aad = _aad(binding)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(path)
    try:
        with open(tmp, "wb") as f:
            sealer = aead_stream.Sealer(f, key, aad)
            header = MAGIC + len(aad).to_bytes(4, "big") + aad + sealer.prefix
            f.write(header)
            with parts.getbuffer() as view:
                sealer.write(len(view).to_bytes(8, "big"))
                sealer.write(view)
            _sealed_pieces(sealer, index_bytes)
            if ivf_bytes is not None:
                _sealed_pieces(sealer, ivf_bytes)
            sealer.close()
            f.flush()
            os.fsync(f.fileno())
        # The rename replaces the previous snapshot in one step: no file
        # (old, new or temporary) is left holding templates removed before it.
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return len(header) + sealer.sealed_bytes


def _partial(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".tmp")


def remove_partial(path: Path) -> None:
    """Deletes a temporary file left by a write that a crash cut short."""
    _partial(path).unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    """Makes the rename durable (the directory entry), where the platform allows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _header(path: Path, head: bytes, binding: dict) -> int:
    """Where the nonce starts in a file that starts with ``head``; raises
    SnapshotMismatch for a file bound to something else (formats 5 and 4
    say what they were bound to)."""
    at = len(MAGIC)
    if head.startswith(OLDER):
        return at
    if not head.startswith((MAGIC, BOUND)) or len(head) < at + 4:
        raise SnapshotError(f"{path} is not a Tanu snapshot")
    size = int.from_bytes(head[at : at + 4], "big")
    if size > _BINDING_MAX or len(head) < at + 4 + size:
        raise SnapshotError(f"{path} is not a Tanu snapshot (its binding is cut short)")
    try:
        bound = json.loads(head[at + 4 : at + 4 + size])
    except ValueError:
        raise SnapshotError(f"{path} is not a Tanu snapshot (its binding is not JSON)") from None
    if not isinstance(bound, dict):
        raise SnapshotError(f"{path} is not a Tanu snapshot (its binding is not an object)")
    differs = {k: (bound.get(k), v) for k, v in binding.items() if bound.get(k) != v}
    differs.update({k: (bound[k], None) for k in bound.keys() - binding.keys()})
    if differs:
        raise SnapshotMismatch(path, differs)
    return at + 4 + size


def _opened(path: Path, f, key: bytes, binding: dict) -> aead_stream.Opener | None:
    """The plaintext stream of a format-5 file open as ``f``; None for a
    file of an older format (``f`` rewound)."""
    head = f.read(len(MAGIC) + 4 + _BINDING_MAX)
    if not head.startswith(MAGIC):
        f.seek(0)
        return None
    at = _header(path, head, binding)
    f.seek(at)
    prefix = f.read(aead_stream.PREFIX)
    length = os.fstat(f.fileno()).st_size - at - len(prefix)
    try:
        return aead_stream.Opener(f, length, key, _aad(binding), prefix)
    except aead_stream.StreamError as exc:
        raise SnapshotError(f"{path} is not a Tanu snapshot ({exc})") from None


def _whole(path: Path, blob: bytes, key: bytes, binding: dict) -> bytes:
    """The plaintext of a file of format 4, 3 or 2 (one AES-GCM message)."""
    at = _header(path, blob, binding)
    if len(blob) < at + 28:
        raise SnapshotError(f"{path} is not a Tanu snapshot (cut short)")
    nonce = blob[at : at + 12]
    try:
        return AESGCM(key).decrypt(nonce, blob[at + 12 :], _aad(binding))
    except InvalidTag:
        raise SnapshotError(
            f"{path} does not decrypt: another key, another partition or layout, or it was altered"
        ) from None


def decrypt(path: Path, key: bytes, binding: dict) -> bytes:
    """The whole plaintext of a snapshot file (for inspection: e.g. that no
    trace of an erased template is left in it)."""
    with open(path, "rb") as f:
        src = _opened(path, f, key, binding)
        if src is None:
            return _whole(path, f.read(), key, binding)
        with _refused_if_broken(path):
            plain = src.read(os.fstat(f.fileno()).st_size)
            src.finish()
        return plain


def read(path: Path, key: bytes, binding: dict) -> Snapshot:
    """The snapshot in a file; SnapshotError if it is refused. A format-5
    file is read a chunk at a time: beyond the index it restores, it holds
    one chunk of the file (format 4 held the file, its plaintext and a copy
    of the index's bytes)."""
    with open(path, "rb") as f:
        src = _opened(path, f, key, binding)
        if src is None:
            z = np.load(io.BytesIO(_whole(path, f.read(), key, binding)), allow_pickle=False)
            index = faiss.deserialize_index(z["index"])
            extra = faiss.deserialize_index(z["ivf"]) if "ivf" in z.files else None
            return _assembled(path, z, index, extra)
        with _refused_if_broken(path):
            size = int.from_bytes(src.exactly(8), "big")
            if size > os.fstat(f.fileno()).st_size:
                raise SnapshotError(f"{path}: its parts are longer than the file")
            z = np.load(io.BytesIO(src.exactly(size)), allow_pickle=False)
            sizes = z["sizes"]
            if sizes.shape != (2,) or sizes[0] < 0:
                raise SnapshotError(f"{path}: the sizes of its indexes are inconsistent")
            index = _index_from(path, src, int(sizes[0]))
            extra = _index_from(path, src, int(sizes[1])) if sizes[1] >= 0 else None
            src.finish()  # nothing built above is used unless the whole file is intact
    return _assembled(path, z, index, extra)


@contextlib.contextmanager
def _refused_if_broken(path: Path):
    """A format-5 stream that does not open (altered, reordered, cut short,
    another key) raised as the SnapshotError that refuses the file."""
    try:
        yield
    except aead_stream.StreamError as exc:
        raise SnapshotError(f"{path} does not decrypt: {exc}") from None


def _index_from(path: Path, src: aead_stream.Opener, size: int) -> faiss.Index:
    """A FAISS index read from the next ``size`` bytes of the stream, a
    chunk at a time (not gathered into one buffer first)."""
    left, failed = size, []

    def take(n: int) -> bytes:
        nonlocal left
        try:
            got = src.read(min(n, left))
        except aead_stream.StreamError as exc:
            failed.append(exc)  # raised below: not through FAISS's C++
            return b""
        left -= len(got)
        return got

    try:
        index = faiss.read_index(faiss.PyCallbackIOReader(take))
    except RuntimeError:
        if failed:
            raise failed[0] from None
        raise SnapshotError(f"{path}: an index in it does not load") from None
    if failed:
        raise failed[0]
    if left:
        raise SnapshotError(f"{path}: an index in it is shorter than its part")
    return index


def _assembled(path: Path, z, index: faiss.Index, extra: faiss.Index | None) -> Snapshot:
    """The snapshot of an archive's parts, checked for consistency."""
    ids, codes, blob, starts = z["ids"], z["codes"], z["blob"].tobytes(), z["starts"]
    if len(codes) != len(ids) or (
        len(codes) and (codes.min() < 0 or codes.max() >= len(starts) - 1)
    ):
        raise SnapshotError(f"{path}: the id map is inconsistent")
    if not len(starts) or starts[-1] != len(blob):
        raise SnapshotError(f"{path}: the subject ids are inconsistent")
    if int(index.ntotal) != len(ids):  # e.g. serialised while it grew past its id map
        raise SnapshotError(
            f"{path}: the index holds {index.ntotal} vectors for {len(ids)} template ids"
        )
    names, bits, inactive = _galleries(path, z, len(ids))
    return Snapshot(index, ids, codes, blob, starts, z["removed"],
                    int(z["sequence"][0]), extra, names, bits, inactive)  # fmt: skip


def _galleries(path: Path, z, n: int):
    """The membership parts (format 3), or none (format 2: ALL, active)."""
    if "gallery_bits" not in z.files:
        return [], None, None
    raw = z["galleries"].tobytes().decode("utf-8")
    names = raw.split("\n") if raw else []
    bits, inactive = z["gallery_bits"], z["inactive"]
    nbytes = (n + 7) // 8
    if (
        bits.dtype != np.uint8 or bits.ndim != 2 or bits.shape != (len(names), nbytes)
        or inactive.dtype != np.uint8 or inactive.shape != (nbytes,)
        or len(set(names)) != len(names) or not all(is_name(x) and x != ALL for x in names)
    ):  # fmt: skip
        raise SnapshotError(f"{path}: the gallery membership is inconsistent")
    return names, bits, inactive
