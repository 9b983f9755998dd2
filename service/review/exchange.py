"""The folder workflow of the published method: export the queue as files, sort them by hand, import the answers.

A file's name carries the image id and the start of its content hash (``000123_ab12cd34ef56.jpg``), so the import
knows which image each file is without guessing, and the full hash of the bytes proves it is the same picture:
a file whose name is not ours, or whose content changed (edited, re-saved, replaced), is reported and skipped.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from service.errors import InputError
from service.review.display import extension, file_of
from service.review.queue import open_items
from service.store import Store
from service.words import LABELS, Label

ANSWER_DIRS: tuple[Label, ...] = LABELS  # one folder per answer, named as the label
_NAME = re.compile(r"^(\d+)_([0-9a-f]{12})(?:\.[A-Za-z0-9]+)?$")
README = """\
nijifeed review export
======================

Each image here waits for your answer. Its file name is <image id>_<start of its content hash>: keep it.

  * Move the 2D illustrations (colour drawings, paintings, cartoons, anime art) into 2d/
  * Move everything else (photos, 3D renders, monochrome drawings, manga pages, screenshots) into not2d/
  * Leave a file here if you are not sure: it stays in the queue.

Then run:   nijifeed review import {folder}

A file that was renamed or edited (its content no longer matches) is reported and not used; nothing is guessed.
Running the import again is harmless.
"""


def file_name(image_id: int, sha256: str, suffix: str) -> str:
    return f"{image_id:06d}_{sha256[:12]}{suffix}"


def parse_name(name: str) -> tuple[int, str] | None:
    """(image id, hash prefix) from an exported file's name, or None when it is not one of ours."""
    match = _NAME.match(name)
    return (int(match.group(1)), match.group(2)) if match else None


@dataclass
class ExportResult:
    written: list[Path] = field(default_factory=list)
    already_sorted: int = 0  # waiting in 2d/ or not2d/ for an import: not written again
    not_cached: list[int] = field(default_factory=list)


def export_queue(store: Store, folder: Path, *, cache_dir: Path, audit_every: int = 5) -> ExportResult:
    """Write every open item's cached image into ``folder`` (created), with ``2d/``, ``not2d/`` and a README."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ANSWER_DIRS:
        (folder / name).mkdir(exist_ok=True)
    (folder / "README.txt").write_text(README.format(folder=folder))
    sorted_names = {p.stem for name in ANSWER_DIRS for p in (folder / name).rglob("*") if p.is_file()}
    result = ExportResult()
    for item in open_items(store, limit=None, audit_every=audit_every):
        source = file_of(item, cache_dir)
        if source is None:
            result.not_cached.append(item.image_id)
            continue
        stem = file_name(item.image_id, item.sha256, "")
        if stem in sorted_names:
            result.already_sorted += 1
            continue
        target = folder / (stem + extension(source))
        shutil.copyfile(source, target)
        result.written.append(target)
    return result


@dataclass
class ImportResult:
    labelled: Counter = field(default_factory=Counter)  # by answer
    unchanged: int = 0  # the image already had this answer
    unknown: list[Path] = field(default_factory=list)  # not named like an export, or no such image
    changed: list[Path] = field(default_factory=list)  # the content is not the exported image's any more
    conflicts: list[Path] = field(default_factory=list)  # the same image in both 2d/ and not2d/
    unsorted: int = 0  # still at the top level: no answer yet


def import_answers(store: Store, folder: Path) -> ImportResult:
    """Label every image found in ``folder/2d`` and ``folder/not2d`` (see the module docstring)."""
    if not all((folder / name).is_dir() for name in ANSWER_DIRS):
        raise InputError(f"{folder} has no 2d/ and not2d/ folders (make them with `nijifeed review export`)")
    result = ImportResult()
    found: dict[int, list[tuple[Label, Path]]] = {}
    for answer in ANSWER_DIRS:
        for path in sorted(p for p in (folder / answer).rglob("*") if p.is_file() and not p.name.startswith(".")):
            image_id = _identify(store, path, result)
            if image_id is not None:
                found.setdefault(image_id, []).append((answer, path))
    for image_id, copies in found.items():
        if len({answer for answer, _ in copies}) > 1:
            result.conflicts.extend(path for _, path in copies)
            continue
        answer = copies[0][0]
        if store.current_label(image_id) == answer:
            result.unchanged += 1
            continue
        store.label_image(image_id, answer, source="import", undoable=False)
        result.labelled[answer] += 1
    result.unsorted = sum(1 for p in folder.iterdir() if p.is_file() and parse_name(p.name) is not None)
    return result


def _identify(store: Store, path: Path, result: ImportResult) -> int | None:
    """The image a file is, checked by name and by content; records the file as unknown or changed if not."""
    parsed = parse_name(path.name)
    sha256 = store.image_sha256(parsed[0]) if parsed else None
    if parsed is None or sha256 is None or not sha256.startswith(parsed[1]):
        result.unknown.append(path)
        return None
    if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        result.changed.append(path)
        return None
    return parsed[0]
