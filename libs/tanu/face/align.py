"""5-point similarity alignment of a detected face to a model's chip
template: the eye centres, nose tip and mouth corners that MTCNN finds are
mapped by the least-squares similarity transform (rotation, uniform scale,
translation; Umeyama 1991) onto the template's points, and the chip is
resampled bilinearly."""

from __future__ import annotations

import numpy as np
from PIL import Image

# dlib's mean face shape (points 17-67 of the 68-point scheme, normalised to a
# unit square) gives the 5 points MTCNN reports: eye centres (mean of points
# 36-41 and 42-47), nose tip (30) and mouth corners (48, 54). dlib's
# get_face_chip_details places that square in a 150x150 chip with padding
# 0.25: v_chip = (v + 0.25) / 1.5 * 150.
_DLIB_UNIT = np.array(
    [
        [0.2254918, 0.2159903],
        [0.7547613, 0.2159903],
        [0.490127, 0.515625],
        [0.254149, 0.780233],
        [0.726104, 0.780233],
    ],
    dtype=np.float64,
)
DLIB_150 = (_DLIB_UNIT + 0.25) / 1.5 * 150.0

# The ArcFace (insightface) 112x112 template.
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

TEMPLATES = {"dlib-150": (DLIB_150, 150), "arcface-112": (ARCFACE_112, 112)}


def template(name: str, size: int) -> np.ndarray:
    """The template's points scaled to a ``size`` x ``size`` chip."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown alignment template {name!r}; known: {sorted(TEMPLATES)}")
    points, native = TEMPLATES[name]
    return points * (size / native)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform that best maps ``src`` points onto ``dst``."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1
    rot = u @ fix @ vt
    var = (s**2).sum() / len(src)
    scale = (sig * np.diag(fix)).sum() / var if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - scale * rot @ ms
    return m


def warp(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` chip that ``m`` (image → chip) cuts from ``image``."""
    a = np.vstack([m, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(a)[:2].reshape(-1)  # Pillow maps output pixels back to input pixels
    chip = Image.fromarray(image).transform(
        (size, size), Image.AFFINE, data=tuple(inv), resample=Image.BILINEAR, fillcolor=(0, 0, 0)
    )
    return np.asarray(chip, dtype=np.uint8)


def align(image: np.ndarray, landmarks: np.ndarray, template_name: str, size: int) -> np.ndarray:
    """Aligned chip of one face from its 5 landmarks (x, y in image pixels)."""
    return warp(image, similarity(landmarks, template(template_name, size)), size)
