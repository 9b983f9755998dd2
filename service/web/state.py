"""What the web face's handlers share: settings, one store connection per worker thread, the image cache, and
the record of which cached images were served (for the cache's LRU eviction)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from service.config import Settings
from service.features import ImageLimits
from service.feed.times import iso
from service.media.cache import ImageCache
from service.store import Store

#: Seconds between writes of "last served" times: one small transaction per interval instead of one per image.
TOUCH_FLUSH_S = 30.0


class WebState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = ImageCache.from_settings(settings)
        self.limits = ImageLimits.from_settings(settings)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._served: dict[str, str] = {}
        self._flushed = time.monotonic()

    def store(self) -> Store:
        """This thread's connection (sqlite3 connections are per thread; Starlette runs handlers in a pool). A
        worker thread's connection is closed with the thread (its thread-local goes, and the connection with it):
        sqlite3 refuses to close it from any other thread."""
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store.open(self.settings.db_path)
        return store

    def served(self, sha256: str) -> None:
        """Note that an image was served; written to the store at most every ``TOUCH_FLUSH_S`` seconds."""
        with self._lock:
            self._served[sha256] = iso(datetime.now(UTC))
            due = time.monotonic() - self._flushed >= TOUCH_FLUSH_S
        if due:
            self.flush_served()

    def flush_served(self) -> None:
        with self._lock:
            served, self._served = self._served, {}
            self._flushed = time.monotonic()
        if served:
            self.store().touch_images(served)

    def close(self) -> None:
        """At shutdown: write the last served times (from the closing thread's own connection)."""
        self.flush_served()
        store = getattr(self._local, "store", None)
        if store is not None:
            store.close()
            self._local.store = None
