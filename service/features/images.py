"""Decode untrusted image files into plain RGB, safely.

Everything that reads pixels goes through ``load_image`` so the guards live in one place: a byte-size limit checked
before decoding, Pillow's decompression-bomb limit, EXIF orientation, and one rule for every colour mode (alpha
composited on white, palettes expanded, CMYK and 16-bit converted).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import NijifeedError
from service.words import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from service.config import Settings

# Pillow's bomb guard is one process-wide number, and changing it per call races with other threads (the web face
# makes thumbnails while the cycle decodes). It is switched off once here; ``decode_image`` checks the header's
# pixel count against the caller's own limit before a single pixel is decoded.
Image.MAX_IMAGE_PIXELS = None

class ImageError(NijifeedError):
    """An image could not be used; ``reason`` is short enough to store and show in a table."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20_000_000
    max_pixels: int = 60_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        return cls(settings.max_image_bytes, settings.max_image_pixels)


def list_images(folder: Path) -> list[Path]:
    """Image files directly or deeper under ``folder``, sorted so runs are repeatable."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass(frozen=True)
class Decoded:
    """A decoded image and the size its file declares (before draft scaling and EXIF rotation)."""

    image: Image.Image
    width: int
    height: int


def decode_image(
    source: Path | bytes, *, limits: ImageLimits = ImageLimits(), draft_size: int | None = None, name: str = ""
) -> Decoded:
    """Decode to 8-bit RGB, or raise ``ImageError`` saying why not.

    ``draft_size`` lets JPEG decode at a reduced scale (1/2, 1/4, 1/8) while staying at least that many pixels on
    each side: a 224-px model does not need a 4000-px decode.
    """
    label = name or (str(source) if isinstance(source, Path) else "<bytes>")
    data = _read_bytes(source, limits, label)
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > limits.max_pixels:
            raise ImageError(label, f"too many pixels ({width}x{height} > {limits.max_pixels})")
        if draft_size and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.load()
    except UnidentifiedImageError:
        raise ImageError(label, "not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(label, f"corrupt image ({exc})") from None
    return Decoded(to_rgb(image), width, height)


def load_image(
    source: Path | bytes, *, limits: ImageLimits = ImageLimits(), draft_size: int | None = None, name: str = ""
) -> Image.Image:
    """``decode_image``'s RGB image alone."""
    return decode_image(source, limits=limits, draft_size=draft_size, name=name).image


def read_file(path: Path, limits: ImageLimits = ImageLimits()) -> bytes:
    """The file's bytes, refused by size before anything is read (a 2 GB file never reaches memory)."""
    try:
        size = path.stat().st_size
        _check_size(size, limits, str(path))
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(str(path), f"cannot read ({exc.strerror or exc})") from None


def _check_size(size: int, limits: ImageLimits, label: str) -> None:
    if size > limits.max_bytes:
        raise ImageError(label, f"file too large ({size} bytes > {limits.max_bytes})")
    if size == 0:
        raise ImageError(label, "empty file")


def _read_bytes(source: Path | bytes, limits: ImageLimits, label: str) -> bytes:
    if isinstance(source, bytes):
        _check_size(len(source), limits, label)
        return source
    return read_file(source, limits)


def dhash(image: Image.Image, size: int = 8) -> int:
    """64-bit difference hash: near-duplicates (resized, recompressed) differ in only a few bits.

    Used to keep near-duplicates in the same cross-validation fold, so the figures are not flattered by an
    image being "predicted" from its own copy.
    """
    small = np.asarray(image.convert("L").resize((size + 1, size), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: orientation applied, transparency on white, 16-bit scaled rather than clipped."""
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not cost us the pixels
        pass
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(values * (255.0 if values.max(initial=0) <= 1 else 1), 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "RGBa"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    if image.mode != "RGB":
        image = image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return image
