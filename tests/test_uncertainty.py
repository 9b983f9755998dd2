import numpy as np
import pytest

from service.classify.uncertainty import (
    Rule,
    decide,
    entropy,
    is_uncertain,
    least_confident,
    margin,
    uncertainty,
    verdicts,
)

PROBS = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [0.64, 0.36], [1.0, 0.0]])


def test_least_confident_is_one_minus_top_probability():
    np.testing.assert_allclose(least_confident(PROBS), [0.5, 0.1, 0.2, 0.36, 0.0])


def test_margin_is_gap_between_top_two():
    np.testing.assert_allclose(margin(PROBS), [0.0, 0.8, 0.6, 0.28, 1.0])
    np.testing.assert_allclose(margin(np.array([[0.5, 0.3, 0.2]])), [0.2])


def test_entropy_is_normalised_to_one_for_uniform():
    values = entropy(PROBS)
    assert values[0] == pytest.approx(1.0)
    assert values[4] == pytest.approx(0.0)
    assert entropy(np.full((1, 4), 0.25))[0] == pytest.approx(1.0)
    p = 0.9
    assert values[1] == pytest.approx(-(p * np.log2(p) + (1 - p) * np.log2(1 - p)))


def test_all_kinds_rank_two_class_rows_the_same_way():
    kinds = ("margin", "least_confident", "entropy")
    orders = {kind: list(np.argsort(-uncertainty(PROBS, kind), kind="stable")) for kind in kinds}
    assert orders["margin"] == orders["least_confident"] == orders["entropy"] == [0, 3, 2, 1, 4]
    assert uncertainty(PROBS, "margin")[0] == pytest.approx(1.0)


def test_unknown_kind_and_bad_shape_are_refused():
    with pytest.raises(ValueError, match="unknown score kind"):
        uncertainty(PROBS, "bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="probability array"):
        margin(np.array([0.2, 0.8]))


def test_published_rule_sends_margin_below_0_3_to_review():
    assert list(verdicts(PROBS)) == ["uncertain", "not2d", "2d", "uncertain", "not2d"]
    # exactly at the threshold is confident: the rule is "margin < threshold"
    assert list(verdicts(np.array([[0.35, 0.65]]), Rule("margin", 0.3))) == ["2d"]


def test_asymmetric_rule_asks_more_of_2d_than_of_not2d():
    probs = np.array([[0.25, 0.75], [0.75, 0.25]])  # margin 0.5 each side
    rule = Rule("margin", threshold=0.6, threshold_not2d=0.3)
    assert list(verdicts(probs, rule)) == ["uncertain", "not2d"]


def test_least_confident_and_entropy_thresholds_are_upper_bounds():
    assert list(is_uncertain(PROBS, "least_confident", 0.3)) == [True, False, False, True, False]
    assert list(is_uncertain(PROBS, "entropy", 0.5)) == [True, False, True, True, False]


def test_decide_is_the_rule_with_its_numbers():
    p = np.array([0.9, 0.55, 0.1, 0.35])
    d = decide(p, Rule("margin", 0.3))
    assert list(d.verdict) == ["2d", "uncertain", "not2d", "not2d"]  # margin 0.3 exactly is decided
    assert d.margin == pytest.approx([0.8, 0.1, 0.8, 0.3])
    assert d.score == pytest.approx(1 - d.margin)
    one = list(d)[0]
    assert one.verdict == "2d" and one.p_2d == pytest.approx(0.9) and isinstance(one.verdict, str)
    assert len(d) == 4
