"""The built-in extractor on synthetic pictures: contract (shape, dtype, determinism, any size) and the few
feature directions the design rests on (grey has no chroma, flat fills have a small palette and no noise)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from service.features import FeatureExtractor
from service.features.builtin import BuiltinExtractor


def cartoon(size: int = 240) -> Image.Image:
    """Flat-colour shapes with black outlines on white: the clip-art case."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 30, 150, 200), fill=(240, 80, 40), outline="black", width=4)
    draw.rectangle((120, 60, 220, 160), fill=(60, 120, 230), outline="black", width=4)
    draw.polygon([(40, 220), (120, 140), (200, 230)], fill=(250, 210, 30), outline="black")
    return image


def photo(size: int = 240, seed: int = 0) -> Image.Image:
    """Smooth colour gradients plus sensor-like noise, edge to edge: the photo case."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([90 + 80 * xx, 110 + 60 * yy, 70 + 50 * xx * yy], axis=-1)
    base += 25 * np.sin(6 * xx + 3 * yy)[..., None]
    noisy = base + rng.normal(0, 6, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def line_art(size: int = 240) -> Image.Image:
    """Black strokes on white paper, no colour: the line-art / manga case."""
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    for k in range(8):
        draw.line((10 + 25 * k, 10, 200 - 20 * k, 230), fill=0, width=2)
    draw.ellipse((60, 60, 180, 180), outline=0, width=3)
    return image.convert("RGB")


@pytest.fixture(scope="module")
def extractor() -> BuiltinExtractor:
    return BuiltinExtractor()


@pytest.fixture(scope="module")
def feats(extractor):
    rows = extractor.extract([cartoon(), photo(), line_art()])
    names = extractor.feature_names
    return {kind: dict(zip(names, row)) for kind, row in zip(("cartoon", "photo", "line"), rows)}


def test_contract(extractor):
    assert isinstance(extractor, FeatureExtractor)
    assert extractor.name.startswith("builtin-")
    assert extractor.working_size > 0
    assert len(extractor.feature_names) == extractor.dim == len(set(extractor.feature_names))
    out = extractor.extract([cartoon(), photo()])
    assert out.shape == (2, extractor.dim)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()


def test_empty_batch(extractor):
    out = extractor.extract([])
    assert out.shape == (0, extractor.dim) and out.dtype == np.float32


def test_deterministic_and_batch_independent(extractor):
    images = [photo(seed=3), cartoon(), line_art()]
    a = extractor.extract(images)
    b = extractor.extract(images)
    single = extractor.extract([images[1]])
    assert np.array_equal(a, b)
    assert np.array_equal(a[1], single[0])


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (15, 15), (17, 16), (3000, 4), (4, 3000), (1200, 800)])
def test_any_size(extractor, size):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    out = extractor.extract([image])
    assert out.shape == (1, extractor.dim)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "1"])
def test_other_modes_are_accepted(extractor, mode):
    out = extractor.extract([cartoon(64).convert(mode)])
    assert out.shape == (1, extractor.dim) and np.isfinite(out).all()


def test_uniform_images(extractor):
    out = extractor.extract([Image.new("RGB", (50, 40), "white"), Image.new("RGB", (50, 40), (200, 30, 30))])
    assert np.isfinite(out).all()


def test_greyscale_has_no_chroma(feats):
    line = feats["line"]
    assert line["chroma_mean"] < 0.01
    assert line["grey_share"] > 0.99
    assert line["coloured_share"] == 0.0
    assert feats["cartoon"]["chroma_mean"] > 0.1


def test_flat_fills_have_small_palette_and_no_noise(feats):
    flat, noisy = feats["cartoon"], feats["photo"]
    assert flat["fg_palette_size"] < noisy["fg_palette_size"]
    assert flat["fg_top8_colour_share"] > noisy["fg_top8_colour_share"]
    assert flat["palette_entropy"] < noisy["palette_entropy"]
    assert flat["grad_lt1.5"] > noisy["grad_lt1.5"]
    assert flat["flat_block_share"] > noisy["flat_block_share"]
    assert flat["clean_share"] > noisy["clean_share"]
    assert flat["noise_median"] < noisy["noise_median"]
    assert flat["lbp_noisy_share"] < noisy["lbp_noisy_share"]


def test_noise_decorrelates_neighbouring_differences(feats):
    assert feats["photo"]["diff_corr"] < 0.0


def test_backdrop_and_outlines(feats):
    cut_out, full_frame = feats["cartoon"], feats["photo"]
    assert cut_out["backdrop_share"] > 0.2 and cut_out["border_uniformity"] == 1.0
    assert full_frame["backdrop_share"] == 0.0
    assert cut_out["rim_darkness"] > 0.5  # black contour around the shapes
    assert cut_out["edge_darkness"] > full_frame["edge_darkness"]


def test_line_art_is_ink_on_paper(feats):
    line, cartoon_ = feats["line"], feats["cartoon"]
    assert line["paper_share"] > 0.5
    assert line["ink_share"] > 0.02
    assert line["edge_crispness"] > feats["photo"]["edge_crispness"]
    assert cartoon_["vivid_share"] > line["vivid_share"]
