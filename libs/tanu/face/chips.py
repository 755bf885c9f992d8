"""Aligned face chips: the one hand-over between detection and embedding.

The detector decodes the photo once, finds the faces and cuts each face's
chip here: the ``side`` x ``side`` x 3 uint8 RGB array that the recogniser
takes, aligned to its template by the 5 landmarks. The embedder receives
those bytes (``side * side * 3`` of them, row-major) and runs the model; it
never decodes an image.

A chip is cut with ``PIXELS_PER_CHIP_PIXEL`` image pixels per chip pixel at
most: where the decoded image is finer than that, the face's region alone
is resampled down first (averaging), so that the bilinear warp does not
alias; where it is coarser, the caller decodes the image again at
``resolution`` (the detector does, once per request)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from . import align
from .images import Decoded

PIXELS_PER_CHIP_PIXEL = 2.0  # the resolution kept for a face
MIN_SIDE, MAX_SIDE = 16, 1024  # the chip sides a deployment may configure
_MARGIN = 2  # image pixels kept around the chip's region (the bilinear taps)


def chip_bytes(side: int) -> int:
    """The length of a ``side`` x ``side`` RGB uint8 chip's bytes."""
    return side * side * 3


def _scale(m: np.ndarray) -> float:
    """Chip pixels per image pixel of the similarity ``m``."""
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def resolution(landmarks: Sequence[np.ndarray], template: np.ndarray) -> float:
    """The factor (<= 1) an image may be reduced by and still give every
    face (its 5 ``landmarks``, original pixels) ``PIXELS_PER_CHIP_PIXEL``
    per chip pixel."""
    finest = 0.0  # the most chip pixels per original pixel over the faces
    for pts in landmarks:
        finest = max(finest, _scale(align.similarity(pts, template)))
    if not finest or not np.isfinite(finest):
        return 1.0
    return float(min(1.0, max(PIXELS_PER_CHIP_PIXEL * finest, 1e-6)))


def cut(image: Decoded, landmarks: np.ndarray, template: np.ndarray, side: int) -> np.ndarray:
    """The (side, side, 3) uint8 chip of the face whose 5 ``landmarks`` are
    given in the original image's pixels, from ``image`` (decoded at any
    scale), aligned to ``template`` (its points in chip pixels)."""
    pts = np.asarray(landmarks, dtype=np.float64)
    m = align.similarity(pts, template)  # original pixels -> chip pixels
    sx, sy = image.scale
    want = min(1.0, PIXELS_PER_CHIP_PIXEL * _scale(m))  # image px per original px needed
    # The chip's region in the decoded image's pixels.
    inv = np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))
    corners = np.array([[0, 0, 1], [side, 0, 1], [0, side, 1], [side, side, 1]], np.float64)
    orig = corners @ inv[:2].T
    xs, ys = orig[:, 0] * sx, orig[:, 1] * sy
    h, w = image.pixels.shape[:2]
    x0, y0 = max(0, math.floor(xs.min()) - _MARGIN), max(0, math.floor(ys.min()) - _MARGIN)
    x1, y1 = min(w, math.ceil(xs.max()) + _MARGIN), min(h, math.ceil(ys.max()) + _MARGIN)
    if x1 <= x0 or y1 <= y0:  # the face lies outside the image
        return np.zeros((side, side, 3), np.uint8)
    crop = image.pixels[y0:y1, x0:x1]
    kx = ky = 1.0
    if min(sx, sy) > want * 1.01:  # finer than the chip needs: average down first
        cw, ch = max(1, math.ceil((x1 - x0) * want / sx)), max(1, math.ceil((y1 - y0) * want / sy))
        kx, ky = cw / (x1 - x0), ch / (y1 - y0)
        crop = np.asarray(
            Image.fromarray(np.ascontiguousarray(crop)).resize(
                (cw, ch), Image.BILINEAR, reducing_gap=3.0
            )
        )
    # Original pixels -> crop pixels: ((x * sx - x0) * kx, (y * sy - y0) * ky).
    to_crop = np.array([[sx * kx, 0.0, -x0 * kx], [0.0, sy * ky, -y0 * ky], [0.0, 0.0, 1.0]])
    chip_from_crop = np.vstack([m, [0.0, 0.0, 1.0]]) @ np.linalg.inv(to_crop)
    return align.warp(np.ascontiguousarray(crop), chip_from_crop[:2], side)


def from_bytes(pixels: bytes, side: int) -> np.ndarray:
    """A chip's bytes as a (side, side, 3) uint8 view (no copy); the caller
    has checked the length (``chip_bytes``)."""
    return np.frombuffer(pixels, dtype=np.uint8).reshape(side, side, 3)
