"""Scratch bench for candidate feature groups: which ones add separation on top of the builtin set?

    python benchmarks/feature_lab.py [--groups spectrum,sharpness,...] [--repeats 3]

Decoded working-size planes are cached in /tmp so each candidate costs only its own computation. Each group is
scored by grouped-CV out-of-fold ExtraTrees (no inner threshold choice; ranking only): accuracy, log loss, AUC,
the m0.3 rule, and the best feed2d reachable at confident-2D precision >= 0.97 (an optimistic oracle figure).
"""

from __future__ import annotations

import argparse
import csv
import pickle
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.ensemble import ExtraTreesClassifier
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from service.features import builtin as B
from service.features.images import load_image

DATASET = Path("/work/shared/datasets/dev")


def planes_cache(size: int = 256):
    cache = Path(f"/tmp/nijifeed_lab_planes_{size}.pkl")
    with open(DATASET / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if cache.exists():
        return pickle.loads(cache.read_bytes()), rows
    planes = [B._prepare(load_image(DATASET / r["file"], draft_size=size), size) for r in rows]
    cache.write_bytes(pickle.dumps(planes))
    return planes, rows


def oof(X, y, groups, seeds):
    ps = []
    for seed in seeds:
        p = np.zeros(len(y))
        for tr, te in StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(X, y, groups):
            m = ExtraTreesClassifier(300, min_samples_leaf=2, max_features="sqrt", random_state=seed, n_jobs=2)
            m.fit(X[tr], y[tr])
            p[te] = m.predict_proba(X[te])[:, 1]
        ps.append(p)
    return ps


def score(y, ps):
    out = []
    for p in ps:
        m = np.abs(2 * p - 1)
        is2d = p > 0.5
        c2 = is2d & (m >= 0.3)
        cn = ~is2d & (m >= 0.3)
        best = 0.0
        for t in np.arange(0, 1, 0.01):
            c = is2d & (m >= t)
            if c.sum() >= 5 and y[c].mean() >= 0.97:
                best = max(best, c[y == 1].mean())
        out.append([((p > 0.5) == y).mean(), log_loss(y, np.clip(p, 1e-3, 1 - 1e-3)), roc_auc_score(y, p),
                    1 - (c2 | cn).mean(), y[c2].mean(), c2[y == 1].mean(), best])
    return np.mean(out, axis=0), np.std(out, axis=0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", default="")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--combo", default="", help="one extra row with these groups together (comma-separated)")
    args = ap.parse_args()
    planes, rows = planes_cache()
    y = np.array([r["label"] == "2d" for r in rows], int)
    groups = np.array([r["group"] for r in rows])
    base = np.load("/tmp/nijifeed_dev_builtin-v1_256.npz")["X"]
    import candidates as C

    names = [g for g in args.groups.split(",") if g] or list(C.GROUPS)
    feats = {}
    for g in names:
        fn = C.GROUPS[g]
        t = time.perf_counter()
        feats[g] = np.nan_to_num(np.array([fn(p) for p in planes], np.float32))
        print(f"{g}: {feats[g].shape[1]} feats, {1000 * (time.perf_counter() - t) / len(planes):.2f} ms/img",
              file=sys.stderr)
    seeds = list(range(args.repeats))
    print(f"{'set':<28}{'acc':>7}{'logl':>7}{'auc':>7}{'rev':>7}{'prec':>7}{'feed':>7}{'orc97':>7}")

    def row(label, X):
        mu, sd = score(y, oof(X, y, groups, seeds))
        print(f"{label:<28}" + "".join(f"{v:7.3f}" for v in mu) + f"   (orc sd {sd[-1]:.3f})", flush=True)

    row("base", base)
    for g in names:
        row(f"base+{g}", np.hstack([base, feats[g]]))
        row(f"{g} alone", feats[g])
    if args.combo:
        combo = args.combo.split(",")
        row("base+" + "+".join(combo), np.hstack([base, *[feats[g] for g in combo]]))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
