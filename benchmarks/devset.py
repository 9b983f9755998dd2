"""The labelled dev set as arrays, with its builtin features cached, for the benchmarks.

The folder holds ``manifest.csv`` (columns file,label,category,...,group; label ``2d``/``not2d``) and the files it
names. Near-duplicates share a ``group``: every split of the benchmarks keeps a group on one side.

Features come from the product's own path (``service.features.extract_files``, the builtin extractor, default
image limits) and are cached in an ``.npz`` keyed by the dataset, the extractor name and a hash of the extractor's
source, so reruns only refit models and a change to the features is never served stale.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.classify.training import TrainingData
from service.features import extract_files
from service.features.builtin import BuiltinExtractor

DEFAULT_DATASET = Path("/work/shared/datasets/dev")


@dataclass
class DevSet:
    X: np.ndarray  # float32 builtin features, one row per manifest row
    y: np.ndarray  # 1 = 2D, 0 = not 2D
    groups: np.ndarray  # integer near-duplicate group ids (from the manifest's ``group`` column)
    categories: np.ndarray
    files: list[str]
    sha256s: list[str]
    extractor: str

    def training_data(self) -> TrainingData:
        return TrainingData(self.X, self.y, list(self.sha256s), self.groups, [])


def _code_hash() -> str:
    source = inspect.getsourcefile(BuiltinExtractor)
    if source is None:
        return "nosource"
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()[:12]


def load_devset(folder: Path, cache_dir: Path) -> DevSet:
    with open(folder / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    files = [r["file"] for r in rows]
    extractor = BuiltinExtractor()
    cache = cache_dir / f"nijifeed_{folder.name}_{extractor.name}_{_code_hash()}.npz"
    X = sha256s = None
    if cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            if list(data["files"]) == files and data["X"].shape == (len(files), extractor.dim):
                X, sha256s = data["X"], [str(s) for s in data["sha256s"]]
    if X is None or sha256s is None:
        got = extract_files(extractor, [folder / f for f in files])
        if got.failures:
            raise SystemExit(f"unreadable: {[str(f) for f in got.failures]}")
        X, sha256s = got.features, list(got.sha256s)
        np.savez(cache, X=X, files=np.array(files), sha256s=np.array(sha256s))
    return DevSet(
        X=np.asarray(X, dtype=np.float32),
        y=np.array([r["label"] == "2d" for r in rows], dtype=int),
        groups=np.unique([r["group"] for r in rows], return_inverse=True)[1],
        categories=np.array([r["category"] for r in rows]),
        files=files,
        sha256s=sha256s,
        extractor=extractor.name,
    )
