"""The ONNX extractor: what reaches the model, batching, presets, and the errors a wrong model file gives.

Every model is a tiny graph built into tmp_path by ``onnx_models``; no weights are downloaded.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.features import FeatureExtractor
from service.features import onnx as onnx_features
from service.features.onnx import (
    I2V_PRESET,
    ModelLoadError,
    ModelNotFoundError,
    OnnxExtractor,
    OnnxPreset,
    PresetError,
    pool_output,
    preprocess,
    shipped_preset,
    shipped_preset_names,
)

try:
    from onnx_models import corrupt_model, identity_model, pooled_linear_model, two_input_model
except ImportError:  # tests/ made a package
    from tests.onnx_models import corrupt_model, identity_model, pooled_linear_model, two_input_model

I2V_MEAN_BGR = np.array([164.76139251, 167.47864617, 181.13838569], dtype=np.float32)
RED, BLUE = (255, 0, 0), (0, 0, 255)


def solid(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.new("RGB", size, color)


def left_red_right_blue(width: int = 400, height: int = 100, red_width: int = 100) -> Image.Image:
    """A wide image, red only in its left quarter: a centre crop would show no red at all."""
    image = solid(BLUE, (width, height))
    image.paste(solid(RED, (red_width, height)), (0, 0))
    return image


def open_extractor(path: Path, preset: OnnxPreset = I2V_PRESET) -> OnnxExtractor:
    """One thread, CPU only: the test machines are small and shared."""
    return OnnxExtractor(path, preset, threads=1, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def weights() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(3, 4096)).astype(np.float32)


@pytest.fixture(scope="module")
def i2v_like(tmp_path_factory: pytest.TempPathFactory, weights: np.ndarray) -> Path:
    return pooled_linear_model(tmp_path_factory.mktemp("i2v") / "i2v.onnx", weights)


def spy_batches(extractor: OnnxExtractor) -> list[int]:
    """Record the batch size of every session.run call."""
    sizes: list[int] = []
    real_run = extractor._session.run

    def run(outputs, feeds):  # type: ignore[no-untyped-def]
        sizes.append(len(next(iter(feeds.values()))))
        return real_run(outputs, feeds)

    extractor._session = type("Spy", (), {"run": staticmethod(run)})()  # type: ignore[assignment]
    return sizes


# --- end to end on an i2v-shaped model ------------------------------------------------------------------------------


def test_i2v_like_model_extracts_every_image_in_order_across_chunks(i2v_like: Path, weights: np.ndarray) -> None:
    colors = [(i * 7 % 256, i * 31 % 256, 255 - i * 5) for i in range(35)]
    extractor = open_extractor(i2v_like)
    sizes = spy_batches(extractor)

    features = extractor.extract([solid(c) for c in colors])

    assert features.shape == (35, 4096) and features.dtype == np.float32
    assert sizes == [16, 16, 3]
    # Rows are several units apart; the tolerance only absorbs float32 averaging over 224x224 pixels.
    bgr = np.array([c[::-1] for c in colors], dtype=np.float32)
    np.testing.assert_allclose(features, (bgr - I2V_MEAN_BGR) @ weights, rtol=1e-3, atol=0.2)


def test_extractor_follows_the_protocol_and_handles_no_images(i2v_like: Path) -> None:
    extractor = open_extractor(i2v_like)
    assert isinstance(extractor, FeatureExtractor)
    assert (extractor.name, extractor.dim, extractor.working_size) == ("i2v", 4096, 224)
    assert extractor.extract([]).shape == (0, 4096)
    assert extractor._session.get_session_options().intra_op_num_threads == 1


def test_model_with_a_fixed_batch_is_fed_exactly_that_many_rows(tmp_path: Path, weights: np.ndarray) -> None:
    path = pooled_linear_model(tmp_path / "fixed.onnx", weights, input_shape=(4, 3, 224, 224))
    extractor = open_extractor(path)
    sizes = spy_batches(extractor)
    colors = [(10 * i, 20, 30) for i in range(6)]

    features = extractor.extract([solid(c) for c in colors])

    assert sizes == [4, 4]
    bgr = np.array([c[::-1] for c in colors], dtype=np.float32)
    np.testing.assert_allclose(features, (bgr - I2V_MEAN_BGR) @ weights, rtol=1e-3, atol=0.2)


def test_make_extractor_wires_the_settings(tmp_path: Path, i2v_like: Path) -> None:
    from service.config import Settings
    from service.features import make_extractor

    i2v = make_extractor(Settings(extractor="auto", i2v_model=i2v_like, onnx_threads=1))
    assert isinstance(i2v, OnnxExtractor) and i2v.preset == I2V_PRESET

    preset_file = tmp_path / "other.json"
    preset_file.write_text(json.dumps({**I2V_PRESET.__dict__, "name": "other"}))
    other = make_extractor(Settings(extractor="onnx", onnx_model=i2v_like, onnx_preset=preset_file, onnx_threads=1))
    assert isinstance(other, OnnxExtractor) and other.name == "other"


# --- what reaches the model -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def i2v_probe(tmp_path_factory: pytest.TempPathFactory) -> OnnxExtractor:
    """The i2v preprocessing in front of an identity model, so the output is exactly the model's input."""
    path = identity_model(tmp_path_factory.mktemp("probe") / "probe.onnx", "data", "encode1", ("N", 3, 224, 224))
    return open_extractor(path, replace(I2V_PRESET, dim=3 * 224 * 224, pooling="flatten"))


def test_i2v_input_is_bgr_minus_the_bgr_mean(i2v_probe: OnnxExtractor) -> None:
    seen = i2v_probe.extract([solid(RED, (50, 80))]).reshape(1, 3, 224, 224)

    assert np.allclose(seen[0, 0], 0 - 164.76139251, atol=1e-4)  # B
    assert np.allclose(seen[0, 1], 0 - 167.47864617, atol=1e-4)  # G
    assert np.allclose(seen[0, 2], 255 - 181.13838569, atol=1e-4)  # R


def test_i2v_resizes_the_whole_image_without_cropping(i2v_probe: OnnxExtractor) -> None:
    image = left_red_right_blue()
    seen = i2v_probe.extract([image]).reshape(1, 3, 224, 224)[0]
    red = (np.array(RED[::-1], dtype=np.float32) - I2V_MEAN_BGR)[:, None, None]
    blue = (np.array(BLUE[::-1], dtype=np.float32) - I2V_MEAN_BGR)[:, None, None]

    assert np.allclose(seen[:, :, :50], red, atol=1e-3)  # the red quarter ends at column 56
    assert np.allclose(seen[:, :, 62:], blue, atol=1e-3)
    np.testing.assert_array_equal(seen, preprocess([image], I2V_PRESET)[0])


def test_pad_and_crop_fits(tmp_path: Path) -> None:
    base = OnnxPreset("t", "x", "y", size=32, channel_order="RGB", layout="NHWC", dim=3, resize="nearest")
    image = left_red_right_blue()

    cropped = preprocess([image], replace(base, fit="crop"))[0]
    padded = preprocess([image], replace(base, fit="pad", pad_color=(0, 255, 0)))[0]

    assert np.all(cropped == BLUE)  # the centre square has no red
    assert np.all(padded[:8] == (0, 255, 0)) and np.all(padded[-8:] == (0, 255, 0))  # 400x100 -> 32x8 band
    assert np.all(padded[12:20, :6] == RED) and np.all(padded[12:20, 10:] == BLUE)


def test_custom_preset_file_drives_an_nhwc_rgb_model(tmp_path: Path) -> None:
    preset_file = tmp_path / "tiny.toml"
    preset_file.write_text(
        'name = "tiny"\ninput_name = "pixels"\noutput_name = "features"\nsize = 32\n'
        'channel_order = "RGB"\nlayout = "NHWC"\nscale = 0.00392156862745098\n'
        "mean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\ndim = 3\npooling = \"mean\"\n"
    )
    preset = OnnxPreset.from_file(preset_file)
    model = identity_model(tmp_path / "tiny.onnx", "pixels", "features", ("N", 32, 32, 3))

    features = open_extractor(model, preset).extract([solid(RED), solid((0, 0, 0))])

    np.testing.assert_allclose(features, [[2, -2, -2], [-2, -2, -2]], atol=1e-5)


# --- a model that does not fit its preset ---------------------------------------------------------------------------


def test_wrong_input_name_says_what_was_expected_and_what_the_model_has(tmp_path: Path) -> None:
    path = identity_model(tmp_path / "m.onnx", "input_1", "encode1", ("N", 224, 224, 3))
    with pytest.raises(ModelLoadError) as err:
        open_extractor(path)
    message = str(err.value)
    assert message.startswith(f"NIJIFEED_I2V_MODEL: {path} does not match preset 'i2v'")
    assert "expected input 'data' float32 [N,3,224,224]" in message
    assert "model has input 'input_1' float32 [N,224,224,3]" in message


def test_wrong_input_shape(tmp_path: Path) -> None:
    path = identity_model(tmp_path / "m.onnx", "data", "encode1", ("N", 224, 224, 3))
    with pytest.raises(ModelLoadError, match=r"model has input 'data' float32 \[N,224,224,3\]"):
        open_extractor(path)


def test_wrong_output_name(tmp_path: Path, weights: np.ndarray) -> None:
    path = pooled_linear_model(tmp_path / "m.onnx", weights, output_name="fc7")
    with pytest.raises(ModelLoadError) as err:
        open_extractor(path)
    assert "expected output 'encode1' [N,4096]" in str(err.value)
    assert "model has output 'fc7' float32 [N,4096]" in str(err.value)


def test_wrong_output_size(tmp_path: Path) -> None:
    path = pooled_linear_model(tmp_path / "m.onnx", np.ones((3, 1000), np.float32))
    with pytest.raises(ModelLoadError, match=r"expected output 'encode1' \[N,4096\].*'encode1' float32 \[N,1000\]"):
        open_extractor(path)


def test_extra_model_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="more inputs.*extra"):
        open_extractor(two_input_model(tmp_path / "m.onnx"))


def test_corrupt_file(tmp_path: Path) -> None:
    path = corrupt_model(tmp_path / "i2v.onnx")
    with pytest.raises(ModelLoadError) as err:
        open_extractor(path)
    assert str(path) in str(err.value) and "not a valid ONNX model" in str(err.value)
    assert "NIJIFEED_I2V_MODEL" in str(err.value)


def test_missing_file_names_the_path_and_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "i2v.onnx"
    with pytest.raises(ModelNotFoundError) as err:
        open_extractor(path)
    assert isinstance(err.value, ModelLoadError)
    assert str(path) in str(err.value) and "NIJIFEED_I2V_MODEL" in str(err.value)
    with pytest.raises(ModelLoadError, match="NIJIFEED_ONNX_MODEL"):
        open_extractor(path, replace(I2V_PRESET, name="other"))


def test_output_that_pooling_cannot_fix_fails_at_run_time() -> None:
    with pytest.raises(ModelLoadError, match=r"\[2, 10\].*\[N,4096\]"):
        pool_output(np.zeros((2, 10), np.float32), I2V_PRESET)


# --- presets --------------------------------------------------------------------------------------------------------


def test_shipped_presets_load_and_i2v_has_the_design_facts() -> None:
    assert {"i2v", "wd14", "deepdanbooru", "clip-vit-b32"} <= set(shipped_preset_names())
    for name in shipped_preset_names():
        assert shipped_preset(name).name == name
    assert (I2V_PRESET.input_name, I2V_PRESET.output_name, I2V_PRESET.dim) == ("data", "encode1", 4096)
    layout = (I2V_PRESET.size, I2V_PRESET.fit, I2V_PRESET.channel_order, I2V_PRESET.layout)
    assert layout == (224, "stretch", "BGR", "NCHW")
    assert I2V_PRESET.mean == (164.76139251, 167.47864617, 181.13838569)
    assert I2V_PRESET.std == (1.0, 1.0, 1.0) and I2V_PRESET.scale == 1.0


def test_preset_from_json(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"name": "j", "input_name": "a", "output_name": "b", "size": 8, "channel_order": "RGB",
                                "layout": "NCHW", "dim": 2, "mean": [1, 2, 3]}))
    assert OnnxPreset.from_file(path).mean == (1.0, 2.0, 3.0)


GOOD_PRESET = {"name": '"x"', "input_name": '"a"', "output_name": '"b"', "size": "8", "channel_order": '"RGB"',
               "layout": '"NCHW"', "dim": "2"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input_name": None}, "missing key 'input_name'"),
        ({"chanel_order": '"RGB"'}, "unknown key 'chanel_order'"),
        ({"layout": '"NCWH"'}, "layout: must be one of NCHW, NHWC (got 'NCWH')"),
        ({"mean": "[1, 2]"}, "mean: must be a list of 3 numbers"),
        ({"size": "0"}, "size: must be a positive integer"),
        ({"std": "[1, 0, 1]"}, "std: must not contain 0"),
        ({"dim": ""}, "not valid TOML"),
    ],
)
def test_bad_preset_file_names_the_file_and_the_key(tmp_path: Path, changes: dict, message: str) -> None:
    values = {**GOOD_PRESET, **changes}
    path = tmp_path / "bad.toml"
    path.write_text("".join(f"{key} = {value}\n" for key, value in values.items() if value is not None))
    with pytest.raises(PresetError, match="bad.toml") as err:
        OnnxPreset.from_file(path)
    assert message in str(err.value)


def test_missing_preset_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(PresetError, match="NIJIFEED_ONNX_PRESET"):
        OnnxPreset.from_file(tmp_path / "none.toml")


def test_default_providers_put_cuda_first_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    available = ["AzureExecutionProvider", "CPUExecutionProvider", "CUDAExecutionProvider"]
    monkeypatch.setattr(onnx_features.ort, "get_available_providers", lambda: available)
    assert onnx_features.default_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
