"""The dev-set benchmark reports the product's own figures: its core, run on a tiny synthetic dataset, agrees with
``service.classify.evaluate`` on the same out-of-fold predictions, and its nested run is ``train`` per fold."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks are scripts beside the package, not part of it
    sys.path.insert(0, str(ROOT))

from benchmarks import dev_eval  # noqa: E402
from benchmarks.devset import load_devset  # noqa: E402
from service.classify.evaluate import evaluate, evaluate_verdicts  # noqa: E402
from service.classify.training import TrainingData, cross_validate, grouped_splits, out_of_fold, train  # noqa: E402
from service.classify.uncertainty import Rule, decide  # noqa: E402

KIND = "lr"  # the quickest product model; the benchmark treats every kind alike


def synthetic(n_groups: int = 30, seed: int = 0) -> TrainingData:
    """Two overlapping classes in 6 features, each group a pair of near-duplicates with the same label."""
    rng = np.random.default_rng(seed)
    y_group = np.arange(n_groups) % 2
    centres = rng.normal(0, 1, (n_groups, 6)) + y_group[:, None] * 1.2
    X = np.repeat(centres, 2, axis=0) + rng.normal(0, 0.05, (2 * n_groups, 6))
    y = np.repeat(y_group, 2)
    groups = np.repeat(np.arange(n_groups), 2)
    return TrainingData(X.astype(np.float32), y, [f"{i:064x}" for i in range(len(y))], groups, [])


def test_evaluate_verdicts_is_evaluate_of_the_rules_verdicts():
    data = synthetic()
    p = out_of_fold(data.X, data.y, data.groups, KIND, folds=3, seed=0)
    for rule in (Rule("margin", 0.3), Rule("margin", 0.4, threshold_not2d=0.3), Rule("entropy", 0.8)):
        assert evaluate_verdicts(data.y, p, decide(p, rule).verdict) == evaluate(data.y, p, rule)


def test_cross_validate_is_train_on_each_outer_fold():
    data = synthetic()
    cv = cross_validate(data, kind=KIND, min_margin_2d=0.4, folds=3, seed=1)
    # The outer models are out_of_fold's: same splits, same seeds, same data.
    np.testing.assert_allclose(cv.p_2d, out_of_fold(data.X, data.y, data.groups, KIND, folds=3, seed=1), atol=1e-6)
    splits = grouped_splits(data.y, data.groups, 3, 1)
    assert len(cv.rules) == len(splits)
    for i, (part, test) in enumerate(splits):
        model = train(TrainingData(data.X[part], data.y[part], [data.sha256s[j] for j in part], data.groups[part],
                                   []), kind=KIND, extractor="x", min_margin_2d=0.4, folds=3, seed=1)
        assert cv.rules[i] == model.rule
        assert cv.rules[i].threshold >= 0.4 and cv.rules[i].threshold_not2d == 0.3
        assert list(cv.verdict[test]) == list(model.decide(data.X[test]).verdict)
        assert (cv.fold[test] == i).all()


def test_benchmark_figures_are_the_products_evaluate():
    data = synthetic()
    seeds = [0, 1]
    results = dev_eval.benchmark(data, KIND, seeds=seeds, folds=3, fixed=[(0.4, 0.3)], floors=[0.4])
    assert list(results) == ["margin 0.3", "fixed 0.4/0.3", "trained floor 0.4"]
    n2d = int(data.y.sum())
    for i, seed in enumerate(seeds):
        p = out_of_fold(data.X, data.y, data.groups, KIND, folds=3, seed=seed)
        for label, rule in (("margin 0.3", Rule("margin", 0.3)), ("fixed 0.4/0.3", Rule("margin", 0.4, 0.3))):
            m = evaluate(data.y, p, rule)
            row = results[label].runs[i]
            assert row["review"] == pytest.approx(m.review_rate)
            assert row["prec2d"] == pytest.approx(m.precision_2d, nan_ok=True)
            assert row["feed2d"] == pytest.approx(m.recall_2d)
            assert row["lost2d"] == pytest.approx(m.lost_2d / n2d)
            assert row["acc"] == pytest.approx(m.accuracy)
        # The trained rule: pooling each outer fold's own evaluate gives the benchmark's figures.
        cv = cross_validate(data, kind=KIND, min_margin_2d=0.4, folds=3, seed=seed)
        per_fold = [evaluate(data.y[cv.fold == f], cv.p_2d[cv.fold == f], rule) for f, rule in enumerate(cv.rules)]
        feed = sum(m.feed for m in per_fold)
        right_in_feed = sum(m.precision_2d * m.feed for m in per_fold if m.feed)
        row = results["trained floor 0.4"].runs[i]
        assert row["review"] == pytest.approx(sum(m.review for m in per_fold) / len(data.y))
        assert row["prec2d"] == pytest.approx(right_in_feed / feed)
        assert row["feed2d"] == pytest.approx(right_in_feed / n2d)
        assert row["lost2d"] == pytest.approx(sum(m.lost_2d for m in per_fold) / n2d)
        assert row["thr2d"] == pytest.approx(np.mean([r.threshold for r in cv.rules]))
    summary = results["margin 0.3"].summary()
    reviews = [r["review"] for r in results["margin 0.3"].runs]
    assert summary["mean"]["review"] == pytest.approx(np.mean(reviews))
    assert summary["sd"]["review"] == pytest.approx(np.std(reviews))


def test_script_reads_a_dataset_folder_and_prints_json(tmp_path, capsys):
    """The whole script on a folder of 24 drawn images: flat colour shapes (2D) and noise (not 2D)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        label = "2d" if i % 2 else "not2d"
        if label == "2d":
            array = np.full((64, 64, 3), rng.integers(0, 256, 3), np.uint8)
            array[16:48, 16:48] = rng.integers(0, 256, 3)
        else:
            array = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
        name = f"{label}_{i}.png"
        Image.fromarray(array).save(tmp_path / name)
        rows.append({"file": name, "label": label, "category": label, "group": f"g{i // 4}-{label}"})
    with open(tmp_path / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "label", "category", "group"])
        writer.writeheader()
        writer.writerows(rows)
    args = ["--dataset", str(tmp_path), "--cache-dir", str(tmp_path), "--repeats", "1", "--folds", "3",
            "--models", KIND, "--json", "--no-nested"]
    assert dev_eval.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["images"], report["images_2d"], report["groups"]) == (24, 12, 12)
    figures = report["models"][KIND]["margin 0.3"]["mean"]
    dev = load_devset(tmp_path, tmp_path)  # now from the cache the run wrote
    p = out_of_fold(dev.X, dev.y, dev.groups, KIND, folds=3, seed=0)
    m = evaluate(dev.y, p, Rule("margin", 0.3))
    assert figures["review"] == pytest.approx(m.review_rate)
    assert figures["feed2d"] == pytest.approx(m.recall_2d)
