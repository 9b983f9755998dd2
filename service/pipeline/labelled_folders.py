"""The published workflow on plain folders: learn from labelled folders, triage an unlabelled one.

This module only composes parts: features extracts, the store caches vectors by content hash, classify decides.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.classify.registry import TrainedModel
from service.classify.training import TrainingData, near_duplicate_groups
from service.errors import InputError
from service.features import Extracted, FeatureExtractor, ImageLimits, extract_files
from service.features.images import ImageError, list_images
from service.route import FOLDER_OF_VERDICT
from service.store import Store
from service.words import Verdict

Progress = Callable[[int], None]


class StoreFeatureCache:
    """Adapts the store to ``features.FeatureCache``: vectors keyed by the image's content hash."""

    def __init__(self, store: Store, source: str = "folder") -> None:
        self.store = store
        self.source = source

    def get_many(self, sha256s: Sequence[str], extractor: str) -> dict[str, np.ndarray]:
        ids = {}
        for sha in sha256s:
            row = self.store.image_by_sha(sha)
            if row is not None:
                ids[int(row["id"])] = sha
        return {ids[i]: v for i, v in self.store.get_features(ids, extractor).items()}

    def put(self, sha256: str, extractor: str, vector: np.ndarray) -> None:
        image_id = self.store.add_image(sha256, None, None, None, self.source)
        self.store.put_features(image_id, extractor, vector)


def extract_folder_files(
    extractor: FeatureExtractor,
    paths: list[Path],
    *,
    limits: ImageLimits,
    batch_size: int,
    store: Store | None,
    on_progress: Progress | None = None,
) -> Extracted:
    cache = StoreFeatureCache(store) if store is not None else None
    return extract_files(
        extractor, paths, limits=limits, batch_size=batch_size, cache=cache, on_progress=on_progress
    )


def labelled_paths(neg_dir: Path, pos_dir: Path) -> tuple[list[Path], np.ndarray]:
    """Images of both folders with labels (0 = not 2D, 1 = 2D); a missing or empty folder is an error."""
    for folder in (neg_dir, pos_dir):
        if not folder.is_dir():
            raise InputError(f"not a folder: {folder}")
    neg, pos = list_images(neg_dir), list_images(pos_dir)
    if not neg or not pos:
        empty = neg_dir if not neg else pos_dir
        raise InputError(f"no images found in {empty}")
    return neg + pos, np.array([0] * len(neg) + [1] * len(pos))


@dataclass
class LabelledSet:
    data: TrainingData
    failures: list[ImageError]


def load_labelled(
    extractor: FeatureExtractor,
    neg_dir: Path,
    pos_dir: Path,
    *,
    limits: ImageLimits,
    batch_size: int,
    store: Store | None = None,
    on_progress: Progress | None = None,
) -> LabelledSet:
    """Features and labels for two folders; near-duplicates grouped so cross-validation stays honest."""
    paths, labels = labelled_paths(neg_dir, pos_dir)
    label_of = dict(zip(paths, labels, strict=True))
    got = extract_folder_files(
        extractor, paths, limits=limits, batch_size=batch_size, store=store, on_progress=on_progress
    )
    keep = _first_copies(got.sha256s)
    y = np.array([label_of[got.paths[i]] for i in keep], dtype=int)
    groups = near_duplicate_groups([got.dhashes[i] for i in keep])
    data = TrainingData(
        got.features[keep], y, [got.sha256s[i] for i in keep], groups, [str(neg_dir.resolve()), str(pos_dir.resolve())]
    )
    return LabelledSet(data, got.failures)


def _first_copies(sha256s: list[str]) -> list[int]:
    """Indices of the first copy of each byte-identical file: one image twice would be counted twice in CV."""
    seen: dict[str, int] = {}
    for i, sha in enumerate(sha256s):
        seen.setdefault(sha, i)
    return sorted(seen.values())


@dataclass
class TriageRow:
    path: Path
    verdict: Verdict
    p_2d: float
    margin: float


def triage(
    model: TrainedModel,
    extractor: FeatureExtractor,
    folder: Path,
    *,
    limits: ImageLimits,
    batch_size: int,
    store: Store | None = None,
    on_progress: Progress | None = None,
) -> tuple[list[TriageRow], list[ImageError]]:
    """A verdict for every readable image under ``folder``."""
    paths = list_images(folder)
    got = extract_folder_files(
        extractor, paths, limits=limits, batch_size=batch_size, store=store, on_progress=on_progress
    )
    if not got.paths:
        return [], got.failures
    decisions = model.decide(got.features)
    rows = [TriageRow(path, d.verdict, d.p_2d, d.margin) for path, d in zip(got.paths, decisions, strict=True)]
    return rows, got.failures


def place(rows: list[TriageRow], source: Path, out: Path, *, move: bool) -> Path:
    """Copy (or move) each image into OUT/positive, OUT/negative or OUT/uncertain; write OUT/report.csv."""
    for name in FOLDER_OF_VERDICT.values():
        (out / name).mkdir(parents=True, exist_ok=True)
    report = out / "report.csv"
    with report.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "verdict", "p_2d", "margin"])
        for row in rows:
            relative = row.path.relative_to(source)
            target = out / FOLDER_OF_VERDICT[row.verdict] / "__".join(relative.parts)
            (shutil.move if move else shutil.copy2)(row.path, target)
            writer.writerow([str(relative), row.verdict, f"{row.p_2d:.4f}", f"{row.margin:.4f}"])
    return report
