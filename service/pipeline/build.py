"""The parts of a cycle built from Settings (the source, the downloader, the cycle itself, the hot-reloaded active
model), and the jobs the daemon runs with them (``CycleRunner``, ``ForwardRunner``, ``RetrainRunner``).

Not the only factory: each part builds its own pieces (``features.make_extractor``, ``feed.forward.make_forwarders``,
``web.create_app``), and ``pipeline.service.Service`` composes all of them into the running daemon.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from service.classify.registry import ModelError, TrainedModel, load_model
from service.config import ConfigError, Settings
from service.errors import InputError, TrainingError
from service.features import FeatureExtractor, ImageLimits
from service.media.cache import ImageCache, enforce_cache_limit
from service.media.download import Downloader, default_allowed_hosts
from service.pipeline.cycle import Cycle
from service.sources import Source
from service.sources.read_limit import DailyReadLimit
from service.store import Store

log = logging.getLogger(__name__)


class ActiveModel:
    """The store's active model, reloaded when another version is activated (by `train` or `model use`).

    Checking is one indexed query per call, so the daemon picks up a new model on its next batch without a
    restart. A model that cannot be loaded keeps the previous one in use and says why, once.

    Every face that needs a model asks here (the cycles of `run`, `poll` and `demo`; `triage`, `eval`), so this
    is where a data dir with no model gets one: built with ``settings`` (``from_settings``) and
    ``NIJIFEED_STARTER_MODEL`` on, the first ask trains the starter model on the bundled samples
    (``retrain.ensure_starter``: once, even with two processes starting together).
    """

    def __init__(
        self,
        store: Store,
        extractor: FeatureExtractor,
        threshold: float | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        self.store = store
        self.extractor = extractor
        self.threshold = threshold
        self.settings = settings
        self.model: TrainedModel | None = None
        self._failed_version: int | None = None
        self._starter_tried = False

    @classmethod
    def from_settings(cls, settings: Settings, store: Store, extractor: FeatureExtractor) -> ActiveModel:
        """The active model of ``store``, with the settings' threshold override and starter model."""
        return cls(store, extractor, settings.threshold, settings=settings)

    def _active_row(self):
        row = self.store.active_model()
        if row is None and not self._starter_tried and self.settings is not None and self.settings.starter_model:
            self._starter_tried = True  # tried once: a failure is logged, not retried on every batch
            from service.pipeline.retrain import ensure_starter

            try:
                ensure_starter(self.settings, self.store, self.extractor)
            except (TrainingError, InputError) as exc:
                log.error("cannot train the starter model: %s", exc)
            row = self.store.active_model()
        return row

    def load(self) -> TrainedModel:
        """The active model, checked against the extractor; raises ``ModelError`` saying what to do."""
        row = self._active_row()
        if row is None:
            raise ModelError("no active model yet: train one with `nijifeed train --starter` (the bundled samples) "
                             "or `nijifeed train --from-folders NEG_DIR POS_DIR`")
        model = load_model(Path(row["path"]), int(row["version"]))
        model.check_extractor(self.extractor.name, self.extractor.dim)
        model.threshold_override = self.threshold
        return model

    def __call__(self) -> TrainedModel | None:
        row = self._active_row()
        if row is None:
            return self.model
        version = int(row["version"])
        if (self.model is None or self.model.version != version) and version != self._failed_version:
            try:
                model = self.load()
            except ModelError as exc:
                log.error("cannot use model v%d: %s", version, exc)
                self._failed_version = version
                return self.model
            if self.model is not None:
                log.info("model v%d is active (was v%s)", version, self.model.version)
            self.model = model
        return self.model


def make_source(settings: Settings, stop: threading.Event | None = None) -> Source:
    if settings.source.startswith("folder:"):
        from service.sources.folder import FolderSource

        folder = Path(settings.source.removeprefix("folder:")).expanduser()
        return FolderSource(folder, recursive=settings.folder_recursive, settle=settings.folder_settle)
    from service.sources.x_timeline import XSource

    return XSource.from_settings(settings, stop=stop)


def make_downloader(settings: Settings) -> Downloader:
    """The downloader ``settings`` describe: X's media hosts, the API's host and port, ``media_hosts``; local
    files only under the folder of a ``folder:DIR`` source (none for the X source)."""
    source = settings.source
    local_root = Path(source.removeprefix("folder:")).expanduser() if source.startswith("folder:") else None
    return Downloader(
        allowed_hosts=default_allowed_hosts(settings.x_api_base_url, settings.media_hosts),
        concurrency=settings.download_concurrency,
        timeout=settings.http_timeout,
        retries=settings.download_retries,
        max_bytes=settings.max_image_bytes,
        photo_variant=settings.photo_variant,
        local_root=local_root,
    )


def make_cycle(
    settings: Settings,
    store: Store,
    *,
    source: Source | None,
    extractor: FeatureExtractor,
    model: ActiveModel,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
) -> Cycle:
    """``clock``: Unix seconds, for the polls' times and the daily read limit's UTC day (tests inject one)."""
    skip = frozenset() if settings.classify_previews else frozenset({"video", "animated_gif"})
    return Cycle(
        store=store,
        source=source,
        extractor=extractor,
        model=model,
        downloader_factory=lambda: make_downloader(settings),
        cache=ImageCache(settings.cache_dir),
        limits=ImageLimits.from_settings(settings),
        batch_size=settings.batch_size,
        audit_rate=settings.audit_rate,
        skip_kinds=skip,
        max_attempts=settings.max_download_attempts,
        stop=stop,
        read_limit=DailyReadLimit.from_settings(settings, clock=clock),
        clock=clock,
    )


__all__ = ["ActiveModel", "ConfigError", "make_cycle", "make_downloader", "make_source"]


class ThreadStores:
    """One store connection per thread, as sqlite3 requires; the scheduler runs jobs on worker threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[Store] = []
        self._lock = threading.Lock()

    def get(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store.open(self.path)
            with self._lock:
                self._all.append(store)
        return store

    def close(self) -> None:
        with self._lock:
            for store in self._all:
                store.close()
            self._all.clear()


class CycleRunner:
    """Runs cycles for the daemon and `nijifeed poll`, keeping what is expensive to build (the extractor, the
    source with its resolved user id, the loaded model) across cycles. After each cycle the image cache is held
    to its size bound."""

    def __init__(self, settings: Settings, extractor: FeatureExtractor, source: Source | None, *,
                 clock: Callable[[], float] = time.time) -> None:
        """``clock``: Unix seconds for the cycles' polls and the daily read limit's UTC day (tests inject one)."""
        self.settings = settings
        self.extractor = extractor
        self.source = source
        self.clock = clock
        self.stores = ThreadStores(settings.db_path)
        self._models: dict[int, ActiveModel] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, extractor: FeatureExtractor, *, stop: threading.Event | None = None
    ) -> CycleRunner:
        """Cycles on the configured source; ``stop`` also ends the source's backoff sleeps."""
        return cls(settings, extractor, make_source(settings, stop))

    def store(self) -> Store:
        return self.stores.get()

    def __call__(self, stop: threading.Event, fetch: bool = True):
        store = self.store()
        model = self._models.get(threading.get_ident())
        if model is None:
            model = self._models[threading.get_ident()] = ActiveModel.from_settings(self.settings, store,
                                                                                    self.extractor)
            model()  # a fresh data dir gets its starter model here, before any download waits on it
        cycle = make_cycle(self.settings, store, source=self.source, extractor=self.extractor, model=model, stop=stop,
                           clock=self.clock)
        try:
            return cycle.run(fetch=fetch)
        finally:
            eviction = enforce_cache_limit(self.settings, store)
            if eviction.evicted:
                log.info("image cache: %s", eviction)

    def close(self) -> None:
        self.stores.close()


class ForwardRunner:
    """The daemon's forwarding job: deliver due outbox rows with the configured forwarders (none: no job)."""

    def __init__(self, settings: Settings) -> None:
        from service.feed.forward import make_forwarders

        self.settings = settings
        self.forwarders = make_forwarders(settings)
        self.stores = ThreadStores(settings.db_path)

    def __bool__(self) -> bool:
        return bool(self.forwarders)

    def switched_on(self) -> None:
        """Fix the instant from which the enabled forwarders send every new feed entry (see ``outbox``)."""
        from service.feed.forward.outbox import switched_on_since

        switched_on_since(self.stores.get(), self.forwarders)

    def __call__(self):
        from service.feed.forward import deliver_due

        return deliver_due(self.settings, self.stores.get(), self.forwarders)

    def close(self) -> None:
        self.stores.close()


class RetrainRunner:
    """The daemon's retrain job: ``retrain.maybe_retrain`` on the job thread's own store, with the extractor the
    cycles already hold (it trains only once ``NIJIFEED_RETRAIN_AFTER_LABELS`` new labels exist; 0: no job)."""

    def __init__(self, settings: Settings, extractor: FeatureExtractor) -> None:
        self.settings = settings
        self.extractor = extractor
        self.stores = ThreadStores(settings.db_path)

    def __bool__(self) -> bool:
        return self.settings.retrain_after_labels > 0

    def __call__(self):
        from service.pipeline.retrain import maybe_retrain

        return maybe_retrain(self.settings, self.stores.get(), self.extractor)

    def close(self) -> None:
        self.stores.close()
