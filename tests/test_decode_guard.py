"""One poison image never stalls the rest (issue 9, items 4-6).

Every exception while decoding one image is that image's ``ImageError`` with a reason, through every path that
decodes: ``extract_files``, the folder source's cycle, ``triage`` and ``train --from-folders``. Only JPEG, PNG, WebP
and GIF are decoded, identified by content, and no other Pillow plugin ever sees the bytes. What one decode may
allocate is bounded in bytes before anything is decoded.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, PngImagePlugin
from pipelinekit import assert_routed_exactly_once, db

from service.features import extract_files
from service.features.builtin import BuiltinExtractor
from service.features.images import ImageError, ImageLimits, decode_image, load_image

ROOT = Path(__file__).resolve().parent.parent
ROUTED = ("feed", "review", "dropped")


# --- poison, crafted ----------------------------------------------------------------------------------------------


def tiff_raising_type_error() -> bytes:
    """A valid 8x8 TIFF whose StripOffsets tag claims to be text: Pillow raises ``TypeError`` while loading it."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 273:  # StripOffsets
            struct.pack_into("<HI", data, entry + 2, 2, 1)  # type ASCII, count 1
    return bytes(data)


def dds_raising_not_implemented() -> bytes:
    """A DirectDraw Surface header with no pixel format flags: Pillow raises ``NotImplementedError`` opening it."""
    header = struct.pack("<3I", 0x1007, 64, 64) + b"\0" * (124 - 4 - 12)
    return b"DDS " + struct.pack("<I", 124) + header + b"\0" * 64 * 64


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\n"
       b"0 0 moveto 16 16 lineto stroke\nshowpage\n%%EOF\n")


def png_bomb(width: int = 7000, height: int = 7000) -> bytes:
    """An all-transparent RGBA PNG of ``width`` x ``height``, compressed row by row (about 190 KB for 7000x7000)."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    packer = zlib.compressobj(9)
    row = b"\0" * (1 + 4 * width)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


#: Poison files under names that pass every suffix filter: the content decides.
POISON = {
    "tiff-type-error.jpg": (tiff_raising_type_error(), "unsupported format TIFF"),
    "dds-not-implemented.png": (dds_raising_not_implemented(), "unsupported format DDS"),
    "postscript.jpg": (EPS, "unsupported format EPS"),
}


def drop_poison(folder: Path) -> None:
    for name, (data, _reason) in POISON.items():
        (folder / name).write_bytes(data)


# --- the decoder itself -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(POISON))
def test_poison_is_refused_with_its_reason(name):
    data, reason = POISON[name]
    with pytest.raises(ImageError) as caught:
        decode_image(data, name=name)
    assert caught.value.reason == reason and caught.value.source == name


@pytest.mark.parametrize("error", [MemoryError, RuntimeError, TypeError, NotImplementedError, RecursionError])
def test_any_exception_in_a_decoder_is_that_images_failure(monkeypatch, error):
    """Whatever a decoder raises, even ``MemoryError``, the caller gets an ``ImageError`` for this one image."""
    good = encode(Image.new("RGB", (8, 8), (1, 2, 3)), "PNG")

    def broken(self):
        raise error("inside the decoder")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load_prepare", broken)
    with pytest.raises(ImageError) as caught:
        decode_image(good, name="x.png")
    assert caught.value.reason  # a reason to store, whatever went wrong
    assert ("out of memory" if error is MemoryError else error.__name__) in caught.value.reason


def test_interrupts_are_not_swallowed(monkeypatch):
    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load_prepare", interrupted)
    with pytest.raises(KeyboardInterrupt):
        decode_image(encode(Image.new("RGB", (8, 8)), "PNG"))


def test_only_the_plugin_the_content_names_is_tried(monkeypatch):
    """An EPS file named .jpg never reaches the EPS plugin (which would run Ghostscript on it)."""
    opened = []
    real_open = EpsImagePlugin.EpsImageFile._open

    def spy(self):
        opened.append(self)
        return real_open(self)

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", spy)
    with pytest.raises(ImageError, match="unsupported format EPS"):
        decode_image(EPS, name="drawing.jpg")
    assert opened == []


@pytest.mark.parametrize(("fmt", "reason"), [("BMP", "unsupported format BMP"), ("TIFF", "unsupported format TIFF"),
                                             ("PPM", "unsupported format PPM"), ("ICO", "unsupported format ICO")])
def test_valid_images_of_other_formats_are_refused_by_name(fmt, reason):
    with pytest.raises(ImageError) as caught:
        load_image(encode(Image.new("RGB", (16, 16), (9, 9, 9)), fmt))
    assert caught.value.reason == reason


@pytest.mark.parametrize(("fmt", "options"), [("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {}),
                                              ("WEBP", {"lossless": True}), ("GIF", {})])
def test_the_accepted_formats_decode(fmt, options):
    decoded = load_image(encode(Image.new("RGB", (40, 30), (250, 0, 0)), fmt, **options))
    assert decoded.mode == "RGB" and decoded.size == (40, 30)
    assert np.allclose(decoded.getpixel((5, 5)), (250, 0, 0), atol=12)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animations_give_their_first_frame(fmt):
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((0, 0, 255), (255, 0, 0), (0, 255, 0))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=40, **(
        {"lossless": True} if fmt == "WEBP" else {}))
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert load_image(data).getpixel((8, 8)) == (0, 0, 255)


def test_other_formats_are_reduced_right_after_decoding_when_less_is_needed():
    """JPEG decodes at a reduced scale (draft); a PNG is reduced by an integer factor at once, so a batch of
    decoded images never holds full-size pixels it does not need."""
    data = encode(Image.new("RGB", (2000, 1600), (10, 20, 30)), "PNG")
    decoded = decode_image(data, draft_size=224)
    assert 224 <= min(decoded.image.size) < 1600 / 2
    assert (decoded.width, decoded.height) == (2000, 1600)  # the file's own size is still what is reported


# --- the byte bound -----------------------------------------------------------------------------------------------


_MEASURE = r"""
import json, re, sys
from pathlib import Path

def peak_kb():
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))

from service.features.images import ImageError, ImageLimits, decode_image
data = Path(sys.argv[1]).read_bytes()
limits = ImageLimits(**json.loads(sys.argv[2]))
try:  # warm up: the plugin imported and the header parsed, nothing decoded (a 1-byte bound refuses it)
    decode_image(data, limits=ImageLimits(max_bytes=limits.max_bytes, max_decode_bytes=1))
except Exception:
    pass
before = peak_kb()
try:
    decoded = decode_image(data, limits=limits)
    outcome = "decoded " + decoded.image.mode
except ImageError as exc:
    outcome = exc.reason
print(json.dumps({"outcome": outcome, "grew": (peak_kb() - before) * 1024}))
"""


def measure(tmp_path: Path, data: bytes, **limits: int) -> dict:
    """Decode ``data`` in a fresh interpreter: the outcome and how much its peak resident memory grew (VmHWM is the
    new process's own: unlike ``ru_maxrss`` it does not inherit the test process's peak)."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux's /proc/self/status (VmHWM) to measure a peak")
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path), json.dumps(limits)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def test_a_png_within_the_pixel_limit_that_would_take_too_many_bytes_is_refused_unallocated(tmp_path):
    """Issue 9: a 170 KB PNG took the daemon to 621 MB. This one declares 7000x7000 RGBA (49 Mpx, within the
    60 Mpx default) and would need about 400 MB to decode and convert; with the defaults it is refused by reason
    before a pixel is decoded."""
    data = png_bomb()
    assert len(data) < 250_000 and ImageLimits().max_pixels > 7000 * 7000
    result = measure(tmp_path, data)
    assert result["outcome"].startswith("too large to decode (7000x7000 RGBA: needs ")
    assert result["grew"] < 32 * 2**20, result


@pytest.mark.parametrize(
    ("image", "fmt", "options"),
    [
        (Image.new("RGBA", (2500, 2000), (1, 2, 3, 4)), "PNG", {}),
        (Image.new("LA", (2500, 2000), (9, 200)), "PNG", {}),
        (Image.new("I;16", (2500, 2000), 40000), "PNG", {}),
        (Image.new("P", (2500, 2000), 3), "GIF", {}),
        (Image.new("RGB", (2500, 2000), (9, 9, 9)), "JPEG", {"progressive": True}),
        (Image.new("RGBA", (2500, 2000), (9, 9, 9, 9)), "WEBP", {"lossless": True}),
    ],
    ids=["png-rgba", "png-la", "png-16bit", "gif", "jpeg-progressive", "webp"],
)
def test_the_byte_estimate_covers_what_a_decode_really_takes(tmp_path, image, fmt, options):
    """The bound is only as good as the estimate: each decode path's measured peak stays under it, and an image
    refused by it is refused at the estimate exactly."""
    from service.features.images import decode_bytes

    data = encode(image, fmt, **options)
    opened = Image.open(io.BytesIO(data))
    need = decode_bytes(opened, *opened.size)
    result = measure(tmp_path, data, max_bytes=10**9, max_decode_bytes=need)
    assert result["outcome"] == "decoded RGB"
    assert result["grew"] <= need, (result, need)
    with pytest.raises(ImageError, match="too large to decode"):
        load_image(data, limits=ImageLimits(max_decode_bytes=need - 1))


def test_mode_and_bit_depth_count():
    from service.features.images import conversion_bytes_per_pixel, decode_bytes

    assert conversion_bytes_per_pixel("I;16") == 8 and conversion_bytes_per_pixel("I") == 20
    assert conversion_bytes_per_pixel("L") == conversion_bytes_per_pixel("RGB") == 8  # an RGB copy and its rotation
    grey = Image.open(io.BytesIO(encode(Image.new("L", (64, 64)), "PNG")))
    webp = Image.open(io.BytesIO(encode(Image.new("RGB", (64, 64)), "WEBP")))
    assert decode_bytes(webp, 64, 64) > decode_bytes(grey, 64, 64)  # WebP's decoder keeps canvases of its own


def test_a_gif_whose_first_frame_outgrows_its_screen_is_refused_before_pillow_fills_it(tmp_path):
    """Pillow allocates a GIF's first frame extent while *opening* it: a 187-byte GIF declaring a 38708x66648 frame
    took 1.4 GB and 1.7 s before any check ran. It is refused by the header walk first."""
    data = encode(Image.new("P", (16, 16), 1), "GIF")
    at = data.index(b",", 13)  # the image descriptor: x, y, width, height
    dispose_to_background = b"!\xf9\x04\x08\x00\x00\x00\x00"  # a graphic control extension, disposal method 2
    poisoned = (b"GIF89a" + data[6:at] + dispose_to_background + b"," + struct.pack("<4H", 9728, 17611, 28980, 49037)
                + data[at + 9 :])
    result = measure(tmp_path, poisoned)
    assert result["outcome"].startswith("too many pixels (38708x66648")
    assert result["grew"] < 32 * 2**20, result


# --- through the real paths ---------------------------------------------------------------------------------------


def good_images(samples: Path, n: int) -> list[Path]:
    return sorted((samples / "inbox").glob("*.jpg"))[:n]


def test_extract_files_records_the_poison_and_extracts_the_rest(tmp_path, samples):
    for path in good_images(samples, 4):
        shutil.copy(path, tmp_path / path.name)
    drop_poison(tmp_path)
    (tmp_path / "bomb.png").write_bytes(png_bomb())
    paths = sorted(tmp_path.iterdir())
    got = extract_files(BuiltinExtractor(), paths, batch_size=3)
    assert sorted(p.name for p in got.paths) == sorted(p.name for p in good_images(samples, 4))
    assert got.features.shape[0] == 4
    reasons = {Path(f.source).name: f.reason for f in got.failures}
    assert set(reasons) == {*POISON, "bomb.png"}
    for name, (_data, reason) in POISON.items():
        assert reasons[name] == reason
    assert reasons["bomb.png"].startswith("too large to decode")


def test_the_folder_source_fails_the_poison_and_processes_the_rest(trained, samples, tmp_path, cli, monkeypatch):
    """Issue 9: with a poison file in the watched folder, 0 of 14 files were processed and every later cycle failed.
    Now each poison file is failed with its reason, the others are routed, and the next poll goes on."""
    inbox = tmp_path / "drop"
    inbox.mkdir()
    monkeypatch.setenv("NIJIFEED_FOLDER_SETTLE", "0")
    good = good_images(samples, 8)
    for path in good[:4]:
        shutil.copy(path, inbox / path.name)
    drop_poison(inbox)
    cli("poll", "--source", f"folder:{inbox}")
    conn = db(trained)
    rows = conn.execute("SELECT status, reason, url FROM media WHERE kind = 'file'").fetchall()
    by_name = {Path(row["url"]).name: row for row in rows}
    assert len(rows) == 4 + len(POISON)
    for name, (_data, reason) in POISON.items():
        assert (by_name[name]["status"], by_name[name]["reason"]) == ("failed", reason)
    assert all(by_name[p.name]["status"] in ROUTED for p in good[:4]), [dict(r) for r in rows]
    for path in good[4:]:
        shutil.copy(path, inbox / path.name)
    cli("poll", "--source", f"folder:{inbox}")
    statuses = [row[0] for row in conn.execute("SELECT status FROM media WHERE kind = 'file'")]
    assert len(statuses) == 8 + len(POISON)
    assert sum(status in ROUTED for status in statuses) == 8 and statuses.count("failed") == len(POISON)
    assert_routed_exactly_once(conn)


def test_triage_completes_past_the_poison(trained, samples, tmp_path, cli):
    folder = tmp_path / "in"
    shutil.copytree(samples / "inbox", folder)
    drop_poison(folder)
    out = tmp_path / "out"
    result = cli("triage", folder, "--out", out)
    for name, (_data, reason) in POISON.items():
        assert name in result.output and reason in result.output
    with open(out / "report.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(list((samples / "inbox").glob("*.jpg")))


def test_train_from_folders_completes_past_the_poison(samples, tmp_path, cli):
    neg, pos = tmp_path / "not2d", tmp_path / "2d"
    shutil.copytree(samples / "train/not2d", neg)
    shutil.copytree(samples / "train/2d", pos)
    drop_poison(neg)
    result = cli("train", "--from-folders", neg, pos, "--model", "lr")
    assert "tiff-type-error.jpg" in result.output
