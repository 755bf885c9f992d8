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

File: ``MAGIC | binding length (4 bytes, big-endian) | binding (JSON) |
12-byte nonce | AES-GCM(npz of the parts, associated data: the binding)``,
written to a temporary file, fsynced and renamed, so a crash never leaves a
torn one. The binding is in the clear (partition, layout, model, kind: no
personal data) so that a snapshot of another kind or layout is named as
such (an operator changed ``TANU_INDEX_KIND``) rather than reported as
altered; it is authenticated, so editing it only makes the file refused.
Files of formats 2 and 3 (no binding in the clear) are still read.
"""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .galleries import ALL, is_name

# 4: the binding in the clear before the ciphertext; 3: with gallery
# membership and inactive flags; 2: the id map as arrays, every template in
# ALL and active (3 and 2 still read); 1: one string per template
MAGIC = b"TANUSNAP4\n"
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
    # index's own thread: the consistent cut. ``index`` and ``extra`` are
    # then the live indexes, which that thread goes on changing; ``write``
    # (on another thread) must not serialise them itself, and consumes
    # these (sets the field to None).
    serialized: tuple[np.ndarray, np.ndarray | None] | None = None

    @property
    def subjects(self) -> list[str]:
        """Every position's subject id (for inspection and tests)."""
        names = self.blob.decode("utf-8").split("\n")[:-1]
        return [names[c] for c in self.codes.tolist()]


def _aad(binding: dict) -> bytes:
    return json.dumps(binding, sort_keys=True).encode()


def write(path: Path, key: bytes, binding: dict, snap: Snapshot) -> int:
    """Encrypts and writes ``snap`` atomically; returns the bytes written."""
    if snap.serialized is not None:
        # Consumed here: released once in the archive, so that the
        # encryption's peak holds one copy fewer of the partition.
        (index_bytes, ivf_bytes), snap.serialized = snap.serialized, None
    else:
        index_bytes = faiss.serialize_index(snap.index)
        ivf_bytes = faiss.serialize_index(snap.extra) if snap.extra is not None else None
    buf = io.BytesIO()
    np.savez(
        buf,
        index=index_bytes,
        ids=np.asarray(snap.template_ids, dtype=np.int64),
        codes=np.asarray(snap.codes, dtype=np.int32),
        blob=np.frombuffer(snap.blob, dtype=np.uint8),
        starts=np.asarray(snap.starts, dtype=np.int64),
        removed=np.asarray(snap.removed, dtype=np.int64),
        sequence=np.array([snap.sequence], dtype=np.int64),
        galleries=np.frombuffer("\n".join(snap.galleries).encode(), dtype=np.uint8),
        gallery_bits=(
            np.zeros((0, (len(snap.template_ids) + 7) // 8), np.uint8)
            if snap.gallery_bits is None
            else np.asarray(snap.gallery_bits, np.uint8)
        ),
        inactive=(
            np.zeros((len(snap.template_ids) + 7) // 8, np.uint8)
            if snap.inactive is None
            else np.asarray(snap.inactive, np.uint8)
        ),
        **({"ivf": ivf_bytes} if ivf_bytes is not None else {}),
    )
    del index_bytes, ivf_bytes
    nonce = os.urandom(12)
    aad = _aad(binding)
    with buf.getbuffer() as plain:  # the archive in place, not a copy of it
        sealed = AESGCM(key).encrypt(nonce, plain, aad)
    del buf
    # Header and ciphertext written one after the other: joining them
    # would hold one more copy of the whole partition in memory.
    header = MAGIC + len(aad).to_bytes(4, "big") + aad + nonce
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(path)
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(sealed)
            f.flush()
            os.fsync(f.fileno())
        # The rename replaces the previous snapshot in one step: no file
        # (old, new or temporary) is left holding templates removed before it.
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return len(header) + len(sealed)


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


def _header(path: Path, blob: bytes, binding: dict) -> int:
    """Where the nonce starts; raises SnapshotMismatch for a file bound to
    something else (format 4 says what it was bound to)."""
    at = len(MAGIC)
    if blob.startswith(OLDER):
        return at
    if not blob.startswith(MAGIC) or len(blob) < at + 4:
        raise SnapshotError(f"{path} is not a Tanu snapshot")
    size = int.from_bytes(blob[at : at + 4], "big")
    if size > _BINDING_MAX or len(blob) < at + 4 + size:
        raise SnapshotError(f"{path} is not a Tanu snapshot (its binding is cut short)")
    try:
        bound = json.loads(blob[at + 4 : at + 4 + size])
    except ValueError:
        raise SnapshotError(f"{path} is not a Tanu snapshot (its binding is not JSON)") from None
    if not isinstance(bound, dict):
        raise SnapshotError(f"{path} is not a Tanu snapshot (its binding is not an object)")
    differs = {k: (bound.get(k), v) for k, v in binding.items() if bound.get(k) != v}
    differs.update({k: (bound[k], None) for k in bound.keys() - binding.keys()})
    if differs:
        raise SnapshotMismatch(path, differs)
    return at + 4 + size


def decrypt(path: Path, key: bytes, binding: dict) -> bytes:
    """The plaintext of a snapshot file (an npz archive)."""
    blob = path.read_bytes()
    at = _header(path, blob, binding)
    if len(blob) < at + 28:
        raise SnapshotError(f"{path} is not a Tanu snapshot (cut short)")
    nonce = blob[at : at + 12]
    try:
        plain = AESGCM(key).decrypt(nonce, blob[at + 12 :], _aad(binding))
    except InvalidTag:
        raise SnapshotError(
            f"{path} does not decrypt: another key, another partition or layout, or it was altered"
        ) from None
    return plain


def read(path: Path, key: bytes, binding: dict) -> Snapshot:
    z = np.load(io.BytesIO(decrypt(path, key, binding)), allow_pickle=False)
    ids, codes, blob, starts = z["ids"], z["codes"], z["blob"].tobytes(), z["starts"]
    if len(codes) != len(ids) or (
        len(codes) and (codes.min() < 0 or codes.max() >= len(starts) - 1)
    ):
        raise SnapshotError(f"{path}: the id map is inconsistent")
    if not len(starts) or starts[-1] != len(blob):
        raise SnapshotError(f"{path}: the subject ids are inconsistent")
    index = faiss.deserialize_index(z["index"])
    if int(index.ntotal) != len(ids):  # e.g. serialised while it grew past its id map
        raise SnapshotError(
            f"{path}: the index holds {index.ntotal} vectors for {len(ids)} template ids"
        )
    extra = faiss.deserialize_index(z["ivf"]) if "ivf" in z.files else None
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
