"""Training: grouped cross-validation for honest figures, a threshold from a precision target, a final fit.

The figures that decide the threshold come from out-of-fold probabilities: every image is scored by a model that
never saw it nor any of its near-duplicates. Only then is the final model fitted on everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from service.classify.evaluate import evaluate, risk_coverage
from service.classify.models import build_model
from service.classify.registry import ModelMeta, TrainedModel, dataset_hash
from service.classify.thresholds import choose_threshold
from service.classify.uncertainty import Rule, ScoreKind, threshold_from_margin
from service.errors import TrainingError


def near_duplicate_groups(dhashes: Sequence[int], max_distance: int = 6) -> np.ndarray:
    """Group ids such that images whose perceptual hashes differ in <= ``max_distance`` bits share a group.

    Union-find over all pairs: O(n^2) bit counts, a fraction of a second for a few thousand images.
    """
    n = len(dhashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    hashes = np.array(dhashes, dtype=np.uint64)
    for i in range(n):
        distances = np.array([bin(int(v)).count("1") for v in hashes[i + 1 :] ^ hashes[i]], dtype=int)
        for j in np.nonzero(distances <= max_distance)[0] + i + 1:
            parent[find(int(j))] = find(i)
    return np.array([find(i) for i in range(n)])


def grouped_splits(y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds that never split a group; fewer folds when a class has fewer groups than ``folds``."""
    y = np.asarray(y)
    per_class = min(len(np.unique(groups[y == c])) for c in (0, 1))
    k = max(2, min(folds, per_class))
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y, groups))


def out_of_fold(
    X: np.ndarray, y: np.ndarray, groups: np.ndarray, kind: str, *, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """P(2D) for every image from a model trained without its fold (calibration nested inside the fold)."""
    p = np.full(len(y), np.nan)
    for train, test in grouped_splits(y, groups, folds, seed):
        inner = grouped_splits(y[train], groups[train], 3, seed)
        model = build_model(kind, seed, cv=inner).fit(X[train], y[train])
        column = list(model.classes_).index(1)
        p[test] = model.predict_proba(X[test])[:, column]
    return p


def _tighter(a: float, b: float, kind: ScoreKind) -> float:
    """The stricter of two thresholds: larger for margin ("margin < t" is unsure), smaller for the others."""
    return max(a, b) if kind == "margin" else min(a, b)


@dataclass
class TrainingData:
    X: np.ndarray
    y: np.ndarray  # 1 = 2D, 0 = not 2D
    sha256s: list[str]
    groups: np.ndarray
    sources: list[str]


def check_trainable(y: np.ndarray) -> None:
    counts = np.bincount(np.asarray(y, dtype=int), minlength=2)
    if counts.min() < 4:
        raise TrainingError(
            f"need at least 4 images of each class to train; have {counts[1]} 2D and {counts[0]} not-2D"
        )


def train(
    data: TrainingData,
    *,
    kind: str,
    extractor: str,
    score_kind: ScoreKind = "margin",
    target_precision: float = 0.98,
    fixed_threshold: float | None = None,
    min_margin_2d: float = 0.0,
    folds: int = 5,
    seed: int = 0,
) -> TrainedModel:
    """Fit ``kind`` on ``data``; the 2D threshold comes from ``target_precision`` unless ``fixed_threshold``."""
    check_trainable(data.y)
    p_oof = out_of_fold(data.X, data.y, data.groups, kind, folds=folds, seed=seed)
    published = threshold_from_margin(0.3, score_kind)
    default = Rule(score_kind, fixed_threshold if fixed_threshold is not None else published)
    choice = choose_threshold(data.y, p_oof, target=target_precision, kind=score_kind)
    if fixed_threshold is None:
        # The 2D side gets the threshold that meets the precision target; the not-2D side keeps the default,
        # never stricter than it needs to be (a tighter 2D threshold must not send more not-2D to review).
        # The chosen value is noisy on a small training set, so it may only tighten the measured floor.
        floor = threshold_from_margin(min_margin_2d, score_kind)
        rule = Rule(score_kind, _tighter(choice.threshold, floor, score_kind), threshold_not2d=published)
    else:
        rule = default
    splits = grouped_splits(data.y, data.groups, 3, seed)
    estimator = build_model(kind, seed, cv=splits).fit(data.X, data.y)
    cv = {
        "folds": len(grouped_splits(data.y, data.groups, folds, seed)),
        "groups": int(len(np.unique(data.groups))),
        "at_rule": evaluate(data.y, p_oof, rule).to_dict(),
        "at_published_rule": evaluate(data.y, p_oof, Rule("margin", 0.3)).to_dict(),
        "threshold_choice": choice.__dict__,
        "risk_coverage": risk_coverage(data.y, p_oof, rule),
    }
    meta = ModelMeta(
        kind=kind,
        extractor=extractor,
        dim=int(data.X.shape[1]),
        rule=rule.to_dict(),
        n_train=int(len(data.y)),
        n_2d=int(data.y.sum()),
        dataset_sha256=dataset_hash(data.sha256s, data.y),
        image_sha256s=list(data.sha256s),
        cv=cv,
        sources=list(data.sources),
    )
    return TrainedModel(estimator, meta, oof_p_2d=p_oof)


@dataclass(frozen=True)
class CrossValidated:
    """Nested cross-validation of ``train`` itself: each image judged as the product would have judged it had it
    been new, by the model *and the rule* that ``train`` chose on the other folds (threshold choice included)."""

    p_2d: np.ndarray  # equal to ``out_of_fold`` with the same folds and seed: the same estimators see the same data
    verdict: np.ndarray  # "2d", "not2d" or "uncertain", under the rule of the image's outer fold
    fold: np.ndarray  # the outer fold of each image
    rules: list[Rule]  # the rule ``train`` chose on each outer fold's training part


def cross_validate(
    data: TrainingData,
    *,
    kind: str,
    score_kind: ScoreKind = "margin",
    target_precision: float = 0.98,
    fixed_threshold: float | None = None,
    min_margin_2d: float = 0.0,
    folds: int = 5,
    seed: int = 0,
) -> CrossValidated:
    """Run ``train`` on each outer grouped fold's training part (its own inner CV picks the rule) and decide the
    held-out part with the result. ``evaluate_verdicts(data.y, cv.p_2d, cv.verdict)`` gives its figures."""
    check_trainable(data.y)
    n = len(data.y)
    p = np.full(n, np.nan)
    verdict = np.full(n, "uncertain", dtype=object)
    fold = np.full(n, -1)
    rules: list[Rule] = []
    for i, (part, test) in enumerate(grouped_splits(data.y, data.groups, folds, seed)):
        subset = TrainingData(
            data.X[part], data.y[part], [data.sha256s[j] for j in part], data.groups[part], list(data.sources)
        )
        model = train(subset, kind=kind, extractor="cross-validation", score_kind=score_kind,
                      target_precision=target_precision, fixed_threshold=fixed_threshold,
                      min_margin_2d=min_margin_2d, folds=folds, seed=seed)
        decisions = model.decide(data.X[test])
        p[test], verdict[test], fold[test] = decisions.p_2d, decisions.verdict, i
        rules.append(model.rule)
    return CrossValidated(p, verdict.astype(str), fold, rules)
