"""Face quality from a detection: size, sharpness, a pose proxy from the
landmarks, and exposure. Cheap measures with fixed, documented meanings, so
that enrolment can say exactly which one failed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

SHARPNESS_SIDE = 96  # the crop is resampled to this size so sharpness compares across face sizes


@dataclass(frozen=True)
class Quality:
    """The quality measures of one detected face.

    - ``face_size_px``: shorter side of the face box, in the original
      image's pixels (also when the detector worked on it reduced);
    - ``sharpness``: variance of the 4-neighbour Laplacian of the grey face
      crop resampled to ``SHARPNESS_SIDE`` x ``SHARPNESS_SIDE``;
    - ``pose``: 0 frontal .. 1 profile, the nose's offset from the eye
      midline over half the eye distance;
    - ``exposure``: mean luminance of the face crop, 0..1.
    """

    face_size_px: float
    sharpness: float
    pose: float
    exposure: float


def assess(
    image: np.ndarray,
    box: np.ndarray,
    landmarks: np.ndarray,
    scale: tuple[float, float] = (1.0, 1.0),
) -> Quality:
    """The quality of the face at ``box`` with its 5 ``landmarks``, both in
    the original image's pixels, where ``image`` is that image reduced by
    ``scale`` (sx, sy); an empty crop (a box outside the image) measures as
    unusable. Sharpness and exposure are measured on ``image``."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    size = max(0.0, min(x2 - x1, y2 - y1))
    sx, sy = scale
    x1, x2, y1, y2 = x1 * sx, x2 * sx, y1 * sy, y2 * sy
    cx1, cy1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    cx2, cy2 = min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2)))
    crop = image[cy1:cy2, cx1:cx2]
    if crop.size == 0:
        return Quality(size, 0.0, 1.0, 0.0)
    grey = np.asarray(
        Image.fromarray(crop).convert("L").resize((SHARPNESS_SIDE, SHARPNESS_SIDE), Image.BILINEAR),
        dtype=np.float32,
    )
    lap = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1]
    left_eye, right_eye, nose = landmarks[0], landmarks[1], landmarks[2]
    half_eyes = max(float(np.linalg.norm(right_eye - left_eye)) / 2, 1e-6)
    mid = (left_eye + right_eye) / 2
    axis = (right_eye - left_eye) / (2 * half_eyes)
    offset = abs(float(np.dot(nose - mid, axis)))
    return Quality(
        face_size_px=size,
        sharpness=float(lap.var()),
        pose=min(1.0, offset / half_eyes),
        exposure=float(grey.mean() / 255.0),
    )


def enrolment_failures(q, limits) -> list[str]:
    """Which enrolment quality measures ``q`` (any object with face_size_px,
    sharpness, pose, exposure) fails under ``limits`` (a GatewayConfig),
    each named with its value and bound. Empty when the face passes."""
    checks = [
        (q.face_size_px >= limits.enrol_min_face_px,
         f"face size {q.face_size_px:.0f}px is below the minimum {limits.enrol_min_face_px:.0f}px"),
        (q.sharpness >= limits.enrol_min_sharpness,
         f"sharpness {q.sharpness:.1f} is below the minimum {limits.enrol_min_sharpness:.1f} (blurred?)"),
        (q.pose <= limits.enrol_max_pose,
         f"pose {q.pose:.2f} is above the maximum {limits.enrol_max_pose:.2f} (face not frontal)"),
        (q.exposure >= limits.enrol_min_exposure,
         f"exposure {q.exposure:.2f} is below the minimum {limits.enrol_min_exposure:.2f} (too dark)"),
        (q.exposure <= limits.enrol_max_exposure,
         f"exposure {q.exposure:.2f} is above the maximum {limits.enrol_max_exposure:.2f} (too bright)"),
    ]  # fmt: skip
    return [msg for ok, msg in checks if not ok]
