"""A retrain that makes things worse is saved but does not go live (issue 9)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from service.classify.promotion import refusals

GOOD = {"precision_2d": 0.99, "recall_2d": 0.80, "review_rate": 0.15}


def test_a_model_as_good_as_the_active_one_is_not_refused():
    assert refusals(GOOD, GOOD, target_precision=0.98, tolerance=0.05) == []
    slightly = {"precision_2d": 0.985, "recall_2d": 0.77, "review_rate": 0.19}
    assert refusals(slightly, GOOD, target_precision=0.98, tolerance=0.05) == []


@pytest.mark.parametrize(
    ("new", "says"),
    [
        ({**GOOD, "precision_2d": 0.90}, "feed precision 0.900 misses the target 0.98"),
        ({**GOOD, "precision_2d": float("nan")}, "no confident 2D verdicts"),
        ({**GOOD, "recall_2d": 0.25}, "2D to feed (CV) 0.800 → 0.250"),
        ({**GOOD, "review_rate": 0.52}, "review rate (CV) 0.150 → 0.520"),
    ],
)
def test_each_way_of_being_worse_is_named(new, says):
    reasons = refusals(new, GOOD, target_precision=0.98, tolerance=0.05)
    assert len(reasons) == 1 and says in reasons[0]


def test_without_an_active_model_only_the_target_counts():
    assert refusals({**GOOD, "review_rate": 0.9}, None, target_precision=0.98, tolerance=0.0) == []


def _models(data_dir) -> list[sqlite3.Row]:
    conn = sqlite3.connect(data_dir / "nijifeed.sqlite3")
    conn.row_factory = sqlite3.Row
    return conn.execute("SELECT version, active, metrics_json FROM models ORDER BY version").fetchall()


def test_train_keeps_the_active_model_when_the_new_one_is_worse_unless_forced(trained, samples, cli):
    folders = (samples / "train/not2d", samples / "train/2d")
    # A fixed margin threshold of 0.95 sends most images to review: far worse than the active model.
    result = cli("train", "--from-folders", *folders, "--threshold", "0.95", ok=False)
    assert result.exit_code == 3
    assert "NOT activated" in result.output and "review rate" in result.output
    models = _models(trained)
    assert [(m["version"], m["active"]) for m in models] == [(1, 1), (2, 0)]
    assert any("review rate" in reason for reason in json.loads(models[1]["metrics_json"])["not_activated"])
    report = cli("report", "--json")
    rows = {m["version"]: m for m in json.loads(report.stdout)["models"]}
    assert rows[2]["not_activated"] and not rows[1]["not_activated"]

    forced = cli("train", "--from-folders", *folders, "--threshold", "0.95", "--force")
    assert "activated although" in forced.output and "v3 is now active" in forced.output
    assert [(m["version"], m["active"]) for m in _models(trained)] == [(1, 0), (2, 0), (3, 1)]


def test_the_scheduled_retrain_is_guarded_too(trained, samples, cli, monkeypatch):
    from service.config import load_settings
    from service.features.builtin import BuiltinExtractor
    from service.pipeline.retrain import maybe_retrain
    from service.store import Store

    monkeypatch.setenv("NIJIFEED_RETRAIN_AFTER_LABELS", "1")
    monkeypatch.setenv("NIJIFEED_THRESHOLD", "0.95")
    settings = load_settings()
    with Store.open(settings.db_path) as store:
        image = int(store.conn.execute("SELECT id FROM images LIMIT 1").fetchone()[0])
        store.label_image(image, "2d", source="review")
        result = maybe_retrain(settings, store, BuiltinExtractor())
        assert result is not None and not result.activated and result.refused
        assert int(store.active_model()["version"]) == 1


def test_eval_on_the_training_images_warns_that_it_is_no_test(trained, samples, cli, tmp_path):
    result = cli("eval", samples / "train/not2d", samples / "train/2d", "--json")
    assert "no test" in result.stderr
    assert json.loads(result.stdout)["seen_in_training"] > 0


def test_a_model_that_misses_the_target_may_still_replace_a_less_precise_one():
    active = {**GOOD, "precision_2d": 0.95}
    assert refusals({**GOOD, "precision_2d": 0.96}, active, target_precision=0.98, tolerance=0.05) == []
    assert refusals({**GOOD, "precision_2d": 0.94}, active, target_precision=0.98, tolerance=0.05)


def test_head_to_head_judges_both_models_on_the_same_images():
    import numpy as np

    from service.classify.promotion import head_to_head
    from service.classify.uncertainty import Rule

    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    sure = np.array([0.95, 0.9, 0.92, 0.97, 0.05, 0.1, 0.08, 0.03])
    unsure = np.array([0.6, 0.55, 0.4, 0.62, 0.45, 0.5, 0.38, 0.41])
    rule = Rule("margin", 0.3)
    # By their own CVs the new model looks worse; on the same images it is better: the comparison decides.
    better = head_to_head(y, sure, rule, unsure, rule, "on 8 images v1 never saw")
    worse_by_cv = {**GOOD, "recall_2d": 0.4, "review_rate": 0.5}
    assert refusals(worse_by_cv, GOOD, target_precision=0.98, tolerance=0.05, compared=better) == []
    reasons = refusals(GOOD, GOOD, target_precision=0.98, tolerance=0.05,
                       compared=head_to_head(y, unsure, rule, sure, rule, "on 8 images v1 never saw"))
    assert reasons and all("on 8 images v1 never saw" in r for r in reasons)
