"""Uncertainty scores and the reject rule, as pure functions over probability arrays.

``probs`` is always an (n, k) array of class probabilities whose rows sum to 1. The same three scores serve two
users: the reject rule (is this verdict safe to act on?) and active learning (which image is most worth a label?).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple, cast

import numpy as np

from service.words import CLASSES, ScoreKind, Verdict

__all__ = ["CLASSES", "Decision", "Decisions", "Rule", "ScoreKind", "Verdict", "decide", "verdicts"]


def _as_probs(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"expected an (n, k>=2) probability array, got shape {probs.shape}")
    return probs


def least_confident(probs: np.ndarray) -> np.ndarray:
    """1 - P(top class): 0 when sure, up to 1 - 1/k when all classes are equally likely."""
    return 1.0 - _as_probs(probs).max(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """P(top class) - P(second class): 1 when sure, 0 when the top two tie. Small margin = uncertain."""
    top2 = np.sort(_as_probs(probs), axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy normalised by log(k), so 0 is certain and 1 is uniform whatever the number of classes."""
    p = _as_probs(probs)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1) / np.log(p.shape[1])


def uncertainty(probs: np.ndarray, kind: ScoreKind) -> np.ndarray:
    """The score of ``kind`` turned so that larger always means less certain (margin becomes 1 - margin).

    One direction for all kinds lets sampling and thresholds share code. For two classes the three kinds rank
    images identically; they differ (and the choice matters) only in the threshold's scale.
    """
    if kind == "margin":
        return 1.0 - margin(probs)
    if kind == "least_confident":
        return least_confident(probs)
    if kind == "entropy":
        return entropy(probs)
    raise ValueError(f"unknown score kind {kind!r}; expected margin, least_confident or entropy")


@dataclass(frozen=True)
class Rule:
    """The reject option: which score, and where "unsure" begins.

    ``threshold`` is in the score's own units: a margin *below* it, or a least-confident / entropy score *above*
    it, is uncertain. ``threshold_not2d`` lets the two verdicts differ: a wrong "2D" pollutes the feed while a
    wrong "not 2D" only loses one picture, so the 2D side may ask for more confidence. ``None`` means the same.
    """

    score_kind: ScoreKind = "margin"
    threshold: float = 0.3
    threshold_not2d: float | None = None

    def to_dict(self) -> dict:
        return {"score_kind": self.score_kind, "threshold": self.threshold, "threshold_not2d": self.threshold_not2d}

    def with_threshold(self, threshold: float) -> Rule:
        """The same score with one threshold for both verdicts: what ``NIJIFEED_THRESHOLD`` asks for."""
        return Rule(self.score_kind, threshold)


#: Scores within this of the threshold count as equal to it, so 0.715 - 0.285 (0.42999...) is "margin 0.43".
_TIE = 1e-9


def is_uncertain(probs: np.ndarray, kind: ScoreKind, threshold: float) -> np.ndarray:
    """Boolean mask of rows the rule refuses to decide."""
    if kind == "margin":
        return margin(probs) < threshold - _TIE
    return uncertainty(probs, kind) > threshold + _TIE


def verdicts(probs: np.ndarray, rule: Rule = Rule()) -> np.ndarray:
    """'2d', 'not2d' or 'uncertain' per row of a (n, 2) array ordered as ``CLASSES``."""
    probs = _as_probs(probs)
    is_2d = probs[:, 1] > probs[:, 0]
    t_not2d = rule.threshold if rule.threshold_not2d is None else rule.threshold_not2d
    unsure = np.where(
        is_2d,
        is_uncertain(probs, rule.score_kind, rule.threshold),
        is_uncertain(probs, rule.score_kind, t_not2d),
    )
    out = np.where(is_2d, "2d", "not2d").astype(object)
    out[unsure] = "uncertain"
    return out.astype(str)


def threshold_from_margin(m: float, kind: ScoreKind) -> float:
    """The threshold of ``kind`` that, for two classes, decides exactly the rows a margin threshold ``m`` does."""
    top = np.array([[(1 - m) / 2, (1 + m) / 2]])
    if kind == "margin":
        return float(m)
    return float(uncertainty(top, kind)[0])


class Decision(NamedTuple):
    """One image's decision: the verdict and the numbers behind it."""

    verdict: Verdict
    p_2d: float
    margin: float
    score: float  # the rule's uncertainty score (larger = less sure): the review queue's priority


@dataclass(frozen=True)
class Decisions:
    """A model's decisions on a batch, as arrays (one row per image); iterate for one ``Decision`` per image."""

    verdict: np.ndarray  # str: "2d", "not2d" or "uncertain"
    p_2d: np.ndarray
    margin: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.verdict)

    def __iter__(self) -> Iterator[Decision]:
        for v, p, m, s in zip(self.verdict, self.p_2d, self.margin, self.score, strict=True):
            yield Decision(cast(Verdict, str(v)), float(p), float(m), float(s))


def decide(p_2d: np.ndarray, rule: Rule) -> Decisions:
    """The decision for each image from its P(2D) under ``rule``: the one place p → verdict, margin, score."""
    p = np.asarray(p_2d, dtype=np.float64).reshape(-1)
    probs = np.column_stack([1 - p, p])
    return Decisions(verdicts(probs, rule), p, margin(probs), uncertainty(probs, rule.score_kind))
