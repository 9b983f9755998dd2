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
    kinds = ("cartoon", "photo", "line")
    return {kind: dict(zip(names, row, strict=True)) for kind, row in zip(kinds, rows, strict=True)}


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


def pink_noise(size: int = 256, seed: int = 0) -> Image.Image:
    """Grey noise with power ~ 1/f^2 (amplitude 1/f): the natural-image spectrum."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f
    field = np.fft.irfft2(spectrum, s=(size, size))
    field = 128 + 50 * (field - field.mean()) / field.std()
    return Image.fromarray(np.clip(field, 0, 255).astype(np.uint8), "L").convert("RGB")


def test_version_and_v1_prefix(extractor):
    assert extractor.name == "builtin-v3"
    assert extractor.dim == 104
    assert extractor.feature_names[60] == "block_chroma_std_q50"  # v1's 61 features come first, unchanged


def test_natural_spectrum_slope_is_near_minus_two(extractor):
    row = dict(zip(extractor.feature_names, extractor.extract([pink_noise()])[0], strict=True))
    assert -2.6 < 4 * row["spectrum_slope"] < -1.4
    assert abs(row["spectrum_anisotropy"]) < 0.5


def test_stripes_are_anisotropic(extractor):
    stripes = np.zeros((128, 128, 3), np.uint8)
    stripes[:, ::8] = 255
    row = dict(zip(extractor.feature_names, extractor.extract([Image.fromarray(stripes, "RGB")])[0], strict=True))
    assert row["spectrum_anisotropy"] > 2.0


def test_lbp_histograms_are_distributions(feats):
    for kind in ("cartoon", "photo", "line"):
        for prefix in ("lbp2_", "lbp_half_"):
            total = sum(v for k, v in feats[kind].items() if k.startswith(prefix))
            assert total == pytest.approx(1.0, abs=1e-4)
    # flat fills sit in the extreme bins, noise in the non-uniform one
    assert feats["cartoon"]["lbp2_nonuniform"] < feats["photo"]["lbp2_nonuniform"]
    assert feats["cartoon"]["lbp2_0"] + feats["cartoon"]["lbp2_8"] > feats["photo"]["lbp2_0"] + feats["photo"]["lbp2_8"]
