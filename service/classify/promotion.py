"""Whether a newly trained model may replace the active one: the guard against a retrain that makes things worse.

Both models are judged by their cross-validated figures (``meta.cv["at_rule"]``), each on its own training set, as
the train output compares them. A new version goes live only when its feed precision meets the target and neither
its "2D to feed" share nor its review rate is worse than the active model's by more than ``tolerance``. Pure: the
pipeline decides what to do with the reasons.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def refusals(
    new: Mapping[str, Any], active: Mapping[str, Any] | None, *, target_precision: float, tolerance: float
) -> list[str]:
    """Why the model with CV figures ``new`` should not replace the one with ``active`` (empty: it may).
    ``new`` and ``active`` are ``at_rule`` figures: ``precision_2d``, ``recall_2d`` ("2D to feed"), ``review_rate``.
    """
    reasons = []
    precision = float(new.get("precision_2d", math.nan))
    if not precision >= target_precision:  # NaN (nothing confident enough for the feed) misses it too
        shown = "no confident 2D verdicts" if math.isnan(precision) else f"{precision:.3f}"
        reasons.append(f"CV feed precision {shown} misses the target {target_precision:g}")
    if active:
        before, after = float(active.get("recall_2d", math.nan)), float(new.get("recall_2d", math.nan))
        if after < before - tolerance or (math.isnan(after) and not math.isnan(before)):
            reasons.append(f"CV 2D to feed {before:.3f} → {after:.3f}, worse by more than {tolerance:g}")
        before, after = float(active.get("review_rate", math.nan)), float(new.get("review_rate", math.nan))
        if after > before + tolerance:
            reasons.append(f"CV review rate {before:.3f} → {after:.3f}, worse by more than {tolerance:g}")
    return reasons
