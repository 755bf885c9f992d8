"""Searcher snapshots: the index, its id → subject map, its tombstones and
the last applied stream sequence, encrypted at rest with AES-256-GCM.

A restarted searcher loads its latest snapshot and replays only the stream
after that sequence, instead of the whole partition. A snapshot holds
biometric data, so it is never written in the clear: the key comes from a
key file or the environment (the KMS/HSM key provider of the security work
can supply it the same way), and the associated data binds a snapshot to
its partition, dimension, metric, model and index kind, so a snapshot of
another partition or layout is refused even if it decrypts.

File: ``MAGIC | 12-byte nonce | AES-GCM(npz of the parts)``, written to a
temporary file, fsynced and renamed, so a crash never leaves a torn one.
"""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"TANUSNAP1\n"


class SnapshotError(Exception):
    """A snapshot that cannot be used (wrong key, tampered, other layout)."""


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
    index: faiss.Index
    template_ids: np.ndarray
    subjects: list[str]
    removed: np.ndarray
    sequence: int
    extra: faiss.Index | None = None  # the trained IVF index of kind "ivf"


def _aad(binding: dict) -> bytes:
    return json.dumps(binding, sort_keys=True).encode()


def write(path: Path, key: bytes, binding: dict, snap: Snapshot) -> int:
    """Encrypts and writes ``snap`` atomically; returns the bytes written."""
    buf = io.BytesIO()
    np.savez(
        buf,
        index=faiss.serialize_index(snap.index),
        ids=np.asarray(snap.template_ids, dtype=np.int64),
        subjects=np.frombuffer("\n".join(snap.subjects).encode("utf-8"), dtype=np.uint8),
        removed=np.asarray(snap.removed, dtype=np.int64),
        sequence=np.array([snap.sequence], dtype=np.int64),
        **({"ivf": faiss.serialize_index(snap.extra)} if snap.extra is not None else {}),
    )
    nonce = os.urandom(12)
    blob = MAGIC + nonce + AESGCM(key).encrypt(nonce, buf.getvalue(), _aad(binding))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(path)
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        # The rename replaces the previous snapshot in one step: no file
        # (old, new or temporary) is left holding templates removed before it.
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return len(blob)


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


def decrypt(path: Path, key: bytes, binding: dict) -> bytes:
    """The plaintext of a snapshot file (an npz archive)."""
    blob = path.read_bytes()
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 28:
        raise SnapshotError(f"{path} is not a Tanu snapshot")
    nonce = blob[len(MAGIC) : len(MAGIC) + 12]
    try:
        plain = AESGCM(key).decrypt(nonce, blob[len(MAGIC) + 12 :], _aad(binding))
    except InvalidTag:
        raise SnapshotError(
            f"{path} does not decrypt: another key, another partition or layout, or it was altered"
        ) from None
    return plain


def read(path: Path, key: bytes, binding: dict) -> Snapshot:
    z = np.load(io.BytesIO(decrypt(path, key, binding)), allow_pickle=False)
    text = z["subjects"].tobytes().decode("utf-8")
    subjects = text.split("\n") if text else []
    ids = z["ids"]
    if len(subjects) != len(ids):
        raise SnapshotError(f"{path}: {len(ids)} template ids but {len(subjects)} subjects")
    extra = faiss.deserialize_index(z["ivf"]) if "ivf" in z.files else None
    return Snapshot(
        faiss.deserialize_index(z["index"]),
        ids,
        subjects,
        z["removed"],
        int(z["sequence"][0]),
        extra,
    )
