"""Feature extraction: images in, fixed-length float32 vectors out.

Two kinds: ``builtin`` (hand-made colour/edge statistics, no weights needed) and ONNX image models (``i2v``, the
published illust2vec network, or any model described by an ``OnnxPreset``). Everything downstream only sees the
``FeatureExtractor`` protocol, so a model trained on one extractor can check it is being fed by the same one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from service.features.images import ImageError, ImageLimits, dhash, load_image, read_file

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


class FeatureCache(Protocol):
    """Somewhere to keep vectors by content hash (the store provides one), so re-training re-extracts nothing."""

    def get_many(self, sha256s: Sequence[str], extractor: str) -> dict[str, np.ndarray]: ...

    def put(self, sha256: str, extractor: str, vector: np.ndarray) -> None: ...


@dataclass
class Extracted:
    """The result of extracting files: ``features``, ``sha256s`` and ``dhashes`` line up with ``paths``."""

    paths: list[Path]
    features: np.ndarray
    sha256s: list[str] = field(default_factory=list)
    dhashes: list[int] = field(default_factory=list)
    failures: list[ImageError] = field(default_factory=list)


def extract_files(
    extractor: FeatureExtractor,
    paths: Iterable[Path],
    *,
    limits: ImageLimits = ImageLimits(),
    batch_size: int = 16,
    cache: FeatureCache | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Extracted:
    """Decode and extract in batches; an unreadable file is recorded in ``failures`` and never aborts the batch.

    Vectors already in ``cache`` (same bytes, same extractor) are reused; new ones are added to it.
    """
    out = Extracted([], np.zeros((0, extractor.dim), np.float32))
    rows: list[np.ndarray] = []
    for batch in _batches(paths, batch_size):
        decoded = _decode_batch(batch, limits, extractor.working_size, out.failures)
        cached = cache.get_many([sha for _, sha, _ in decoded], extractor.name) if cache else {}
        todo = [(path, sha, image) for path, sha, image in decoded if sha not in cached]
        fresh = {}
        if todo:
            vectors = extractor.extract([im for *_, im in todo])
            fresh = dict(zip([sha for _, sha, _ in todo], vectors, strict=True))
        for path, sha, image in decoded:
            vector = cached.get(sha)
            if vector is None:
                vector = fresh[sha]
                if cache:
                    cache.put(sha, extractor.name, vector)
            out.paths.append(path)
            out.sha256s.append(sha)
            out.dhashes.append(dhash(image))
            rows.append(np.asarray(vector, dtype=np.float32))
        if on_progress:
            on_progress(len(batch))
    if rows:
        out.features = np.vstack(rows)
    return out


def _decode_batch(
    paths: list[Path], limits: ImageLimits, working_size: int, failures: list[ImageError]
) -> list[tuple[Path, str, Image.Image]]:
    decoded = []
    for path in paths:
        try:
            data = read_file(path, limits)
            image = load_image(data, limits=limits, draft_size=working_size, name=str(path))
        except ImageError as exc:
            log.warning("skipping %s: %s", exc.source, exc.reason)
            failures.append(exc)
            continue
        decoded.append((path, hashlib.sha256(data).hexdigest(), image))
    return decoded


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
    from service.config import ConfigError
    from service.features.onnx import I2V_PRESET, OnnxExtractor, OnnxPreset, shipped_preset, shipped_preset_names

    if choice == "i2v":
        if settings.i2v_model is None:
            raise ConfigError("NIJIFEED_I2V_MODEL: extractor 'i2v' needs the path of the illust2vec ONNX file")
        return OnnxExtractor(settings.i2v_model, I2V_PRESET, threads=settings.onnx_threads,
                             batch_size=settings.batch_size)
    if settings.onnx_model is None or settings.onnx_preset is None:
        raise ConfigError("NIJIFEED_ONNX_MODEL and NIJIFEED_ONNX_PRESET: extractor 'onnx' needs both")
    preset_ref = str(settings.onnx_preset)
    if preset_ref in shipped_preset_names():
        preset = shipped_preset(preset_ref)
    else:
        preset = OnnxPreset.from_file(settings.onnx_preset)
    return OnnxExtractor(settings.onnx_model, preset, threads=settings.onnx_threads, batch_size=settings.batch_size)


__all__ = [
    "Extracted", "FeatureExtractor", "ImageError", "ImageLimits", "extract_files", "load_image", "make_extractor",
]
