"""The active-learning loop: labels train a new version, the queue is re-scored, and a running pipeline uses the
new model on its next cycle without a restart."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import numpy as np
from pipelinekit import use

from service.classify.registry import load_model
from service.config import load_settings
from service.features.builtin import BuiltinExtractor
from service.pipeline.build import CycleRunner, make_source
from service.pipeline.retrain import (
    LABELS_SOURCE,
    Example,
    TrainOptions,
    folders_of,
    group_ids,
    maybe_retrain,
    merge,
    retrain,
)
from service.review import label, open_items
from service.sandbox import Sandbox
from service.store import Store

SAMPLES = Path(__file__).resolve().parent.parent / "service" / "samples"


def truth() -> dict[str, str]:
    """Label of every bundled sample file, by its path under service/samples."""
    with open(SAMPLES / "ATTRIBUTION.csv", newline="") as handle:
        return {row["file"]: row["label"] for row in csv.DictReader(handle)}


def answers(box: Sandbox) -> dict[str, str]:
    """The right answer for every media key the sandbox shows."""
    labels = truth()
    return {m["media_key"]: labels[m["file"]] for post in box.posts() for m in post["shown"]}


def label_queue(store: Store, box: Sandbox, limit: int | None = None) -> int:
    """Answer open queue items as a careful person would; returns how many."""
    right = answers(box)
    items = open_items(store, limit=limit)
    for item in items:
        label(store, item.image_id, right[item.media_key])
    return len(items)


# --- pure parts -------------------------------------------------------------------------------------------------


def test_folders_are_found_in_sources_with_or_without_labels():
    assert folders_of(["/a/neg", "/a/pos"]) == (Path("/a/neg"), Path("/a/pos"))
    assert folders_of(["/a/neg", "/a/pos", LABELS_SOURCE]) == (Path("/a/neg"), Path("/a/pos"))
    assert folders_of([LABELS_SOURCE]) is None and folders_of([]) is None


def test_merge_takes_a_picture_once_and_a_persons_answer_over_a_folders():
    x = np.ones(3, np.float32)
    folder = [Example("aa", 1, x, 0b1111), Example("bb", 0, x * 2, 0)]
    labelled = [Example("aa", 0, x * 3, 0b1111), Example("cc", 1, x * 4, None)]
    data, overridden = merge(folder, labelled, ["n", "p", LABELS_SOURCE])
    assert overridden == 1
    assert data.sha256s == ["aa", "bb", "cc"] and data.y.tolist() == [0, 0, 1]
    assert data.X[:, 0].tolist() == [3, 2, 4]  # the labelled copy's vector
    assert data.sources == ["n", "p", LABELS_SOURCE]


def test_group_ids_join_near_duplicates_and_isolate_unknown_pictures():
    groups = group_ids([0b0, 0b1, None, 0xFFFF_FFFF_FFFF_FFFF, None])
    assert groups[0] == groups[1]  # one bit apart
    assert len({groups[2], groups[3], groups[4], groups[0]}) == 4


# --- on a data dir a real poll filled (``queued_dir``, tests/pipelinekit.py) ------------------------------------


def test_train_without_folders_learns_from_labels_and_the_first_folders(queued_dir, sandbox, cli):
    with Store.open(queued_dir / "nijifeed.sqlite3") as store:
        before = store.open_review_count()
        answered = label_queue(store, sandbox, limit=4)
    result = cli("train", "--model", "lr", "--force")  # the mechanism; the guard is tested in test_promotion
    out = result.stdout
    assert f"4 labels from the store, 40 from {SAMPLES / 'train/not2d'}" in out
    assert "before (v1)" in out and "after (v2)" in out and "review rate (CV):" in out
    assert "threshold for 2D precision ≥ 0.98" in out
    assert f"review queue: {before - answered} →" in out
    assert "model v2 is now active" in out
    models = json.loads(cli("model", "info", "--json").stdout)
    assert models["version"] == 2 and models["n_train"] == 40 + 4
    assert models["sources"][-1] == LABELS_SOURCE and models["sources"][0].endswith("train/not2d")
    # the next retrain still finds the first folders, through v2's own sources
    assert "40 from" in cli("train", "--model", "lr", "--force").stdout


def test_a_new_model_resolves_the_queue_items_it_is_now_sure_of(queued_dir, sandbox, monkeypatch):
    monkeypatch.setenv("NIJIFEED_THRESHOLD", "0.05")  # a loose rule: the new model is sure of nearly everything
    settings = load_settings()
    with Store.open(settings.db_path) as store:
        label_queue(store, sandbox, limit=3)
        waiting = [r["id"] for r in store.waiting_for_review()]
        assert waiting
        result = retrain(settings, store, BuiltinExtractor(), options=TrainOptions(kind="lr", force=True))
        assert result.version == 2 and result.previous_version == 1
        auto = result.rescored["feed"] + result.rescored["dropped"]
        assert auto > 0 and result.queue_after == result.queue_before - auto
        conn = store.conn
        resolved = conn.execute("SELECT image_id FROM review_queue WHERE resolution = 'auto'").fetchall()
        assert len(resolved) == auto
        for (image_id,) in resolved:
            image = conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
            assert image["routed_by"] == "auto" and image["route"] in ("feed", "dropped")
            verdict = conn.execute("SELECT * FROM verdicts WHERE id = ?", (image["verdict_id"],)).fetchone()
            assert verdict["model_version"] == 2 and verdict["verdict"] != "uncertain"
            statuses = {r[0] for r in conn.execute("SELECT status FROM media WHERE image_id = ?", (image_id,))}
            assert statuses == {image["route"]}
        # audit items are not re-scored: they stay for a person
        audits = conn.execute("SELECT count(*) FROM review_queue WHERE reason = 'audit' AND resolved_at IS NULL")
        assert audits.fetchone()[0] > 0


def test_a_running_pipeline_uses_the_retrained_model_on_its_next_cycle(
    service_env, cli, monkeypatch, no_proxy
):
    with Sandbox(reveal=14) as box:
        use(monkeypatch, box)
        settings = load_settings()
        extractor = BuiltinExtractor()
        runner = CycleRunner(settings, extractor, make_source(settings))
        try:
            runner(threading.Event(), True)
            store = runner.store()
            versions = {r[0] for r in store.conn.execute("SELECT DISTINCT model_version FROM verdicts")}
            assert versions == {1}
            label_queue(store, box)
            with Store.open(settings.db_path) as other:  # the retrain job has a connection of its own
                result = retrain(settings, other, extractor, options=TrainOptions(kind="lr", force=True))
            assert result.version == 2
            box.publish(10)
            summary = runner(threading.Event(), True)
            assert summary.downloaded > 0
            new = store.conn.execute(
                "SELECT DISTINCT v.model_version FROM images JOIN verdicts v ON v.id = images.verdict_id"
                " WHERE images.routed_by = 'model' AND images.first_seen > (SELECT created_at FROM models"
                " WHERE version = 2)"
            ).fetchall()
            assert [r[0] for r in new] == [2]  # classified by the same runner, no restart
        finally:
            runner.close()


def test_maybe_retrain_waits_for_enough_new_labels(queued_dir, sandbox, monkeypatch):
    monkeypatch.setenv("NIJIFEED_RETRAIN_AFTER_LABELS", "3")
    monkeypatch.setenv("NIJIFEED_MODEL", "lr")
    settings = load_settings()
    extractor = BuiltinExtractor()
    with Store.open(settings.db_path) as store:
        label_queue(store, sandbox, limit=2)
        assert maybe_retrain(settings, store, extractor) is None
        label_queue(store, sandbox, limit=1)
        result = maybe_retrain(settings, store, extractor)
        assert result is not None and result.version == 2 and "model v2 (was v1)" in result.line()
        assert maybe_retrain(settings, store, extractor) is None  # nothing new since v2
        store.activate_model(1)  # a roll back does not make the daemon retrain at once
        assert maybe_retrain(settings, store, extractor) is None
        assert maybe_retrain(settings.model_copy(update={"retrain_after_labels": 0}), store, extractor) is None


def test_train_without_anything_to_learn_from_says_so(cli):
    # without --no-samples, a fresh data dir learns from the bundled samples (test_starter.py)
    result = cli("train", "--no-samples", ok=False)
    assert result.exit_code == 1 and "need at least 4 images of each class" in result.output


def test_train_goes_on_without_folders_that_moved(queued_dir, sandbox, cli, tmp_path):
    with Store.open(queued_dir / "nijifeed.sqlite3") as store:
        rows = store.list_models()
        model = load_model(Path(rows[0]["path"]))
    model.meta.sources = [str(tmp_path / "gone/not2d"), str(tmp_path / "gone/2d")]
    from service.classify.registry import save_model

    path = save_model(queued_dir / "models", model)
    with Store.open(queued_dir / "nijifeed.sqlite3") as store:
        store.conn.execute("UPDATE models SET path = ? WHERE version = 1", (str(path),))
        # enough labels of each class to train on alone
        right = answers(sandbox)
        media = store.conn.execute("SELECT image_id, media_key FROM media WHERE image_id IS NOT NULL").fetchall()
        for row in media:
            label(store, row["image_id"], right[row["media_key"]])
    result = cli("train", "--model", "lr", "--force")  # the mechanism; the guard is tested in test_promotion
    assert "original folders not used" in result.output and "0 from no folders" in result.stdout
