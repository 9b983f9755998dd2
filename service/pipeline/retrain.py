"""Retraining: people's answers (or labelled folders) train the next model, which sends fewer images to review.

One turn of the active-learning loop: gather a training set (every current label in the store, plus the folders
the first model was trained from, or the bundled starter samples when it was the starter; a person's answer
winning over a folder's or a sample's for the same picture), train as
``training.train`` always does (grouped CV, threshold from the precision target), then publish: the model file is
written, and in one transaction the version is registered, made active, and the images still waiting in the
queue get the new model's verdicts; those it is now sure of leave the queue (``routed_by = 'auto'``). The running
pipeline picks the new version up on its next batch (``pipeline.build.ActiveModel``).

Training from labelled folders alone (`nijifeed train --from-folders`) or from the bundled samples alone (the
starter model, ``ensure_starter`` when no model exists yet, `nijifeed train --starter`) is the same turn with
another training set (``folder_training_set``, ``starter_training_set``): every new model goes through
``train_and_publish``.

This module composes store, features and training (like ``pipeline.labelled_folders`` does for plain folders);
the maths stays in ``training``, ``thresholds`` and ``uncertainty``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.classify.promotion import HEAD_TO_HEAD_MIN, Comparison, head_to_head, refusals
from service.classify.registry import ModelError, TrainedModel, load_model, save_model
from service.classify.training import TrainingData, near_duplicate_groups, train
from service.config import Settings
from service.errors import InputError, TrainingError
from service.features import FeatureExtractor, ImageLimits
from service.features.images import ImageError
from service.media.cache import ImageCache
from service.pipeline.labelled_folders import Progress, extract_folder_files, labelled_paths, load_labelled
from service.pipeline.starter import STARTER_SOURCE, starter_files
from service.route import Routed, route_all
from service.store import Store

log = logging.getLogger(__name__)

#: How a model trained from store labels names that part of its training set in ``meta.sources``.
LABELS_SOURCE = "store:labels"


@dataclass
class Example:
    sha256: str
    y: int  # 1 = 2D
    x: np.ndarray
    dhash: int | None  # None when the picture itself is gone (features kept, pixels evicted)
    group: str | None = None  # a named near-duplicate group (the starter manifest's), if known


@dataclass
class TrainingSet:
    data: TrainingData
    from_folders: int = 0
    from_labels: int = 0
    overridden: int = 0  # folder images a person labelled otherwise
    folders: tuple[Path, Path] | None = None
    unusable: list[str] = field(default_factory=list)  # why some labels or files could not be used
    from_samples: int = 0  # bundled starter samples (``pipeline.starter``)

    @property
    def samples(self) -> bool:
        return STARTER_SOURCE in self.data.sources


@dataclass(frozen=True)
class TrainOptions:
    """How a new model is trained, and whether it goes live even when worse: the `train` command's options."""

    kind: str | None = None  # a model kind; None: NIJIFEED_MODEL
    target_precision: float | None = None  # None: NIJIFEED_TARGET_PRECISION
    threshold: float | None = None  # a fixed threshold instead of the target; None: NIJIFEED_THRESHOLD
    force: bool = False  # activate even if ``promotion.refusals`` finds it worse than the active model


@dataclass
class RetrainResult:
    model: TrainedModel
    version: int
    previous_version: int | None
    cv_before: dict | None  # the previous active model's CV figures (on its own training set)
    training: TrainingSet
    queue_before: int
    queue_after: int
    rescored: Counter  # feed / dropped (auto-resolved), audit, uncertain
    refused: list[str] = field(default_factory=list)  # why it was not activated (empty: it is active)
    forced: bool = False  # activated although refused (``train --force``)

    @property
    def activated(self) -> bool:
        return self.forced or not self.refused

    @property
    def cv_after(self) -> dict:
        return self.model.meta.cv

    def review_rate(self) -> tuple[float | None, float]:
        """CV review rate before and after (before is None without a previous model)."""
        before = self.cv_before["at_rule"]["review_rate"] if self.cv_before else None
        return before, self.cv_after["at_rule"]["review_rate"]

    def line(self) -> str:
        """One line for the daemon's log."""
        before, after = self.review_rate()
        t = self.training
        was = f" (was v{self.previous_version})" if self.previous_version else ""
        rate = f"{before:.3f} → {after:.3f}" if before is not None else f"{after:.3f}"
        samples = f"{t.from_samples} bundled samples, " if t.samples else ""
        trained = (f"model v{self.version}{was} trained on {len(t.data.y)} images ({t.from_labels} labels, "
                   f"{samples}{t.from_folders} from folders); CV review rate {rate}")
        if not self.activated:
            return f"{trained}; saved but NOT activated: {'; '.join(self.refused)}"
        return (f"{trained}; queue {self.queue_before} → {self.queue_after} ({self.rescored['feed']} to the feed, "
                f"{self.rescored['dropped']} dropped automatically)" + (" (forced)" if self.forced else ""))


# --- the training set -------------------------------------------------------------------------------------------


def folders_of(sources: Sequence[str]) -> tuple[Path, Path] | None:
    """The (not-2D, 2D) folder pair a model's ``meta.sources`` names, if any."""
    folders = [s for s in sources if s not in (LABELS_SOURCE, STARTER_SOURCE)]
    return (Path(folders[0]), Path(folders[1])) if len(folders) == 2 else None


def is_starter(sources: Sequence[str]) -> bool:
    """Whether a model with these ``meta.sources`` is a starter model (the bundled samples alone)."""
    return list(sources) == [STARTER_SOURCE]


def _model_sources(store: Store) -> Iterator[list[str]]:
    """The ``meta.sources`` of every loadable model: the active one first, then the newest first."""
    rows = sorted(store.list_models(), key=lambda r: (not r["active"], -int(r["version"])))
    for row in rows:
        try:
            yield list(load_model(Path(row["path"])).meta.sources)
        except ModelError:
            continue


def original_folders(store: Store) -> tuple[Path, Path] | None:
    """The folders the models were trained from: the active model's, else the newest model's that names some.
    Retrained models carry them on in their own ``sources``, so they survive any number of retrains."""
    for sources in _model_sources(store):
        folders = folders_of(sources)
        if folders is not None:
            return folders
    return None


def uses_samples(store: Store) -> bool:
    """Whether the next model from labels keeps the bundled samples: yes when the active model (the first
    loadable one) had them (the starter, and every retrain after it that was not told `--no-samples`), and on a
    data dir with no model at all; no after `--no-samples` or a model from the user's own folders."""
    for sources in _model_sources(store):
        return STARTER_SOURCE in sources
    return True


def group_ids(dhashes: Sequence[int | None], names: Sequence[str | None] | None = None) -> np.ndarray:
    """Near-duplicate groups: pictures whose perceptual hashes are close, or that share a named group (the
    starter manifest's), are one group; a picture with neither is a group of its own (ids never clash)."""
    groups = np.arange(len(dhashes)) + len(dhashes)
    known = [i for i, d in enumerate(dhashes) if d is not None]
    if known:
        groups[known] = near_duplicate_groups([int(dhashes[i]) for i in known])  # type: ignore[arg-type]
    if not names or not any(names):
        return groups
    parent: dict[int, int] = {}

    def find(g: int) -> int:
        while parent.get(g, g) != g:
            g = parent[g]
        return g

    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name is not None:
            a, b = find(int(groups[i])), find(int(groups[first.setdefault(name, i)]))
            if a != b:
                parent[a] = b
    return np.array([find(int(g)) for g in groups])


def merge(folder: list[Example], labelled: list[Example], sources: list[str]) -> tuple[TrainingData, int]:
    """One training set from both parts: a picture once (by content), a person's answer over a folder's.
    Returns the data and how many folder answers a label overrode."""
    by_sha = {e.sha256: e for e in folder}
    overridden = sum(1 for e in labelled if e.sha256 in by_sha and by_sha[e.sha256].y != e.y)
    by_sha.update({e.sha256: e for e in labelled})
    examples = list(by_sha.values())
    dim = examples[0].x.shape[0] if examples else 0
    data = TrainingData(
        X=np.vstack([e.x for e in examples]) if examples else np.zeros((0, dim), np.float32),
        y=np.array([e.y for e in examples], dtype=int),
        sha256s=[e.sha256 for e in examples],
        groups=group_ids([e.dhash for e in examples], [e.group for e in examples]),
        sources=sources,
    )
    return data, overridden


def folder_examples(
    extractor: FeatureExtractor, folders: tuple[Path, Path], *, limits: ImageLimits, batch_size: int, store: Store
) -> tuple[list[Example], list[ImageError]]:
    """The labelled folders' images (features cached in the store by content hash, so usually not recomputed)."""
    paths, labels = labelled_paths(*folders)
    label_of = dict(zip(paths, labels, strict=True))
    got = extract_folder_files(extractor, paths, limits=limits, batch_size=batch_size, store=store)
    examples = [
        Example(sha, int(label_of[path]), x, dhash)
        for path, sha, x, dhash in zip(got.paths, got.sha256s, got.features, got.dhashes, strict=True)
    ]
    return examples, got.failures


def starter_examples(
    extractor: FeatureExtractor,
    *,
    limits: ImageLimits,
    batch_size: int,
    store: Store,
    on_progress: Progress | None = None,
) -> tuple[list[Example], list[ImageError]]:
    """The bundled starter samples (``pipeline.starter``) with their manifest groups; features cached in the store
    by content hash like a folder's."""
    files = starter_files()
    by_path = {f.path: f for f in files}
    got = extract_folder_files(extractor, list(by_path), limits=limits, batch_size=batch_size, store=store,
                               on_progress=on_progress)
    examples = [
        Example(sha, by_path[path].label, x, dhash, by_path[path].group)
        for path, sha, x, dhash in zip(got.paths, got.sha256s, got.features, got.dhashes, strict=True)
    ]
    return examples, got.failures


def cached_file(row, cache_dir: Path) -> Path | None:
    """The local copy of an image row (``sha256``, ``cache_path``), if it is still there."""
    return ImageCache(cache_dir).local_copy(row["sha256"], row["cache_path"])


def store_examples(
    store: Store, extractor: FeatureExtractor, *, cache_dir: Path, limits: ImageLimits, batch_size: int
) -> tuple[list[Example], list[str]]:
    """Every current label in the store with its features: read from the cached picture (which also gives the
    near-duplicate hash, and extracts features the store lacks), else the stored vector alone."""
    rows = store.labelled_images()
    y_of = {row["sha256"]: int(row["label"] == "2d") for row in rows}
    files = [path for path in (cached_file(row, cache_dir) for row in rows) if path is not None]
    got = extract_folder_files(extractor, files, limits=limits, batch_size=batch_size, store=store)
    examples = [
        Example(sha, y_of[sha], x, dhash)
        for sha, x, dhash in zip(got.sha256s, got.features, got.dhashes, strict=True)
        if sha in y_of
    ]
    have = {e.sha256 for e in examples}
    rest = {int(row["id"]): row["sha256"] for row in rows if row["sha256"] not in have}
    stored = store.get_features(rest, extractor.name)
    examples += [Example(rest[i], y_of[rest[i]], x, None) for i, x in stored.items()]
    unusable = [f"image {i}: no cached picture and no {extractor.name} features" for i in rest if i not in stored]
    return examples, unusable


def training_set(
    store: Store, extractor: FeatureExtractor, settings: Settings, *, samples: bool | None = None
) -> TrainingSet:
    """Store labels plus the original folders (those still on disk) and, with ``samples`` (None: as
    ``uses_samples`` says), the bundled starter samples, merged as ``merge`` says."""
    limits = ImageLimits.from_settings(settings)
    folders = original_folders(store)
    folder_part: list[Example] = []
    sample_part: list[Example] = []
    unusable: list[str] = []
    if folders is not None:
        try:
            folder_part, failures = folder_examples(
                extractor, folders, limits=limits, batch_size=settings.batch_size, store=store
            )
            unusable += [f"{f.source}: {f.reason}" for f in failures]
        except InputError as exc:
            unusable.append(f"original folders not used: {exc}")
            folders = None
    with_samples = uses_samples(store) if samples is None else samples
    if with_samples:
        try:
            sample_part, failures = starter_examples(extractor, limits=limits, batch_size=settings.batch_size,
                                                     store=store)
            unusable += [f"{f.source}: {f.reason}" for f in failures]
        except InputError as exc:
            unusable.append(f"bundled samples not used: {exc}")
            with_samples = False
    labelled, missing = store_examples(
        store, extractor, cache_dir=settings.cache_dir, limits=limits, batch_size=settings.batch_size
    )
    unusable += missing
    sources = (([str(folders[0]), str(folders[1])] if folders else []) + ([STARTER_SOURCE] if with_samples else [])
               + [LABELS_SOURCE])
    data, overridden = merge(folder_part + sample_part, labelled, sources)
    return TrainingSet(data, len(folder_part), len(labelled), overridden, folders, unusable,
                       from_samples=len(sample_part))


# --- re-scoring the queue and publishing ------------------------------------------------------------------------


def score_waiting(
    store: Store, model: TrainedModel, extractor: FeatureExtractor, settings: Settings
) -> list[Routed]:
    """``model``'s verdicts on the images waiting for review (computed outside any transaction: this may need
    feature extraction, and the daemon must not wait on a write lock meanwhile)."""
    rows = store.waiting_for_review()
    if not rows:
        return []
    features = store.get_features([int(r["id"]) for r in rows], extractor.name)
    missing = [r for r in rows if int(r["id"]) not in features]
    if missing:
        limits = ImageLimits.from_settings(settings)
        paths = [path for path in (cached_file(r, settings.cache_dir) for r in missing) if path is not None]
        got = extract_folder_files(extractor, paths, limits=limits, batch_size=settings.batch_size, store=store)
        id_of = {r["sha256"]: int(r["id"]) for r in missing}
        features.update({id_of[sha]: x for sha, x in zip(got.sha256s, got.features, strict=True) if sha in id_of})
    scored = [r for r in rows if int(r["id"]) in features]
    if not scored:
        return []
    decisions = model.decide(np.vstack([features[int(r["id"])] for r in scored]))
    return route_all([int(r["id"]) for r in scored], [r["sha256"] for r in scored], decisions, settings.audit_rate)


def publish(
    store: Store, models_dir: Path, model: TrainedModel, rescored: list[Routed], *, refused: Sequence[str] = ()
) -> tuple[int, Counter]:
    """Write the model file, then register it, activate it and apply its verdicts on the queue in one
    transaction: a reader sees the old model with the old queue or the new model with the new queue. With
    ``refused`` reasons the model is registered (with them) but neither activated nor applied."""
    path = save_model(models_dir, model)
    rule = model.rule
    metrics = {**model.meta.cv, "not_activated": list(refused)} if refused else dict(model.meta.cv)
    if is_starter(model.meta.sources):
        metrics["starter"] = True  # `model list` and the report mark it
    counts: Counter = Counter()
    with store.transaction():
        version = store.register_model(path, model.meta.extractor, model.meta.kind, rule.threshold, rule.score_kind,
                                       metrics)
        if not refused:
            store.activate_model(version)
            counts = store.apply_rescored(version, rescored)
    model.version = version
    return version, counts


def train_and_publish(
    settings: Settings,
    store: Store,
    extractor: FeatureExtractor,
    training: TrainingSet,
    *,
    options: TrainOptions = TrainOptions(),
) -> RetrainResult:
    """Train on ``training`` (grouped CV, threshold from the precision target unless fixed), score the waiting
    images with the new model, and ``publish`` both at once, unless ``promotion.refusals`` finds it worse than the
    active model (then it is saved, not activated; ``options.force`` activates it anyway). Raises ``TrainingError`` when
    there is too little to learn from (fewer than 4 images of a class)."""
    previous = store.active_model()
    fixed = options.threshold if options.threshold is not None else settings.threshold
    target = options.target_precision or settings.target_precision
    model = train(
        training.data,
        kind=options.kind or settings.model,
        extractor=extractor.name,
        score_kind=settings.score_kind,
        target_precision=target,
        fixed_threshold=fixed,
        min_margin_2d=settings.min_margin_2d,
        folds=settings.cv_folds,
        seed=settings.seed,
    )
    cv_before = cv_figures(previous)
    reasons = refusals(model.meta.cv["at_rule"], cv_before["at_rule"] if cv_before else None,
                       target_precision=target, tolerance=settings.retrain_tolerance,
                       compared=compare_on_unseen(store, model, training.data, extractor, settings))
    # The first model goes live whatever its figures: anything routes better than waiting for one.
    forced = bool(reasons) and (options.force or previous is None)
    rescored = score_waiting(store, model, extractor, settings) if forced or not reasons else []
    queue_before = store.open_review_count()
    version, counts = publish(store, settings.models_dir, model, rescored, refused=[] if forced else reasons)
    if reasons:
        log.warning("model v%d %s: %s", version, "activated although" if forced else "saved but not activated",
                    "; ".join(reasons))
    return RetrainResult(
        model=model,
        version=version,
        previous_version=int(previous["version"]) if previous else None,
        cv_before=cv_before,
        training=training,
        queue_before=queue_before,
        queue_after=store.open_review_count(),
        rescored=counts,
        refused=reasons,
        forced=forced,
    )


def compare_on_unseen(
    store: Store, model: TrainedModel, data: TrainingData, extractor: FeatureExtractor, settings: Settings
) -> Comparison | None:
    """The new model against the active one on the training images the active one never saw (see
    ``promotion``); None when there is no usable active model or too few such images."""
    row = store.active_model()
    if row is None or model.oof_p_2d is None:
        return None
    try:
        active = load_model(Path(row["path"]), int(row["version"]))
        active.check_extractor(extractor.name, extractor.dim)
    except ModelError:
        return None
    active.threshold_override = settings.threshold
    seen = set(active.meta.image_sha256s)
    unseen = np.array([i for i, sha in enumerate(data.sha256s) if sha not in seen], dtype=int)
    if len(unseen) < HEAD_TO_HEAD_MIN or len(set(data.y[unseen].tolist())) < 2:
        return None
    y = data.y[unseen]
    basis = f"on {len(unseen)} images v{active.version} never saw"
    return head_to_head(y, model.oof_p_2d[unseen], model.rule, active.p_2d(data.X[unseen]), active.rule, basis)


def retrain(
    settings: Settings,
    store: Store,
    extractor: FeatureExtractor,
    *,
    options: TrainOptions = TrainOptions(),
    samples: bool | None = None,
) -> RetrainResult:
    """One turn of the loop (see the module docstring): store labels plus the first folders (and the bundled
    samples, as ``training_set`` says for ``samples``), trained and published by ``train_and_publish``."""
    training = training_set(store, extractor, settings, samples=samples)
    return train_and_publish(settings, store, extractor, training, options=options)


def folder_training_set(
    settings: Settings,
    store: Store,
    extractor: FeatureExtractor,
    neg_dir: Path,
    pos_dir: Path,
    *,
    on_progress: Progress | None = None,
) -> TrainingSet:
    """Two labelled folders (not 2D, 2D) as a training set; features are cached in the store by content hash, and
    unreadable files are listed in ``unusable`` (``"<file>: <reason>"``). Raises ``InputError`` for a missing or
    empty folder."""
    labelled = load_labelled(extractor, neg_dir, pos_dir, limits=ImageLimits.from_settings(settings),
                             batch_size=settings.batch_size, store=store, on_progress=on_progress)
    return TrainingSet(labelled.data, from_folders=len(labelled.data.y), folders=(neg_dir, pos_dir),
                       unusable=[f"{f.source}: {f.reason}" for f in labelled.failures])


def train_from_folders(
    settings: Settings,
    store: Store,
    extractor: FeatureExtractor,
    neg_dir: Path,
    pos_dir: Path,
    *,
    options: TrainOptions = TrainOptions(),
    on_progress: Progress | None = None,
) -> RetrainResult:
    """``folder_training_set`` then ``train_and_publish``: a new model from two labelled folders, activated with
    its verdicts on the waiting images in one transaction."""
    training = folder_training_set(settings, store, extractor, neg_dir, pos_dir, on_progress=on_progress)
    return train_and_publish(settings, store, extractor, training, options=options)


def starter_training_set(
    settings: Settings, store: Store, extractor: FeatureExtractor, *, on_progress: Progress | None = None
) -> TrainingSet:
    """The bundled starter samples alone as a training set (groups: the manifest's, joined with the perceptual
    hash's); unreadable files are listed in ``unusable``. Raises ``InputError`` when the set is missing."""
    examples, failures = starter_examples(extractor, limits=ImageLimits.from_settings(settings),
                                          batch_size=settings.batch_size, store=store, on_progress=on_progress)
    data, _ = merge(examples, [], [STARTER_SOURCE])
    return TrainingSet(data, from_samples=len(data.y), unusable=[f"{f.source}: {f.reason}" for f in failures])


def train_starter(
    settings: Settings,
    store: Store,
    extractor: FeatureExtractor,
    *,
    options: TrainOptions = TrainOptions(),
    on_progress: Progress | None = None,
) -> RetrainResult:
    """A starter model (``starter_training_set`` then ``train_and_publish``), for the configured extractor;
    `nijifeed train --starter`. ``ensure_starter`` is the automatic first one."""
    training = starter_training_set(settings, store, extractor, on_progress=on_progress)
    return train_and_publish(settings, store, extractor, training, options=options)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (waiting for it); the kernel drops it if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def starter_lock_path(settings: Settings) -> Path:
    return settings.data_dir / "starter.lock"


def ensure_starter(settings: Settings, store: Store, extractor: FeatureExtractor) -> RetrainResult | None:
    """Train and activate the starter model when no model is active (else None), logging what it did.

    Two processes starting together on one data dir train it once: each takes a lock file first, and the second
    then finds the first one's model active and returns None. Raises ``TrainingError`` or ``InputError`` when
    the bundled samples cannot be used (missing from the installation, or unreadable by this extractor)."""
    if store.active_model() is not None:
        return None
    with _file_lock(starter_lock_path(settings)):
        if store.active_model() is not None:
            return None
        log.info("no model yet: training the starter model on the bundled labelled samples with %s features "
                 "(once; `nijifeed train --starter` rebuilds it)", extractor.name)
        started = time.monotonic()
        result = train_starter(settings, store, extractor)
    for reason in result.training.unusable:
        log.warning("starter model: not used: %s", reason)
    at_rule = result.model.meta.cv["at_rule"]
    log.info("starter model v%d trained in %.1f s on %d bundled images (%d 2D) with %s features; grouped CV: "
             "review rate %.3f, feed precision %.3f, 2D to feed %.3f", result.version, time.monotonic() - started,
             len(result.training.data.y), int(result.training.data.y.sum()), extractor.name,
             at_rule["review_rate"], at_rule["precision_2d"], at_rule["recall_2d"])
    return result


def cv_figures(row) -> dict | None:
    """The CV figures a models row was registered with (None for none, or an older format)."""
    if row is None or not row["metrics_json"]:
        return None
    metrics = json.loads(row["metrics_json"])
    return metrics if "at_rule" in metrics else None


# --- the daemon's job -------------------------------------------------------------------------------------------


def new_labels(store: Store) -> int:
    """Labels given since the newest model was trained. The newest, not the active one: after a roll back
    (`model use` an older version) the labels the newer model already learnt from must not trigger a retrain."""
    models = store.list_models()
    return store.labels_since(max(r["created_at"] for r in models) if models else None)


def maybe_retrain(
    settings: Settings, store: Store, extractor: FeatureExtractor | None = None
) -> RetrainResult | None:
    """Retrain when at least ``settings.retrain_after_labels`` new labels exist (0 disables); else None.

    Meant for a scheduled job: pass the extractor the pipeline already holds (loading an ONNX model twice costs
    memory), and a store opened on the job's own thread. Too few labels of a class is not an error here: it is
    logged and the job tries again at its next run.
    """
    due = settings.retrain_after_labels
    if due <= 0:
        return None
    waiting = new_labels(store)
    if waiting < due:
        return None
    if extractor is None:
        from service.features import make_extractor

        extractor = make_extractor(settings)
    try:
        result = retrain(settings, store, extractor)
    except TrainingError as exc:
        log.info("retrain postponed (%d new labels): %s", waiting, exc)
        return None
    if result.activated:
        log.info("retrained: %s", result.line())
    else:
        log.warning("retrained: %s", result.line())
    return result
