"""Decode untrusted image files into plain RGB, safely.

Everything that reads pixels goes through ``decode_image`` (``load_image``) so the guards live in one place:

* a byte-size limit on the file, checked before it is read;
* an explicit list of formats, identified by content (JPEG, PNG, WebP, GIF's first frame): ``Image.open`` is
  only ever offered the one plugin the magic bytes name, so no other decoder Pillow knows (EPS runs Ghostscript;
  TIFF, DDS and others raised ``TypeError``/``NotImplementedError`` on small crafted files) ever sees the bytes;
* the header's pixel count against the caller's pixel limit, and what the decode and the RGB conversion will
  allocate, in bytes, against the caller's byte limit — both before a single pixel is decoded;
* JPEG decoded at a reduced scale when the caller needs less (``draft``), other formats reduced right after;
* any exception while decoding one image becomes that image's ``ImageError`` with a reason, so one poison file
  never stops a batch, a cycle or a folder;
* one rule for every colour mode: EXIF orientation applied, alpha composited on white, palettes expanded, CMYK
  and 16-bit converted.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from service.errors import NijifeedError
from service.words import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from service.config import Settings

# Pillow's bomb guard is one process-wide number, and changing it per call races with other threads (the web face
# makes thumbnails while the cycle decodes). It is switched off once here; ``decode_image`` checks the header's
# pixel count against the caller's own limit before a single pixel is decoded.
Image.MAX_IMAGE_PIXELS = None

#: The formats decoded, by the name of the one Pillow plugin that may open them. JPEG also covers MPO (a JPEG
#: with more pictures after the first, as cameras write); GIF and WebP give their first frame.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
_NOT_ACCEPTED = "not a JPEG, PNG, WebP or GIF image"


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
    #: The most one decode may allocate, see ``decode_bytes``.
    max_decode_bytes: int = 256 * 2**20

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        return cls(settings.max_image_bytes, settings.max_image_pixels, settings.max_decode_bytes)


def list_images(folder: Path) -> list[Path]:
    """Image files directly or deeper under ``folder``, sorted so runs are repeatable."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def sniff_format(head: bytes) -> str | None:
    """The accepted format the first bytes name (a Pillow format name), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _refusal(head: bytes) -> str:
    """Why bytes that are none of the accepted formats are refused, naming the format when Pillow knows it. Only
    the plugins' prefix checks run (``accept``): no other plugin opens anything."""
    Image.init()
    for name, (_factory, accept) in list(Image.OPEN.items()):
        if accept is None or name in ACCEPTED_FORMATS:
            continue
        try:
            known = accept(head[:16]) is True
        except Exception:  # noqa: BLE001 - a plugin's prefix check that chokes on these bytes names nothing
            continue
        if known:
            return f"unsupported format {name}"
    return _NOT_ACCEPTED


@dataclass(frozen=True)
class Decoded:
    """A decoded image and the size its file declares (before draft scaling and EXIF rotation)."""

    image: Image.Image
    width: int
    height: int


def decode_image(
    source: Path | bytes, *, limits: ImageLimits = ImageLimits(), draft_size: int | None = None, name: str = ""
) -> Decoded:
    """Decode to 8-bit RGB, or raise ``ImageError`` saying why not; nothing else escapes but ``KeyboardInterrupt``
    and ``SystemExit`` (even ``MemoryError`` is this one image's failure).

    ``draft_size`` lets JPEG decode at a reduced scale (1/2, 1/4, 1/8), and other formats be reduced by an integer
    factor once decoded, while staying at least that many pixels on each side: a 224-px model does not need a
    4000-px image (and a batch of them does not need to hold 4000-px images).
    """
    label = name or (str(source) if isinstance(source, Path) else "<bytes>")
    data = _read_bytes(source, limits, label)
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise ImageError(label, _refusal(data))
    try:
        return _decode(data, fmt, limits, draft_size, label)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(label, f"corrupt {_pretty(fmt)} image (unreadable header)") from None
    except MemoryError:
        raise ImageError(label, "out of memory while decoding") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(label, f"corrupt image ({_short(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this image's, never the batch's
        raise ImageError(label, f"cannot decode ({type(exc).__name__}: {_short(exc)})") from None


def _decode(data: bytes, fmt: str, limits: ImageLimits, draft_size: int | None, label: str) -> Decoded:
    if fmt == "GIF":  # Pillow fills the first frame's extent while *opening* a GIF: check it before that
        width, height = gif_first_frame_size(data)
        _check_pixels(width, height, limits, label)
        _check_bytes(_DECODER_STATE + width * height * conversion_bytes_per_pixel("P"), width, height, "P", limits,
                     label)
    image = Image.open(io.BytesIO(data), formats=(fmt,))
    width, height = image.size
    _check_pixels(width, height, limits, label)
    if draft_size and image.format in ("JPEG", "MPO"):
        image.draft("RGB", (draft_size, draft_size))
    _check_bytes(decode_bytes(image, width, height), width, height, image.mode, limits, label)
    image.load()
    holder: list[Image.Image] = [image]
    del image  # the conversion frees each step's input as it goes; no reference may stay behind here
    rgb = _to_rgb_owned(holder)
    if draft_size and min(rgb.size) >= 2 * draft_size:
        rgb = rgb.reduce(min(rgb.size) // draft_size)
    return Decoded(rgb, width, height)


def _check_pixels(width: int, height: int, limits: ImageLimits, label: str) -> None:
    if width < 1 or height < 1:
        raise ImageError(label, f"no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise ImageError(label, f"too many pixels ({width}x{height} > {limits.max_pixels})")


def _check_bytes(need: int, width: int, height: int, mode: str, limits: ImageLimits, label: str) -> None:
    if need > limits.max_decode_bytes:
        raise ImageError(label, f"too large to decode ({width}x{height} {mode}: needs {_mb(need)}, limit "
                                f"{_mb(limits.max_decode_bytes)})")


def gif_first_frame_size(data: bytes) -> tuple[int, int]:
    """The size Pillow gives a GIF once it has read its first frame's descriptor: the logical screen, grown to hold
    that frame. Walks the blocks as ``GifImagePlugin`` does (extensions skipped sub-block by sub-block, stray
    bytes skipped, the trailer or the end of the data stops it)."""
    width, height = int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    flags = data[10] if len(data) > 10 else 0
    pos = 13 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
    while pos < len(data):
        tag = data[pos]
        pos += 1
        if tag == 0x3B:  # trailer
            break
        if tag == 0x21:  # extension: a label, then sub-blocks until an empty one
            pos += 1
            while pos < len(data) and data[pos]:
                pos += 1 + data[pos]
            pos += 1
        elif tag == 0x2C:  # the first image descriptor
            x0, y0, w, h = (int.from_bytes(data[pos + i : pos + i + 2], "little") for i in range(0, 8, 2))
            return max(width, x0 + w), max(height, y0 + h)
    return width, height


#: Bytes per declared pixel a format's decoder holds besides the image itself: WebP's animation decoder keeps
#: two canvases and hands each frame over as a bytes object.
_DECODER_BYTES_PER_PIXEL = {"WEBP": 12}
#: A decoder's own state whatever the size (tables, row buffers), with room to spare.
_DECODER_STATE = 2 * 2**20


def decode_bytes(image: Image.Image, width: int, height: int) -> int:
    """What decoding ``image`` (opened, not loaded; ``width`` x ``height`` as its header declares, before any draft)
    and converting it to RGB will allocate at its peak, in bytes.

    The pixels as Pillow stores them (1 byte for 1/L/P, 2 for 16-bit grey, 4 for the rest: RGB is kept in 4), the
    conversion's copies (``conversion_bytes_per_pixel``), and what the decoder itself holds: a progressive JPEG's
    coefficients (2 bytes each, for every component at its sampling, at full size whatever the draft), WebP's
    canvases.
    """
    decoded = image.size[0] * image.size[1]
    total = _DECODER_STATE + decoded * conversion_bytes_per_pixel(image.mode)
    total += width * height * _DECODER_BYTES_PER_PIXEL.get(image.format or "", 0)
    if image.format in ("JPEG", "MPO") and "progressive" in image.info:
        sampling = getattr(image, "layer", None) or [("", 1, 1, 0)] * 3
        h_max = max(h for _, h, _, _ in sampling) or 1
        v_max = max(v for _, _, v, _ in sampling) or 1
        share = sum(h * v for _, h, v, _ in sampling) / (h_max * v_max)
        padded = (width + 15) // 16 * 16 * ((height + 15) // 16 * 16)
        total += int(2 * padded * share)
    return total


def _stored_bytes(mode: str) -> int:
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def conversion_bytes_per_pixel(mode: str) -> int:
    """The most bytes per pixel alive at once while an image of ``mode`` is decoded and turned into RGB by
    ``to_rgb``, each step freeing the one before: the stored pixels and the first converted copy (16-bit grey
    goes through a uint16 and a uint32 array; 32-bit through float64 ones), then at least an RGB image and its
    rotated copy (EXIF orientation)."""
    stored = _stored_bytes(mode)
    if mode.startswith("I;16"):
        first = stored + 2 + 4
    elif mode in ("I", "F"):
        first = stored + 8 + 8
    elif mode == "RGB":
        first = stored
    else:
        first = stored + 4
    return max(first, 8)


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def _pretty(fmt: str) -> str:
    return {"WEBP": "WebP"}.get(fmt, fmt)


def _short(exc: BaseException, limit: int = 160) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    return _to_rgb_owned([image])


#: EXIF orientation → the transposition that displays the image upright (as ``ImageOps.exif_transpose``).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not cost us the pixels
        return 1
    return value if isinstance(value, int) else 1


def _to_rgb_owned(holder: list[Image.Image]) -> Image.Image:
    """``to_rgb`` of the one image in ``holder``, which it takes (empties) so that each step's input is freed as
    soon as the next exists: the peak stays within ``conversion_bytes_per_pixel``."""
    image = holder.pop()
    orientation = _orientation(image)
    if image.mode.startswith("I;16"):
        grey = np.asarray(image)
        del image
        if grey.max(initial=0) > 255:  # 16-bit range: round(v * 255 / 65535), in integers
            wide = grey.astype(np.uint32)
            del grey
            wide *= 255
            wide += 32767
            wide //= 65535
            image = Image.fromarray(wide.astype(np.uint8))
            del wide
        else:
            image = Image.fromarray(grey.astype(np.uint8))
            del grey
    elif image.mode == "I":
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
        del values
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(values * (255.0 if values.max(initial=0) <= 1 else 1), 0, 255).astype(np.uint8))
        del values
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image)  # the alpha band is the mask: no separate copy of it
        image = background
        del background
    if image.mode != "RGB":
        image = image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    method = _ORIENTATION.get(orientation)
    if method is not None:
        image = image.transpose(method)
    return image
