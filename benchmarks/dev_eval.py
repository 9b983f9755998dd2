"""Grouped cross-validation of classifiers and reject rules on a labelled image folder (the dev set).

    python benchmarks/dev_eval.py [--dataset DIR] [--repeats 3] [--models rf-published,lr,...] [--categories]
                                  [--fixed 0.4/0.3,...] [--first 61] [--no-inner]

The dataset folder holds ``manifest.csv`` (columns file,label,category,...,group; label ``2d``/``not2d``) and the
files it names. Near-duplicates share a ``group``, so every split is a ``StratifiedGroupKFold`` on that column;
a few repeats with different seeds show how much the figures move with the split.

For each model, out-of-fold probabilities are scored under three rules:

* ``m0.3``: the published rule, margin < 0.3 goes to review (same on both sides).
* ``tp``: one margin threshold, chosen *on the training folds only* (inner grouped CV) as the smallest one whose
  confident-2D precision reaches ``--target`` (0.98) and stays there for every larger threshold.
* ``tp-asym``: the 2D side uses the ``tp`` threshold, the not-2D side keeps 0.3 (a lost 2D image costs less than
  a wrong one in the feed, so only the 2D side pays for the precision target).
* ``mA/B`` (``--fixed``): fixed asymmetric margins, A on the 2D side and B on the not-2D side.

Recommended default (builtin-v3 features; unchanged from v2): ``et-mf0.3`` = ExtraTrees(300, min_samples_leaf=2, max_features=0.3),
uncalibrated, rule m0.4/0.3. ``--first 61`` keeps only the builtin-v1 columns (feature ablation).

Columns: acc = argmax accuracy on all images; review = share sent to review; prec2d = share of confident 2D
verdicts that are truly 2D; feed2d = share of ALL 2D images that get a confident 2D verdict; thr = mean threshold.
Features are cached in an .npz under /tmp keyed by the extractor name, so reruns only refit models.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from service.features.builtin import BuiltinExtractor
from service.features.images import load_image

DEFAULT_DATASET = Path("/work/shared/datasets/dev")
BASE_MARGIN = 0.3
GRID = np.round(np.arange(0.0, 0.991, 0.01), 2)


# ---------------------------------------------------------------- data


def load_dataset(folder: Path, cache_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Features, labels (1 = 2D), groups, categories and file names; features cached per extractor name."""
    with open(folder / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    files = [r["file"] for r in rows]
    extractor = BuiltinExtractor()
    cache = cache_dir / f"nijifeed_{folder.name}_{extractor.name}_{extractor.working_size}.npz"
    X = None
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        if list(data["files"]) == files and data["X"].shape[1] == extractor.dim:
            X = data["X"]
    if X is None:
        start = time.perf_counter()
        images = [load_image(folder / f, draft_size=extractor.working_size) for f in files]
        decoded = time.perf_counter()
        X = extractor.extract(images)
        done = time.perf_counter()
        print(f"decode {1000 * (decoded - start) / len(files):.1f} ms/image, "
              f"features {1000 * (done - decoded) / len(files):.1f} ms/image")
        np.savez(cache, X=X, files=np.array(files))
    y = np.array([r["label"] == "2d" for r in rows], dtype=int)
    groups = np.array([r["group"] for r in rows])
    categories = np.array([r["category"] for r in rows])
    return X, y, groups, categories, files


# ---------------------------------------------------------------- models


def calibrated(model, method: str = "sigmoid") -> CalibratedClassifierCV:
    return CalibratedClassifierCV(model, method=method, cv=StratifiedKFold(5, shuffle=True, random_state=0))


def make_models(seed: int) -> dict[str, Callable[[], object]]:
    """Name -> factory. Scaled pipelines for the models that need it; trees take raw features."""

    def lr():
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=5000))

    def rf():
        return RandomForestClassifier(n_estimators=300, min_samples_leaf=2, max_features="sqrt", random_state=seed)

    def et(n=300, leaf=2, mf="sqrt", cw=None):
        return ExtraTreesClassifier(n_estimators=n, min_samples_leaf=leaf, max_features=mf, class_weight=cw,
                                    random_state=seed)

    def hgb():
        return HistGradientBoostingClassifier(max_depth=3, learning_rate=0.1, max_iter=100, l2_regularization=1.0,
                                              min_samples_leaf=10, random_state=seed)

    def svm():  # Platt-scaled SVM (the form sklearn 1.9 recommends over SVC(probability=True))
        return make_pipeline(StandardScaler(), CalibratedClassifierCV(
            SVC(C=3.0, gamma="scale"), method="sigmoid", ensemble=False,
            cv=StratifiedKFold(5, shuffle=True, random_state=seed)))

    def ensemble():
        return VotingClassifier([("lr", lr()), ("et", et()), ("svm", svm()), ("hgb", hgb())], voting="soft")

    return {
        "rf-published": lambda: RandomForestClassifier(max_depth=2, random_state=seed),
        "lr": lr,
        "lr+cal": lambda: calibrated(lr()),
        "rf": rf,
        "rf+cal": lambda: calibrated(rf()),
        "et": et,
        "et+cal": lambda: calibrated(et()),
        "et+iso": lambda: calibrated(et(), "isotonic"),
        "et500": lambda: et(500),
        "et-leaf1": lambda: et(leaf=1),
        "et-leaf3": lambda: et(leaf=3),
        "et-mf0.3": lambda: et(mf=0.3),
        "et-log2": lambda: et(mf="log2"),
        "et-mf0.5": lambda: et(mf=0.5),
        "et-mf0.3-500": lambda: et(500, mf=0.3),
        "et-bal": lambda: et(cw="balanced_subsample"),
        "et+lr": lambda: VotingClassifier([("et", et()), ("lr", lr())], voting="soft", weights=[2, 1]),
        "hgb": hgb,
        "svm": svm,
        "ensemble": ensemble,
        "ensemble+cal": lambda: calibrated(ensemble()),
    }


# ---------------------------------------------------------------- rules and metrics


def confident(p2d: np.ndarray, t2d: float, tnot: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks of confident-2D and confident-not-2D verdicts for margin thresholds per side."""
    m = np.abs(2 * p2d - 1)
    is2d = p2d > 0.5
    return is2d & (m >= t2d), ~is2d & (m >= tnot)


def metrics(y: np.ndarray, p2d: np.ndarray, t2d, tnot) -> dict[str, float]:
    """acc, review, prec2d, feed2d; thresholds may be per-image arrays (one per outer fold)."""
    c2d, cnot = confident(p2d, t2d, tnot)
    n2d = max(int(y.sum()), 1)
    return {
        "acc": float(((p2d > 0.5) == (y == 1)).mean()),
        "review": float(1 - (c2d | cnot).mean()),
        "prec2d": float(y[c2d].mean()) if c2d.any() else float("nan"),
        "feed2d": float(c2d[y == 1].sum() / n2d),
        "lost2d": float(cnot[y == 1].sum() / n2d),
    }


def precision_threshold(y: np.ndarray, p2d: np.ndarray, target: float, min_support: int = 5) -> float:
    """Smallest margin threshold from which confident-2D precision stays >= target (1 side, 2D verdicts)."""
    ok = np.zeros(len(GRID), bool)
    for i, t in enumerate(GRID):
        c2d, _ = confident(p2d, t, 1.0)
        ok[i] = c2d.sum() < min_support or y[c2d].mean() >= target
    # suffix-all: the threshold must be safe for it and every stricter one
    safe_from = np.flip(np.logical_and.accumulate(np.flip(ok)))
    idx = np.flatnonzero(safe_from)
    return float(GRID[idx[0]]) if idx.size else float(GRID[-1])


def oof_probs(factory, X, y, groups, seed, folds, target, inner: bool) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold P(2D), and per-image thresholds chosen by inner grouped CV on each outer training part."""
    p = np.zeros(len(y))
    thr = np.full(len(y), np.nan)
    outer = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    for train, test in outer.split(X, y, groups):
        model = factory()
        model.fit(X[train], y[train])
        p[test] = model.predict_proba(X[test])[:, 1]
        if inner:
            inner_p = np.zeros(len(train))
            cv = StratifiedGroupKFold(folds - 1, shuffle=True, random_state=seed + 1000)
            for itr, ite in cv.split(X[train], y[train], groups[train]):
                m = factory()
                m.fit(X[train][itr], y[train][itr])
                inner_p[ite] = m.predict_proba(X[train][ite])[:, 1]
            thr[test] = precision_threshold(y[train], inner_p, target)
    return p, thr


# ---------------------------------------------------------------- report


def evaluate(name, factory, X, y, groups, seeds, folds, target, inner=True, fixed=()):
    rows: dict[str, list[dict]] = {"m0.3": [], **{f"m{a:g}/{b:g}": [] for a, b in fixed}, "tp": [], "tp-asym": []}
    probs = []
    for seed in seeds:
        p, thr = oof_probs(factory, X, y, groups, seed, folds, target, inner)
        probs.append(p)
        rows["m0.3"].append(metrics(y, p, BASE_MARGIN, BASE_MARGIN) | {"thr": BASE_MARGIN})
        for a, b in fixed:
            rows[f"m{a:g}/{b:g}"].append(metrics(y, p, a, b) | {"thr": a})
        if inner:
            rows["tp"].append(metrics(y, p, thr, thr) | {"thr": float(thr.mean())})
            rows["tp-asym"].append(metrics(y, p, thr, BASE_MARGIN) | {"thr": float(thr.mean())})
    return {k: v for k, v in rows.items() if v}, np.mean(probs, axis=0)


def print_table(results: dict[str, dict[str, list[dict]]]) -> None:
    keys = ["acc", "review", "prec2d", "feed2d", "lost2d", "thr"]
    print(f"{'model':<14}{'rule':<9}" + "".join(f"{k:>14}" for k in keys))
    for name, rules in results.items():
        for rule, runs in rules.items():
            cells = []
            for k in keys:
                v = np.array([r[k] for r in runs])
                cells.append(f"{np.nanmean(v):>8.3f}±{np.nanstd(v):.2f}".rjust(14))
            print(f"{name:<14}{rule:<9}" + "".join(cells))
    print()


def print_categories(name, y, p2d, categories, t2d, tnot) -> None:
    """Per category: images, confident-correct, review, confident-wrong shares (averaged probabilities)."""
    c2d, cnot = confident(p2d, t2d, tnot)
    right = (c2d & (y == 1)) | (cnot & (y == 0))
    wrong = (c2d & (y == 0)) | (cnot & (y == 1))
    print(f"per category, {name}, margin thresholds 2D {t2d:.2f} / not-2D {tnot:.2f} (mean OOF probabilities)")
    print(f"{'category':<10}{'n':>5}{'right':>8}{'review':>8}{'wrong':>8}")
    for cat in sorted(set(categories)):
        m = categories == cat
        print(f"{cat:<10}{m.sum():>5}{right[m].mean():>8.2f}{(~right[m] & ~wrong[m]).mean():>8.2f}{wrong[m].mean():>8.2f}")
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--target", type=float, default=0.98)
    ap.add_argument("--models", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--no-inner", action="store_true", help="skip the nested threshold choice (faster)")
    ap.add_argument("--categories", default="", help="comma-separated models to break down by category")
    ap.add_argument("--first", type=int, default=0,
                    help="keep only the first N feature columns (61 = the builtin-v1 set, an ablation)")
    ap.add_argument("--fixed", default="", help="extra fixed margin rules 'T2D/TNOT,...', e.g. 0.4/0.3")
    args = ap.parse_args(argv)

    X, y, groups, categories, _ = load_dataset(args.dataset, args.cache_dir)
    if args.first:
        X = X[:, : args.first]
    print(f"{len(y)} images ({y.sum()} 2D), {len(set(groups))} groups, {X.shape[1]} features; "
          f"{args.folds}-fold StratifiedGroupKFold x {args.repeats} seeds, target 2D precision {args.target}\n")
    seeds = list(range(args.repeats))
    fixed = [tuple(float(v) for v in r.split("/")) for r in args.fixed.split(",") if r]
    factories = make_models(seed=0)
    wanted = [m for m in args.models.split(",") if m] or list(factories)
    results, mean_probs = {}, {}
    for name in wanted:
        start = time.perf_counter()
        results[name], mean_probs[name] = evaluate(name, factories[name], X, y, groups, seeds, args.folds,
                                                   args.target, inner=not args.no_inner, fixed=fixed)
        print(f"  {name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print_table(results)
    for name in [m for m in args.categories.split(",") if m]:
        print_categories(name, y, mean_probs[name], categories, BASE_MARGIN, BASE_MARGIN)
        for a, b in fixed:
            print_categories(name, y, mean_probs[name], categories, a, b)
        if "tp" in results[name]:
            t = float(np.mean([r["thr"] for r in results[name]["tp"]]))
            print_categories(name, y, mean_probs[name], categories, t, BASE_MARGIN)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
