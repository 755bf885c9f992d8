"""GPU search paths and the face pipeline against the H200's bounds, in one run.

    bash benchmarks/gpu/run.sh                 # on the device: 20M x 512 fp16, CUDA
    bash benchmarks/gpu/run.sh --cpu           # anywhere: 20k x 512, numpy / FAISS CPU

Sections (each prints a line starting ``ratio <section> b=<batch>:``):

(a) exact fp16 flat top-k at batch 1 and 1024 over a clustered synthetic gallery
    generated on the device in chunks (20M x 512 fp16 = 20.5 GB never exists in
    host memory). Batch 1 is set against the memory-bandwidth bound (gallery bytes
    read once / bandwidth), batch 1024 against the compute bound (2*n*d*b FLOP /
    peak). Top-k is checked on a sample of queries against an fp32 (GPU) or
    float64 (CPU) reference, tie-aware: the returned scores must equal the
    reference's k best within fp16 rounding.
(b) IVF: FAISS GPU is not on the device image, so on the GPU this is an IVF
    written in torch (spherical k-means coarse quantiser on a sample, lists sorted
    contiguously on the device, probed lists gathered and scored with bmm); with
    --cpu it is FAISS CPU IndexIVFFlat (fp32). recall@10 against exact search of
    section (a), q/s at batch 1 and 1024, ratios to the same bounds counting the
    bytes / FLOP of the centroids and the lists actually scanned.
(c) the face embedder (var/models dlib ResNet, ONNX, fp32) through onnxruntime on
    CUDAExecutionProvider (CPUExecutionProvider with --cpu) at batch 1 and 64;
    FLOPs counted from the graph; ratio to the fp32 compute bound. When the
    device's onnxruntime has no CUDA provider (the image's has none) the section
    says so, and runs the same ONNX graph through torch on the GPU instead
    (TorchOnnx: the model's nine op types), fp32 and fp16, each first checked
    against onnxruntime on the CPU (relative error), then timed.

Bounds: on the GPU the H200 datasheet's 4.8 TB/s and 990 TFLOP/s dense fp16
(67 TFLOP/s fp32 for the face model), and the copy bandwidth and fp16 matmul
rate measured in this run, printed beside them. With --cpu: a numpy copy's
bandwidth and a float32 matmul's rate measured in this run (labelled).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
K = 10
T0 = time.perf_counter()
FAILED: list[str] = []


def left(args) -> float:
    return args.time_budget - (time.perf_counter() - T0)


def say(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- backends


class Cpu:
    """numpy: fp16 storage, float32 BLAS per block (what Tanu's fp16 kind does)."""

    name = "cpu"

    def __init__(self, args):
        self.rng = np.random.default_rng(args.seed)
        self.block = 65536

    def sync(self):
        pass

    def bounds(self):
        a = np.ones(64 << 20 >> 3, np.float64)  # 64 MiB
        b = np.empty_like(a)
        np.copyto(b, a)
        t = time.perf_counter()
        reps = 10
        for _ in range(reps):
            np.copyto(b, a)
        bw = 2 * a.nbytes * reps / (time.perf_counter() - t)
        m = self.rng.standard_normal((2048, 2048), dtype=np.float32)  # as exact_kernel.py
        m @ m
        t = time.perf_counter()
        for _ in range(3):
            m @ m
        peak = 3 * 2 * 2048**3 / (time.perf_counter() - t)
        return (
            bw,
            peak,
            f"measured here: numpy copy {bw / 1e9:.1f} GB/s, float32 matmul {peak / 1e9:.1f} GFLOP/s",
        )

    def gallery(self, n, d, centers, sigma):
        c = self.rng.standard_normal((centers, d), dtype=np.float32)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        x = np.empty((n, d), np.float16)
        for s in range(0, n, self.block):
            e = min(n, s + self.block)
            v = c[self.rng.integers(0, centers, e - s)]
            v += sigma / np.sqrt(d) * self.rng.standard_normal((e - s, d), dtype=np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            x[s:e] = v
        return x

    def queries(self, x, b, sigma):
        d = x.shape[1]
        q = x[self.rng.integers(0, len(x), b)].astype(np.float32)
        q += sigma / np.sqrt(d) * self.rng.standard_normal(q.shape, dtype=np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        return q.astype(np.float16)

    def flat(self, x, q, k):
        qf = q.astype(np.float32)
        best_s = np.full((len(q), 0), -np.inf, np.float32)
        best_i = np.zeros((len(q), 0), np.int64)
        for s in range(0, len(x), self.block):
            sc = qf @ x[s : s + self.block].astype(np.float32).T
            kk = min(k, sc.shape[1])
            part = np.argpartition(-sc, kk - 1, axis=1)[:, :kk]
            best_s = np.concatenate([best_s, np.take_along_axis(sc, part, 1)], 1)
            best_i = np.concatenate([best_i, part + s], 1)
            if best_s.shape[1] > k:
                keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
                best_s = np.take_along_axis(best_s, keep, 1)
                best_i = np.take_along_axis(best_i, keep, 1)
        o = np.argsort(-best_s, axis=1)
        return np.take_along_axis(best_s, o, 1), np.take_along_axis(best_i, o, 1)

    def reference(self, x, q, ids, k):
        """Reference k best (float64) and the float64 scores of the returned ids."""
        qd = q.astype(np.float64)
        ref = np.sort(qd @ x.astype(np.float64).T, axis=1)[:, ::-1][:, :k]
        got = np.einsum("bd,bkd->bk", qd, x[ids].astype(np.float64))
        return ref, np.sort(got, axis=1)[:, ::-1]

    def ids(self, a):
        return np.asarray(a)

    def timeit(self, fn, reps, budget):
        fn()
        t, n = time.perf_counter(), 0
        while n < reps and (n == 0 or time.perf_counter() - t < budget):
            fn()
            n += 1
        return (time.perf_counter() - t) / n


class Gpu:
    """torch on CUDA: fp16 matmul (cuBLAS) + torch.topk, chunked over the gallery."""

    name = "gpu"

    def __init__(self, args):
        import torch

        self.t = torch
        # --torch-device cpu: the same torch code on the CPU, to check it without a GPU
        self.dev = torch.device(args.torch_device)
        self.cuda = self.dev.type == "cuda"
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False  # fp32 convolutions are fp32, not TF32
        torch.backends.cudnn.benchmark = True  # fixed shapes: the warm-up call picks the kernels
        self.g = torch.Generator(device=self.dev).manual_seed(args.seed)
        self.block = 1 << 20 if self.cuda else 4096
        self.score_bytes = (4 << 30) if self.cuda else (64 << 20)  # largest score matrix of a chunk

    def sync(self):
        if self.cuda:
            self.t.cuda.synchronize()

    def bounds(self):
        t = self.t
        if not self.cuda:
            return 10e9, 100e9, "dry run of the torch path on the CPU: placeholder bounds"
        a = t.empty(1 << 31, dtype=t.uint8, device=self.dev).random_(generator=self.g)  # 2 GiB
        b = t.empty_like(a)
        b.copy_(a)
        self.sync()
        e0, e1 = t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(10):
            b.copy_(a)
        e1.record()
        self.sync()
        bw = 2 * a.numel() * 10 / (e0.elapsed_time(e1) / 1e3)
        del a, b
        m = t.randn(8192, 8192, device=self.dev, dtype=t.float16, generator=self.g)
        m @ m
        e0.record()
        for _ in range(10):
            m @ m
        e1.record()
        self.sync()
        peak = 10 * 2 * 8192**3 / (e0.elapsed_time(e1) / 1e3)
        del m
        return (
            bw,
            peak,
            (
                f"measured here: device copy {bw / 1e12:.2f} TB/s, fp16 matmul 8192^3 "
                f"{peak / 1e12:.0f} TFLOP/s (datasheet: 4.8 TB/s, 990 TFLOP/s)"
            ),
        )

    def gallery(self, n, d, centers, sigma):
        t = self.t
        c = t.randn(centers, d, device=self.dev, generator=self.g)
        c /= c.norm(dim=1, keepdim=True)
        x = t.empty(n, d, dtype=t.float16, device=self.dev)
        for s in range(0, n, self.block):
            e = min(n, s + self.block)
            v = c[t.randint(0, centers, (e - s,), device=self.dev, generator=self.g)]
            v += sigma / d**0.5 * t.randn(e - s, d, device=self.dev, generator=self.g)
            v /= v.norm(dim=1, keepdim=True)
            x[s:e] = v.half()
        self.sync()
        return x

    def queries(self, x, b, sigma):
        t = self.t
        d = x.shape[1]
        q = x[t.randint(0, len(x), (b,), device=self.dev, generator=self.g)].float()
        q += sigma / d**0.5 * t.randn(b, d, device=self.dev, generator=self.g)
        q /= q.norm(dim=1, keepdim=True)
        return q.half()

    def flat(self, x, q, k):
        t = self.t
        chunk = max(k, min(len(x), self.score_bytes // (2 * len(q))))
        best_s = best_i = None
        for s in range(0, len(x), chunk):
            sc = q @ x[s : s + chunk].T
            v, i = t.topk(sc, min(k, sc.shape[1]), dim=1)
            i += s
            if best_s is not None:
                v, i = t.cat([best_s, v], 1), t.cat([best_i, i], 1)
                v, j = t.topk(v, k, dim=1)
                i = i.gather(1, j)
            best_s, best_i = v, i
        return best_s, best_i

    def reference(self, x, q, ids, k):
        t = self.t
        qf = q.float()
        ref = None
        for s in range(0, len(x), self.block):
            v = t.topk(qf @ x[s : s + self.block].float().T, min(k, len(x) - s), dim=1).values
            ref = v if ref is None else t.topk(t.cat([ref, v], 1), k, dim=1).values
        got = t.einsum("bd,bkd->bk", qf.double(), x[ids].double())
        return ref.double().cpu().numpy(), np.sort(got.cpu().numpy(), axis=1)[:, ::-1]

    def ids(self, a):
        return a.cpu().numpy()

    def timeit(self, fn, reps, budget):
        t = self.t
        if not self.cuda:
            return Cpu.timeit(self, fn, reps, budget)
        fn()
        self.sync()
        e0, e1 = t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)
        wall, n = time.perf_counter(), 0
        e0.record()
        while n < reps and (n == 0 or time.perf_counter() - wall < budget):
            fn()
            n += 1
        e1.record()
        self.sync()
        return e0.elapsed_time(e1) / 1e3 / n


# ---------------------------------------------------------------- sections


def section_flat(be, args, x, queries, bw, peak, bw_label, peak_label):
    n, d = x.shape
    out = {}
    for b in (1, args.batch):
        if left(args) < 20:
            say(f"flat b={b}: skipped, time budget spent")
            continue
        q = queries[:b]
        sec = be.timeit(lambda q=q: be.flat(x, q, K), args.reps, min(20.0, left(args) / 8))
        if b == 1:
            need = n * d * 2
            bound = need / bw
            say(
                f"flat fp16 b=1: {sec * 1e3:.3f} ms/query, {need / sec / 1e9:.1f} GB/s of gallery read"
            )
            say(
                f"ratio flat b=1: {bound / sec:.3g} of memory-bandwidth bound ({bw_label}, {bound * 1e3:.3f} ms)"
            )
        else:
            flop = 2 * n * d * b
            bound = flop / peak
            say(
                f"flat fp16 b={b}: {sec * 1e3:.2f} ms/batch, {b / sec:.0f} q/s, {flop / sec / 1e12:.3f} TFLOP/s"
            )
            say(
                f"ratio flat b={b}: {bound / sec:.3g} of compute bound ({peak_label}, {bound * 1e3:.3f} ms)"
            )
        out[b] = sec
    # correctness on a sample, tie-aware
    m = min(args.check, len(queries))
    s_got, i_got = be.flat(x, queries[:m], K)
    ref, got = be.reference(x, queries[:m], i_got, K)
    gap = float(np.max(np.abs(ref - got)))
    tol = 4e-3  # fp16 scores (2^-11 relative) plus fp32 accumulation over d
    ok = gap <= tol and np.isfinite(got).all()
    say(
        f"flat top-{K} check on {m} queries vs {'fp32' if be.name == 'gpu' else 'float64'} reference: "
        f"worst gap of the k best scores {gap:.2e} (tol {tol:.0e}): {'ok' if ok else 'FAILED'}"
    )
    if not ok:
        FAILED.append("flat check")
    return out


def section_ivf_cpu(args, x, queries, exact_ids, bw, peak, bw_label, peak_label):
    import faiss

    n, d = x.shape
    nlist = args.nlist or max(16, min(int(4 * np.sqrt(n)), n // 39))
    xf = x.astype(np.float32)
    t = time.perf_counter()
    quantizer = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(xf[np.random.default_rng(1).permutation(n)[: min(n, nlist * 64)]])
    ivf.add(xf)
    say(
        f"ivf (FAISS CPU IndexIVFFlat, fp32, nlist {nlist}): built in {time.perf_counter() - t:.1f} s"
    )
    sizes = np.array([ivf.invlists.list_size(i) for i in range(nlist)])
    qf = queries.astype(np.float32)
    for nprobe in sorted({min(v, nlist) for v in args.nprobe}):
        if left(args) < 10:
            say(f"ivf nprobe {nprobe}: skipped, time budget spent")
            continue
        ivf.nprobe = nprobe
        _, ids = ivf.search(qf, K)
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, exact_ids, strict=True)])
        _, lists = ivf.quantizer.search(qf, nprobe)
        scanned = float(sizes[lists].sum(1).mean())
        report_ivf(
            args,
            nprobe,
            recall,
            scanned,
            nlist,
            d,
            4,
            {b: timeit_cpu(lambda b=b: ivf.search(qf[:b], K), args) for b in (1, args.batch)},
            bw,
            peak,
            bw_label,
            peak_label,
        )


def timeit_cpu(fn, args):
    fn()
    t, n = time.perf_counter(), 0
    while n < args.reps and (n == 0 or time.perf_counter() - t < min(10.0, left(args) / 10)):
        fn()
        n += 1
    return (time.perf_counter() - t) / n


def report_ivf(
    args, nprobe, recall, scanned, nlist, d, width, secs, bw, peak, bw_label, peak_label
):
    say(
        f"ivf nprobe {nprobe}: recall@{K} {recall:.4f} vs exact, {scanned:.0f} vectors scanned/query"
    )
    for b, sec in secs.items():
        if b == 1:
            bound = (nlist + scanned) * d * width / bw
            say(f"ivf nprobe {nprobe} b=1: {sec * 1e3:.3f} ms/query, {1 / sec:.0f} q/s")
            say(
                f"ratio ivf b=1: {bound / sec:.3g} of memory-bandwidth bound, nprobe {nprobe} "
                f"({bw_label}, centroids + scanned lists {bound * 1e6:.1f} us)"
            )
        else:
            bound = 2 * d * (nlist + scanned) * b / peak
            say(f"ivf nprobe {nprobe} b={b}: {sec * 1e3:.2f} ms/batch, {b / sec:.0f} q/s")
            say(
                f"ratio ivf b={b}: {bound / sec:.3g} of compute bound, nprobe {nprobe} "
                f"({peak_label}, {bound * 1e3:.3f} ms)"
            )


def section_ivf_gpu(be, args, x, queries, exact_ids, bw, peak, bw_label, peak_label):
    t = be.t
    n, d = x.shape
    nlist = args.nlist or 16384
    t0 = time.perf_counter()
    sample = x[t.randperm(n, device=be.dev, generator=be.g)[: min(n, nlist * 64)]]
    cent = sample[t.randperm(len(sample), device=be.dev, generator=be.g)[:nlist]].float()

    def assign(v, c):
        ch = max(1, be.score_bytes // (2 * len(c)))
        return t.cat([t.argmax(v[s : s + ch] @ c.T, 1) for s in range(0, len(v), ch)])

    for _ in range(args.kmeans_iters):
        a = assign(sample, cent.half())
        new = t.zeros_like(cent).index_add_(0, a, sample.float())
        norm = new.norm(dim=1, keepdim=True)
        cent = t.where(norm > 0, new / norm.clamp_min(1e-12), cent)
    del sample
    cent = cent.half()
    a = assign(x, cent)
    order = t.argsort(a)
    xs = x[order]
    counts = t.bincount(a, minlength=nlist)
    offs = t.cumsum(counts, 0) - counts
    lmax = int(counts.max())
    be.sync()
    say(
        f"ivf (torch on the GPU, no FAISS GPU on the image; nlist {nlist}, {args.kmeans_iters} k-means "
        f"iterations on {min(n, nlist * 64)} samples): built in {time.perf_counter() - t0:.1f} s, "
        f"largest list {lmax}, mean {n / nlist:.0f}"
    )
    ar = t.arange(lmax, device=be.dev)

    def search(q, nprobe):
        _, lists = t.topk(q @ cent.T, nprobe, dim=1)
        st, sz = offs[lists], counts[lists]
        qc = max(1, (be.score_bytes // 2) // (nprobe * lmax * d * 2))
        res = []
        for s in range(0, len(q), qc):
            rows = st[s : s + qc, :, None] + ar
            valid = (ar < sz[s : s + qc, :, None]).flatten(1)
            rows = t.where(valid.view_as(rows), rows, 0).flatten(1)
            v = xs[rows.flatten()].view(rows.shape[0], rows.shape[1], d)
            sc = t.bmm(v, q[s : s + qc, :, None]).squeeze(-1).masked_fill_(~valid, float("-inf"))
            _, i = t.topk(sc, K, dim=1)
            res.append(order[rows.gather(1, i)])
        return t.cat(res), sz.sum(1).float().mean()

    for nprobe in sorted({min(v, nlist) for v in args.nprobe}):
        if left(args) < 30:
            say(f"ivf nprobe {nprobe}: skipped, time budget spent")
            continue
        ids, scanned = search(queries, nprobe)
        ids = ids.cpu().numpy()
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, exact_ids, strict=True)])
        secs = {
            b: be.timeit(
                lambda b=b, p=nprobe: search(queries[:b], p), args.reps, min(15.0, left(args) / 10)
            )
            for b in (1, args.batch)
        }
        report_ivf(
            args, nprobe, recall, float(scanned), nlist, d, 2, secs, bw, peak, bw_label, peak_label
        )


def conv_flops(path: str) -> float:
    """FLOPs (2 per multiply-add) of one face through the model's Conv and MatMul nodes."""
    import onnx
    from onnx import numpy_helper, shape_inference

    m = onnx.load(path)
    for i in m.graph.input:
        i.type.tensor_type.shape.dim[0].dim_value = 1
    m = shape_inference.infer_shapes(m)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input)
    }
    inits = {i.name: numpy_helper.to_array(i).shape for i in m.graph.initializer}
    total = 0.0
    for node in m.graph.node:
        if node.op_type == "Conv":
            w = inits.get(node.input[1]) or shapes.get(node.input[1])
            o = shapes[node.output[0]]
            total += 2 * np.prod(o) * np.prod(w[1:])
        elif node.op_type in ("MatMul", "Gemm"):
            a = shapes.get(node.input[0]) or inits.get(node.input[0])
            o = shapes[node.output[0]]
            total += 2 * np.prod(o) * a[-1]
    return float(total)


class TorchOnnx:
    """The embedder's ONNX graph run by torch (its nine op types only), for a GPU
    whose onnxruntime has no CUDA provider. Checked against onnxruntime (CPU)
    on the same faces before it is timed."""

    def __init__(self, path: str, t, dev, dtype):
        import onnx
        from onnx import helper, numpy_helper

        m = onnx.load(path)
        self.t, self.F = t, t.nn.functional
        self.init = {
            i.name: t.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer
        }
        self.w = {
            k: (v.to(dev, dtype) if v.is_floating_point() else v) for k, v in self.init.items()
        }
        self.nodes = [
            (
                n.op_type,
                list(n.input),
                list(n.output),
                {a.name: helper.get_attribute_value(a) for a in n.attribute},
            )
            for n in m.graph.node
        ]
        ops = {n[0] for n in self.nodes}
        known = {
            "Conv",
            "Relu",
            "Add",
            "Pad",
            "AveragePool",
            "MaxPool",
            "GlobalAveragePool",
            "Flatten",
            "MatMul",
        }
        if ops - known:
            raise ValueError(f"ops torch runner does not know: {sorted(ops - known)}")
        self.input = m.graph.input[0].name
        self.output = m.graph.output[0].name

    @staticmethod
    def _pads(p):  # ONNX [b1, b2, ..., e1, e2, ...] -> torch (last dim first)
        h = len(p) // 2
        out = []
        for i in reversed(range(h)):
            out += [int(p[i]), int(p[i + h])]
        return out

    def __call__(self, x):
        t, F, v = self.t, self.F, dict(self.w)
        v[self.input] = x
        for op, ins, outs, at in self.nodes:
            a = v[ins[0]]
            if op == "Conv":
                pads = at.get("pads", [0, 0, 0, 0])
                if any(pads):
                    a = F.pad(a, self._pads(pads))
                r = F.conv2d(
                    a,
                    v[ins[1]],
                    v[ins[2]] if len(ins) > 2 else None,
                    stride=at.get("strides", 1),
                    dilation=at.get("dilations", 1),
                    groups=at.get("group", 1),
                )
            elif op == "Relu":
                r = t.relu(a)
            elif op == "Add":
                r = a + v[ins[1]]
            elif op == "Pad":
                pads = [int(p) for p in self.init[ins[1]].tolist()] if len(ins) > 1 else at["pads"]
                value = float(self.init[ins[2]].item()) if len(ins) > 2 and ins[2] else 0.0
                r = F.pad(a, self._pads(pads), value=value)
            elif op in ("AveragePool", "MaxPool"):
                pads = at.get("pads", [0, 0, 0, 0])
                if any(pads):
                    raise ValueError("padded pooling not supported")
                fn = F.avg_pool2d if op == "AveragePool" else F.max_pool2d
                r = fn(a, at["kernel_shape"], at.get("strides", at["kernel_shape"]))
            elif op == "GlobalAveragePool":
                r = a.mean(dim=(2, 3), keepdim=True)
            elif op == "Flatten":
                r = a.flatten(at.get("axis", 1))
            else:  # MatMul
                r = a @ v[ins[1]]
            v[outs[0]] = r
        return v[self.output]


def section_face_torch(args, be, sess_cpu, name, flops, reason):
    """The embedder on the GPU through torch (fp32 and fp16), checked against onnxruntime."""
    t = be.t
    say(f"face on the GPU through torch instead ({reason})")
    rng = np.random.default_rng(args.seed + 1)
    x = ((rng.integers(0, 256, (4, 3, 150, 150)).astype(np.float32)) - 127.5) / 128.0
    ref = sess_cpu.run(None, {name: x})[0].astype(np.float64)
    for dtype, peak, label in (
        (t.float32, 67e12, "H200 fp32 67 TFLOP/s"),
        (t.float16, 990e12, "H200 990 TFLOP/s fp16"),
    ):
        net = TorchOnnx(args.model, t, be.dev, dtype)
        with t.inference_mode():
            got = net(t.from_numpy(x).to(be.dev, dtype)).double().cpu().numpy()
            rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
            tol = 1e-3 if dtype == t.float32 else 2e-2
            ok = np.isfinite(got).all() and rel <= tol
            say(
                f"face torch {str(dtype).split('.')[-1]} vs onnxruntime on 4 faces: relative error "
                f"{rel:.2e} (tol {tol:.0e}): {'ok' if ok else 'FAILED'}"
            )
            if not ok:
                FAILED.append(f"face torch {dtype}")
            for b in args.face_batches:
                if left(args) < 5:
                    say(f"face b={b}: skipped, time budget spent")
                    continue
                xb = t.from_numpy(np.resize(x, (b, 3, 150, 150))).to(be.dev, dtype)
                sec = be.timeit(
                    lambda net=net, xb=xb: net(xb), args.reps, min(10.0, left(args) / 10)
                )
                bound = flops * b / peak
                say(
                    f"face torch {str(dtype).split('.')[-1]} b={b}: {sec / b * 1e3:.3f} ms/face, "
                    f"{b / sec:.0f} faces/s"
                )
                say(
                    f"ratio face b={b}: {bound / sec:.3g} of compute bound ({label}; torch, "
                    "not onnxruntime)"
                )


def section_face(args, peak_cpu, be=None):
    import onnxruntime as ort

    model = Path(args.model)
    if not model.exists():
        say(f"face: skipped, no model at {model} (carry var/models)")
        FAILED.append("face model missing") if args.cpu else None
        return
    have = ort.get_available_providers()
    want = "CPUExecutionProvider" if args.cpu else "CUDAExecutionProvider"
    flops = conv_flops(str(model))
    if want not in have:
        reason = (
            f"onnxruntime {ort.__version__} here has {have}; the CUDA provider needs the "
            "onnxruntime-gpu wheel, hundreds of MB, over the device tool's 64 MiB carry limit"
        )
        say(f"face on {want}: SKIPPED: {reason}")
        if be is not None and not args.cpu:
            cpu = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
            say(f"face embedder {model.name}: {flops / 1e9:.2f} GFLOP per face")
            section_face_torch(args, be, cpu, cpu.get_inputs()[0].name, flops, "no CUDA provider")
        return
    if args.cpu:
        bound_rate, label = peak_cpu, f"float32 matmul {peak_cpu / 1e9:.1f} GFLOP/s measured here"
    else:
        bound_rate, label = 67e12, "H200 fp32 67 TFLOP/s datasheet (the model is fp32)"
    opts = ort.SessionOptions()
    sess = ort.InferenceSession(str(model), opts, providers=[want])
    name = sess.get_inputs()[0].name
    say(
        f"face embedder {model.name} on {sess.get_providers()[0]}: {flops / 1e9:.2f} GFLOP per face"
    )
    rng = np.random.default_rng(args.seed)
    for b in args.face_batches:
        if left(args) < 5:
            say(f"face b={b}: skipped, time budget spent")
            continue
        chips = rng.integers(0, 256, (b, 3, 150, 150)).astype(np.float32)
        x = (chips - 127.5) / 128.0
        sec = timeit_cpu(lambda x=x: sess.run(None, {name: x}), args)
        bound = flops * b / bound_rate
        say(f"face b={b}: {sec / b * 1e3:.2f} ms/face, {b / sec:.1f} faces/s")
        say(f"ratio face b={b}: {bound / sec:.3g} of compute bound ({label})")


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--cpu", action="store_true", help="numpy / FAISS CPU / CPU provider, small sizes"
    )
    p.add_argument("--templates", type=int, default=None, help="gallery size (20M GPU, 20k CPU)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--time-budget", type=float, default=None, help="seconds (GPU 420, CPU 50)")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--check", type=int, default=8, help="queries checked against the reference")
    p.add_argument("--centers", type=int, default=None, help="mixture components of the gallery")
    p.add_argument("--nlist", type=int, default=0)
    p.add_argument("--nprobe", type=lambda s: [int(v) for v in s.split(",")], default=None)
    p.add_argument("--kmeans-iters", type=int, default=8)
    p.add_argument("--face-batches", type=lambda s: [int(v) for v in s.split(",")], default=[1, 64])
    p.add_argument(
        "--model",
        default=os.path.join(
            os.environ.get("TANU_MODEL_DIR", str(ROOT / "var/models")),
            "dlib_face_recognition_resnet_model_v1.onnx",
        ),
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--torch-device", default="cuda", help="cpu: dry run of the GPU (torch) path")
    p.add_argument("--skip", default="", help="comma list of sections to skip: flat,ivf,face")
    args = p.parse_args()
    args.templates = args.templates or (20_000 if args.cpu else 20_000_000)
    args.time_budget = args.time_budget or (50.0 if args.cpu else 420.0)
    args.centers = args.centers or max(8, args.templates // 5000)
    args.nprobe = args.nprobe or ([16, 64] if args.cpu else [16, 64, 256])
    skip = set(filter(None, args.skip.split(",")))

    if not args.cpu:
        try:
            import torch

            if args.torch_device == "cuda" and not torch.cuda.is_available():
                raise RuntimeError("torch sees no CUDA device")
        except Exception as e:  # noqa: BLE001
            say(f"no GPU path: {e}; run with --cpu")
            return 2
    be = Cpu(args) if args.cpu else Gpu(args)
    import platform

    dev = platform.processor() or platform.machine()
    if not args.cpu and be.cuda:
        dev = be.t.cuda.get_device_name(0)
    say(
        f"gpu_bench on {dev} ({os.cpu_count()} cpus), {args.templates} x {args.dim} fp16, "
        f"batch {args.batch}, budget {args.time_budget:.0f} s"
    )
    bw, peak, label = be.bounds()
    say(f"bounds {label}")
    if args.cpu:
        bw_b, peak_b = bw, peak
        bw_l, peak_l = (
            f"numpy copy {bw / 1e9:.1f} GB/s measured",
            f"float32 matmul {peak / 1e9:.1f} GFLOP/s measured",
        )
    else:
        bw_b, peak_b = 4.8e12, 990e12
        bw_l, peak_l = "H200 4.8 TB/s", "H200 990 TFLOP/s fp16"
        say(f"measured over datasheet: copy {bw / 4.8e12:.2f}, fp16 matmul {peak / 990e12:.2f}")
    t = time.perf_counter()
    x = be.gallery(args.templates, args.dim, args.centers, 0.8)
    queries = be.queries(x, args.batch, 0.3)
    say(
        f"gallery generated on the {'host' if args.cpu else 'device'} in {time.perf_counter() - t:.1f} s "
        f"({args.centers} mixture components, {x.shape[0] * x.shape[1] * 2 / 1e9:.2f} GB fp16)"
    )

    def guarded(name, fn):
        """One section failing (an out-of-memory, say) leaves the others' figures."""
        try:
            fn()
        except Exception:  # noqa: BLE001
            traceback.print_exc(file=sys.stdout)
            say(f"{name}: FAILED (traceback above)")
            FAILED.append(name)

    if "flat" not in skip:
        guarded("flat", lambda: section_flat(be, args, x, queries, bw_b, peak_b, bw_l, peak_l))
    if "ivf" not in skip and left(args) > 15:
        ivf = section_ivf_cpu if args.cpu else (lambda *a: section_ivf_gpu(be, *a))
        guarded(
            "ivf",
            lambda: ivf(
                args, x, queries, be.ids(be.flat(x, queries, K)[1]), bw_b, peak_b, bw_l, peak_l
            ),
        )
    x = queries = None  # frees the gallery before the face section
    if not args.cpu:
        be.t.cuda.empty_cache() if be.cuda else None
    if "face" not in skip:
        guarded("face", lambda: section_face(args, peak if args.cpu else 0.0, be))
    say(
        f"gpu_bench done in {time.perf_counter() - T0:.1f} s"
        + (f"; FAILED: {FAILED}" if FAILED else "")
    )
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
