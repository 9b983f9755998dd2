import numpy as np
import pytest

from service.classify.evaluate import evaluate, risk_coverage
from service.classify.thresholds import choose_threshold
from service.classify.uncertainty import Rule


def test_choose_threshold_finds_loosest_that_meets_precision():
    # Confident 2D scores are all right; the two not-2D images scored 0.7 and 0.715 (margin 0.4/0.43) are not.
    y = np.array([1] * 10 + [0, 0] + [0] * 10)
    p = np.array([0.95] * 10 + [0.70, 0.715] + [0.05] * 10)
    choice = choose_threshold(y, p, target=0.98)
    assert choice.met
    # a threshold above 0.43 sends both mistakes to review; 0.44 is the loosest such value on the grid
    assert choice.threshold == pytest.approx(0.44)
    assert choice.precision == 1.0
    assert choice.coverage_2d == 1.0
    assert evaluate(y, p, Rule("margin", choice.threshold)).precision_2d == 1.0


def test_target_not_met_is_reported_not_hidden():
    y = np.array([1, 0] * 10)
    p = np.full(20, 0.99)
    choice = choose_threshold(y, p, target=0.98)
    assert not choice.met
    assert choice.precision == pytest.approx(0.5)


def test_a_lucky_loose_threshold_is_not_chosen_over_a_failing_tighter_one():
    # Loose thresholds meet the target only because 200 right answers outnumber 3 wrong ones; tight thresholds
    # keep just the 0.99 scores, 3 of 8 wrong. Precision must hold from the tightest threshold down.
    y = np.array([0] * 3 + [1] * 200 + [1] * 5)
    p = np.array([0.99] * 3 + [0.62] * 200 + [0.99] * 5)
    choice = choose_threshold(y, p, target=0.98)
    assert not choice.met


def test_evaluate_counts_and_rates():
    y = np.array([1, 1, 1, 0, 0, 1])
    p = np.array([0.9, 0.6, 0.2, 0.1, 0.8, 0.5])
    m = evaluate(y, p, Rule("margin", 0.3))
    assert (m.feed, m.review, m.dropped) == (2, 2, 2)
    assert m.precision_2d == pytest.approx(0.5)
    assert m.recall_2d == pytest.approx(0.25)
    assert m.lost_2d == 1
    assert m.review_rate == pytest.approx(2 / 6)
    assert m.confident_accuracy == pytest.approx(2 / 4)


def test_risk_coverage_is_monotone_in_coverage():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.6 + rng.normal(0.2, 0.2, 200), 0, 1)
    rows = risk_coverage(y, p, Rule())
    coverages = [r["coverage"] for r in rows]
    assert coverages == sorted(coverages, reverse=True)
    assert rows[0]["coverage"] == 1.0
