"""The active-learning loop simulated on a labelled dataset: does labelling the review queue pay off?

    python benchmarks/active_learning.py [--dataset DIR] [--models et,svm] [--seeds 5] [--rounds 6]
                                        [--min-margin-2d 0.4] [--threshold T]

The loop of ``tests/test_loop_simulation.py`` (and of the service: ``pipeline/retrain.py``), on the dev set and
against a baseline. Per seed, a third of the dataset is held out (the product's ``training.grouped_splits`` on
the manifest's ``group`` column, so near-duplicates never straddle it); the first model learns from 5 labelled
images of each class; the rest of the data arrives in ``--rounds`` batches. Each round the current model routes
the batch, and:

* ``uncertainty``: a person answers the review queue, i.e. the images the model was unsure of plus the audit
  draw (``--audit-rate`` of the confident ones, drawn by ``service.route.is_audit`` from the image's hash),
  exactly as the service asks;
* ``random``: the same number of answers, for images drawn at random from the same batch.

Then the model is retrained on everything labelled so far (``training.train``: grouped CV, the 2D threshold for
``--target`` precision never looser than ``--min-margin-2d``, both the service's defaults; or ``--threshold`` for
a fixed margin rule). Figures are measured on the held-out third with each round's model: review rate, 2D
precision of the confident part (the feed), 2D recall (the share of all 2D images that reach the feed), all from
``service.classify.evaluate``. Means over seeds, with the standard deviation of the review rate. Features: the
builtin extractor, cached as ``benchmarks/dev_eval.py`` caches them (``benchmarks/devset.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.devset import DEFAULT_DATASET, load_devset  # noqa: E402
from service.classify.evaluate import evaluate  # noqa: E402
from service.classify.training import TrainingData, grouped_splits, train  # noqa: E402
from service.config import Settings  # noqa: E402
from service.route import is_audit  # noqa: E402

DEFAULT_TARGET: float = Settings.model_fields["target_precision"].default
DEFAULT_FLOOR: float = Settings.model_fields["min_margin_2d"].default


@dataclass
class Figures:
    labels: int
    review_rate: float
    precision: float
    recall: float


def simulate(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    sha256s: list[str],
    *,
    seed: int,
    kind: str,
    rounds: int,
    initial: int,
    audit_rate: float,
    target: float,
    threshold: float | None,
    min_margin_2d: float,
    answers_per_round: list[int] | None = None,
) -> tuple[list[Figures], list[int]]:
    """One run. Without ``answers_per_round`` it is the uncertainty run (answers = the queue) and returns how many
    answers each round got; with it, the random run, drawing that many from each batch."""
    rng = np.random.default_rng(seed)
    pool, holdout = grouped_splits(y, groups, 3, seed)[0]
    pool = rng.permutation(pool)
    labelled = [int(i) for c in (1, 0) for i in pool[y[pool] == c][:initial]]
    batches = np.array_split(np.array([i for i in pool if i not in set(labelled)]), rounds)
    draw = np.random.default_rng(seed + 1000)  # the random baseline's own draws; the split is shared
    figures: list[Figures] = []
    answered: list[int] = []
    for r in range(rounds + 1):
        data = TrainingData(X[labelled], y[labelled], [sha256s[i] for i in labelled], groups[labelled], [])
        model = train(data, kind=kind, extractor="builtin", target_precision=target, fixed_threshold=threshold,
                      min_margin_2d=min_margin_2d, seed=seed)
        m = evaluate(y[holdout], model.p_2d(X[holdout]), model.rule)
        figures.append(Figures(len(labelled), m.review_rate, m.precision_2d, m.recall_2d))
        if r == rounds:
            break
        batch = batches[r]
        if answers_per_round is None:
            verdicts = model.decide(X[batch]).verdict
            audit = np.array([is_audit(v, sha256s[i], audit_rate) for v, i in zip(verdicts, batch, strict=True)])
            chosen = batch[(verdicts == "uncertain") | audit]
            answered.append(len(chosen))
        else:
            chosen = draw.choice(batch, size=min(answers_per_round[r], len(batch)), replace=False)
        labelled += [int(i) for i in chosen]
    return figures, answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--models", default="et,svm", help="model kinds (et is the service default)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--initial", type=int, default=5, help="labelled images of each class to start from")
    parser.add_argument("--audit-rate", type=float, default=0.02)
    parser.add_argument("--target", type=float, default=DEFAULT_TARGET, help="2D precision the threshold aims for")
    parser.add_argument("--min-margin-2d", type=float, default=DEFAULT_FLOOR,
                        help="the chosen 2D threshold is never looser than this margin (the service's default)")
    parser.add_argument("--threshold", type=float, default=None, help="a fixed margin rule instead (0.3: published)")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args()

    dev = load_devset(args.dataset, args.cache_dir)
    X, y, groups = dev.X, dev.y, dev.groups
    rule = (f"fixed margin {args.threshold}" if args.threshold is not None
            else f"precision target {args.target}, 2D margin floor {args.min_margin_2d}")
    print(f"{args.dataset}: {len(y)} images ({y.sum()} 2D), {len(np.unique(groups))} groups; "
          f"{dev.extractor} features; "
          f"{rule}; audit rate {args.audit_rate}; {args.seeds} seeds; held out: 1/3 by group")
    for kind in args.models.split(","):
        start = time.perf_counter()
        runs: dict[str, list[list[Figures]]] = {"uncertainty": [], "random": []}
        for seed in range(args.seeds):
            def run(answers: list[int] | None, seed: int = seed, kind: str = kind) -> tuple[list[Figures], list[int]]:
                return simulate(X, y, groups, dev.sha256s, seed=seed, kind=kind, rounds=args.rounds,
                                initial=args.initial, audit_rate=args.audit_rate, target=args.target,
                                threshold=args.threshold, min_margin_2d=args.min_margin_2d,
                                answers_per_round=answers)

            figures, answered = run(None)
            runs["uncertainty"].append(figures)
            runs["random"].append(run(answered)[0])
        print(f"\nmodel {kind} ({time.perf_counter() - start:.0f} s)")
        print(f"{'round':>5} | {'uncertainty sampling (the review queue)':^44} | {'random sampling, same number':^44}")
        header = f"{'labels':>7} {'review':>13} {'prec 2D':>8} {'recall 2D':>10}"
        print(f"{'':>5} | {header}   | {header}")
        for r in range(args.rounds + 1):
            cells = []
            for name in ("uncertainty", "random"):
                rows = [run[r] for run in runs[name]]
                review = np.array([f.review_rate for f in rows])
                cells.append(
                    f"{np.mean([f.labels for f in rows]):7.1f} {review.mean():6.3f} ±{review.std():5.3f} "
                    f"{np.nanmean([f.precision for f in rows]):8.3f} {np.mean([f.recall for f in rows]):10.3f}"
                )
            print(f"{r:>5} | {cells[0]}   | {cells[1]}")


if __name__ == "__main__":
    main()
