"""How closely an emulator fits its dataset's truths, in units of the truths' own noise.

    python scripts/fit_to_noise.py --artifact iaemu_theory/artifacts/iaemu_default.pt \\
        --data training/data/dataset_hires320x3.h5 [--points 2000]

Per split and statistic: the mean over bins of <(pred - truth)^2> / <se^2>, truth the mean of a point's R
realisations and se its standard error (ln xi for xi, as the network fits it). An exact emulator gives 1 on
held-out points (the truth's noise alone) and a network that has learnt its training points' noise gives < 1 on
them; a value well above 1 on the training points themselves says the fit, not the data, limits the error. For xi,
the same split into quintiles of the points' mean galaxy count, and per bin.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from iaemu_theory.conventions import STATISTICS
from iaemu_theory.emulator import Emulator
from training.emulator.train import load_splits, targets


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", default=None, help="artifact (default: the shipped emulator)")
    p.add_argument("--data", required=True, help="the artifact's split dataset")
    p.add_argument("--points", type=int, default=2000, help="points per split (the first of each)")
    args = p.parse_args(argv)
    ds, rows, _ = load_splits(args.data, log=lambda *a: None)
    emu = Emulator.load(args.artifact, device="cpu")
    for name in ("train", "validation", "test"):
        idx = rows[name][:args.points]
        pred = emu.predict(ds.params[idx], outside="ignore")
        tg = targets(ds, idx)
        se2 = tg.s2 / (tg.n_real[:, None, None] - 1)      # s2 is the scatter about the mean with ddof 0
        resid2 = {s: ((np.log(pred[s]) if s == "xi" else pred[s]) - tg.ybar[:, k]) ** 2
                  for k, s in enumerate(STATISTICS)}
        ratios = {s: resid2[s].mean(axis=0) / se2[:, k].mean(axis=0) for k, s in enumerate(STATISTICS)}
        print(f"{name} ({idx.size} points): " + ", ".join(f"{s} {ratios[s].mean():.2f}" for s in STATISTICS))
        z2 = resid2["xi"] / se2[:, STATISTICS.index("xi")]
        n_gal = ds.n_galaxies[idx].mean(axis=1)
        q = np.digitize(n_gal, np.quantile(n_gal, [0.2, 0.4, 0.6, 0.8]))
        print("  xi by galaxy-count quintile (median count: ratio): " + ", ".join(
            f"{np.median(n_gal[q == b]):.0f}: {z2[q == b].mean():.2f}" for b in range(5)))
        print("  xi per bin: " + " ".join(f"{v:.1f}" for v in ratios["xi"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
