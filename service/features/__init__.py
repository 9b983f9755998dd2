"""Feature extraction: images in, fixed-length float32 vectors out.

Two kinds: ``builtin`` (hand-made colour/edge statistics, no weights needed) and ONNX image models (``i2v``, the
published illust2vec network, or any model described by an ``OnnxPreset``). Everything downstream only sees the
``FeatureExtractor`` protocol, so a model trained on one extractor can check it is being fed by the same one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from service.features.images import ImageError, ImageLimits, load_image

if TYPE_CHECKING:
    from service.config import Settings

log = logging.getLogger(__name__)


@runtime_checkable
class FeatureExtractor(Protocol):
    """What every extractor offers. ``name`` identifies the feature space (a model is only valid for one)."""

    name: str
    dim: int
    #: The side the extractor works at; decoders may use it to decode JPEGs at a reduced scale.
    working_size: int

    def extract(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB images in, a float32 array of shape (len(images), dim) out."""
        ...


@dataclass
class Extracted:
    """The result of extracting a batch of files: rows of ``features`` line up with ``paths``."""

    paths: list[Path]
    features: np.ndarray
    failures: list[ImageError] = field(default_factory=list)


def extract_files(
    extractor: FeatureExtractor,
    paths: Iterable[Path],
    *,
    limits: ImageLimits = ImageLimits(),
    batch_size: int = 16,
    on_progress: callable | None = None,  # type: ignore[valid-type]
) -> Extracted:
    """Decode and extract in batches; an unreadable file is recorded in ``failures`` and never aborts the batch."""
    ok: list[Path] = []
    chunks: list[np.ndarray] = []
    failures: list[ImageError] = []
    for batch in _batches(paths, batch_size):
        images = []
        for path in batch:
            try:
                images.append(load_image(path, limits=limits, draft_size=extractor.working_size))
                ok.append(path)
            except ImageError as exc:
                log.warning("skipping %s: %s", exc.source, exc.reason)
                failures.append(exc)
            if on_progress:
                on_progress(1)
        if images:
            chunks.append(extractor.extract(images))
    features = np.concatenate(chunks) if chunks else np.zeros((0, extractor.dim), np.float32)
    return Extracted(ok, features.astype(np.float32, copy=False), failures)


def _batches(items: Iterable[Path], size: int) -> Iterator[list[Path]]:
    batch: list[Path] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def make_extractor(settings: Settings) -> FeatureExtractor:
    """The extractor the settings ask for; ``auto`` is i2v when a model file is configured, else builtin."""
    choice = settings.extractor
    if choice == "auto":
        choice = "i2v" if settings.i2v_model else "builtin"
        log.info("feature extractor: %s (auto)", choice)
    if choice == "builtin":
        from service.features.builtin import BuiltinExtractor

        return BuiltinExtractor()
    from service.features.onnx import I2V_PRESET, OnnxExtractor, OnnxPreset

    if choice == "i2v":
        if settings.i2v_model is None:
            from service.config import ConfigError

            raise ConfigError("NIJIFEED_I2V_MODEL: extractor 'i2v' needs the path of the illust2vec ONNX file")
        return OnnxExtractor(settings.i2v_model, I2V_PRESET, threads=settings.onnx_threads)
    if settings.onnx_model is None or settings.onnx_preset is None:
        from service.config import ConfigError

        raise ConfigError("NIJIFEED_ONNX_MODEL and NIJIFEED_ONNX_PRESET: extractor 'onnx' needs both")
    return OnnxExtractor(settings.onnx_model, OnnxPreset.from_file(settings.onnx_preset), threads=settings.onnx_threads)


__all__ = ["Extracted", "FeatureExtractor", "ImageError", "ImageLimits", "extract_files", "load_image", "make_extractor"]
