"""The snapshot file (``tanu.index.snapshot``, format 5): sealed in chunks,
so that writing a partition's snapshot holds about one copy of its vectors
and reading holds none beyond the restored index; a file cut short,
reordered or altered is refused; files of format 4 still load."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import faiss
import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tanu.core.aead_stream import CHUNK, PREFIX, TAG
from tanu.index import PartitionIndex, snapshot

D = 128
BINDING = {"format": 2, "partition": 0, "kind": "flat"}


def built(n: int, kind: str = "flat", seed: int = 0) -> tuple[PartitionIndex, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    idx = PartitionIndex(D, "cosine", kind, nlist=16, nprobe=16, rerank=4)
    idx.add(np.arange(1, n + 1, dtype=np.int64), [f"s{i}" for i in range(n)], x)
    return idx, x


def same(a: PartitionIndex, b: PartitionIndex, q: np.ndarray) -> None:
    (sa, ia), (sb, ib) = a.search(q, 10), b.search(q, 10)
    assert np.array_equal(ia, ib) and np.allclose(sa, sb)


@pytest.mark.parametrize("kind", ["flat", "fp16", "ivf"])
def test_a_snapshot_round_trips_in_chunks(kind, tmp_path):
    idx, x = built(12_000, kind)  # 6 MB of fp32 vectors: several chunks
    idx.remove(np.arange(1, 40, 3))
    binding = dict(BINDING, kind=kind)
    path = tmp_path / "p.snap"
    size = snapshot.write(path, bytes(32), binding, idx.export(9))
    assert size == path.stat().st_size and path.read_bytes().startswith(snapshot.MAGIC)
    back = PartitionIndex(D, "cosine", kind, nlist=16, nprobe=16, rerank=4)
    snap = snapshot.read(path, bytes(32), binding)
    assert snap.sequence == 9 and (snap.extra is not None) == (kind == "ivf")
    back.restore(snap)
    assert len(back) == len(idx)
    same(idx, back, x[::997])


def _body(path) -> tuple[bytes, int]:
    """(the file, where its chunks start)."""
    blob = path.read_bytes()
    at = (
        len(snapshot.MAGIC)
        + 4
        + int.from_bytes(blob[len(snapshot.MAGIC) : len(snapshot.MAGIC) + 4], "big")
    )
    return blob, at + PREFIX


def test_a_snapshot_cut_short_reordered_or_altered_is_refused(tmp_path):
    idx, _ = built(6_000)  # 3 MB: 3 chunks and a last
    path, key = tmp_path / "p.snap", bytes(32)
    snapshot.write(path, key, BINDING, idx.export(1))
    blob, at = _body(path)
    full = CHUNK + TAG
    chunks = [blob[i : i + full] for i in range(at, len(blob), full)]
    assert len(chunks) >= 3
    bad = {
        "cut at a chunk edge": blob[: at + 2 * full],
        "cut inside a chunk": blob[:-100],
        "two chunks swapped": blob[:at] + chunks[1] + chunks[0] + b"".join(chunks[2:]),
        "a byte flipped in the vectors": blob[: at + full + 5] + bytes([blob[at + full + 5] ^ 1]) + blob[at + full + 6 :],
    }  # fmt: skip
    for what, data in bad.items():
        path.write_bytes(data)
        with pytest.raises(snapshot.SnapshotError, match="does not decrypt"):
            snapshot.read(path, key, BINDING)
            pytest.fail(what)
    path.write_bytes(blob[: at - 3])  # inside the nonce prefix
    with pytest.raises(snapshot.SnapshotError):
        snapshot.read(path, key, BINDING)
    path.write_bytes(blob)
    with pytest.raises(snapshot.SnapshotError, match="does not decrypt"):
        snapshot.read(path, os.urandom(32), BINDING)
    assert snapshot.read(path, key, BINDING).sequence == 1


def test_writing_holds_about_one_copy_of_the_vectors_and_reading_none(tmp_path):
    """Python's heap (numpy arrays and bytes; FAISS's own allocations are
    not traced): format 4 held the serialised index and the archive and its
    ciphertext while writing (over 2x the vectors) and the file, its
    plaintext and the index's bytes while reading (3x)."""
    n = 40_000  # 20 MB of vectors: 20 chunks
    idx, x = built(n)
    vectors = n * D * 4
    path, key = tmp_path / "p.snap", bytes(32)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        snapshot.write(path, key, BINDING, idx.export(1))
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        snap = snapshot.read(path, key, BINDING)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert write_peak < 1.35 * vectors, write_peak / vectors
    assert read_peak - before < 0.4 * vectors, (read_peak - before) / vectors
    back = PartitionIndex(D, "cosine", "flat")
    back.restore(snap)
    same(idx, back, x[::4001])


def test_a_format_4_snapshot_still_loads(tmp_path):
    """Format 4: the binding in the clear, then one AES-GCM message over an
    npz of every part (the index's bytes in it)."""
    idx, x = built(500)
    snap = idx.export(4)
    buf = io.BytesIO()
    np.savez(buf, index=faiss.serialize_index(snap.index), ids=snap.template_ids, codes=snap.codes,
             blob=np.frombuffer(snap.blob, np.uint8), starts=snap.starts, removed=snap.removed,
             sequence=np.array([4], np.int64), galleries=np.zeros(0, np.uint8),
             gallery_bits=np.zeros((0, (500 + 7) // 8), np.uint8),
             inactive=np.zeros((500 + 7) // 8, np.uint8))  # fmt: skip
    key, nonce = os.urandom(32), os.urandom(12)
    aad = json.dumps(BINDING, sort_keys=True).encode()
    path = tmp_path / "four.snap"
    path.write_bytes(snapshot.BOUND + len(aad).to_bytes(4, "big") + aad + nonce
                     + AESGCM(key).encrypt(nonce, buf.getvalue(), aad))  # fmt: skip
    old = snapshot.read(path, key, BINDING)
    assert old.sequence == 4
    back = PartitionIndex(D, "cosine", "flat")
    back.restore(old)
    same(idx, back, x[:5])
    with pytest.raises(snapshot.SnapshotMismatch):
        snapshot.read(path, key, dict(BINDING, kind="ivf"))
    assert snapshot.decrypt(path, key, BINDING) == buf.getvalue()


def test_the_snapshot_memory_benchmark_runs():
    """``benchmarks/search/snapshot_memory.py`` at a small size: both phases
    run in their own processes and print their peaks."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "search" / "snapshot_memory.py"
    out = subprocess.run([sys.executable, str(script), "--templates", "20000"],
                         capture_output=True, text=True, timeout=300, check=True).stdout  # fmt: skip
    lines = [line for line in out.splitlines() if line.startswith(("write", "read"))]
    assert len(lines) == 2 and all("x the partition's vectors" in line for line in lines), out
