"""The de-duplication window's opened templates are pruned by asking about
the templates held, not the whole table (which at 10M templates held the
store's database thread for 0.4 s warm, seconds cold, every prune): a
template erased by another store process, or aged out, still leaves."""

from __future__ import annotations

from test_store import LAYOUT, keyring, target  # noqa: F401 (fixtures: SQLite and PostgreSQL)

from tanu.core import envelope
from tanu.store import Store

from conftest import unit_vectors


def test_prune_drops_the_erased_and_the_aged_out_and_keeps_the_rest(target, keyring):  # noqa: F811
    one = Store(target, LAYOUT, envelope.LocalKeyProvider.from_file(keyring))
    other = Store(target, LAYOUT, envelope.LocalKeyProvider.from_file(keyring))
    try:
        v = unit_vectors(3, seed=8)
        for i in range(3):
            one.put_subject(f"w{i}", v[i : i + 1])
        best = one._window_best(v[:1])  # an enrolment opens the window's templates
        assert best is not None and best[0] == "w0"
        assert one.prune_window() == 3
        other.delete_subject("w1", "erased through another store process")
        assert one.prune_window() == 2
        assert set(one._recent.subjects) == {"w0", "w2"}
        one.dedup_window_ms = -1  # every template is older than the window now
        assert one.prune_window() == 0
    finally:
        one.close()
        other.close()
