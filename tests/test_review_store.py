"""Answers and their undo, on a real store: a label routes the image (every media row showing it) and resolves its
queue row; undo puts back exactly what was there; re-scoring moves confident items out of the queue."""

from __future__ import annotations

import sqlite3

import pytest

from service.errors import InputError
from service.review import interleave, open_items, parse_label
from service.route import Routed
from service.store.review_queries import UndoError
from service.words import UNDO_DEPTH

# ``world`` (tests/reviewkit.py): a store in the state a poll leaves it, images in ``reviewkit.PLAN`` order.


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
