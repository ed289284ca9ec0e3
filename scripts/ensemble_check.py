"""How much would averaging independently trained networks gain? The hidden-set and test-split measures of each
artifact and of their average, on the same truths.

    python scripts/ensemble_check.py --artifacts iaemu_theory/artifacts/iaemu_default.pt seed1.pt \
        --data training/data/dataset_hires320x3.h5 --parts docs/results/hidden_accuracy_hires320x3_n100.json.parts

The average is of the returned means and aleatoric variances. The hidden set is `iaemu-accuracy`'s (same
--catalogs, --points, --realisations and --seed; its candidates are read from --parts, or measured there when
missing). Also printed: the correlation between two members' xi errors (pred - truth) / truth over points and bins,
with the truth's noise (shared by the members) removed, which sets what K such members could reach: for equal
members with error e and correlation rho, e sqrt(rho + (1 - rho) / K).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from iaemu_theory import Emulator
from training.catalogs.sources import expand_catalog_names
from training.emulator.accuracy import _test_split, default_realisations, hidden_measures, hidden_set, truth_with_floor


class Average:
    """The mean of several emulators' predictions, with the `predict` interface the accuracy measures use."""

    def __init__(self, members: list[Emulator]):
        self.members = members
        self.domain, self.artifact = members[0].domain, members[0].artifact

    def predict(self, params, mc_passes=0, seed=None, outside="warn", statistics=None):
        return mean_prediction([m.predict(params, mc_passes=mc_passes, seed=seed, outside=outside,
                                          statistics=statistics) for m in self.members])


def mean_prediction(preds: list[dict]) -> dict:
    """The average of `predict` results, key by key (the domain mask dropped)."""
    return {k: np.mean([p[k] for p in preds], axis=0) for k in preds[0] if k != "inside"}


def summary(rec: dict) -> str:
    xi, om = rec["summary"]["xi"], rec["summary"]["omega"]
    lo, hi = xi["own_mean_fractional_error_bootstrap_68"]
    return (f"xi own {100 * xi['own_mean_fractional_error']:.2f}% [{100 * lo:.2f}-{100 * hi:.2f}%], "
            f"omega own median {100 * om['own_median_fractional_error_snr3']:.2f}%, "
            f"calibration xi {xi['calibration_dex_median']:+.3f} dex, coverage xi {xi['coverage_68']:.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifacts", nargs="+", required=True)
    ap.add_argument("--data", required=True, help="the members' dataset (its test split is measured too)")
    ap.add_argument("--catalogs", nargs="+", default=["hires320x3"])
    ap.add_argument("--points", type=int, default=100)
    ap.add_argument("--realisations", type=int, default=None)
    ap.add_argument("--seed", type=int, default=20250)
    ap.add_argument("--parts", type=Path, required=True, help="the hidden set's candidate folder (OUT.parts)")
    a = ap.parse_args(argv)
    members = [Emulator.load(p, device="cpu") for p in a.artifacts]
    catalogs = expand_catalog_names(a.catalogs)
    realisations = a.realisations or default_realisations(len(catalogs))
    kept, _ = hidden_set(catalogs, members[0].domain, a.points, realisations, a.seed, a.parts, log=lambda *x: None)
    params = np.stack([p["params"] for p in kept])
    stats = np.stack([p["stats"] for p in kept])
    names = [Path(p).name for p in a.artifacts]
    preds = [m.predict(params, outside="ignore") for m in members]
    predictors = list(zip(names, members, preds)) + [("average", Average(members), mean_prediction(preds))]
    print(f"hidden set: {len(kept)} points x {realisations} realisations on {len(catalogs)} catalog(s); "
          f"test split of {a.data}")
    for name, emu, pred in predictors:
        hidden = hidden_measures(pred, stats, n_boxes=len(catalogs), floor="within")
        test, _ = _test_split(emu, a.data, a.seed, log=lambda *x: None)
        print(f"{name:>24}  hidden: {summary(hidden)}")
        print(f"{'':>24}  test:   {summary(test)}")
    t = truth_with_floor(stats, len(catalogs), "within")
    truth, noise = t["mean"][:, 0], float(np.mean((t["se"][:, 0] / t["mean"][:, 0]) ** 2))
    err = [((p["xi"] - truth) / truth).ravel() for p in preds]
    for i in range(len(err)):
        for j in range(i + 1, len(err)):
            c = np.cov(err[i], err[j])
            rho = (c[0, 1] - noise) / np.sqrt((c[0, 0] - noise) * (c[1, 1] - noise))
            print(f"correlation of the xi errors (hidden set, the truth's shared noise removed), "
                  f"{names[i]} vs {names[j]}: {rho:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
