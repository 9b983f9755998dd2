"""ONNX image models as feature extractors: illust2vec (``i2v``) or any model an ``OnnxPreset`` describes.

A preset holds every fact about a model that is easy to get silently wrong: tensor names, layout, channel order,
pixel scale, mean/std, how the image is fitted to the square input, and how the output becomes one vector. The
extractor checks those facts against the model when it loads it, so a mismatch fails at start-up with a message
that says what was expected and what the file has, instead of producing plausible but meaningless features.

Only ``onnxruntime`` is needed here; the ``onnx`` package is a test dependency.
"""

from __future__ import annotations

import json
import logging
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from PIL import Image

from service.errors import NijifeedError

log = logging.getLogger(__name__)

ChannelOrder = Literal["RGB", "BGR"]
Layout = Literal["NCHW", "NHWC"]
Fit = Literal["stretch", "pad", "crop"]
Pooling = Literal["none", "flatten", "mean"]

RESAMPLING: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "channel_order": ("RGB", "BGR"),
    "layout": ("NCHW", "NHWC"),
    "fit": ("stretch", "pad", "crop"),
    "pooling": ("none", "flatten", "mean"),
    "resize": tuple(RESAMPLING),
}
_REQUIRED = ("name", "input_name", "output_name", "size", "channel_order", "layout", "dim")
_TRIPLES = ("mean", "std", "pad_color")
#: onnxruntime's type names; an output of any of these becomes float32 features.
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}

#: Which setting names the model file, so a load error can tell the user what to change.
MODEL_SETTINGS = {"i2v": "NIJIFEED_I2V_MODEL"}
DEFAULT_MODEL_SETTING = "NIJIFEED_ONNX_MODEL"
DEFAULT_BATCH_SIZE = 16


class ExtractorError(NijifeedError):
    """An ONNX model or its preset cannot serve as a feature extractor."""


class PresetError(ExtractorError):
    """A preset file or value is wrong; the message names the file and the key."""


class ModelLoadError(ExtractorError):
    """The model file cannot be used with its preset: missing, not ONNX, or its inputs/outputs do not match.

    A ``ValueError``: it is a bad configured value (the path), reported to the user like any other.
    """


class ModelNotFoundError(ModelLoadError):
    """The model file does not exist; also a ``FileNotFoundError`` so generic handlers still catch it."""


@dataclass(frozen=True)
class OnnxPreset:
    """How to feed one ONNX image model and read one feature vector per image out of it.

    Pixels go through, in this order: fit to ``size``×``size`` (``stretch`` the whole image, ``pad`` it to a square
    with ``pad_color`` first, or centre-``crop`` the square), reorder channels to ``channel_order``, multiply by
    ``scale`` (pixels start at 0..255), subtract ``mean`` and divide by ``std`` (both given in ``channel_order``),
    then lay out as ``layout``. The output named ``output_name`` becomes (N, ``dim``) through ``pooling``:
    ``none`` (already (N, dim)), ``flatten`` (everything after the batch axis), or ``mean`` (average every axis
    except the batch and ``feature_axis``, e.g. tokens of (N, T, D) or the spatial axes of a feature map).
    """

    name: str
    input_name: str
    output_name: str
    size: int
    channel_order: ChannelOrder
    layout: Layout
    dim: int
    resize: str = "bilinear"
    fit: Fit = "stretch"
    pad_color: tuple[int, int, int] = (255, 255, 255)
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pooling: Pooling = "none"
    feature_axis: int = -1
    description: str = ""

    def __post_init__(self) -> None:
        """Check every value when the preset is made, so a bad preset fails at start-up, naming the key."""
        _check_words(self)
        _check_numbers(self)
        for key in _TRIPLES:
            object.__setattr__(self, key, _triple(key, getattr(self, key)))
        if any(s == 0 for s in self.std):
            raise PresetError(f"std: must not contain 0 (got {list(self.std)})")
        if any(not 0 <= c <= 255 or c != int(c) for c in self.pad_color):
            raise PresetError(f"pad_color: must be three integers 0..255 (got {list(self.pad_color)})")
        object.__setattr__(self, "pad_color", tuple(int(c) for c in self.pad_color))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "preset") -> OnnxPreset:
        """Build from parsed TOML/JSON; unknown keys are refused so a typo cannot silently fall back to a default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PresetError(f"{source}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(known))})")
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise PresetError(f"{source}: missing key {missing[0]!r} (required: {', '.join(_REQUIRED)})")
        try:
            return cls(**data)
        except PresetError as exc:
            raise PresetError(f"{source}: {exc}") from None

    @classmethod
    def from_file(cls, path: Path | str) -> OnnxPreset:
        """Read a preset from a ``.json`` file, or TOML for any other suffix (top-level keys, no table needed)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PresetError(f"{path}: no such preset file (set by NIJIFEED_ONNX_PRESET)") from None
        except OSError as exc:
            raise PresetError(f"{path}: cannot read preset file ({exc.strerror or exc})") from None
        return cls.from_mapping(_parse(text, str(path)), source=str(path))


def _check_words(preset: OnnxPreset) -> None:
    for key, allowed in _CHOICES.items():
        value = getattr(preset, key)
        if value not in allowed:
            raise PresetError(f"{key}: must be one of {', '.join(allowed)} (got {value!r})")
    for key in ("name", "input_name", "output_name"):
        value = getattr(preset, key)
        if not isinstance(value, str) or not value:
            raise PresetError(f"{key}: must be a non-empty string (got {value!r})")


def _check_numbers(preset: OnnxPreset) -> None:
    for key in ("size", "dim"):
        value = getattr(preset, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PresetError(f"{key}: must be a positive integer (got {value!r})")
    scale = preset.scale
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale) or scale == 0:
        raise PresetError(f"scale: must be a non-zero number (got {scale!r})")
    axis = preset.feature_axis
    if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
        raise PresetError(f"feature_axis: must be a non-zero integer, 0 is the batch (got {axis!r})")


def _triple(key: str, value: Any) -> tuple[float, float, float]:
    """Three numbers, one per channel; a single number is refused because the channel order matters."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 3:
        raise PresetError(f"{key}: must be a list of 3 numbers, one per channel (got {value!r})")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise PresetError(f"{key}: must be a list of 3 numbers, one per channel (got {value!r})")
    return (float(value[0]), float(value[1]), float(value[2]))


def _parse(text: str, source: str) -> dict[str, Any]:
    """Parse JSON for a ``.json`` name, else TOML, turning parser errors into ``PresetError`` naming the file."""
    is_json = source.lower().endswith(".json")
    try:
        data = json.loads(text) if is_json else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PresetError(f"{source}: not valid {'JSON' if is_json else 'TOML'} ({exc})") from None
    if not isinstance(data, dict):
        raise PresetError(f"{source}: must hold a table/object of preset keys")
    return data


def shipped_preset_names() -> list[str]:
    """Names of the presets shipped in ``service/features/presets`` (``i2v`` plus examples for other models)."""
    folder = resources.files(__package__).joinpath("presets")
    return sorted(entry.name.removesuffix(".toml") for entry in folder.iterdir() if entry.name.endswith(".toml"))


def shipped_preset(name: str) -> OnnxPreset:
    """Load a shipped preset by name; works from a wheel as well as a checkout (package data)."""
    resource = resources.files(__package__).joinpath("presets", f"{name}.toml")
    if not resource.is_file():
        raise PresetError(f"no shipped preset {name!r} (shipped: {', '.join(shipped_preset_names())})")
    source = f"presets/{name}.toml"
    return OnnxPreset.from_mapping(_parse(resource.read_text(encoding="utf-8"), source), source)


#: illust2vec_ver200 as DESIGN.md describes it: 224×224 whole image, BGR, minus the BGR mean, output encode1 (4096).
I2V_PRESET: OnnxPreset = shipped_preset("i2v")


# --- preprocessing -------------------------------------------------------------------------------------------------


def fit_image(image: Image.Image, preset: OnnxPreset) -> Image.Image:
    """Make the square ``size``×``size`` RGB image the model sees, following ``preset.fit``."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    size, resample = preset.size, RESAMPLING[preset.resize]
    if preset.fit == "stretch" or image.width == image.height:
        return image.resize((size, size), resample)
    if preset.fit == "crop":
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        return image.resize((size, size), resample, box=(left, top, left + side, top + side))
    ratio = size / max(image.size)
    inner = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
    canvas = Image.new("RGB", (size, size), preset.pad_color)
    canvas.paste(image.resize(inner, resample), ((size - inner[0]) // 2, (size - inner[1]) // 2))
    return canvas


def preprocess(images: Sequence[Image.Image], preset: OnnxPreset) -> np.ndarray:
    """RGB images to the float32 batch the model expects; pure, so tests can check exactly what reaches the model."""
    batch = np.empty((len(images), preset.size, preset.size, 3), dtype=np.float32)
    for i, image in enumerate(images):
        batch[i] = np.asarray(fit_image(image, preset), dtype=np.float32)
    if preset.channel_order == "BGR":
        batch = batch[..., ::-1]
    batch = batch * np.float32(preset.scale)
    batch -= np.asarray(preset.mean, dtype=np.float32)
    batch /= np.asarray(preset.std, dtype=np.float32)
    if preset.layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch, dtype=np.float32)


def pool_output(output: np.ndarray, preset: OnnxPreset) -> np.ndarray:
    """Turn the model's raw output into (N, dim) float32 as ``preset.pooling`` says."""
    if preset.pooling == "flatten":
        output = output.reshape(output.shape[0], -1)
    elif preset.pooling == "mean":
        feature_axis = preset.feature_axis % output.ndim
        axes = tuple(a for a in range(1, output.ndim) if a != feature_axis)
        output = output.mean(axis=axes) if axes else output
    if output.ndim != 2 or output.shape[1] != preset.dim:
        raise ModelLoadError(
            f"model output {preset.output_name!r} has shape {list(output.shape)}, which pooling "
            f"{preset.pooling!r} does not turn into [N,{preset.dim}] (preset {preset.name!r})"
        )
    return output.astype(np.float32, copy=False)


# --- the extractor -------------------------------------------------------------------------------------------------


class OnnxExtractor:
    """A ``FeatureExtractor`` over one ONNX model: loaded and checked once, then run in batches.

    ``threads`` > 0 sets onnxruntime's intra-op threads (0 lets it choose); ``providers`` defaults to CUDA when
    this onnxruntime build has it, then CPU. ``setting`` names the setting that points at the model file, for
    error messages; it defaults from the preset name.
    """

    def __init__(
        self,
        model_path: Path | str,
        preset: OnnxPreset,
        threads: int = 0,
        providers: list[str] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        setting: str | None = None,
    ) -> None:
        self.preset = preset
        self.name = preset.name
        self.dim = preset.dim
        self.working_size = preset.size
        self.model_path = Path(model_path)
        self._setting = setting or MODEL_SETTINGS.get(preset.name, DEFAULT_MODEL_SETTING)
        self._session = self._open(threads, providers or default_providers())
        batch_dim = check_model(self._session, preset, f"{self._setting}: {self.model_path}")
        # A model exported with a fixed batch (often 1) must be fed exactly that many rows per call.
        self.batch_size = batch_dim or batch_size
        self._fixed_batch = batch_dim is not None
        providers_used = self._session.get_providers()
        log.info("loaded %s (%s) on %s, batch %d", self.model_path, preset.name, providers_used, self.batch_size)

    def _open(self, threads: int, providers: list[str]) -> ort.InferenceSession:
        if not self.model_path.is_file():
            raise ModelNotFoundError(
                f"{self._setting}: no ONNX model file at {self.model_path.absolute()} (preset {self.preset.name!r})"
            )
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        try:
            return ort.InferenceSession(str(self.model_path), sess_options=options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own unrelated exception types
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(
                f"{self._setting}: {self.model_path} is not a valid ONNX model onnxruntime can load ({reason})"
            ) from exc

    def extract(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB images in, (len(images), dim) float32 out; the model runs once per ``batch_size`` images."""
        step = self.batch_size
        chunks = [self._run(images[start : start + step]) for start in range(0, len(images), step)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)

    def _run(self, images: Sequence[Image.Image]) -> np.ndarray:
        batch = preprocess(images, self.preset)
        rows = len(batch)
        if self._fixed_batch and rows < self.batch_size:
            batch = np.concatenate([batch, np.zeros((self.batch_size - rows, *batch.shape[1:]), np.float32)])
        (output,) = self._session.run([self.preset.output_name], {self.preset.input_name: batch})
        return pool_output(np.asarray(output), self.preset)[:rows]


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build offers it, CPU always (onnxruntime falls back if CUDA fails)."""
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


# --- checking a model against its preset ---------------------------------------------------------------------------


def check_model(session: ort.InferenceSession, preset: OnnxPreset, source: str) -> int | None:
    """Refuse a model whose input or output does not fit the preset; return its fixed batch size, if it has one.

    ``source`` starts every message (the setting and the file), so the user knows what to change.
    """
    inputs = {arg.name: arg for arg in session.get_inputs()}
    outputs = {arg.name: arg for arg in session.get_outputs()}
    expected_in = f"input {preset.input_name!r} float32 {_format_shape(expected_input_shape(preset))}"
    arg = inputs.get(preset.input_name)
    if arg is None or arg.type != "tensor(float)" or not _shape_matches(arg.shape, expected_input_shape(preset)):
        raise ModelLoadError(_mismatch(source, preset, expected_in, "input", arg, inputs))
    others = sorted(set(inputs) - {preset.input_name})
    if others:
        raise ModelLoadError(f"{source}: needs more inputs than preset {preset.name!r} feeds: {', '.join(others)}")
    expected_out = f"output {preset.output_name!r} {_describe_expected_output(preset)}"
    out = outputs.get(preset.output_name)
    if out is None or out.type not in _DTYPES or not _output_fits(out.shape, preset):
        raise ModelLoadError(_mismatch(source, preset, expected_out, "output", out, outputs))
    batch = arg.shape[0]
    return batch if isinstance(batch, int) and batch > 0 else None


def expected_input_shape(preset: OnnxPreset) -> list[int | str]:
    side = preset.size
    return ["N", 3, side, side] if preset.layout == "NCHW" else ["N", side, side, 3]


def _describe_expected_output(preset: OnnxPreset) -> str:
    if preset.pooling == "none":
        return f"[N,{preset.dim}]"
    if preset.pooling == "flatten":
        return f"[N,...] with {preset.dim} values per image (pooling 'flatten')"
    return f"[N,...] with {preset.dim} on axis {preset.feature_axis} (pooling 'mean')"


def _output_fits(shape: Sequence[int | str | None], preset: OnnxPreset) -> bool:
    """Check what can be checked statically; symbolic dims are trusted and ``pool_output`` checks them at run time."""
    if preset.pooling == "none":
        return _shape_matches(shape, ["N", preset.dim])
    if len(shape) < 2:
        return False
    rest = shape[1:]
    if preset.pooling == "flatten":
        if all(isinstance(d, int) for d in rest):
            return math.prod(rest) == preset.dim  # type: ignore[arg-type]
        return all(not isinstance(d, int) or preset.dim % d == 0 for d in rest)
    axis = preset.feature_axis if preset.feature_axis > 0 else len(shape) + preset.feature_axis
    if not 1 <= axis < len(shape):
        return False
    return not isinstance(shape[axis], int) or shape[axis] == preset.dim


def _shape_matches(actual: Sequence[int | str | None], expected: Sequence[int | str]) -> bool:
    """Same rank, and every static dim equal; dynamic dims (None or a symbol) on either side always match."""
    if len(actual) != len(expected):
        return False
    pairs = zip(actual, expected, strict=True)
    return all(not isinstance(a, int) or not isinstance(e, int) or a == e for a, e in pairs)


def _mismatch(source: str, preset: OnnxPreset, expected: str, kind: str, arg: Any, available: dict[str, Any]) -> str:
    has = _describe_arg(arg) if arg is not None else ", ".join(_describe_arg(a) for a in available.values()) or "none"
    return (
        f"{source} does not match preset {preset.name!r}: expected {expected}, "
        f"model has {kind}{'s' if arg is None and len(available) != 1 else ''} {has}"
    )


def _describe_arg(arg: Any) -> str:
    dtype = _DTYPES.get(arg.type, arg.type)
    return f"{arg.name!r} {dtype} {_format_shape(arg.shape)}"


def _format_shape(shape: Sequence[int | str | None]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


__all__ = [
    "I2V_PRESET",
    "ModelLoadError",
    "ModelNotFoundError",
    "OnnxExtractor",
    "OnnxPreset",
    "PresetError",
    "default_providers",
    "fit_image",
    "pool_output",
    "preprocess",
    "shipped_preset",
    "shipped_preset_names",
]
