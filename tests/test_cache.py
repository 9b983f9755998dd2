"""The image cache keeps a running total instead of walking every file after every cycle."""

from __future__ import annotations

import hashlib
import io

from PIL import Image

from service.media.cache import ImageCache
from service.store import Store


def _png(i: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40 + i, 30), (i * 7 % 256, 90, 200)).save(out, "PNG")
    return out.getvalue()


def test_the_bound_is_checked_without_walking_the_cache_each_cycle(tmp_path):
    cache = ImageCache(tmp_path / "cache" / "images")
    with Store.open(tmp_path / "db.sqlite3") as store:
        for i in range(25):  # one image per "cycle", then the daemon's bound check
            data = _png(i)
            sha = hashlib.sha256(data).hexdigest()
            cache.put(sha, data)
            if i % 5 == 0:
                cache.thumbnail(sha, 16)
            cache.enforce_limit(store, max_bytes=50_000_000, keep_entries=10)
        assert cache.walks == 1  # counted once, then kept up to date
        counted = cache.bytes_used()
        assert counted == cache.size_on_disk() > 0  # and the running total is what is on disk
        freed = cache.remove(sha)
        assert freed > 0 and cache.bytes_used() == counted - freed == cache.size_on_disk()
