"""Trained models on disk, with the metadata that says what they are valid for.

A model file is a pickle of ``{"meta": ..., "estimator": ...}`` written atomically (temp file + rename) under
``<data_dir>/models``; the store's ``models`` table numbers the versions and marks the one that is active.
Loading a model next to a different feature extractor fails loudly: its numbers would be meaningless.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import sklearn

from service.classify.uncertainty import CLASSES, Decisions, Rule, decide
from service.errors import NijifeedError
from service.files import write_atomic


class ModelError(NijifeedError):
    """A model file is missing, unreadable, or made for other features."""


@dataclass
class ModelMeta:
    kind: str
    extractor: str
    dim: int
    rule: dict
    n_train: int
    n_2d: int
    dataset_sha256: str  # hash of the sorted training image hashes and labels: same data, same hash
    image_sha256s: list[str]
    cv: dict = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    classes: tuple[str, str] = CLASSES
    sklearn_version: str = sklearn.__version__
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self, *, with_hashes: bool = True) -> dict:
        data = asdict(self)
        if not with_hashes:
            data.pop("image_sha256s")
        return data


class Estimator(Protocol):
    """What a trained model needs of its scikit-learn estimator."""

    classes_: np.ndarray

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


@dataclass
class TrainedModel:
    estimator: Estimator
    meta: ModelMeta
    version: int | None = None
    #: ``NIJIFEED_THRESHOLD``: replaces the trained rule's thresholds wherever this model decides.
    threshold_override: float | None = None
    #: Out-of-fold P(2D) of each training image (in ``meta.image_sha256s`` order), from training; not saved.
    oof_p_2d: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def rule(self) -> Rule:
        rule = Rule(**self.meta.rule)
        return rule if self.threshold_override is None else rule.with_threshold(self.threshold_override)

    def check_extractor(self, name: str, dim: int) -> None:
        if (name, dim) != (self.meta.extractor, self.meta.dim):
            raise ModelError(
                f"model v{self.version} was trained on '{self.meta.extractor}' features ({self.meta.dim}-d) "
                f"but the extractor in use is '{name}' ({dim}-d); retrain with `nijifeed train` or set "
                f"NIJIFEED_EXTRACTOR to match"
            )

    def seen_in_training(self, sha256s: Sequence[str]) -> int:
        """How many of these images (by content hash) the model was trained on."""
        trained = set(self.meta.image_sha256s)
        return sum(1 for sha in sha256s if sha in trained)

    def p_2d(self, features: np.ndarray) -> np.ndarray:
        probs = self.estimator.predict_proba(np.asarray(features, dtype=np.float32))
        column = list(self.estimator.classes_).index(1)
        return probs[:, column]

    def decide(self, features: np.ndarray, rule: Rule | None = None) -> Decisions:
        """The decision for each row of ``features``, under the model's own rule unless one is given."""
        return decide(self.p_2d(features), rule or self.rule)


def dataset_hash(sha256s: list[str], labels: np.ndarray) -> str:
    import hashlib

    digest = hashlib.sha256()
    for sha, label in sorted(zip(sha256s, (int(v) for v in labels), strict=True)):
        digest.update(f"{sha}:{label}\n".encode())
    return digest.hexdigest()


def save_model(models_dir: Path, model: TrainedModel) -> Path:
    """Write the model file atomically; a crash mid-write leaves no half file under the final name."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    path = models_dir / f"model-{stamp}-{model.meta.kind}.pkl"
    payload = {"meta": model.meta.to_dict(), "estimator": model.estimator}
    write_atomic(path, pickle.dumps(payload, protocol=5))
    return path


def load_model(path: Path, version: int | None = None) -> TrainedModel:
    try:
        with open(path, "rb") as handle:
            payload = pickle.load(handle)  # noqa: S301 - our own file in our own data dir
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path} (retrain with `nijifeed train`)") from None
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise ModelError(f"cannot load model {path}: {exc}") from None
    meta = payload["meta"]
    meta["classes"] = tuple(meta.get("classes", CLASSES))
    return TrainedModel(payload["estimator"], ModelMeta(**meta), version)
