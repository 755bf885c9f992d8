"""Real photos that ship in registry packages, and augmentations of them."""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image


def originals() -> dict[str, np.ndarray]:
    import matplotlib
    import skimage.data

    hopper = Image.open(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"))
    return {
        "astronaut": skimage.data.astronaut(),
        "cameraman": np.stack([skimage.data.camera()] * 3, axis=-1),
        "hopper": np.asarray(hopper.convert("RGB")),
    }


def encode(a: np.ndarray, fmt: str = "JPEG", quality: int = 92, **kw) -> bytes:
    buf = io.BytesIO()
    im = a if isinstance(a, Image.Image) else Image.fromarray(a)
    im.save(buf, fmt, **({"quality": quality} if fmt == "JPEG" else {}), **kw)
    return buf.getvalue()


def variants(a: np.ndarray) -> dict[str, bytes]:
    """The augmentations a real capture goes through: mirror, resize and heavy
    JPEG re-compression, a small rotation, and exposure changes."""
    im = Image.fromarray(a)
    half = im.resize((a.shape[1] // 2, a.shape[0] // 2), Image.BILINEAR)
    return {
        "original": encode(a),
        "flip": encode(np.ascontiguousarray(a[:, ::-1])),
        "half_q30": encode(np.asarray(half), quality=30),
        "rotate12": encode(np.asarray(im.rotate(12, resample=Image.BILINEAR))),
        "darker": encode((a * 0.5).astype(np.uint8)),
        "brighter": encode(np.clip(a.astype(np.int32) * 1.4 + 20, 0, 255).astype(np.uint8)),
        "png": encode(a, "PNG"),
    }


def empty_png(width: int = 0, height: int = 0) -> bytes:
    """A well-formed PNG header declaring a 0-pixel image (Pillow cannot write one)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def blank_png(width: int, height: int, rgb: tuple[int, int, int] = (255, 255, 255)) -> bytes:
    """A valid PNG of a one-colour RGB image, written row by row: a
    decompression bomb (an 8000x8000 image is about 190 KB) made without
    ever holding its pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
