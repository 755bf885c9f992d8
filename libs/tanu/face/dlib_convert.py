"""dlib's face recognition ResNet v1 (``dlib_face_recognition_resnet_model_v1.dat``)
converted to ONNX with numpy and the ``onnx`` package only: dlib itself is
neither needed nor used.

The ``.dat`` file is dlib's own serialisation of the ``anet_type`` network from
dlib's ``dnn_face_recognition_ex.cpp``::

    loss_metric<fc_no_bias<128, avg_pool_everything<
        alevel0<alevel1<alevel2<alevel3<alevel4<
        max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>
    >>>>>>>>

Layout of the stream, as found by reading the file (every ``add_layer``
serialises its version, then its sub-network, then its own layer, so the
*versions* come outermost first while the *layers* come in computation order):

* ``int 1`` + ``"loss_metric_2"`` + margin + distance threshold (loss layer);
* one version int per wrapped layer, output side first: 2 = ``add_layer``,
  1 = ``tag``/``skip`` layer (which store nothing else), 3 = the innermost
  ``add_layer`` that also owns the input layer;
* ``input_rgb_image_sized``: mean R, G, B and rows, cols;
* then, input to output, each layer's fields followed by its ``add_layer``
  bookkeeping (3 bools as ASCII '0'/'1' and 3 empty tensors; the innermost one
  adds an int sample expansion factor).

Scalars: an int is a header byte (0x80 = negative, low nibble = byte count)
plus little-endian bytes; a float is int mantissa · 2^int exponent; a string is
an int length plus bytes; a tensor is int version 2, four int dims, then raw
little-endian float32 data; an alias tensor (a view into ``params``) is int
version 1 and four int dims.

The graph takes the *already normalised* chip, (RGB − mean_rgb) / 256 in NCHW
with channels R, G, B (what ``input_rgb_image_sized`` computes), because
normalisation is configuration kept outside the model. Output: the 128-d
embedding, unnormalised, exactly as dlib returns it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# IR 8 is the oldest IR that carries opset 17: pinned (rather than the onnx
# package's newest) so that the bytes, and the checksum pinned in models.py,
# stay the same across onnx upgrades and older runtimes can still load it.
IR_VERSION = 8


@dataclass(frozen=True)
class DlibModelInfo:
    """What the caller needs to feed the converted model."""

    mean_rgb: tuple[float, float, float]  # read from input_rgb_image_sized
    input_size: int  # chip side in pixels (150)
    output_dim: int  # embedding length (128)


class _Reader:
    """Sequential reader for dlib's serialisation primitives."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"dlib model truncated at byte {self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        header = self._take(1)[0]
        value = int.from_bytes(self._take(header & 0x0F), "little")
        return -value if header & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        return math.ldexp(mantissa, self.int())

    def str(self) -> str:
        return self._take(self.int()).decode("ascii")

    def bool(self) -> bool:
        char = self._take(1)
        if char not in (b"0", b"1"):
            raise ValueError(f"expected a '0'/'1' flag at byte {self.pos - 1}, got {char!r}")
        return char == b"1"

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise ValueError(f"unsupported tensor version {version} at byte {self.pos}")
        dims = [self.int() for _ in range(4)]
        count = int(np.prod(dims))
        data = np.frombuffer(self._take(4 * count), dtype="<f4")
        return data.astype(np.float32).reshape(dims)

    def alias(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise ValueError(f"unsupported alias_tensor version {version} at byte {self.pos}")
        return tuple(self.int() for _ in range(4))


def _read_layer(r: _Reader) -> tuple:
    """One layer's own fields, as a tuple (kind, ...). Parameters are split out
    of dlib's flat ``params`` tensor using the alias-tensor shapes stored after
    it (weights first, then biases / gamma then beta)."""
    name = r.str()
    if name == "con_4":
        params = r.tensor().ravel()
        filters, rows, cols, stride_y, stride_x, pad_y, pad_x = (r.int() for _ in range(7))
        w_shape, b_shape = r.alias(), r.alias()
        for _ in range(4):  # learning-rate / weight-decay multipliers: training only
            r.float()
        n_w = int(np.prod(w_shape))
        if w_shape[0] != filters or w_shape[2:] != (rows, cols) or params.size != n_w + filters:
            raise ValueError(f"inconsistent con_4 shapes {w_shape} / {params.size}")
        if b_shape[1] != filters:
            raise ValueError(f"con_4 without one bias per filter: {b_shape}")
        return (
            "conv",
            params[:n_w].reshape(w_shape),
            params[n_w:],
            (stride_y, stride_x),
            (pad_y, pad_x),
        )
    if name == "affine_":
        params = r.tensor().ravel()
        g_shape, b_shape = r.alias(), r.alias()
        mode = r.int()
        n = int(np.prod(g_shape))
        # mode 0 = CONV_MODE: one gamma/beta per channel, the only mode foldable into a conv.
        if mode != 0 or g_shape != b_shape or params.size != 2 * n or n != g_shape[1]:
            raise ValueError(f"unsupported affine_ layer (mode {mode}, shape {g_shape})")
        return ("affine", params[:n], params[n:])
    if name in ("relu_", "add_prev_"):
        return (name.rstrip("_"),)
    if name in ("max_pool_2", "avg_pool_2"):
        rows, cols, stride_y, stride_x, pad_y, pad_x = (r.int() for _ in range(6))
        return (name[:3] + "pool", (rows, cols), (stride_y, stride_x), (pad_y, pad_x))
    if name == "fc_2":
        n_out, n_in = r.int(), r.int()
        params = r.tensor().ravel()
        w_shape, _b_shape, bias_mode = r.alias(), r.alias(), r.int()
        for _ in range(4):  # learning-rate / weight-decay multipliers
            r.float()
        # bias_mode 1 = FC_NO_BIAS: the params tensor holds the weights only.
        if bias_mode != 1 or w_shape[:2] != (n_in, n_out) or params.size != n_in * n_out:
            raise ValueError(f"unsupported fc_2 layer (bias mode {bias_mode}, shape {w_shape})")
        return ("fc", params.reshape(n_in, n_out))  # dlib computes x · W with W [in, out]
    raise ValueError(f"unsupported dlib layer {name!r} at byte {r.pos}")


def _read_network(r: _Reader, out: list, info: dict) -> None:
    """Recursively reads one wrapped sub-network, appending layers to ``out``
    in computation order (input first). Tags and skips become ("marker",)."""
    version = r.int()
    if version == 1:  # add_tag_layer / add_skip_layer: only the sub-network
        _read_network(r, out, info)
        out.append(("marker",))
        return
    if version == 2:
        _read_network(r, out, info)
    elif version == 3:  # innermost add_layer: holds the input layer too
        if r.str() != "input_rgb_image_sized":
            raise ValueError("the network does not start with input_rgb_image_sized")
        info["mean_rgb"] = (r.float(), r.float(), r.float())
        info["size"] = (r.int(), r.int())
    else:
        raise ValueError(f"unknown add_layer version {version} at byte {r.pos}")
    out.append(_read_layer(r))
    for _ in range(3):  # setup / staleness flags: training state only
        r.bool()
    for _ in range(3):  # x_grad, cached_output, params_grad (or grad_final): empty
        r.tensor()
    if version == 3:
        r.int()  # sample expansion factor


def parse(dat_path: str | Path) -> tuple[list[tuple], dict]:
    """The layers of a dlib ``loss_metric`` network in computation order, plus
    the input parameters (``mean_rgb``, ``size``)."""
    r = _Reader(Path(dat_path).read_bytes())
    if r.int() != 1 or not r.str().startswith("loss_metric"):
        raise ValueError(f"{dat_path} is not a dlib loss_metric network")
    r.float(), r.float()  # margin and distance threshold: training / matching only
    layers: list[tuple] = []
    info: dict = {}
    _read_network(r, layers, info)
    if r.pos != len(r.data):
        raise ValueError(f"{len(r.data) - r.pos} unread bytes after the network")
    return layers, info


class _Graph:
    """Accumulates ONNX nodes/initialisers with deterministic, counter-based
    names, and tracks each tensor's (channels, rows, cols): static shapes are
    needed to emit dlib's size-mismatched residual additions as Pads."""

    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def const(self, kind: str, array: np.ndarray) -> str:
        name = self.name(kind)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        output = output or self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{output}_op", **attrs))
        return output

    def pad_to(self, x: str, shape: tuple, target: tuple) -> str:
        """Zero-pads at the end (high channels, bottom rows, right columns):
        dlib's ``tt::add`` of differently sized tensors reads missing cells
        of the smaller operand as 0 from the top-left corner."""
        if shape == target:
            return x
        ends = [t - s for s, t in zip(shape, target, strict=True)]
        pads = self.const("pads", np.array([0, 0, 0, 0, 0, *ends], dtype=np.int64))
        return self.node("Pad", [x, pads], mode="constant")


def _out_shape(shape: tuple, channels: int, window, strides, pads) -> tuple:
    """(channels, rows, cols) after a dlib conv/pool: 1 + (in + 2·pad − window)
    // stride per axis, the floor rule that ONNX's default ceil_mode=0 also
    uses, so plain symmetric pads reproduce dlib's sizes exactly."""
    return (
        channels,
        *(
            1 + (s + 2 * p - k) // st
            for s, k, st, p in zip(shape[1:], window, strides, pads, strict=True)
        ),
    )


def _build(layers: list[tuple], size: int) -> tuple[onnx.ModelProto, int]:
    """The ONNX model for ``layers`` and its embedding length. Shapes are
    tracked statically because dlib's residual adds mix sizes: with a 150 px
    input the blocks run at 35, 17, 8, then 3 (conv) vs 4 (pooled skip) and
    1 vs 2, so the last feature map is 2x2 with zero-padded cells."""
    g = _Graph()
    x, shape = "input", (3, size, size)
    tag1 = tag2 = None
    i = 0
    while i < len(layers):
        layer = layers[i]
        kind = layer[0]
        if kind == "conv":
            _, w, b, strides, pads = layer
            if i + 1 >= len(layers) or layers[i + 1][0] != "affine" or w.shape[1] != shape[0]:
                raise ValueError(
                    f"layer {i}: con_4 is not followed by affine_ or has wrong input channels"
                )
            # affine_ is inference batch-norm, gamma·y + beta per channel; fold
            # it into the conv (in float64, then rounded once to float32).
            gamma, beta = (a.astype(np.float64) for a in layers[i + 1][1:])
            w2 = (w.astype(np.float64) * gamma[:, None, None, None]).astype(np.float32)
            b2 = (b.astype(np.float64) * gamma + beta).astype(np.float32)
            x = g.node(
                "Conv",
                [x, g.const("w", w2), g.const("b", b2)],
                kernel_shape=list(w.shape[2:]),
                strides=list(strides),
                pads=[pads[0], pads[1], pads[0], pads[1]],
            )
            shape = _out_shape(shape, w.shape[0], w.shape[2:], strides, pads)
            i += 2
            continue
        if kind == "affine":
            raise ValueError(f"layer {i}: affine_ not preceded by con_4")
        if kind == "relu":
            x = g.node("Relu", [x])
        elif kind in ("maxpool", "avgpool"):
            _, window, strides, pads = layer
            if window == (0, 0):  # avg_pool_everything: window = whole input
                if kind != "avgpool":
                    raise ValueError("global max pooling is not supported")
                x, shape = g.node("GlobalAveragePool", [x]), (shape[0], 1, 1)
            else:
                if pads != (0, 0) and kind == "avgpool":
                    # dlib's padded average excludes pad cells; never needed by this model.
                    raise ValueError("padded average pooling is not supported")
                x = g.node(
                    "MaxPool" if kind == "maxpool" else "AveragePool",
                    [x],
                    kernel_shape=list(window),
                    strides=list(strides),
                    pads=[pads[0], pads[1], pads[0], pads[1]],
                )
                shape = _out_shape(shape, shape[0], window, strides, pads)
        elif kind == "marker":
            # dlib does not serialise tag/skip ids (they are template
            # arguments), so they are recovered from anet_type's pattern:
            # a lone marker is tag1 (block input); two in a row are tag2
            # (block output) then skip1 (jump back to tag1) of residual_down.
            if i + 1 < len(layers) and layers[i + 1][0] == "marker":
                if tag1 is None or tag2 is not None:
                    raise ValueError(f"layer {i}: tag2/skip1 pair without an open tag1")
                tag2, (x, shape) = (x, shape), tag1
                i += 2
                continue
            tag1 = (x, shape)
        elif kind == "add_prev":
            # residual: add_prev1 adds the block input (tag1); residual_down:
            # add_prev2 adds tag2 (the block output) to the pooled input.
            other = tag2 or tag1
            if other is None:
                raise ValueError(f"layer {i}: add_prev_ without a tag")
            target = tuple(max(a, b) for a, b in zip(shape, other[1], strict=True))
            x = g.node("Add", [g.pad_to(x, shape, target), g.pad_to(other[0], other[1], target)])
            shape, tag1, tag2 = target, None, None
        elif kind == "fc":
            w = layer[1]
            if shape != (w.shape[0], 1, 1):
                raise ValueError(f"fc_2 expects {w.shape[0]} inputs, got {shape}")
            flat = g.node("Flatten", [x], axis=1)
            x = g.node("MatMul", [flat, g.const("fc_w", w)], output="embedding")
            shape = (w.shape[1],)
        else:
            raise ValueError(f"unhandled layer kind {kind!r}")
        i += 1
    if x != "embedding":
        raise ValueError("the network does not end with fc_2")
    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", shape[0]])],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="tanu.face.dlib_convert",
        producer_version="1",
        doc_string="dlib face recognition ResNet v1; input (RGB - mean_rgb)/256, NCHW",
    )
    return model, shape[0]


def convert(dat_path: str | Path, onnx_path: str | Path) -> DlibModelInfo:
    """Converts dlib's face recognition ResNet at ``dat_path`` into an ONNX
    model written to ``onnx_path`` (input "input" [N,3,S,S] float32, already
    normalised as (RGB - mean_rgb)/256; output "embedding" [N,128]). The output
    is byte-for-byte deterministic for a given input file and onnx version."""
    layers, info = parse(dat_path)
    rows, cols = info["size"]
    if rows != cols:
        raise ValueError(f"non-square input {rows}x{cols} is not supported")
    model, dim = _build(layers, rows)
    onnx.checker.check_model(model, full_check=True)  # also infers and checks shapes
    Path(onnx_path).write_bytes(model.SerializeToString(deterministic=True))
    return DlibModelInfo(mean_rgb=tuple(info["mean_rgb"]), input_size=rows, output_dim=dim)
