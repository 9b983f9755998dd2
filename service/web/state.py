"""What the web face's handlers share: settings, the store connections, the image cache, and the record of which
cached images were served (for the cache's LRU eviction).

Store connections are leased per request, not kept per thread: Starlette runs sync handlers in anyio's worker
threads, which come and go (a worker idle for 10 s ends, a burst starts new ones), and a connection kept in a
thread-local outlived its thread (each burst left its connections open: file descriptors and page cache grew
without bound). ``StoreLeases`` (middleware) gives each request a lease; the request's first ``store()`` takes a
connection from the idle pool (or opens one), and the end of the request returns it: at most ``POOL_IDLE`` stay
open while idle, the rest are closed. A connection is used by one request at a time (``check_same_thread`` is off
for exactly that hand-over), so the number open is bounded by the requests in flight plus ``POOL_IDLE``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from starlette.types import ASGIApp, Receive, Scope, Send

from service.config import Settings
from service.features import ImageLimits
from service.feed.times import iso
from service.media.cache import ImageCache
from service.store import Store

#: Seconds between writes of "last served" times: one small transaction per interval instead of one per image.
TOUCH_FLUSH_S = 30.0
#: Store connections kept open while idle, for the next requests.
POOL_IDLE = 4


class _Lease:
    """The connection one request holds (taken on its first ``store()``), returned when the request ends."""

    __slots__ = ("store",)

    def __init__(self) -> None:
        self.store: Store | None = None


_lease: ContextVar[_Lease | None] = ContextVar("nijifeed_web_store_lease", default=None)


class WebState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = ImageCache.from_settings(settings)
        self.limits = ImageLimits.from_settings(settings)
        self._idle: list[Store] = []
        self._pool_lock = threading.Lock()
        self._open = 0  # connections open now, leased or idle
        self._closed = False
        self._lock = threading.Lock()
        self._served: dict[str, str] = {}
        self._flushed = time.monotonic()

    def store(self) -> Store:
        """The current request's connection (see the module docstring). Outside a request (``StoreLeases``), use
        ``with state.connection() as store:`` instead."""
        lease = _lease.get()
        if lease is None:
            raise RuntimeError("WebState.store() is for request handlers; elsewhere use `with state.connection()`")
        if lease.store is None:
            lease.store = self._checkout()
        return lease.store

    @contextmanager
    def connection(self) -> Iterator[Store]:
        """A pooled connection for the block (outside requests: shutdown, tests)."""
        store = self._checkout()
        try:
            yield store
        finally:
            self._checkin(store)

    @property
    def open_connections(self) -> int:
        """Connections open now, leased or idle (for the tests and /metrics)."""
        return self._open

    @contextmanager
    def leased(self) -> Iterator[None]:
        """A request's lease: ``store()`` inside takes one connection, returned when the block ends."""
        lease = _Lease()
        token = _lease.set(lease)
        try:
            yield
        finally:
            _lease.reset(token)
            if lease.store is not None:
                self._checkin(lease.store)

    def _checkout(self) -> Store:
        with self._pool_lock:
            if self._idle:
                return self._idle.pop()
            self._open += 1
        try:
            return Store.open(self.settings.db_path)
        except BaseException:
            with self._pool_lock:
                self._open -= 1
            raise

    def _checkin(self, store: Store) -> None:
        """Back to the idle pool, or closed when the pool is full, the app has shut down, or the connection was
        left inside a transaction that cannot be rolled back."""
        keep = True
        if store.conn.in_transaction:
            try:
                store.conn.rollback()
            except Exception:  # noqa: BLE001 - a broken connection is closed, not reused
                keep = False
        with self._pool_lock:
            keep = keep and not self._closed and len(self._idle) < POOL_IDLE
            if keep:
                self._idle.append(store)
            else:
                self._open -= 1
        if not keep:
            store.close()

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
            if _lease.get() is not None:
                self.store().touch_images(served)
            else:
                with self.connection() as store:
                    store.touch_images(served)

    def close(self) -> None:
        """At shutdown: write the last served times, then close every idle connection (one still leased is closed
        when its request ends)."""
        self.flush_served()
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for store in idle:
            store.close()


class StoreLeases:
    """ASGI middleware: each HTTP request holds a store lease for its whole life (streamed answers included)."""

    def __init__(self, app: ASGIApp, state: WebState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.state.leased():
            await self.app(scope, receive, send)
