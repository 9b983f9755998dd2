"""Safe decoding: every colour mode to RGB by one rule, orientation applied, each bad input refused with a reason."""

import io

import numpy as np
import pytest
from PIL import Image

from service.features.images import ImageError, ImageLimits, dhash, load_image, read_file


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def pixel(image: Image.Image, xy=(0, 0)) -> tuple:
    return image.convert("RGB").getpixel(xy)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("L", (4, 4), 128), (128, 128, 128)),
        (Image.new("LA", (4, 4), (0, 0)), (255, 255, 255)),  # transparent black on white is white
        (Image.new("RGBA", (4, 4), (255, 0, 0, 0)), (255, 255, 255)),
        (Image.new("RGBA", (4, 4), (255, 0, 0, 255)), (255, 0, 0)),
        (Image.new("CMYK", (4, 4), (0, 255, 255, 0)), (255, 0, 0)),
        (Image.new("I;16", (4, 4), 65535), (255, 255, 255)),
        (Image.new("1", (4, 4), 1), (255, 255, 255)),
    ],
    ids=["L", "LA-transparent", "RGBA-transparent", "RGBA-opaque", "CMYK", "I16", "1bit"],
)
def test_every_mode_becomes_rgb(image, expected):
    fmt = "JPEG" if image.mode == "CMYK" else "PNG"  # I;16 as a 16-bit grey PNG (TIFF is no longer decoded)
    decoded = load_image(encode(image, fmt))
    assert decoded.mode == "RGB"
    assert np.allclose(pixel(decoded), expected, atol=3)


def test_palette_with_transparency_is_composited_on_white():
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    image.info["transparency"] = 1
    assert pixel(load_image(encode(image, transparency=1))) == (255, 255, 255)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 255, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    decoded = load_image(encode(image, "JPEG", exif=exif.tobytes()))
    assert decoded.size == (20, 40)


def test_jpeg_decodes_at_reduced_scale_when_the_target_is_small():
    data = encode(Image.new("RGB", (2000, 1600), (10, 20, 30)), "JPEG")
    assert load_image(data).size == (2000, 1600)
    small = load_image(data, draft_size=224)
    assert 224 <= min(small.size) < 1600 / 2


def test_decompression_bomb_is_refused():
    data = encode(Image.new("L", (4000, 4000)))
    with pytest.raises(ImageError, match="too many pixels"):
        load_image(data, limits=ImageLimits(max_pixels=1_000_000))


def test_oversized_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(encode(Image.new("RGB", (64, 64))))
    with pytest.raises(ImageError, match="file too large"):
        read_file(path, ImageLimits(max_bytes=10))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"hello, not an image", "not a JPEG, PNG, WebP or GIF image"),
        (encode(Image.new("RGB", (64, 64)), "JPEG")[:200], "corrupt"),
    ],
    ids=["empty", "text", "truncated"],
)
def test_bad_bytes_give_a_reason(data, reason):
    with pytest.raises(ImageError) as caught:
        load_image(data, name="x.jpg")
    assert reason in caught.value.reason
    assert caught.value.source == "x.jpg"


def test_dhash_sees_near_duplicates():
    rng = np.random.default_rng(1)
    base = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((256, 256))
    resized = base.resize((200, 200))
    other = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((256, 256))
    assert bin(dhash(base) ^ dhash(resized)).count("1") <= 6
    assert bin(dhash(base) ^ dhash(other)).count("1") > 12


def test_concurrent_decodes_with_different_limits_each_get_their_own():
    """The web face decodes thumbnails while the cycle decodes downloads, each with its own pixel limit: one
    thread's limit must never leak into another's decode or stay behind in Pillow's process-wide setting."""
    import threading

    data = encode(Image.new("RGB", (1200, 1200), (10, 200, 30)))  # large enough that decodes overlap
    before = Image.MAX_IMAGE_PIXELS
    wrong: list[str] = []

    def decode(max_pixels: int, should_pass: bool) -> None:
        for _ in range(60):
            try:
                load_image(data, limits=ImageLimits(max_pixels=max_pixels))
                if not should_pass:
                    wrong.append(f"accepted under {max_pixels}")
            except ImageError:
                if should_pass:
                    wrong.append(f"refused under {max_pixels}")

    threads = [threading.Thread(target=decode, args=(700_000, False)), threading.Thread(target=decode,
               args=(50_000_000, True)), threading.Thread(target=decode, args=(2_000_000, True))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert before == Image.MAX_IMAGE_PIXELS


def test_decode_reports_the_declared_size_of_a_draft_decoded_jpeg():
    from service.features.images import decode_image

    decoded = decode_image(encode(Image.new("RGB", (1600, 900), (200, 10, 10)), "JPEG"), draft_size=224)
    assert (decoded.width, decoded.height) == (1600, 900)
    assert decoded.image.size[0] < 1600  # decoded at a reduced scale, yet the stored size is the file's
