"""The local copy of every image the pipeline accepted, by content hash, and thumbnails made from it.

Written before the image is marked downloaded, so a crash between download and classification resumes from disk
instead of the network (the post may be gone by then). The web face serves these copies and their thumbnails, so
the page works when the original host is slow or the post was deleted.

**Bounded.** ``enforce_limit`` keeps originals plus thumbnails under a byte bound by evicting the least recently
served images first (``images.last_served_at``, else when they were routed). Never evicted: images not yet routed
(the pipeline still needs their bytes), images waiting in the review queue (a person still has to see them), and
the images of the newest ``keep_entries`` feed entries (the page's first screens always come from the cache). An
evicted image keeps its row (``cache_path`` becomes NULL); the web face then redirects to its original URL.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import features

from service.features.images import ImageLimits, load_image, sniff_format
from service.files import write_atomic

if TYPE_CHECKING:
    from service.config import Settings
    from service.store import Store

log = logging.getLogger(__name__)

_THUMB_FORMAT, THUMB_MIME = ("WEBP", "image/webp") if features.check("webp") else ("JPEG", "image/jpeg")
def sniff_mime(head: bytes) -> str | None:
    """The media type of image bytes from their first 12 bytes; None when not a format the decoder accepts."""
    fmt = sniff_format(head)
    return f"image/{fmt.lower()}" if fmt else None


#: How often the running total is checked against the disk, for files another process wrote (``nijifeed web``
#: run on its own makes thumbnails too).
RESYNC_SECONDS = 3600.0


class _Usage:
    """Bytes under one cache root, kept as a running total: walking a large cache after every cycle costs more than
    the cycle. Shared by every ``ImageCache`` of the process on the same root (the cycle and the web face)."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.synced_at = 0.0
        self.walks = 0
        self.lock = threading.Lock()


_USAGE: dict[Path, _Usage] = {}
_USAGE_LOCK = threading.Lock()


def _usage_of(root: Path) -> _Usage:
    with _USAGE_LOCK:
        return _USAGE.setdefault(root.resolve(), _Usage())


@dataclass
class Eviction:
    before: int  # bytes on disk before
    after: int
    evicted: int  # images


class ImageCache:
    def __init__(self, root: Path, thumbs_root: Path | None = None) -> None:
        self.root = root
        self.thumbs_root = thumbs_root or root.parent / "thumbs"
        self._usage = _usage_of(root)

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageCache:
        return cls(settings.cache_dir)

    def path_for(self, sha256: str) -> Path:
        """The one file layout of the cache: ``<root>/<first two hex digits>/<sha256>``."""
        return self.root / sha256[:2] / sha256

    def local_copy(self, sha256: str | None, recorded: str | None = None) -> Path | None:
        """An image's file if it is still there: where the store recorded it, else where the cache puts it."""
        for candidate in (recorded, self.path_for(sha256) if sha256 else None):
            if candidate and Path(candidate).is_file():
                return Path(candidate)
        return None

    def put(self, sha256: str, data: bytes) -> Path:
        """Write atomically (temp file, fsync, rename): a reader never sees half an image."""
        path = self.path_for(sha256)
        if not path.exists():
            write_atomic(path, data)
            self._grew(len(data))
        return path

    def get(self, sha256: str) -> bytes | None:
        try:
            return self.path_for(sha256).read_bytes()
        except FileNotFoundError:
            return None

    def mime(self, sha256: str) -> str | None:
        """The cached original's media type, from its first bytes; None when not cached."""
        try:
            with self.path_for(sha256).open("rb") as handle:
                return sniff_mime(handle.read(12)) or "application/octet-stream"
        except FileNotFoundError:
            return None

    # --- thumbnails -----------------------------------------------------------------------------------------------

    def thumb_path(self, sha256: str, size: int) -> Path:
        return self.thumbs_root / str(size) / sha256[:2] / f"{sha256}.{_THUMB_FORMAT.lower()}"

    def thumbnail(self, sha256: str, size: int, limits: ImageLimits = ImageLimits()) -> Path | None:
        """The thumbnail (longest side ``size``, WebP or JPEG), made on first use from the cached original; None
        when the original is not cached. Raises ``ImageError`` when the original cannot be decoded."""
        path = self.thumb_path(sha256, size)
        if path.exists():
            return path
        data = self.get(sha256)
        if data is None:
            return None
        image = load_image(data, limits=limits, draft_size=size, name=sha256)
        image.thumbnail((size, size))
        out = BytesIO()
        image.save(out, _THUMB_FORMAT, quality=82)
        write_atomic(path, out.getvalue())
        self._grew(out.tell())
        return path

    # --- the bound ------------------------------------------------------------------------------------------------

    def size_on_disk(self) -> int:
        """Bytes of originals and thumbnails, counted on disk (a walk of the whole cache); resets the running
        total."""
        total = sum(_tree_size(folder) for folder in (self.root, self.thumbs_root))
        with self._usage.lock:
            self._usage.total, self._usage.synced_at = total, time.monotonic()
            self._usage.walks += 1
        return total

    def bytes_used(self) -> int:
        """The running total of ``size_on_disk``: counted once, then kept up to date by ``put``, ``thumbnail``
        and ``remove``, and checked against the disk every ``RESYNC_SECONDS``."""
        usage = self._usage
        with usage.lock:
            total = usage.total
            fresh = total is not None and time.monotonic() - usage.synced_at < RESYNC_SECONDS
        return total if fresh and total is not None else self.size_on_disk()

    @property
    def walks(self) -> int:
        """How many times this process counted the cache on disk (each is a walk of every file)."""
        return self._usage.walks

    def _grew(self, nbytes: int) -> None:
        with self._usage.lock:
            if self._usage.total is not None:
                self._usage.total = max(0, self._usage.total + nbytes)

    def remove(self, sha256: str) -> int:
        """Delete an image's original and every thumbnail of it; returns the bytes freed."""
        paths = [self.path_for(sha256)]
        if self.thumbs_root.is_dir():
            paths += [d / sha256[:2] / self.thumb_path(sha256, 0).name for d in self.thumbs_root.iterdir()]
        freed = 0
        for path in paths:
            try:
                size = path.stat().st_size
                path.unlink()
                freed += size
            except FileNotFoundError:
                pass
        self._grew(-freed)
        return freed

    def enforce_limit(self, store: Store, *, max_bytes: int, keep_entries: int) -> Eviction:
        """Evict least recently served images until the cache fits ``max_bytes`` (0: no bound); see the module
        docstring for what is never evicted."""
        before = total = self.bytes_used()
        evicted = 0
        if max_bytes and total > max_bytes:
            before = total = self.size_on_disk()  # about to delete: count exactly first
        if max_bytes and total > max_bytes:
            for row in store.eviction_candidates(store.newest_feed_images(keep_entries)):
                total -= self.remove(row["sha256"])
                store.image_evicted(int(row["id"]))
                evicted += 1
                if total <= max_bytes:
                    break
            if total > max_bytes:
                log.warning("image cache: %d bytes after eviction, above its bound of %d; what is left is kept on "
                            "purpose (unrouted, in review, or in the newest %d feed posts)", total, max_bytes,
                            keep_entries)
        if evicted:
            log.info("image cache: evicted %d images, %d → %d bytes", evicted, before, total)
        return Eviction(before, total, evicted)


def enforce_cache_limit(settings: Settings, store: Store) -> Eviction:
    """The daemon's cache job: ``NIJIFEED_CACHE_MAX_BYTES`` and ``NIJIFEED_CACHE_KEEP_ENTRIES`` applied."""
    return ImageCache.from_settings(settings).enforce_limit(
        store, max_bytes=settings.cache_max_bytes, keep_entries=settings.cache_keep_entries
    )


def _tree_size(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:  # removed while we walked
                pass
    return total
