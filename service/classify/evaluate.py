"""Figures that say whether a model and rule are good enough to act on.

All functions take ``y`` (1 = 2D, 0 = not 2D) and ``p_2d`` (the model's probability of 2D) as plain arrays, so
they serve cross-validation, ``nijifeed eval`` and the tests alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from service.classify.uncertainty import Rule, decide, is_uncertain


def as_probs(p_2d: np.ndarray) -> np.ndarray:
    """(n,) probabilities of 2D to the (n, 2) array ordered as ``CLASSES``."""
    p = np.clip(np.asarray(p_2d, dtype=np.float64), 0.0, 1.0)
    return np.column_stack([1.0 - p, p])


@dataclass(frozen=True)
class Metrics:
    n: int
    accuracy: float  # every image decided by argmax, as if there were no reject option
    confident_accuracy: float  # accuracy on the images the rule decides
    review_rate: float  # share sent to review
    precision_2d: float  # of confident "2D" verdicts, the share truly 2D: the feed's precision
    recall_2d: float  # of all true 2D images, the share that reaches the feed
    lost_2d: int  # true 2D images confidently dropped
    feed: int
    review: int
    dropped: int

    def to_dict(self) -> dict:
        return asdict(self)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


def evaluate(y: np.ndarray, p_2d: np.ndarray, rule: Rule) -> Metrics:
    return evaluate_verdicts(y, p_2d, decide(np.asarray(p_2d, dtype=np.float64), rule).verdict)


def evaluate_verdicts(y: np.ndarray, p_2d: np.ndarray, v: np.ndarray) -> Metrics:
    """The figures for verdicts already given (``"2d"``, ``"not2d"``, ``"uncertain"`` per image), e.g. those of
    nested cross-validation, where each fold's images are judged by the rule chosen without them."""
    y = np.asarray(y).astype(int)
    v = np.asarray(v)
    feed, review, dropped = v == "2d", v == "uncertain", v == "not2d"
    decided = ~review
    predicted = (np.asarray(p_2d) > 0.5).astype(int)
    correct_decided = (feed & (y == 1)) | (dropped & (y == 0))
    return Metrics(
        n=len(y),
        accuracy=_ratio((predicted == y).sum(), len(y)),
        confident_accuracy=_ratio(correct_decided.sum(), decided.sum()),
        review_rate=_ratio(review.sum(), len(y)),
        precision_2d=_ratio((feed & (y == 1)).sum(), feed.sum()),
        recall_2d=_ratio((feed & (y == 1)).sum(), (y == 1).sum()),
        lost_2d=int((dropped & (y == 1)).sum()),
        feed=int(feed.sum()),
        review=int(review.sum()),
        dropped=int(dropped.sum()),
    )


def risk_coverage(y: np.ndarray, p_2d: np.ndarray, rule: Rule, thresholds: np.ndarray | None = None) -> list[dict]:
    """Coverage (share decided) against risk (error rate of decided images) as the threshold moves.

    The rule's score kind is kept and one threshold is applied to both verdicts, so the table reads as "how much
    must go to review to reach this error rate".
    """
    if thresholds is None:
        thresholds = np.round(np.arange(0.0, 1.0, 0.1), 2)
    y = np.asarray(y).astype(int)
    probs = as_probs(p_2d)
    predicted = (probs[:, 1] > probs[:, 0]).astype(int)
    rows = []
    for t in thresholds:
        decided = ~is_uncertain(probs, rule.score_kind, float(t))
        errors = (predicted != y) & decided
        rows.append(
            {
                "threshold": float(t),
                "coverage": _ratio(decided.sum(), len(y)),
                "risk": _ratio(errors.sum(), decided.sum()),
                "decided": int(decided.sum()),
            }
        )
    return rows
