"""Data keys: every subject's own key, stored only wrapped by a master key
(``tanu.core.envelope``), and their rotation to a new master key.

Templates and the template events in the outbox are sealed with their
subject's data key; erasure deletes the wrapped key (crypto-shredding), so
nothing sealed with it can be opened again. ``self.keys`` is the master-key
provider the ``Store`` was opened with.
"""

from __future__ import annotations

import uuid

from tanu.core import envelope, errors

from .schema import Database


class DataKeys(Database):
    """The ``subject_keys`` table."""

    keys: envelope.KeyProvider

    def _new_dek(self, subject_id: str, ts: int) -> bytes:
        """A fresh data key for ``subject_id``, stored wrapped by the active master key."""
        dek = envelope.new_data_key()
        kid = self.keys.active_id()
        self._x(
            "INSERT INTO subject_keys(subject_id, data_key_id, master_key_id, wrapped, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            (subject_id, "dk-" + uuid.uuid4().hex[:16], kid,
             self.keys.wrap(kid, dek, subject_id.encode()), ts),
        )  # fmt: skip
        return dek

    def _dek(self, subject_id: str) -> bytes:
        """The subject's data key, unwrapped."""
        row = self._one(
            "SELECT master_key_id, wrapped FROM subject_keys WHERE subject_id = ?", (subject_id,)
        )
        if row is None:
            raise errors.FailedPrecondition(f"subject {subject_id!r} has no data key")
        return self.keys.unwrap(row[0], bytes(row[1]), subject_id.encode())

    def _key_ids(self, subject_id: str) -> tuple[str, str]:
        """(data key id, master key id) of the subject; ("", "") when it has none."""
        row = self._one(
            "SELECT data_key_id, master_key_id FROM subject_keys WHERE subject_id = ?",
            (subject_id,),
        )
        return (row[0], row[1]) if row else ("", "")

    def rewrap_batch(self, limit: int) -> int:
        """Re-wraps up to ``limit`` data keys not under the active master key;
        returns how many it re-wrapped (0 when none is left)."""
        active = self.keys.active_id()

        def tx(_c) -> int:
            rows = self._all(
                "SELECT subject_id, master_key_id, wrapped FROM subject_keys "
                "WHERE master_key_id <> ? LIMIT ?",
                (active, limit),
            )
            for sid, kid, wrapped in rows:
                dek = self.keys.unwrap(kid, bytes(wrapped), sid.encode())
                self._x(
                    "UPDATE subject_keys SET master_key_id = ?, wrapped = ? WHERE subject_id = ?",
                    (active, self.keys.wrap(active, dek, sid.encode()), sid),
                )
            return len(rows)

        return self._tx(tx)

    def master_keys_in_use(self) -> list[str]:
        """The master key ids that wrap at least one data key, sorted."""
        return sorted(r[0] for r in self._all("SELECT DISTINCT master_key_id FROM subject_keys"))
