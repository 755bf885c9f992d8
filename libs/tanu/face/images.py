"""Decoding untrusted image bytes into RGB arrays, refusing what must be
refused before it costs memory: not an image, truncated files, empty images,
and decompression bombs (checked from the header, before any pixel is
decoded). EXIF orientation is applied; greyscale, palette, RGBA, CMYK and
16-bit images become 8-bit RGB."""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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


def decode(data: bytes, max_pixels: int) -> np.ndarray:
    """An HxWx3 uint8 RGB array, upright per EXIF, or InvalidArgument naming
    what is wrong with the bytes."""
    if not data:
        raise errors.InvalidArgument("image is empty (0 bytes)")
    size = header_size(data)
    kind = _claimed_format(data)
    if size is not None:
        _check_size(*size, max_pixels)
    elif kind:
        raise errors.InvalidArgument(
            f"{kind} header is truncated or corrupt: no image size could be read"
        )
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
    try:
        im.load()
    except OSError as exc:
        raise errors.InvalidArgument(
            f"image data is truncated or corrupt ({im.format}): {exc}"
        ) from None
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the image
        pass
    return to_rgb(im)


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
