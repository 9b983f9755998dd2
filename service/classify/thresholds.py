"""Choosing the reject threshold from a precision target, instead of taking 0.3 on faith.

Given out-of-fold probabilities (each image scored by a model that never saw it), find the loosest threshold for
the 2D verdict whose feed precision still meets the target. Loosest = the most images reach the feed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.classify.evaluate import as_probs
from service.classify.uncertainty import ScoreKind, is_uncertain

#: Candidate thresholds, ordered loosest first, in each score's own units.
GRIDS: dict[str, np.ndarray] = {
    "margin": np.round(np.arange(0.0, 0.991, 0.01), 2),  # uncertain when margin < t: small t is loose
    "least_confident": np.round(np.arange(0.5, -0.001, -0.005), 3),  # uncertain when score > t: large t is loose
    "entropy": np.round(np.arange(1.0, -0.001, -0.01), 2),
}


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    precision: float  # cross-validated 2D precision at that threshold
    coverage_2d: float  # share of true 2D images confidently sent to the feed
    feed: int  # confident 2D verdicts behind the precision figure
    target: float
    met: bool  # False: no threshold reached the target; the tightest one with enough support is returned


def choose_threshold(
    y: np.ndarray, p_2d: np.ndarray, *, target: float, kind: ScoreKind = "margin", min_feed: int = 5
) -> ThresholdChoice:
    """Loosest threshold whose 2D precision >= ``target``, judged on at least ``min_feed`` confident 2D verdicts.

    Precision is not monotone in the threshold on small data, so we take the loosest threshold from which every
    tighter one (with enough support) also meets the target: one lucky threshold cannot be picked on its own.
    """
    y = np.asarray(y).astype(int)
    probs = as_probs(p_2d)
    says_2d = probs[:, 1] > probs[:, 0]
    rows = []
    for t in GRIDS[kind]:
        feed = says_2d & ~is_uncertain(probs, kind, float(t))
        n_feed = int(feed.sum())
        precision = float((y[feed] == 1).mean()) if n_feed else float("nan")
        rows.append((float(t), precision, n_feed, float((feed & (y == 1)).sum() / max((y == 1).sum(), 1))))
    supported = [r for r in rows if r[2] >= min_feed]
    if not supported:
        t, precision, n_feed, coverage = rows[-1]
        return ThresholdChoice(t, precision, coverage, n_feed, target, False)
    # Walk from the tightest supported threshold towards looser ones while the target still holds.
    chosen = None
    for row in reversed(supported):
        if row[1] >= target:
            chosen = row
        else:
            break
    if chosen is None:
        t, precision, n_feed, coverage = supported[-1]
        return ThresholdChoice(t, precision, coverage, n_feed, target, False)
    t, precision, n_feed, coverage = chosen
    return ThresholdChoice(t, precision, coverage, n_feed, target, True)
