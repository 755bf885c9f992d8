"""Search overhead: raw FAISS, the searcher service (over NATS, as the
gateway calls it) and the full gateway path, on the same gallery and the same
queries, at concurrency 1, 16 and 64; plus the machine's dense matmul peak
and the fraction of it FAISS and Tanu's exact kernel reach (the kernel over
1,000,000 x 128 at batch 256).

    .venv/bin/python benchmarks/search/overhead.py [--templates 100000] [--seconds 6]
        [--py-spy DIR] [--concurrency 1 16 64]

One partition holds the whole gallery, so the three paths search exactly the
same index. Raw FAISS at concurrency c gets c queries per call (the best an
in-process batcher could do).

Where the time goes: for every gateway run it prints the mean time of each
stage of an Identify from the services' own metrics (the gateway's Identify,
its NATS scatter, the searcher's search, the store trip that screens the
candidates and writes the audit), and for every service run the CPU time each
process spent per request (utime + stime from /proc/<pid>/stat before and
after the run: client = this benchmark's load generator, nats-server,
store, searcher, gateway, detector, embedder). With ``--py-spy DIR`` the
gateway process is sampled by py-spy during each gateway run,
and so is the store (``DIR/gateway-c<N>.txt``, ``DIR/store-c<N>.txt``:
collapsed stacks; py-spy must be installed).

"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exact_kernel import kernel_line  # noqa: E402
from loadgen import figures, load  # noqa: E402

from tanu.core import bus, envelope, natsnames, secrets, vectors
from tanu.core.config import Layout
from tanu.ops.local import LocalCluster  # noqa: E402
from tanu.store import Store
from tanu.v1 import common_pb2, identity_pb2, identity_pb2_grpc, searcher_pb2

DIM, K = 128, 10


def synthetic(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def raw(index, queries: np.ndarray, c: int, seconds: float) -> dict:
    index.search(queries[:c], K)
    lat, n, i = [], 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        q = queries[(i * c) % (len(queries) - c) :][:c]
        t = time.perf_counter()
        index.search(q, K)
        lat += [time.perf_counter() - t] * c
        n += c
        i += 1
    return figures(lat, n, time.perf_counter() - start)


def matmul_peak() -> float:
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    a @ a
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        a @ a
        best = max(best, 2 * 2048**3 / (time.perf_counter() - t))
    return best / 1e9


def faiss_gflops(index, queries: np.ndarray, n: int, batch: int = 256) -> float:
    index.search(queries[:batch], K)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        index.search(queries[:batch], K)
        best = max(best, 2 * batch * n * DIM / (time.perf_counter() - t))
    return best / 1e9


def pids(cluster: LocalCluster) -> dict[str, int]:
    """The process of every part of the run, by name."""
    out = {"client": os.getpid(), "nats-server": cluster.nats.proc.pid}
    out.update({name: p.pid for name, p in cluster.running.items()})
    return out


def metric_lines(cluster: LocalCluster) -> list[str]:
    """Every service's /metrics, scraped once, as lines."""
    lines: list[str] = []
    for proc in cluster.procs:
        try:
            text = urllib.request.urlopen(
                f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=5
            )
            lines += text.read().decode().splitlines()
        except OSError:
            continue
    return lines


def batch_totals(lines: list[str]) -> dict[str, tuple[float, float]]:
    """Every micro-batcher's (items, batches) so far, from ``metric_lines``."""
    out: dict[str, tuple[float, float]] = {}
    for line in lines:
        if line.startswith(("tanu_batch_size_sum{", "tanu_batch_size_count{")):
            name = line.split('batcher="', 1)[1].split('"', 1)[0]
            items, batches = out.get(name, (0.0, 0.0))
            value = float(line.rsplit(" ", 1)[1])
            if line.startswith("tanu_batch_size_sum"):
                items += value
            else:
                batches += value
            out[name] = (items, batches)
    return out


STAGES = (
    ("tanu_rpc_duration_seconds", 'method="Identify"', "Identify in the gateway"),
    ("tanu_nats_request_duration_seconds", 'operation="search"', "  search (NATS scatter)"),
    ("tanu_faiss_search_seconds", "", "    search in the searcher"),
    ("tanu_nats_request_duration_seconds", 'operation="store.audit.screen"',
     "  screening + audit (store trip)"),
)  # fmt: skip


def stage_totals(lines: list[str]) -> dict[str, tuple[float, float]]:
    """(seconds, count) so far of each of ``STAGES``, summed over
    ``metric_lines`` (where the gateway's time per request goes)."""
    out: dict[str, tuple[float, float]] = {}
    for metric, label, name in STAGES:
        for line in lines:
            for part, i in (("_sum{", 0), ("_count{", 1)):
                if line.startswith(metric + part) and label in line:
                    got = list(out.get(name, (0.0, 0.0)))
                    got[i] += float(line.rsplit(" ", 1)[1])
                    out[name] = (got[0], got[1])
    return out


def grown(after: dict[str, tuple[float, float]], before: dict[str, tuple[float, float]]
          ) -> dict[str, tuple[float, float]]:  # fmt: skip
    """(sum, count) added since ``before``, for each name counted meanwhile."""
    out = {}
    for name, (total, count) in after.items():
        total0, count0 = before.get(name, (0.0, 0.0))
        if count > count0:
            out[name] = (total - total0, count - count0)
    return out


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spy_on(procs: dict[str, int], spy: dict[str, Path]) -> list[subprocess.Popen]:
    """py-spy sampling each process named in ``spy`` into its path (collapsed stacks)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return [
        subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(procs[name]),
                "--format",
                "raw",
                "--rate",
                "200",
                "--nonblocking",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for name, out in spy.items()
    ]


def stop_spies(samplers: list[subprocess.Popen]) -> None:
    for sampler in samplers:
        sampler.send_signal(2)  # SIGINT: py-spy writes its output and exits
    for sampler in samplers:
        sampler.wait(30)


async def measured(run, cluster: LocalCluster, procs: dict[str, int], counter: list[int],
                   spy: dict[str, Path]):  # fmt: skip
    """``run()``'s figures plus each process's CPU ms per request (``cpu``)
    and each micro-batcher's mean batch over the run (``batches``); the
    processes named in ``spy`` sampled by py-spy into their path."""
    lines = metric_lines(cluster)
    before = {n: cpu_s(p) for n, p in procs.items()}
    counter[0] = 0
    samplers = spy_on(procs, spy)
    if samplers:
        await asyncio.sleep(1.0)  # attached before the load starts
    fig = await run()
    stop_spies(samplers)
    n = max(1, counter[0])
    fig["cpu"] = {name: (cpu_s(p) - before[name]) * 1e3 / n for name, p in procs.items()}
    now = metric_lines(cluster)
    # mean ms per call and calls per request answered; mean items per batch
    fig["stages"] = {name: (secs * 1e3 / count, count / n) for name, (secs, count)
                     in grown(stage_totals(now), stage_totals(lines)).items()}  # fmt: skip
    fig["batches"] = {name: items / count for name, (items, count)
                      in grown(batch_totals(now), batch_totals(lines)).items()}  # fmt: skip
    return fig


async def run_service(cluster: LocalCluster, queries: np.ndarray, levels, seconds,
                      spy_dir: Path | None = None) -> dict:  # fmt: skip
    out = {}
    procs = pids(cluster)
    counter = [0]
    before = {n: cpu_s(p) for n, p in procs.items()}
    await asyncio.sleep(3.0)  # no load: what each process spends on its own timers
    out["idle"] = {n: (cpu_s(p) - before[n]) * 1e3 / 3.0 for n, p in procs.items()}
    nc = await bus.connect(cluster.nats.url_for("gateway"), "bench")  # searches, as a gateway
    sreqs = [searcher_pb2.SearchRequest(queries=vectors.to_bytes(q[None]), count=1, top_k=K).SerializeToString()
             for q in queries[:2000]]  # fmt: skip
    ireqs = [identity_pb2.IdentifyRequest(sample=common_pb2.BiometricSample(
        template=common_pb2.Template(vector=vectors.to_bytes(q))), top_k=K) for q in queries[:2000]]  # fmt: skip
    gw = next(p.grpc_port for p in cluster.procs if p.name == "gateway")
    async with secrets.aio_channel(f"127.0.0.1:{gw}", token(cluster)) as ch:
        stub = identity_pb2_grpc.IdentityStub(ch)

        async def searcher(r):
            await bus.request(nc, natsnames.search(0), r, searcher_pb2.SearchResponse, 30)
            counter[0] += 1

        async def gateway(r):
            await stub.Identify(r, timeout=30)
            counter[0] += 1

        for c in levels:
            out[("searcher", c)] = await measured(
                lambda c=c: load(searcher, sreqs, c, seconds), cluster, procs, counter, {}
            )
            spy = {n: spy_dir / f"{n}-c{c}.txt" for n in ("gateway", "store")} if spy_dir else {}
            out[("gateway", c)] = await measured(
                lambda c=c: load(gateway, ireqs, c, seconds), cluster, procs, counter, spy
            )
    await nc.close()
    return out


def token(cluster: LocalCluster) -> str:
    return (cluster.var / "keys" / "operator.token").read_text()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--templates", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample the gateway with py-spy during each gateway run, into DIR",
    )
    ap.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 16, 64],
        metavar="C",
        help="the concurrency levels to run (default: 1 16 64)",
    )
    args = ap.parse_args()
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    levels = tuple(args.concurrency)
    gallery = synthetic(args.templates, 1)
    rng = np.random.default_rng(2)
    queries = (gallery[rng.integers(0, args.templates, 20_000)]
               + rng.standard_normal((20_000, DIM)).astype(np.float32) * 0.02).astype(np.float32)  # fmt: skip
    index = faiss.IndexFlatL2(DIM)
    index.add(gallery)
    raws = {c: raw(index, queries, c, args.seconds) for c in levels}
    peak, fgf = matmul_peak(), faiss_gflops(index, queries, args.templates)
    del index
    with tempfile.TemporaryDirectory(prefix="tanu-overhead-") as tmp:
        var = Path(tmp) / "var"
        keyenv = secrets.provision(var / "keys")  # the cluster below uses the same keys
        db = Store(var / "store.sqlite3", Layout(partitions=1),
                         envelope.LocalKeyProvider.from_file(keyenv["TANU_MASTER_KEY_FILE"]))  # fmt: skip
        consent = common_pb2.Consent(purposes=[secrets.DEFAULT_PURPOSE], evidence_ref="bench")
        db.put_many([(f"c{i}", gallery[i : i + 1]) for i in range(args.templates)], "1980-01-01",
                    consent)  # fmt: skip
        db.close()
        env = dict(os.environ, TANU_LOG_LEVEL="warning")
        cluster = LocalCluster(var, 1, 1, 0, 0, env, say=lambda m: print("  " + m, file=sys.stderr))
        try:
            cluster.start()

            async def ready():
                probe = identity_pb2.IdentifyRequest(
                    sample=common_pb2.BiometricSample(
                        template=common_pb2.Template(vector=vectors.to_bytes(queries[0]))
                    )
                )
                async with secrets.aio_channel(
                    f"127.0.0.1:{cluster.procs[-1].grpc_port}", token(cluster)
                ) as ch:
                    stub = identity_pb2_grpc.IdentityStub(ch)
                    while (await stub.Identify(probe)).gallery_size < args.templates:
                        await asyncio.sleep(0.2)

            asyncio.run(ready())
            svc = asyncio.run(run_service(cluster, queries, levels, args.seconds, args.py_spy))
        finally:
            cluster.stop()
    print(f"\nsearch overhead: {args.templates} x {DIM}-d, exact fp32, one partition, top-{K}; "
          f"{os.cpu_count()} cores; faiss {faiss.__version__}; {time.strftime('%Y-%m-%d')}")  # fmt: skip
    print(
        f"{'conc':>4} | {'raw q/s':>8} {'p50':>6} {'p99':>6} | {'searcher q/s':>12} {'p50':>6} {'p99':>6} "
        f"{'ratio':>5} | {'gateway q/s':>11} {'p50':>6} {'p99':>6} {'ratio':>5} | p50 overhead ms (searcher, gateway)"
    )
    for c in levels:
        r, s, g = raws[c], svc[("searcher", c)], svc[("gateway", c)]
        print(f"{c:>4} | {r['per_s']:>8.1f} {r['p50_ms']:>6.2f} {r['p99_ms']:>6.2f} | {s['per_s']:>12.1f} {s['p50_ms']:>6.2f} "
              f"{s['p99_ms']:>6.2f} {s['per_s'] / r['per_s']:>5.2f} | {g['per_s']:>11.1f} {g['p50_ms']:>6.2f} {g['p99_ms']:>6.2f} "
              f"{g['per_s'] / r['per_s']:>5.2f} | {s['p50_ms'] - r['p50_ms']:.2f}, {g['p50_ms'] - r['p50_ms']:.2f}")  # fmt: skip
    names = list(svc[("gateway", levels[0])]["cpu"])
    print("\nCPU ms per request, by process (utime + stime over the run / requests answered)")
    print(
        f"{'path':>8} {'conc':>4} | "
        + " ".join(f"{n[:12]:>12}" for n in names)
        + f" | {'total':>7}"
    )
    for path in ("searcher", "gateway"):
        for c in levels:
            cpu = svc[(path, c)]["cpu"]
            print(f"{path:>8} {c:>4} | " + " ".join(f"{cpu[n]:>12.3f}" for n in names)
                  + f" | {sum(cpu.values()):>7.3f}")  # fmt: skip
    idle = svc["idle"]
    print(f"{'idle':>8} {'ms/s':>4} | " + " ".join(f"{idle[n]:>12.3f}" for n in names)
          + f" | {sum(idle.values()):>7.3f}")  # fmt: skip
    print("\nwhere an Identify's time goes (mean ms per call from the services' metrics; "
          "calls per Identify)")  # fmt: skip
    for c in levels:
        st = svc[("gateway", c)]["stages"]
        print(f"{'gateway':>8} {c:>4} | " + "; ".join(
            f"{name.strip()} {ms:.2f} ms x{per:.2f}" for _, _, name in STAGES
            if name in st for ms, per in [st[name]]))  # fmt: skip
    print("\nmean micro-batch (items per batch over the run), by batcher")
    for path in ("searcher", "gateway"):
        for c in levels:
            b = svc[(path, c)]["batches"]
            print(f"{path:>8} {c:>4} | " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(b.items())))
    print(
        f"machine peak (numpy 2048^2 fp32 matmul): {peak:.1f} GFLOP/s; FAISS flat search at batch 256: "
        f"{fgf:.1f} GFLOP/s = {fgf / peak:.0%} of peak"
    )
    print(kernel_line(1_000_000, DIM, peak))  # over 1,000,000 x 128, as issue 14 asks
    return 0


if __name__ == "__main__":
    sys.exit(main())
