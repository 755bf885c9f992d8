"""Envelope encryption of templates, and the master keys behind it.

Every subject has its own 256-bit data key (DEK). Templates are sealed with
it (AES-256-GCM, bound to the subject id), and the DEK is stored only
wrapped by a master key (AES-256-GCM again, bound to the subject id and the
master key's id). Destroying a subject's wrapped DEK makes every copy of its
sealed templates unreadable (crypto-shredding).

Master keys come from a ``KeyProvider``. Two ship here: a keyring file (JSON:
the active key id and every key version, base64) and a single key from the
environment. A KMS or HSM implements the same three methods: ``active_id``,
``wrap`` and ``unwrap``, so the master key never has to leave it.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import KeyProblem
from .files import write_private

NONCE = 12
KEY_BYTES = 32


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes, what: str) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:NONCE], blob[NONCE:], aad)
    except (InvalidTag, ValueError):
        raise KeyProblem(f"{what} cannot be decrypted (wrong key or tampered data)") from None


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal_template(dek: bytes, subject_id: str, vector: bytes) -> bytes:
    """A template's vector bytes, sealed with its subject's data key."""
    return _seal(dek, vector, b"tanu-template:" + subject_id.encode())


def open_template(dek: bytes, subject_id: str, blob: bytes) -> bytes:
    return _open(dek, blob, b"tanu-template:" + subject_id.encode(), "a template")


class KeyProvider(Protocol):
    """Where master keys live. A KMS/HSM adapter implements these three."""

    def active_id(self) -> str: ...

    def wrap(self, key_id: str, dek: bytes, context: bytes) -> bytes: ...

    def unwrap(self, key_id: str, wrapped: bytes, context: bytes) -> bytes: ...


class LocalKeyProvider:
    """Master keys held in process memory: from a keyring file or one key
    from the environment. ``reload()`` re-reads the file (after a rotation)."""

    def __init__(self, keys: dict[str, bytes], active: str, path: Path | None = None) -> None:
        if active not in keys:
            raise KeyProblem(f"the active master key {active!r} is not in the keyring")
        for kid, k in keys.items():
            if len(k) != KEY_BYTES:
                raise KeyProblem(f"master key {kid!r} must be {KEY_BYTES} bytes, got {len(k)}")
        self._keys, self._active, self.path = keys, active, path
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path) -> LocalKeyProvider:
        p = Path(path)
        try:
            doc = json.loads(p.read_text())
            keys = {kid: base64.b64decode(v) for kid, v in doc["keys"].items()}
            return cls(keys, doc["active"], p)
        except FileNotFoundError:
            raise KeyProblem(f"master key file {p} does not exist") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyProblem(f"master key file {p} is not a valid keyring: {exc}") from None

    @classmethod
    def from_settings(cls, key_file: str, key_b64: str) -> LocalKeyProvider:
        if key_file:
            return cls.from_file(key_file)
        if key_b64:
            try:
                key = base64.b64decode(key_b64, validate=True)
            except ValueError:
                raise KeyProblem("TANU_MASTER_KEY is not valid base64") from None
            return cls({"env": key}, "env")
        raise KeyProblem(
            "templates are encrypted at rest and need a master key: set "
            "TANU_MASTER_KEY_FILE (a keyring, see `tanu keys init`) or TANU_MASTER_KEY"
        )

    def reload(self) -> None:
        if self.path is None:
            return
        fresh = LocalKeyProvider.from_file(self.path)
        with self._lock:
            self._keys, self._active = fresh._keys, fresh._active

    def active_id(self) -> str:
        return self._active

    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def _key(self, key_id: str) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise KeyProblem(f"master key {key_id!r} is not in the keyring") from None

    def wrap(self, key_id: str, dek: bytes, context: bytes) -> bytes:
        return _seal(self._key(key_id), dek, b"tanu-dek:" + key_id.encode() + b":" + context)

    def unwrap(self, key_id: str, wrapped: bytes, context: bytes) -> bytes:
        return _open(
            self._key(key_id),
            wrapped,
            b"tanu-dek:" + key_id.encode() + b":" + context,
            "a data key",
        )


# --- keyring files (tanu keys init / rotate) ---------------------------


def init_keyring(path: str | Path) -> str:
    """Creates a keyring with one master key unless it exists; returns the active id."""
    p = Path(path)
    if p.exists():
        return LocalKeyProvider.from_file(p).active_id()
    doc: dict = {"keys": {}}
    _add_version(doc)
    write_private(p, json.dumps(doc, indent=1))
    return doc["active"]


def _add_version(doc: dict) -> str:
    """Adds a fresh key to a keyring document and makes it active; its id
    is the UTC time, with a counter when that id is taken."""
    base = "mk-" + time.strftime("%Y%m%d%H%M%S", time.gmtime())
    kid, n = base, 1
    while kid in doc["keys"]:
        n += 1
        kid = f"{base}.{n}"
    doc["keys"][kid] = base64.b64encode(new_data_key()).decode()
    doc["active"] = kid
    return kid


def add_key_version(path: str | Path) -> tuple[str, str]:
    """Adds a fresh master key and makes it active; returns (old id, new id)."""
    p = Path(path)
    doc = json.loads(p.read_text())
    old = doc["active"]
    kid = _add_version(doc)
    write_private(p, json.dumps(doc, indent=1))
    return old, kid


def retire_key_versions(path: str | Path, keep: set[str]) -> list[str]:
    """Drops every key version not in ``keep``; returns the dropped ids."""
    p = Path(path)
    doc = json.loads(p.read_text())
    gone = [k for k in doc["keys"] if k not in keep and k != doc["active"]]
    for k in gone:
        del doc["keys"][k]
    write_private(p, json.dumps(doc, indent=1))
    return gone
