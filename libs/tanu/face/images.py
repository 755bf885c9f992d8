"""Decoding untrusted image bytes into RGB arrays, refusing what must be
refused before it costs memory: not an image, truncated files, empty images,
and decompression bombs (checked from the header, before any pixel is
decoded). EXIF orientation is applied; greyscale, palette, RGBA, CMYK and
16-bit images become 8-bit RGB.

An image can be decoded reduced (``decode(..., reduce=r)``): a JPEG is then
decoded at 1/2, 1/4 or 1/8 scale by the JPEG decoder itself (Pillow's draft
mode) and whatever is still too large is resampled down at once, before
colour conversion, so the full-size pixels live only while the decoder
holds them. ``Decoded`` keeps the original (upright) size, so coordinates
found on the reduced pixels are given back in the original's."""

from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from tanu.core import errors

FORMATS = ("JPEG", "PNG")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def quiet_decoder_warnings() -> None:
    """Process-wide: Pillow's warnings about untrusted photos (corrupt EXIF,
    its own decompression-bomb warning) say nothing our checks and errors do
    not, and would only fill the logs. Called by the services that decode
    (``warnings.catch_warnings`` is not thread-safe, and decoding runs in
    worker threads)."""
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


def _claimed_format(data: bytes) -> str | None:
    """The format the bytes' signature claims (PNG or JPEG), or None."""
    if data.startswith(PNG_SIGNATURE):
        return "PNG"
    if data.startswith(JPEG_SIGNATURE):
        return "JPEG"
    return None


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG IHDR or a JPEG SOF header, without decoding
    anything; None when the header cannot be read that way."""
    if data.startswith(PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data.startswith(JPEG_SIGNATURE):
        i = 2
        while i + 9 <= len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker in _JPEG_SOF:
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return w, h
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def _check_size(w: int, h: int, max_pixels: int) -> None:
    if w == 0 or h == 0:
        raise errors.InvalidArgument(f"image is {w}x{h} pixels: it has no pixels")
    if w * h > max_pixels:
        raise errors.InvalidArgument(
            f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}; it was not decoded"
        )


# EXIF orientation → the transpose that makes the image upright (as ImageOps.exif_transpose).
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class Decoded:
    """Decoded pixels (possibly reduced) and the original image's upright size."""

    pixels: np.ndarray  # HxWx3 uint8 RGB, upright
    width: int  # the original's upright width, in pixels
    height: int  # the original's upright height

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): decoded pixels per original pixel along x and y (1 when not reduced)."""
        h, w = self.pixels.shape[:2]
        return w / self.width, h / self.height


def measure(data: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the header, checked against ``max_pixels`` before
    anything is decoded; InvalidArgument for what cannot be decoded. What a
    request will cost is known from this before it is admitted."""
    if not data:
        raise errors.InvalidArgument("image is empty (0 bytes)")
    size = header_size(data)
    kind = _claimed_format(data)
    if size is None:
        if kind:
            raise errors.InvalidArgument(
                f"{kind} header is truncated or corrupt: no image size could be read"
            )
        raise errors.InvalidArgument("bytes are not a JPEG or PNG image")
    _check_size(*size, max_pixels)
    return size


def decode(data: bytes, max_pixels: int) -> np.ndarray:
    """An HxWx3 uint8 RGB array, upright per EXIF, or InvalidArgument naming
    what is wrong with the bytes."""
    return decode_reduced(data, max_pixels).pixels


def decode_reduced(data: bytes, max_pixels: int, reduce: float = 1.0) -> Decoded:
    """The image decoded at ``reduce`` (0 < reduce <= 1) times its size in
    each dimension (rounded up), upright per EXIF, with its original size;
    or InvalidArgument naming what is wrong with the bytes."""
    if not 0.0 < reduce <= 1.0:
        raise ValueError(f"reduce must be in (0, 1], got {reduce}")
    measure(data, max_pixels)
    kind = _claimed_format(data)
    try:
        im = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:
        raise errors.InvalidArgument(
            f"image has more than {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels, beyond what the decoder "
            "accepts at all; it was not decoded"
        ) from None
    except UnidentifiedImageError:
        if kind:
            raise errors.InvalidArgument(
                f"{kind} image is truncated or corrupt: it cannot be read"
            ) from None
        raise errors.InvalidArgument("bytes are not a JPEG or PNG image") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on corrupt headers
        raise errors.InvalidArgument(f"image header is corrupt: {exc}") from None
    _check_size(*im.size, max_pixels)
    full = im.size
    target = (max(1, math.ceil(full[0] * reduce)), max(1, math.ceil(full[1] * reduce)))
    try:
        if target != full and im.format == "JPEG":
            im.draft(None, target)  # the decoder itself scales by 1/2, 1/4 or 1/8
        im.load()
    except OSError as exc:
        raise errors.InvalidArgument(
            f"image data is truncated or corrupt ({im.format}): {exc}"
        ) from None
    try:
        orientation = im.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the image
        orientation = None
    if target != im.size:
        im = _resample(im, target)
    if orientation in _ORIENT:
        im = im.transpose(_ORIENT[orientation])
        if orientation in (5, 6, 7, 8):
            full = full[::-1]
    return Decoded(to_rgb(im), width=full[0], height=full[1])


def _resample(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``im`` resampled down to ``size``, averaging (Pillow's bilinear widens
    its kernel when shrinking); modes that cannot be resampled as they are
    become RGB(A) first."""
    if im.mode.startswith("I;16"):
        im = im.convert("I")  # keeps the 16-bit range; to_rgb scales it
    elif im.mode not in ("L", "RGB", "RGBA", "CMYK", "I", "F"):
        im = im.convert("RGBA" if im.mode in ("LA", "PA") or "transparency" in im.info else "RGB")
    return im.resize(size, Image.BILINEAR, reducing_gap=3.0)


def to_rgb(im: Image.Image) -> np.ndarray:
    """8-bit RGB from any mode (alpha is composited on white)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Scale the full 16-bit range, not the image's own maximum: a dark
        # photo must stay dark for the exposure check.
        arr = np.asarray(im, dtype=np.float32)
        im = Image.fromarray(np.clip(arr / 257.0, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)
