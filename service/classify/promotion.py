"""Whether a newly trained model may replace the active one: the guard against a retrain that makes things worse.

Two comparisons, both pure:

* **Feed precision.** The new model's cross-validated feed precision must meet the target, or at least not fall
  below the active model's (a model that improves on an active one that misses the target too may go live).
* **The same images, head to head.** When enough of the new training set are images the active model never saw
  (its own labels), both models are judged on exactly those: the new one by its out-of-fold probabilities, the
  active one as it stands. Comparing each model's CV on its own training set would punish active learning, whose
  new labels are by construction the hard cases. With too few such images, the two CV figures are compared (the
  only figures there are). Either way "2D to feed" may fall, and the review rate rise, by at most ``tolerance``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.classify.evaluate import evaluate
from service.classify.uncertainty import Rule

#: Fewest images the active model never saw before the two models are compared on them rather than by their CVs.
HEAD_TO_HEAD_MIN = 20


@dataclass(frozen=True)
class Comparison:
    """The figures the two models are compared by, and on what."""

    new: Mapping[str, Any]
    active: Mapping[str, Any]
    basis: str  # "CV" or "on N images vN never saw"


def head_to_head(
    y: np.ndarray, p_new: np.ndarray, new_rule: Rule, p_active: np.ndarray, active_rule: Rule, basis: str
) -> Comparison:
    """Both models' figures on the same labelled images (``p_new`` out of fold, ``p_active`` as deployed)."""
    return Comparison(evaluate(y, p_new, new_rule).to_dict(), evaluate(y, p_active, active_rule).to_dict(), basis)


def refusals(
    new: Mapping[str, Any],
    active: Mapping[str, Any] | None,
    *,
    target_precision: float,
    tolerance: float,
    compared: Comparison | None = None,
) -> list[str]:
    """Why the model with CV figures ``new`` should not replace the one with ``active`` (empty: it may).
    Figures are ``at_rule`` dicts: ``precision_2d``, ``recall_2d`` ("2D to feed"), ``review_rate``. ``compared``:
    a head-to-head comparison to judge 2D-to-feed and review rate by instead of the two CVs."""
    reasons = []
    precision = float(new.get("precision_2d", math.nan))
    floor = min(target_precision, float(active.get("precision_2d", math.nan)) if active else target_precision)
    if not precision >= (target_precision if math.isnan(floor) else floor):  # NaN: nothing confident enough
        shown = "no confident 2D verdicts" if math.isnan(precision) else f"{precision:.3f}"
        reasons.append(f"CV feed precision {shown} misses the target {target_precision:g}")
    if active:
        judged = compared or Comparison(new, active, "CV")
        before, after = float(judged.active.get("recall_2d", math.nan)), float(judged.new.get("recall_2d", math.nan))
        if after < before - tolerance or (math.isnan(after) and not math.isnan(before)):
            reasons.append(f"2D to feed ({judged.basis}) {before:.3f} → {after:.3f}, worse by more than {tolerance:g}")
        before, after = float(judged.active.get("review_rate", math.nan)), float(judged.new.get("review_rate", math.nan))
        if after > before + tolerance:
            reasons.append(f"review rate ({judged.basis}) {before:.3f} → {after:.3f}, worse by more than {tolerance:g}")
    return reasons
