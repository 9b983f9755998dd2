"""Answers and their undo, on a real store: a label routes the image (every media row showing it) and resolves its
queue row; undo puts back exactly what was there; re-scoring moves confident items out of the queue."""

from __future__ import annotations

import hashlib
import io
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from service.errors import InputError
from PIL import Image

from service.media.cache import ImageCache
from service.review import interleave, open_items, parse_label
from service.sources import MediaRef, Post
from service.store import Store
from service.route import Routed
from service.store.review_queries import UndoError
from service.words import UNDO_DEPTH

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
    media = {row["media_key"]: row for row in store.pending_media()}
    for i, (verdict, p, audit) in enumerate(plan):
        data = png((30 * i % 256, 200 - 20 * i, 90))
        sha = hashlib.sha256(data).hexdigest()
        image_id = store.add_image(sha, 24, 16, len(data), "x")
        store.set_image_cache(image_id, str(cache.put(sha, data)), 24, 16, len(data))
        store.media_downloaded(media[f"m{i}"]["id"], image_id)
        if i == 0:
            store.media_downloaded(media["m0-again"]["id"], image_id)
        margin = abs(2 * p - 1)
        store.route_image(version, Routed(image_id, verdict, p, margin, 1 - margin, audit=audit))
        world.images.append(image_id)
        world.data[image_id] = data
    return world


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    yield w
    w.store.close()


def test_interleave_mixes_one_audit_item_into_every_k():
    assert interleave([1, 2, 3, 4, 5, 6], ["a", "b"], 3) == [1, 2, "a", 3, 4, "b", 5, 6]
    assert interleave([1, 2], ["a", "b", "c"], 3) == [1, 2, "a", "b", "c"]
    assert interleave([1, 2], ["a"], 1) == ["a", 1, 2]
    assert interleave([], [], 5) == []


def test_open_items_are_most_uncertain_first_with_audits_mixed_in(world):
    items = open_items(world.store, limit=None, audit_every=3)
    reasons = [i.reason for i in items]
    assert reasons == ["uncertain", "uncertain", "audit", "uncertain", "uncertain", "audit"]
    margins = [i.margin for i in items if i.reason == "uncertain"]
    assert margins == sorted(margins)
    first = items[0]
    assert first.author_handle and first.text and first.post_url.startswith("https://x.com/") and first.media_key
    assert open_items(world.store, limit=2, audit_every=3) == items[:2]


def test_a_2d_label_routes_every_media_row_to_the_feed_and_resolves_the_queue(world):
    image = world.images[0]  # uncertain, shown by two media rows
    assert world.media_statuses(image) == ["review", "review"]
    world.store.label_image(image, "2d", source="review", author="tester")
    assert world.route(image) == "feed" and world.routed_by(image) == "label"
    assert world.media_statuses(image) == ["feed", "feed"]
    queue = world.queue(image)
    assert queue["resolved_at"] and queue["resolution"] == "labelled"
    assert [(int(r["id"]), r["label"]) for r in world.store.labelled_images()] == [(image, "2d")]
    # a not-2D answer drops it
    world.store.label_image(world.images[1], "not2d", source="review")
    assert world.route(world.images[1]) == "dropped" and world.media_statuses(world.images[1]) == ["dropped"]
    assert world.store.open_review_count() == 6 - 2  # 4 uncertain and 2 audit queued; 2 answered


def test_labelling_twice_keeps_the_latest_with_history_and_undo_goes_back_one_step(world):
    image = world.images[2]
    before = world.snapshot(image)
    first = world.store.label_image(image, "2d", source="review")
    after_first = world.snapshot(image)
    second = world.store.label_image(image, "not2d", source="review")
    assert world.store.current_label(image) == "not2d" and world.route(image) == "dropped"
    history = world.store.label_history(image)
    rows = [(r["id"], r["label"], r["superseded_by"]) for r in history]
    assert rows == [(first, "2d", second), (second, "not2d", None)]
    world.store.undo_label()
    assert world.snapshot(image) == after_first
    world.store.undo_label()
    assert world.snapshot(image) == before
    with pytest.raises(UndoError, match="nothing to undo"):
        world.store.undo_label()


def test_undo_restores_an_audit_item_routed_to_the_feed(world):
    image = world.images[3]  # confident 2D, audited: in the feed and in the queue
    before = world.snapshot(image)
    assert world.route(image) == "feed" and world.queue(image)["resolved_at"] is None
    world.store.label_image(image, "not2d", source="review")
    assert world.route(image) == "dropped"
    world.store.undo_label()
    assert world.snapshot(image) == before


def test_undo_of_an_older_answer_is_refused_when_the_image_was_labelled_again(world):
    image = world.images[0]
    old = world.store.label_image(image, "2d", source="review")
    world.store.label_image(image, "not2d", source="import", undoable=False)
    with pytest.raises(UndoError, match="labelled again"):
        world.store.undo_label(old)
    assert world.store.current_label(image) == "not2d"
    assert world.store.undo_journal() == []  # the stale record is gone, not stuck at the top


def test_only_the_last_answers_stay_undoable(world, tmp_path):
    image = world.images[0]
    ids = [world.store.label_image(image, "2d" if i % 2 else "not2d", source="review") for i in range(UNDO_DEPTH + 3)]
    assert [r["label_id"] for r in world.store.undo_journal()] == ids[-UNDO_DEPTH:]
    for _ in range(UNDO_DEPTH):
        world.store.undo_label()
    assert [r["id"] for r in world.store.label_history(image)] == ids[:3]
    assert world.store.current_label(image) == "not2d"  # ids[2] was the third answer: not2d


def test_an_answer_and_its_undo_record_commit_together(world, monkeypatch):
    image = world.images[1]
    before = world.snapshot(image)

    def fail(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(type(world.store), "set_kv", fail)
    with pytest.raises(sqlite3.OperationalError):
        world.store.label_image(image, "2d", source="review")
    assert world.snapshot(image) == before


def test_rescoring_resolves_confident_items_and_reorders_the_rest(world):
    v2 = world.store.register_model("m2.pkl", "builtin-v1", "lr", 0.3, "margin", {})
    a, b, c, d = world.images[0], world.images[1], world.images[2], world.images[7]
    counts = world.store.apply_rescored(v2, [
        Routed(a, "2d", 0.9, 0.8, 0.2, audit=False),
        Routed(b, "not2d", 0.1, 0.8, 0.2, audit=False),
        Routed(c, "2d", 0.9, 0.8, 0.2, audit=True),
        Routed(d, "uncertain", 0.45, 0.1, 0.9, audit=False),
    ])
    assert dict(counts) == {"feed": 1, "dropped": 1, "audit": 1, "uncertain": 1}
    assert world.route(a) == "feed" and world.routed_by(a) == "auto" and world.media_statuses(a) == ["feed", "feed"]
    assert world.queue(a)["resolution"] == "auto" and world.queue(a)["model_version"] == v2
    assert world.route(b) == "dropped" and world.queue(b)["resolution"] == "auto"
    assert world.route(c) == "feed" and world.queue(c)["resolved_at"] is None and world.queue(c)["reason"] == "audit"
    assert world.route(d) == "review" and world.queue(d)["priority"] == pytest.approx(0.9)
    assert open_items(world.store, limit=1)[0].image_id == d  # its new score puts it first


def test_rescoring_leaves_images_answered_meanwhile_alone(world):
    image = world.images[0]
    world.store.label_image(image, "not2d", source="review")
    v2 = world.store.register_model("m2.pkl", "builtin-v1", "lr", 0.3, "margin", {})
    counts = world.store.apply_rescored(v2, [Routed(image, "2d", 0.9, 0.8, 0.2, audit=False)])
    assert not counts["feed"]
    assert world.route(image) == "dropped" and world.queue(image)["resolution"] == "labelled"


def test_labels_and_refs():
    assert parse_label("2D") == "2d" and parse_label("not2d") == "not2d" and parse_label("x") == "not2d"
    with pytest.raises(InputError, match="unknown label"):
        parse_label("maybe")


def test_image_refs_by_id_or_media_key(world):
    assert world.store.image_id_of(str(world.images[3])) == world.images[3]
    assert world.store.image_id_of("m0-again") == world.images[0]
    assert world.store.image_id_of("nope") is None and world.store.image_id_of("99999") is None
