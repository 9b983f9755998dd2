"""The bundled labelled sample set the starter model is trained from (``service/samples/starter``).

A fresh install has no labels, so nothing could be classified until someone trained a model: the starter model
is trained from these images instead, at the first start of any command that needs a model
(``pipeline.retrain.ensure_starter``), so the first poll already fills the feed. The user's own labels later add
to the same images (``pipeline.retrain.training_set``).

``manifest.csv`` lists every file with its label (``2d`` / ``not2d``), category, Debian source package and path,
licence, near-duplicate ``group`` (used for cross-validation: a group never straddles two folds) and
``held_out``. ``held_out = demo`` marks the images the bundled sandbox timeline shows (and the rest of their
near-duplicate groups): they are kept out of the starter's training set, so the demo judges pictures the starter
never saw, as a real timeline's would be.

This module only reads the manifest; it knows nothing of features, models or the store.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from service.errors import InputError

#: How a model trained on the bundled samples names them in its ``meta.sources`` (not a path: the package may
#: move with a reinstall, and the samples are found again where it lives now).
STARTER_SOURCE = "samples:starter"


@dataclass(frozen=True)
class StarterFile:
    path: Path
    label: int  # 1 = 2D
    group: str  # near-duplicate group (manifest)
    held_out: str  # "" (used for training) or why it is not ("demo")


def starter_dir() -> Path:
    """Where the bundled starter samples live in the installed package."""
    return Path(str(resources.files("service").joinpath("samples", "starter")))


def starter_manifest(folder: Path | None = None) -> list[StarterFile]:
    """Every file the manifest lists, held-out ones included; ``InputError`` if the set is missing or broken."""
    folder = folder or starter_dir()
    manifest = folder / "manifest.csv"
    try:
        with manifest.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise InputError(f"the bundled starter samples are missing ({manifest}: {exc.strerror}); "
                         "reinstall nijifeed, or train with `nijifeed train --from-folders NEG_DIR POS_DIR`") from None
    files = []
    for row in rows:
        if row.get("label") not in ("2d", "not2d") or not row.get("file"):
            raise InputError(f"{manifest}: bad row {row!r}")
        files.append(StarterFile(folder / row["file"], int(row["label"] == "2d"), row.get("group") or row["file"],
                                 row.get("held_out") or ""))
    return files


def starter_files(folder: Path | None = None) -> list[StarterFile]:
    """The files the starter is trained on: the manifest's, less the held-out ones."""
    return [f for f in starter_manifest(folder) if not f.held_out]
