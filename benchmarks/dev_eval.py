"""Grouped cross-validation of the product's classifiers and reject rules on a labelled image folder (the dev set).

    python benchmarks/dev_eval.py [--dataset DIR] [--repeats 5] [--folds 5] [--models et,rf-published]
                                  [--fixed 0.3/0.3,0.4/0.3] [--min-margin-2d 0.4,0] [--target 0.98]
                                  [--no-nested] [--categories] [--first N] [--json]

Nothing here is a second copy of the product: the models are ``service.classify.models`` (``--models`` takes its
kinds), the splits and the training are ``service.classify.training``, the threshold choice is the one ``train``
makes (``service.classify.thresholds``), verdicts come from ``service.classify.uncertainty`` and every figure
from ``service.classify.evaluate``. The splits are grouped by the manifest's ``group`` column (near-duplicates
stay on one side); a few repeats with different seeds show how much the figures move with the split.

Rules, per model:

* ``margin 0.3``: the published rule, margin < 0.3 goes to review on both sides.
* ``fixed A/B`` (``--fixed``): fixed margins, A on the 2D side and B on the not-2D side.
* ``trained floor F`` (one per ``--min-margin-2d`` value; the product's default floor unless given): nested
  cross-validation of ``training.train`` itself. On each outer fold's training part, ``train`` runs its own
  grouped CV, chooses the loosest 2D threshold meeting ``--target`` precision, never looser than margin F, with
  the not-2D side at 0.3, and fits the model; the held-out part is judged by that model under that rule. This is
  the product's default rule measured as the product would meet new images. ``--no-nested`` skips it (faster).

The probabilities under the fixed rules are ``training.out_of_fold`` (identical to the nested run's, whose outer
models see the same data with the same seeds). Columns: acc = argmax accuracy on all images; review = share sent
to review; prec2d = feed precision, the share of confident-2D verdicts that are truly 2D; feed2d = share of ALL
2D images that reach the feed; lost2d = share of all 2D images confidently judged not 2D; thr2d = mean 2D margin
threshold. Each cell is mean ± sd over the repeats.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.devset import DEFAULT_DATASET, load_devset  # noqa: E402
from service.classify.evaluate import Metrics, evaluate, evaluate_verdicts  # noqa: E402
from service.classify.models import DEFAULT_MODEL, MODELS  # noqa: E402
from service.classify.training import TrainingData, cross_validate, out_of_fold  # noqa: E402
from service.classify.uncertainty import Rule, decide  # noqa: E402
from service.config import Settings  # noqa: E402

PUBLISHED = Rule("margin", 0.3)
#: The product's defaults, read from its settings (not restated here).
DEFAULT_TARGET: float = Settings.model_fields["target_precision"].default
DEFAULT_FLOOR: float = Settings.model_fields["min_margin_2d"].default
DEFAULT_FOLDS: int = Settings.model_fields["cv_folds"].default
KEYS = ("acc", "review", "prec2d", "feed2d", "lost2d", "thr2d")


def figures(y: np.ndarray, m: Metrics, thr2d: float) -> dict[str, float]:
    """One run's row, read off the product's ``Metrics``."""
    return {
        "acc": m.accuracy,
        "review": m.review_rate,
        "prec2d": m.precision_2d,
        "feed2d": m.recall_2d,
        "lost2d": m.lost_2d / max(int(np.sum(y == 1)), 1),
        "thr2d": thr2d,
    }


@dataclass
class RuleRuns:
    """One model under one rule, over the repeats: a figures row and the verdicts of each run."""

    runs: list[dict[str, float]] = field(default_factory=list)
    verdicts: list[np.ndarray] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        table = {k: np.array([r[k] for r in self.runs], dtype=float) for k in KEYS}
        return {
            "mean": {k: float(np.nanmean(v)) for k, v in table.items()},
            "sd": {k: float(np.nanstd(v)) for k, v in table.items()},
        }


def fixed_label(t2d: float, tnot: float) -> str:
    return f"margin {t2d:g}" if t2d == tnot else f"fixed {t2d:g}/{tnot:g}"


def benchmark(
    data: TrainingData,
    kind: str,
    *,
    seeds: list[int],
    folds: int = DEFAULT_FOLDS,
    fixed: list[tuple[float, float]] | None = None,
    target: float = DEFAULT_TARGET,
    floors: list[float] | None = None,
) -> dict[str, RuleRuns]:
    """Rule label -> runs, one per seed. ``floors`` empty or None: no nested run (fixed rules only)."""
    rules = {fixed_label(PUBLISHED.threshold, PUBLISHED.threshold): PUBLISHED}
    for t2d, tnot in fixed or []:
        rules[fixed_label(t2d, tnot)] = Rule("margin", t2d, threshold_not2d=tnot)
    out: dict[str, RuleRuns] = {}
    y = data.y
    for seed in seeds:
        nested = {
            floor: cross_validate(data, kind=kind, target_precision=target, min_margin_2d=floor, folds=folds,
                                  seed=seed)
            for floor in floors or []
        }
        # Every nested run shares the outer models, hence the probabilities; without one, out_of_fold gives them.
        p = next(iter(nested.values())).p_2d if nested else out_of_fold(data.X, y, data.groups, kind, folds=folds,
                                                                         seed=seed)
        for label, rule in rules.items():
            v = decide(p, rule).verdict
            runs = out.setdefault(label, RuleRuns())
            runs.runs.append(figures(y, evaluate(y, p, rule), rule.threshold))
            runs.verdicts.append(v)
        for floor, cv in nested.items():
            runs = out.setdefault(f"trained floor {floor:g}", RuleRuns())
            runs.runs.append(figures(y, evaluate_verdicts(y, cv.p_2d, cv.verdict),
                                     float(np.mean([r.threshold for r in cv.rules]))))
            runs.verdicts.append(cv.verdict)
    return out


def print_table(results: dict[str, dict[str, RuleRuns]]) -> None:
    print(f"{'model':<14}{'rule':<20}" + "".join(f"{k:>14}" for k in KEYS))
    for kind, rules in results.items():
        for label, runs in rules.items():
            s = runs.summary()
            cells = "".join(f"{s['mean'][k]:>8.3f}±{s['sd'][k]:.3f}".rjust(14) for k in KEYS)
            print(f"{kind:<14}{label:<20}{cells}")
    print()


def category_shares(y: np.ndarray, categories: np.ndarray, runs: RuleRuns) -> dict[str, dict[str, float]]:
    """Per category: images, and the shares judged right, sent to review and judged wrong (mean over runs)."""
    out = {}
    for cat in sorted(set(categories.tolist())):
        m = categories == cat
        right, review, wrong = [], [], []
        for v in runs.verdicts:
            truth = np.where(y[m] == 1, "2d", "not2d")
            review.append(float(np.mean(v[m] == "uncertain")))
            right.append(float(np.mean(v[m] == truth)))
            wrong.append(1.0 - right[-1] - review[-1])
        out[cat] = {"n": int(m.sum()), "right": float(np.mean(right)), "review": float(np.mean(review)),
                    "wrong": float(np.mean(wrong))}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--folds", type=int, default=DEFAULT_FOLDS)
    ap.add_argument("--target", type=float, default=DEFAULT_TARGET, help="2D precision the trained rule aims for")
    ap.add_argument("--models", default=f"{DEFAULT_MODEL},rf-published",
                    help=f"comma-separated product model kinds ({', '.join(MODELS)}; 'all' for every one)")
    ap.add_argument("--fixed", default="", help="extra fixed margin rules 'T2D/TNOT,...', e.g. 0.4/0.3")
    ap.add_argument("--min-margin-2d", default=f"{DEFAULT_FLOOR:g}",
                    help="floors of the trained rule's 2D margin, one nested run each (product default first)")
    ap.add_argument("--no-nested", action="store_true", help="skip the nested runs of train (fixed rules only)")
    ap.add_argument("--categories", action="store_true", help="break every rule down by manifest category")
    ap.add_argument("--first", type=int, default=0, help="keep only the first N feature columns (an ablation)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of tables")
    args = ap.parse_args(argv)

    kinds = list(MODELS) if args.models == "all" else [m for m in args.models.split(",") if m]
    unknown = [k for k in kinds if k not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; the product's kinds are {', '.join(MODELS)}")
    fixed = [(float(a), float(b)) for a, b in (r.split("/") for r in args.fixed.split(",") if r)]
    floors = [] if args.no_nested else [float(f) for f in args.min_margin_2d.split(",") if f]
    dev = load_devset(args.dataset, args.cache_dir)
    data = dev.training_data()
    if args.first:
        data.X = data.X[:, : args.first]
    seeds = list(range(args.repeats))
    header = (f"{len(data.y)} images ({int(data.y.sum())} 2D), {len(np.unique(data.groups))} groups, "
              f"{data.X.shape[1]} {dev.extractor} features; {args.folds}-fold grouped CV x {len(seeds)} seeds; "
              f"trained rule: target 2D precision {args.target}, 2D floors {floors or 'none'}")
    results: dict[str, dict[str, RuleRuns]] = {}
    for kind in kinds:
        start = time.perf_counter()
        results[kind] = benchmark(data, kind, seeds=seeds, folds=args.folds, fixed=fixed, target=args.target,
                                  floors=floors)
        print(f"  {kind}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if args.json:
        report = {
            "dataset": str(args.dataset), "extractor": dev.extractor, "images": len(data.y),
            "images_2d": int(data.y.sum()), "groups": int(len(np.unique(data.groups))), "folds": args.folds,
            "seeds": seeds, "target": args.target, "floors": floors,
            "models": {kind: {label: runs.summary() | ({"categories": category_shares(data.y, dev.categories, runs)}
                                                       if args.categories else {})
                              for label, runs in rules.items()}
                       for kind, rules in results.items()},
        }
        print(json.dumps(report, indent=2))
        return 0
    print(header + "\n")
    print_table(results)
    if args.categories:
        for kind, rules in results.items():
            for label, runs in rules.items():
                print(f"per category, {kind}, {label} (mean over runs)")
                print(f"{'category':<10}{'n':>5}{'right':>8}{'review':>8}{'wrong':>8}")
                for cat, c in category_shares(data.y, dev.categories, runs).items():
                    print(f"{cat:<10}{c['n']:>5}{c['right']:>8.2f}{c['review']:>8.2f}{c['wrong']:>8.2f}")
                print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
