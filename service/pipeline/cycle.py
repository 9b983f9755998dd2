"""One cycle of the daemon: source → store → download → decode → extract → classify → route.

Every step commits its result to the store before the next begins, and every step's work list is read back from
the store (``pending`` media, ``unrouted`` images), so a cycle killed at any point resumes where it stopped.
Downloads run on an asyncio loop; feature extraction runs in a worker thread on batches as downloads complete,
so the two overlap. Database writes stay on the cycle's own thread (one sqlite connection per thread).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, cast

import numpy as np
from PIL import Image

from service.classify.registry import TrainedModel
from service.features import FeatureExtractor, ImageLimits
from service.features.images import ImageError, decode_image, load_image
from service.media import Download, media_url
from service.media.cache import ImageCache
from service.route import route_all
from service.sources import Source, SourceError
from service.sources.read_limit import DailyReadLimit, ReadLimitedSource, page_size
from service.store import Store
from service.store.journey import PendingMedia

log = logging.getLogger(__name__)


@dataclass
class CycleSummary:
    posts: int = 0
    pages: int = 0
    reads: int = 0
    new_media: int = 0
    downloaded: int = 0
    failed: int = 0
    retry_later: int = 0
    routed: Counter = field(default_factory=Counter)  # feed / review / dropped
    audit: int = 0
    waiting_for_model: int = 0
    gap: bool = False
    read_limit: str | None = None  # why polling pauses until the next UTC day (NIJIFEED_X_DAILY_READ_LIMIT)
    error: str | None = None
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The one log line per cycle that says what was fetched and where it went."""
        parts = [
            f"{self.posts} posts ({self.pages} pages, {self.reads} reads)",
            f"{self.new_media} new media",
            f"{self.downloaded} downloaded",
            f"feed {self.routed['feed']}, review {self.routed['review']}, dropped {self.routed['dropped']}",
        ]
        if self.audit:
            parts.append(f"{self.audit} audit")
        if self.failed or self.retry_later:
            parts.append(f"{self.failed} failed, {self.retry_later} to retry")
        if self.waiting_for_model:
            parts.append(f"{self.waiting_for_model} waiting for a model")
        if self.gap:
            parts.append("GAP in the timeline")
        if self.read_limit:
            parts.append("daily read limit reached")
        if self.error:
            parts.append(f"error: {self.error}")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        data = dict(self.__dict__)
        data["routed"] = dict(self.routed)
        return data


class MediaDownloader(Protocol):
    """What a cycle needs of a downloader (``media.Downloader`` is one): an async context that fetches
    ``(media_key, url, kind)`` items and yields each outcome as it completes."""

    async def __aenter__(self) -> MediaDownloader: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    def fetch_many(self, items: Sequence[tuple[str, str, str]]) -> AsyncGenerator[Download, None]: ...


@dataclass
class Ready:
    """A downloaded, decoded image waiting for classification."""

    image_id: int
    sha256: str
    image: Image.Image


class Cycle:
    """Composes the stages for one pass. Built per cycle by the daemon (or once by ``nijifeed poll``)."""

    def __init__(
        self,
        *,
        store: Store,
        source: Source | None,
        extractor: FeatureExtractor,
        model: Callable[[], TrainedModel | None],
        downloader_factory: Callable[[], MediaDownloader],
        media_url: Callable[[PendingMedia], str | None] = media_url,
        cache: ImageCache,
        limits: ImageLimits,
        batch_size: int = 16,
        audit_rate: float = 0.02,
        skip_kinds: frozenset[str] = frozenset({"video", "animated_gif"}),
        max_attempts: int = 3,
        stop: threading.Event | None = None,
        read_limit: DailyReadLimit | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``read_limit``: the daily read limit of a source that bills reads (the X timeline); ``clock``: Unix
        seconds, for the polls' start times (the read limit's day; tests inject one)."""
        self.store = store
        self.source = source
        self.extractor = extractor
        self.model = model
        self.downloader_factory = downloader_factory
        self.media_url = media_url
        self.cache = cache
        self.limits = limits
        self.batch_size = batch_size
        self.audit_rate = audit_rate
        self.skip_kinds = skip_kinds
        self.max_attempts = max_attempts
        self.stop = stop or threading.Event()
        self.read_limit = read_limit
        self.clock = clock
        self.summary = CycleSummary()

    def run(self, *, fetch: bool = True) -> CycleSummary:
        """Fetch, then process everything stored. A failed fetch (rate limit, outage) still lets the stored work
        go on; its SourceError is raised afterwards so the caller can pause polling."""
        failure: SourceError | None = None
        if fetch and self.source is not None:
            try:
                self.fetch()
            except SourceError as exc:
                failure = exc
        if not self.stop.is_set():
            self.classify_leftovers()
        if not self.stop.is_set():
            asyncio.run(self.download_and_classify())
        if failure is not None:
            raise failure
        return self.summary

    # --- source → store -------------------------------------------------------------------------------------------

    def fetch(self) -> None:
        """Store every page; advance the cursor only once all pages of this poll are stored."""
        assert self.source is not None
        key = f"since_id:{self.source.name}"
        since_id = self.store.get_kv(key)
        limit = self.read_limit if self.read_limit and getattr(self.source, "bills_reads", False) else None
        remaining = limit.remaining(self.store) if limit is not None else None
        if limit is not None and page_size(100, remaining) == 0:  # not even the smallest page fits: no request
            reached = limit.reached(self.store)
            self.summary.read_limit = str(reached)
            raise reached
        started = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds")
        poll = self.store.start_poll(self.source.name, at=started)
        newest: str | None = None
        complete = False
        if remaining is None:
            pages = self.source.pages(since_id)
        else:
            pages = cast(ReadLimitedSource, self.source).pages(since_id, max_reads=remaining)
        try:
            for page in pages:
                new = self.store.add_posts(page.posts, skip_kinds=self.skip_kinds)
                self.store.add_reads(poll, len(page.posts), page.reads, new)
                self.summary.pages += 1
                self.summary.posts += len(page.posts)
                self.summary.reads += page.reads
                self.summary.new_media += new
                self.summary.errors.extend(page.errors)
                self.summary.gap |= bool(page.gap)
                newest = newest or page.newest_id
                if self.stop.is_set():
                    break
            else:
                complete = True
        except SourceError as exc:
            self.summary.error = str(exc)
            raise
        finally:
            if complete and newest:
                self.store.set_kv(key, newest)
            if complete and limit is not None and limit.paused(self.store):
                self.summary.read_limit = str(limit.reached(self.store))
            self.store.finish_poll(poll, self.summary.to_dict())
        if limit is not None and self.summary.read_limit:
            raise limit.reached(self.store)  # the stored work still goes on (``run``); the daemon pauses polling

    # --- download → decode → extract → classify → route -----------------------------------------------------------

    def classify_leftovers(self) -> None:
        """Images downloaded by an earlier cycle that died before routing them: classify from the local copy, or
        download them again when it is gone (this runs before the download stage, which then picks them up)."""
        rows = self.store.unrouted_images()
        if not rows or self.model() is None:
            self.summary.waiting_for_model += len(rows)
            return
        ready = []
        for row in rows:
            data = self.cache.get(row.sha256)
            if data is None:  # the file went (a wiped cache, a restore): fetch it again rather than lose the post
                self.summary.retry_later += self.store.download_again(
                    row.id, "local copy missing", max_attempts=self.max_attempts
                )
                continue
            try:
                image = load_image(data, limits=self.limits, draft_size=self.extractor.working_size)
            except ImageError as exc:
                self.store.image_failed(row.id, exc.reason)
                self.summary.failed += 1
                continue
            ready.append(Ready(row.id, row.sha256, image))
        for start in range(0, len(ready), self.batch_size):
            batch = ready[start : start + self.batch_size]
            self.classify(batch, self.extractor.extract([r.image for r in batch]))

    async def download_and_classify(self) -> None:
        pending = self.store.pending_media()
        if not pending:
            return
        media = {row.media_key: row for row in pending}
        items = []
        for row in pending:
            url = self.media_url(row)
            if url is None:
                self.store.media_failed(row.id, "no URL to fetch", retryable=False, max_attempts=1)
                self.summary.failed += 1
            else:
                items.append((row.media_key, url, row.kind))  # the kind: local files are read for 'file' only
        loop = asyncio.get_running_loop()
        batch: list[Ready] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="extract") as pool:
            async with self.downloader_factory() as downloader, aclosing(downloader.fetch_many(items)) as results:
                async for download in results:
                    ready = self.accept(media[download.media_key], download)
                    if ready is not None and all(r.image_id != ready.image_id for r in batch):
                        batch.append(ready)
                    if len(batch) >= self.batch_size:
                        await self.extract_and_classify(loop, pool, batch)
                        batch = []
                    if self.stop.is_set():
                        break
            if batch:
                await self.extract_and_classify(loop, pool, batch)

    def accept(self, row: PendingMedia, download: Download) -> Ready | None:
        """Store one download's outcome; return the decoded image when it still needs a verdict."""
        if download.data is None:
            reason = download.error or "no data"
            status = self.store.media_failed(
                row.id, reason, retryable=download.retryable, max_attempts=self.max_attempts
            )
            if status == "failed":
                self.summary.failed += 1
                log.warning("media %s failed: %s", row.media_key, reason)
            else:
                self.summary.retry_later += 1
            return None
        data = download.data
        try:
            decoded = decode_image(data, limits=self.limits, draft_size=self.extractor.working_size,
                                   name=row.media_key)
        except ImageError as exc:
            self.store.media_failed(row.id, exc.reason, retryable=False, max_attempts=1)
            self.summary.failed += 1
            log.warning("media %s failed: %s", row.media_key, exc.reason)
            return None
        sha = hashlib.sha256(data).hexdigest()
        width, height = decoded.width, decoded.height
        image_id = self.store.add_image(sha, width, height, len(data), "x" if row.kind != "file" else "folder")
        path = self.cache.put(sha, data)
        self.store.set_image_cache(image_id, str(path), width, height, len(data))
        status = self.store.media_downloaded(row.id, image_id)
        self.summary.downloaded += 1
        if status != "downloaded":  # the same bytes were routed before: linked, not classified again
            return None
        return Ready(image_id, sha, decoded.image)

    async def extract_and_classify(
        self, loop: asyncio.AbstractEventLoop, pool: ThreadPoolExecutor, batch: list[Ready]
    ) -> None:
        if self.model() is None:
            self.summary.waiting_for_model += len(batch)
            return
        vectors = await loop.run_in_executor(pool, self.extractor.extract, [r.image for r in batch])
        self.classify(batch, vectors)

    def classify(self, batch: list[Ready], vectors: np.ndarray) -> None:
        model = self.model()
        if model is None or model.version is None:
            self.summary.waiting_for_model += len(batch)
            return
        decisions = model.decide(vectors)
        routed = route_all([r.image_id for r in batch], [r.sha256 for r in batch], decisions, self.audit_rate)
        with self.store.transaction():  # one commit per batch; each routing is still conditional, so a re-run is safe
            for ready, vector, item in zip(batch, vectors, routed, strict=True):
                self.store.put_features(ready.image_id, self.extractor.name, vector)
                if self.store.route_image(model.version, item):
                    self.summary.routed[item.route] += 1
                    self.summary.audit += int(item.audit)
