"""What the answers say about the service: the feed's precision, the review load, how each model did.

The feed's precision is estimated from audit labels only. Labels from the uncertain band are a biased sample
(they are the hard cases by construction), while audit items are a uniform random draw of confident verdicts, so
the share of audited 2D verdicts a person confirmed is an unbiased estimate; the Wilson interval says how far
it can be trusted with so few labels behind it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from service.pipeline.retrain import new_labels
from service.store import Store


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a proportion (95 % for z = 1.96): sensible at 0 and n successes and for
    small n, where the normal approximation gives bounds outside [0, 1]. (nan, nan) when n = 0."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Estimate:
    """A proportion measured on ``n`` labels, with its 95 % Wilson interval."""

    successes: int
    n: int

    @property
    def value(self) -> float:
        return self.successes / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.n)

    def to_dict(self) -> dict:
        low, high = self.interval
        return {"value": self.value, "low": low, "high": high, "n": self.n, "successes": self.successes}


def audit_estimates(outcomes: list[tuple[int, str, str]]) -> dict[str, Estimate]:
    """From (model_version, verdict, label) of audited verdicts: ``feed`` = audited 2D verdicts labelled 2D,
    ``dropped`` = audited not-2D verdicts labelled not 2D, and ``feed:v<N>`` per model version."""
    tallies: dict[str, list[int]] = {}
    for version, verdict, label in outcomes:
        keys = ["feed", f"feed:v{version}"] if verdict == "2d" else ["dropped"]
        for key in keys:
            tally = tallies.setdefault(key, [0, 0])
            tally[0] += int(label == verdict)
            tally[1] += 1
    return {key: Estimate(ok, n) for key, (ok, n) in tallies.items()}


@dataclass
class DayLoad:
    day: str
    queued: int  # items that entered the queue
    labelled: int  # answers given (review and import)
    auto: int  # items a newer model resolved on its own


@dataclass
class ModelRow:
    version: int
    created_at: str
    kind: str
    active: bool
    threshold: float | None
    cv_n: int | None
    cv_review_rate: float | None
    cv_precision: float | None
    cv_recall: float | None
    live_images: int  # images this version classified first
    live_review_rate: float | None
    audit_precision: dict | None  # Estimate.to_dict() of its audited 2D verdicts
    not_activated: list[str] = field(default_factory=list)  # why training did not make it active, if it did not
    starter: bool = False  # the starter model (the bundled samples alone, ``pipeline.retrain.ensure_starter``)


@dataclass
class Report:
    generated_at: str
    feed_precision: Estimate
    dropped_correct: Estimate
    open_items: dict[str, int]
    labels_since_model: int  # since the newest model was trained
    load: list[DayLoad] = field(default_factory=list)
    models: list[ModelRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["feed_precision"] = self.feed_precision.to_dict()
        data["dropped_correct"] = self.dropped_correct.to_dict()
        return data


def build_report(store: Store, *, days: int = 14, now: datetime | None = None) -> Report:
    """Every figure of `nijifeed report` and the /report page, read from the store."""
    now = now or datetime.now(UTC)
    estimates = audit_estimates([(int(r[0]), str(r[1]), str(r[2])) for r in store.audit_outcomes()])
    return Report(
        generated_at=now.isoformat(timespec="seconds"),
        feed_precision=estimates.get("feed", Estimate(0, 0)),
        dropped_correct=estimates.get("dropped", Estimate(0, 0)),
        open_items=dict(store.review_counts()["open"]),
        labels_since_model=new_labels(store),
        load=review_load(store, days=days, now=now),
        models=model_history(store, estimates),
    )


def review_load(store: Store, *, days: int, now: datetime) -> list[DayLoad]:
    """One row per UTC day of the last ``days`` (days without activity included, so gaps show)."""
    first = (now - timedelta(days=days - 1)).date()
    counts = store.review_load(first.isoformat())
    out = []
    for offset in range(days):
        day = (first + timedelta(days=offset)).isoformat()
        out.append(DayLoad(day, counts["queued"][day], counts["labelled"][day], counts["auto"][day]))
    return out


def model_history(store: Store, estimates: dict[str, Estimate]) -> list[ModelRow]:
    """Every model version with its cross-validated figures (from training) and its live ones (from use)."""
    live = {int(r["model_version"]): (int(r["n"]), int(r["uncertain"])) for r in store.first_verdicts_by_model()}
    rows = []
    for model in store.list_models():
        version = int(model["version"])
        metrics = json.loads(model["metrics_json"] or "{}")
        at_rule = metrics.get("at_rule", {})
        n, uncertain = live.get(version, (0, 0))
        audit = estimates.get(f"feed:v{version}")
        rows.append(
            ModelRow(
                version=version,
                created_at=model["created_at"],
                kind=model["kind"],
                active=bool(model["active"]),
                threshold=model["threshold"],
                cv_n=at_rule.get("n"),
                cv_review_rate=_finite(at_rule.get("review_rate")),
                cv_precision=_finite(at_rule.get("precision_2d")),
                cv_recall=_finite(at_rule.get("recall_2d")),
                live_images=n,
                live_review_rate=uncertain / n if n else None,
                audit_precision=audit.to_dict() if audit else None,
                not_activated=list(metrics.get("not_activated", [])),
                starter=bool(metrics.get("starter", False)),
            )
        )
    return rows


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
