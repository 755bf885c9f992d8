"""National scale through the services: clustered synthetic templates
loaded by ``tanu gallery import`` into a real local cluster (``tanu up``,
4 partitions: store -> outbox relay -> JetStream -> searchers), then, for
each index kind (flat, fp16, ivf; the searchers restarted and rebuilt from
the stream for each), Identify through the gateway at concurrency 1 and 32,
ivf recall@10 against exact search, and (flat) de-duplicating enrolments
per second and Verify.

    .venv/bin/python benchmarks/search/national_services.py [--templates 100000]
    # the full run the issue asks for (about 2.5 GB of templates, hours here):
    .venv/bin/python benchmarks/search/national_services.py --templates 20000000

Templates: a mixture shaped like face embeddings, not uniform on the
sphere: ``--modes`` population modes with Zipf-distributed weights, each
subject a point around its mode (spread ``--between``), each template that
subject plus capture noise (``--within``); a probe is the same subject with
fresh capture noise. Exact ground truth is a blocked brute force in this
process (never the whole gallery in memory at once).

Reported: load rate (templates/s, import and searchable), CPU-seconds per
template of every process during the load (/proc/<pid>/stat), RSS bytes
per template per process and disk bytes per template (store database,
JetStream), per kind Identify p50/p99 and q/s and CPU-seconds per Identify,
ivf recall@10, enrolments/s with exact de-duplication and CPU-seconds per
enrolment, Verify CPU-seconds. ``--out FILE`` keeps the figures as JSON
(``docs/capacity.md`` is built from them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "reliability"))
from harness import LocalUp, enroll_request, sample  # noqa: E402
from loadgen import load  # noqa: E402

from tanu.core import bus, natsnames, natsroles, secrets  # noqa: E402
from tanu.v1 import identity_pb2, identity_pb2_grpc, searcher_pb2  # noqa: E402

DIM, K = 128, 10
CHUNK = 500_000
CLK = os.sysconf("SC_CLK_TCK")


def sid(i: int) -> str:
    return f"NAT{i:010d}"


# ---------------------------------------------------------------- the data


def _modes(m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((m, DIM)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    w = 1.0 / np.arange(1, m + 1) ** 0.8  # Zipf-like: some modes far more populous
    return c, w / w.sum()


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def generate(folder: Path, n: int, args) -> tuple[Path, Path]:
    """templates.npy (n x 128 float32, chunk by chunk from per-chunk seeds)
    and subjects.csv in the import's format."""
    folder.mkdir(parents=True, exist_ok=True)
    t, c = folder / "templates.npy", folder / "subjects.csv"
    if t.exists() and c.exists() and np.load(t, mmap_mode="r").shape == (n, DIM):
        return t, c  # a run resumed in its --work folder: the same data
    modes, w = _modes(args.modes, 7)
    out = np.lib.format.open_memmap(t, mode="w+", dtype=np.float32, shape=(n, DIM))
    with open(c, "w") as f:
        f.write("subject_id,date_of_birth,consent_evidence_ref\n")
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            rng = np.random.default_rng(1000 + lo // CHUNK)
            k = rng.choice(len(modes), size=hi - lo, p=w)
            person = _unit(
                modes[k] + args.between * rng.standard_normal((hi - lo, DIM), np.float32)
            )
            out[lo:hi] = _unit(
                person + args.within * rng.standard_normal((hi - lo, DIM), np.float32)
            )
            f.write("".join(f"{sid(i)},1980-01-01,register-{i}\n" for i in range(lo, hi)))
    out.flush()
    del out
    return t, c


def probes_of(gallery: np.ndarray, count: int, within: float) -> tuple[np.ndarray, np.ndarray]:
    """(gallery rows probed, probes): each the row's subject captured again."""
    rng = np.random.default_rng(4242)
    rows = np.sort(rng.choice(len(gallery), size=count, replace=False))
    q = _unit(np.asarray(gallery[rows]) + within * rng.standard_normal((count, DIM), np.float32))
    return rows, q.astype(np.float32)


def exact_top(gallery: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of the exact l2 top-k of each probe, blocked over the gallery."""
    best_d = np.full((len(q), k), np.inf, np.float32)
    best_i = np.zeros((len(q), k), np.int64)
    qq = (q * q).sum(1, keepdims=True)
    for lo in range(0, len(gallery), CHUNK):
        x = np.asarray(gallery[lo : lo + CHUNK], dtype=np.float32)
        d = qq - 2 * q @ x.T + (x * x).sum(1)[None, :]
        part = np.argpartition(d, k, axis=1)[:, :k]
        cd = np.concatenate([best_d, np.take_along_axis(d, part, 1)], 1)
        ci = np.concatenate([best_i, part + lo], 1)
        o = np.argsort(cd, axis=1)[:, :k]
        best_d, best_i = np.take_along_axis(cd, o, 1), np.take_along_axis(ci, o, 1)
    return best_i


# ----------------------------------------------------------- the processes


def cpu_s(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / CLK


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def pids(up: LocalUp) -> dict[str, int]:
    st = up.state()
    out = {s["name"]: s["pid"] for s in st["services"]}
    out["nats-server"] = st["nats"]["pid"]
    return out


def snapshot(up: LocalUp) -> dict[str, float]:
    return {name: cpu_s(pid) for name, pid in pids(up).items()}


def delta(before: dict, after: dict, per: float) -> dict[str, float]:
    return {k: round((after[k] - before.get(k, 0.0)) / per * 1e3, 4) for k in after}  # ms per op


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def operator_nats(var: Path, up: LocalUp) -> str:
    pw = natsroles.read_password(var / "keys" / "nats", natsroles.OPERATOR)
    scheme, rest = up.state()["nats_url"].split("://", 1)
    return f"{scheme}://{natsroles.OPERATOR}:{pw}@{rest}"


async def searchable(url: str, parts: int) -> tuple[int, list[str]]:
    nc = await bus.connect(url, "bench-stats")
    try:
        stats = [await bus.request(nc, natsnames.searcher_stats(parts, p), searcher_pb2.StatsRequest(),
                                   searcher_pb2.StatsResponse, 30) for p in range(parts)]  # fmt: skip
    finally:
        await nc.close()
    return sum(s.gallery_size for s in stats), [s.index_kind for s in stats]


def wait_searchable(url: str, parts: int, n: int, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            have, _ = asyncio.run(searchable(url, parts))
        except Exception:  # noqa: BLE001 - searchers still starting
            have = -1
        if have >= n:
            return time.monotonic() - t0
        time.sleep(0.5)
    raise TimeoutError(f"searchers hold {have} of {n} after {timeout:.0f} s")


# ---------------------------------------------------------------- the runs


async def identify_runs(up: LocalUp, q: np.ndarray, seconds: float, levels=(1, 32)) -> dict:
    reqs = [identity_pb2.IdentifyRequest(sample=sample(v), top_k=K) for v in q]
    out = {}
    async with secrets.aio_channel(up.state()["gateway"], up.token) as ch:
        stub = identity_pb2_grpc.IdentityStub(ch)

        async def call(r):
            await stub.Identify(r, timeout=60)

        for c in levels:
            before = snapshot(up)
            f = await load(call, reqs, c, seconds, failure=status_of)
            f["cpu_ms_per_op"] = delta(before, snapshot(up), max(f["per_s"] * seconds, 1))
            out[f"c{c}"] = f
    return out


async def recall(up: LocalUp, q: np.ndarray, truth: np.ndarray) -> float:
    async with secrets.aio_channel(up.state()["gateway"], up.token) as ch:
        stub = identity_pb2_grpc.IdentityStub(ch)
        sem = asyncio.Semaphore(8)

        async def one(i):
            async with sem:
                r = await stub.Identify(
                    identity_pb2.IdentifyRequest(sample=sample(q[i]), top_k=K), timeout=60
                )
            want = {sid(int(j)) for j in truth[i]}
            return len(want & {c.subject_id for c in r.candidates}) / K

        hits = await asyncio.gather(*(one(i) for i in range(len(q))))
    return float(np.mean(hits))


def status_of(exc: BaseException) -> str | None:
    """A refused or failed call's status and reason (counted, the run goes
    on: at national sizes a timeout is a finding, not a reason to stop)."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {(exc.details() or '')[:80]}"
    return None


async def dedup_and_verify(
    up: LocalUp, seconds: float, gallery_rows, gallery: np.ndarray, levels=(32,),
    mixed: np.ndarray | None = None,
) -> dict:  # fmt: skip
    # Fresh identities in every run, also one resumed in its --work folder.
    run = time.time_ns()
    rng = np.random.default_rng(run % 2**32)
    fresh = _unit(rng.standard_normal((20_000, DIM)).astype(np.float32))
    counter = iter(range(10**9))
    out = {}
    async with secrets.aio_channel(up.state()["gateway"], up.token) as ch:
        stub = identity_pb2_grpc.IdentityStub(ch)
        outcomes: dict[str, int] = {}

        async def enrol(_r):
            i = next(counter)
            r = await stub.Enroll(
                enroll_request(f"DEDUP{run:x}-{i:08d}", fresh[i % len(fresh)]), timeout=120
            )
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1

        for c in levels:  # more in flight: larger exact batches in the searchers
            outcomes = {}
            before = snapshot(up)
            f = await load(enrol, [None], c, seconds, failure=status_of)
            f["cpu_ms_per_op"] = delta(before, snapshot(up), max(f["per_s"] * seconds, 1))
            f["outcomes"] = outcomes
            out[f"enrol_dedup_c{c}"] = f
            print(f"enrol_dedup_c{c}", json.dumps(f), flush=True)
        if mixed is not None:  # Identify at c=1 while the largest level de-duplicates
            c = max(levels)
            ireqs = [identity_pb2.IdentifyRequest(sample=sample(v), top_k=K) for v in mixed]

            async def ident(r):
                await stub.Identify(r, timeout=120)

            alone = await load(ident, ireqs, 1, min(seconds, 10), failure=status_of)
            outcomes = {}
            d, i = await asyncio.gather(load(enrol, [None], c, seconds, failure=status_of),
                                        load(ident, ireqs, 1, seconds, failure=status_of))  # fmt: skip
            d["outcomes"] = outcomes
            out["identify_c1_alone"] = alone
            out[f"identify_c1_during_enrol_dedup_c{c}"] = i
            out[f"enrol_dedup_c{c}_with_identify_c1"] = d
            print(f"identify_c1 alone {json.dumps(alone)}\nduring dedup c{c} {json.dumps(i)}\n"
                  f"dedup {json.dumps(d)}", flush=True)  # fmt: skip
        vreqs = [identity_pb2.VerifyRequest(subject_id=sid(int(i)), sample=sample(gallery[i]))
                 for i in gallery_rows[:500]]  # fmt: skip

        async def verify(r):
            await stub.Verify(r, timeout=60)

        before = snapshot(up)
        f = await load(verify, vreqs, 8, min(seconds, 10), failure=status_of)
        f["cpu_ms_per_op"] = delta(before, snapshot(up), max(f["per_s"] * min(seconds, 10), 1))
        out["verify_c8"] = f
    return out


def start(var: Path, parts: int, kind: str, args) -> LocalUp:
    per = args.templates // parts
    nlist = max(16, min(4096, int(4 * math.sqrt(per)), per // 39))
    env = {"TANU_INDEX_KIND": kind, "TANU_LOG_LEVEL": "warning", "TANU_IVF_NLIST": str(nlist),
           "TANU_IVF_NPROBE": str(args.nprobe), "TANU_IVF_RERANK": str(args.rerank),
           "TANU_SEARCH_TIMEOUT_S": str(args.search_timeout),
           # Enrolments compare exactly with every template committed within
           # the window; the bulk import's are searchable long before it ends.
           "TANU_DEDUP_WINDOW_S": str(args.dedup_window)}  # fmt: skip
    up = LocalUp(var, partitions=parts, **env)
    up.start(timeout=3 * 3600)  # searchers rebuild their partitions first (minutes each)
    up.nlist = nlist
    return up


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--templates", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--kinds", default="flat,fp16,ivf")
    ap.add_argument("--seconds", type=float, default=8.0, help="per Identify level")
    ap.add_argument("--dedup-seconds", type=float, default=15.0)
    ap.add_argument(
        "--dedup-concurrency",
        default="32",
        help="enrolments in flight, one run each (e.g. 32,256: batches of up to 256 "
        "exact searches per partition; give --search-timeout room for them)",
    )
    ap.add_argument("--probes", type=int, default=300, help="probes for recall@10")
    ap.add_argument("--batch", type=int, default=1000, help="import batch")
    ap.add_argument("--import-inflight", type=int, default=2, help="import batches in flight")
    ap.add_argument("--mixed", action="store_true",
                    help="also Identify at c=1 alone and while the largest de-duplication level runs")  # fmt: skip
    ap.add_argument("--modes", type=int, default=2048)
    ap.add_argument(
        "--between", type=float, default=0.06, help="subject spread around a mode (per dimension)"
    )
    ap.add_argument("--within", type=float, default=0.02, help="capture noise (per dimension)")
    ap.add_argument(
        "--dedup-window",
        type=float,
        default=30.0,
        help="the store's TANU_DEDUP_WINDOW_S; de-duplication is measured once it has passed",
    )
    ap.add_argument(
        "--search-timeout",
        type=float,
        default=2.0,
        help="the gateway's TANU_SEARCH_TIMEOUT_S (its default 2 s; an exact scan of a "
        "20M gallery at concurrency 32 on 2 cores takes longer)",
    )
    ap.add_argument("--nprobe", type=int, default=64)
    ap.add_argument(
        "--rerank",
        type=int,
        default=40,
        help="ivf: exact re-rank of rerank x 10 PQ candidates (4 gives recall ~0.89 here)",
    )
    ap.add_argument("--work", help="folder for data and the cluster (default: a temporary one)")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()
    n, parts = args.templates, args.partitions
    work = Path(args.work or tempfile.mkdtemp(prefix="tanu-national-"))
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"templates": n, "partitions": parts, "dimension": DIM, "cores": os.cpu_count(),
                 "date": time.strftime("%Y-%m-%d"), "load_before": os.getloadavg()}  # fmt: skip
    t0 = time.monotonic()
    t, c = generate(work / "data", n, args)
    res["generate_s"] = round(time.monotonic() - t0, 1)
    gallery = np.load(t, mmap_mode="r")
    rows, q = probes_of(gallery, args.probes, args.within)
    t0 = time.monotonic()
    truth = exact_top(gallery, q, K)
    res["exact_ground_truth_s"] = round(time.monotonic() - t0, 1)
    res["probe_self_rank1"] = float(np.mean(truth[:, 0] == rows))
    var = work / "var"
    kinds = args.kinds.split(",")
    up = start(var, parts, kinds[0], args)
    try:
        url = operator_nats(var, up)
        before, rss0 = snapshot(up), {k: rss(p) for k, p in pids(up).items()}
        t0 = time.monotonic()
        imp = subprocess.Popen(
            [sys.executable, "-m", "tanu.ops.cli", "--var", str(var), "gallery", "import",
             "--templates", str(t), "--csv", str(c), "--purposes", "identity_verification,kyc",
             "--skip-dedup", "--batch", str(args.batch), "--inflight", str(args.import_inflight),
             "--json", "--quiet"],
            stdout=subprocess.PIPE, env={**os.environ, "TANU_LOG_LEVEL": "warning"},
        )  # fmt: skip
        _, status, ru = os.wait4(imp.pid, 0)
        import_s = time.monotonic() - t0
        imported_at = time.monotonic()
        summary = json.loads(imp.stdout.read())
        assert os.waitstatus_to_exitcode(status) == 0, summary
        wait_searchable(url, parts, n, 3600)
        load_s = time.monotonic() - t0
        after = snapshot(up)
        cpu_load = delta(before, after, n)
        cpu_load["importer"] = round((ru.ru_utime + ru.ru_stime) / n * 1e3, 4)
        rss1 = {k: rss(p) for k, p in pids(up).items()}
        res["load"] = {
            "import_s": round(import_s, 1), "searchable_s": round(load_s, 1),
            "import_per_s": round(n / import_s, 1), "searchable_per_s": round(n / load_s, 1),
            "importer_summary": summary, "cpu_ms_per_template": cpu_load,
            "rss_bytes": rss1,
            "rss_growth_bytes_per_template": {k: round((rss1[k] - rss0.get(k, 0)) / n, 1) for k in rss1},
            "disk_bytes_per_template": {
                "store_db": round(sum(du(p) for p in var.glob("store.sqlite3*")) / n, 1),
                "jetstream": round(du(var / "nats") / n, 1),
                "snapshots": round(du(var / "snapshots") / n, 1) if (var / "snapshots").exists() else 0,
            },
        }  # fmt: skip
        print(json.dumps(res["load"], indent=1), flush=True)
        res["kinds"] = {}
        for i, kind in enumerate(kinds):
            if i:
                up.stop()
                t_r = time.monotonic()  # tanu up waits for the searchers to catch up
                up = start(var, parts, kind, args)
                url = operator_nats(var, up)
                wait_searchable(url, parts, n, 3600)
                rebuild = time.monotonic() - t_r
            else:
                rebuild = 0.0
            _, kinds_seen = asyncio.run(searchable(url, parts))
            time.sleep(2)  # let the snapshotter and the consumers settle
            r = {"index_kinds": kinds_seen, "rebuild_from_stream_s": round(rebuild, 1),
                 "searcher_rss_bytes_per_template": round(
                     sum(rss(p) for k, p in pids(up).items() if k.startswith("searcher")) / n, 1)}  # fmt: skip
            if kind == "ivf":
                r["ivf"] = {"nlist": up.nlist, "nprobe": args.nprobe, "rerank": args.rerank}
            r["identify"] = asyncio.run(identify_runs(up, q, args.seconds))
            r["recall_at_10"] = round(asyncio.run(recall(up, q, truth)), 4)
            print(kind, "identify", json.dumps(r["identify"]), "recall", r["recall_at_10"],
                  flush=True)  # fmt: skip
            if kind == "flat":
                time.sleep(max(0.0, args.dedup_window + 2 - (time.monotonic() - imported_at)))
                levels = [int(x) for x in args.dedup_concurrency.split(",")]
                mixed = q[:50] if args.mixed else None
                r.update(asyncio.run(
                    dedup_and_verify(up, args.dedup_seconds, rows, gallery, levels, mixed)))  # fmt: skip
            res["kinds"][kind] = r
            print(kind, json.dumps(r, indent=1), flush=True)
    except BaseException:
        print(f"failed; the data and the cluster's logs are kept in {work}", flush=True)
        raise
    finally:
        up.stop()
    if not args.work:  # its own temporary folder: tens of GB at national sizes
        shutil.rmtree(work, ignore_errors=True)
    res["load_after"] = os.getloadavg()
    text = json.dumps(res, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    print_table(res)
    return 0


def print_table(res: dict) -> None:
    ld = res["load"]
    print(f"\nnational through the services: {res['templates']} x {res['dimension']}-d clustered, "
          f"{res['partitions']} partitions, {res['cores']} cores, {res['date']}")  # fmt: skip
    print(f"load: import {ld['import_per_s']:.0f} templates/s, searchable {ld['searchable_per_s']:.0f} "
          f"templates/s ({ld['searchable_s']:.0f} s)")  # fmt: skip
    print(f"{'kind':>5} | {'c1 p50':>7} {'c1 p99':>7} {'c1 q/s':>7} | {'c32 p50':>7} {'c32 p99':>7} "
          f"{'c32 q/s':>7} | recall@10 | searcher B/template")  # fmt: skip
    for kind, r in res["kinds"].items():
        a, b = r["identify"]["c1"], r["identify"]["c32"]
        print(f"{kind:>5} | {a['p50_ms']:>7.1f} {a['p99_ms']:>7.1f} {a['per_s']:>7.1f} | {b['p50_ms']:>7.1f} "
              f"{b['p99_ms']:>7.1f} {b['per_s']:>7.1f} | {r['recall_at_10']:>9.4f} | "
              f"{r['searcher_rss_bytes_per_template']:.0f}")  # fmt: skip
    for name, e in res["kinds"].get("flat", {}).items():
        if name.startswith("enrol_dedup_c"):
            print(f"exact de-duplicated enrolments: {e['per_s']:.1f}/s at {name[12:]} "
                  f"(p50 {e['p50_ms']:.0f} ms, refused {sum(e.get('failed', {}).values())})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
