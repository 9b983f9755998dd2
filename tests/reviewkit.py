"""A store in the state a poll leaves it (posts, media, cached images, verdicts, a review queue), for the review
and report tests.

A pytest plugin (listed in ``conftest.pytest_plugins``): the ``world`` fixture needs no import; ``make_world``,
``World``, ``PLAN`` and ``png`` are imported as usual.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from service.media.cache import ImageCache
from service.route import Routed
from service.sources import MediaRef, Post
from service.store import Store

# (verdict, p_2d, audit) per image; margins follow from p.
PLAN = [
    ("uncertain", 0.55, False),
    ("uncertain", 0.40, False),
    ("uncertain", 0.62, False),
    ("2d", 0.97, True),
    ("not2d", 0.05, True),
    ("2d", 0.95, False),
    ("not2d", 0.02, False),
    ("uncertain", 0.50, False),
]


def png(colour: tuple[int, int, int], size: tuple[int, int] = (24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class World:
    """A store in the state a poll leaves it: posts, media, cached images, verdicts, a review queue."""

    store: Store
    cache_dir: Path
    version: int
    images: list[int] = field(default_factory=list)  # image ids in PLAN order
    data: dict[int, bytes] = field(default_factory=dict)

    def route(self, image_id: int) -> str | None:
        return self.store.conn.execute("SELECT route FROM images WHERE id = ?", (image_id,)).fetchone()[0]

    def routed_by(self, image_id: int) -> str | None:
        return self.store.conn.execute("SELECT routed_by FROM images WHERE id = ?", (image_id,)).fetchone()[0]

    def media_statuses(self, image_id: int) -> list[str]:
        rows = self.store.conn.execute("SELECT status FROM media WHERE image_id = ? ORDER BY id", (image_id,))
        return [r[0] for r in rows]

    def queue(self, image_id: int) -> sqlite3.Row | None:
        return self.store.conn.execute("SELECT * FROM review_queue WHERE image_id = ?", (image_id,)).fetchone()

    def snapshot(self, image_id: int) -> tuple:
        q = self.queue(image_id)
        return (
            self.store.conn.execute("SELECT route, routed_by, routed_at, verdict_id FROM images WHERE id = ?",
                                    (image_id,)).fetchone()[:],
            self.media_statuses(image_id),
            None if q is None else q[:],
            [r[:] for r in self.store.label_history(image_id)],
        )


def make_world(tmp_path: Path, plan=PLAN) -> World:
    store = Store.open(tmp_path / "data" / "nijifeed.sqlite3")
    cache = ImageCache(tmp_path / "data" / "cache" / "images")
    version = store.register_model(tmp_path / "m.pkl", "builtin-v1", "lr", 0.3, "margin",
                                   {"at_rule": {"n": 40, "review_rate": 0.4, "precision_2d": 0.9, "recall_2d": 0.5}})
    store.activate_model(version)
    world = World(store, cache.root, version)
    posts = []
    for i, _ in enumerate(plan):
        ref = MediaRef(f"m{i}", "photo", f"https://pbs.twimg.com/media/m{i}.jpg")
        posts.append(Post(id=str(1000 + i), text=f"post number {i} #art", created_at=f"2026-05-0{1 + i % 9}T10:00:00Z",
                          url=f"https://x.com/artist{i}/status/{1000 + i}", author_name=f"Artist {i}",
                          author_handle=f"artist{i}", media=(ref,)))
    # a retweet showing the first image again: a second media row of the same picture
    posts.append(Post(id="2000", text="RT", created_at="2026-05-09T10:00:00Z", url="https://x.com/fan/status/2000",
                      author_handle="fan", media=(MediaRef("m0-again", "photo", "https://pbs.twimg.com/m0b.jpg"),)))
    store.add_posts(posts)
    media = {row.media_key: row for row in store.pending_media()}
    for i, (verdict, p, audit) in enumerate(plan):
        data = png((30 * i % 256, 200 - 20 * i, 90))
        sha = hashlib.sha256(data).hexdigest()
        image_id = store.add_image(sha, 24, 16, len(data), "x")
        store.set_image_cache(image_id, str(cache.put(sha, data)), 24, 16, len(data))
        store.media_downloaded(media[f"m{i}"].id, image_id)
        if i == 0:
            store.media_downloaded(media["m0-again"].id, image_id)
        margin = abs(2 * p - 1)
        store.route_image(version, Routed(image_id, verdict, p, margin, 1 - margin, audit=audit))
        world.images.append(image_id)
        world.data[image_id] = data
    return world


@pytest.fixture
def world(tmp_path, monkeypatch):
    """``make_world`` in this test's data dir, which the CLI reads too (``NIJIFEED_DATA_DIR``)."""
    monkeypatch.setenv("NIJIFEED_DATA_DIR", str(tmp_path / "data"))
    w = make_world(tmp_path)
    yield w
    w.store.close()
