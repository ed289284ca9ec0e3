"""halotools-IA fits of TNG300's omega on the project's halo catalogs, without the emulator.

For each TNG300 sample and catalog version: the (mu_cen, mu_sat) posterior of TNG300Likelihood (omega, uniform priors)
with halotools-IA's expected omega at fixed best-fit HOD, from the 11 x 11 mock nodes that `iaemu-validate` measured
(the alignment surrogate a(r) P2(mu_cen) + b(r) P2(mu_sat), exact for this model), over all fitted bins and over
r >= 0.3 Mpc/h. For sample 2 also a "Bolshoi-Planck-calibrated" fit per catalog: its omega scaled bin by bin by
reference / ours at the reference mocks' parameters (the Bolshoi-Planck mocks exist at that one point only), i.e.
what the fit would give on a catalog that matches Bolshoi-Planck there and shares our catalog's mu-dependence.

Usage (nodes from `iaemu-validate --sample S --catalog default-vN --grid 11 --work W`, S = 1, 2, 3):
    python scripts/catalog_tng_fits.py --nodes v1 W1 W2 W3 --nodes v2 W1 W2 W3 [--out docs/catalog_tng_fits.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from iaemu_theory.conventions import BIN_CENTRES
from iaemu_theory.likelihoods import TNG300Likelihood
from iaemu_theory.tng300 import BOLPLANCK_REFERENCE_PARAMS, load_bolplanck_reference
from training.validate import AlignmentSurface, logpost_on, posterior_moments, zoom_grid

OMEGA = 1  # index of omega in a node's (realisations, statistics, bins) array
R_MIN_CUT = 0.3


def load_surface(work: Path, grid: int = 11) -> AlignmentSurface:
    x = np.linspace(-1.0, 1.0, grid)
    pts, means = [], []
    for i, a in enumerate(x):
        for j, b in enumerate(x):
            path = work / f"node_{i:02d}_{j:02d}.npz"
            if not path.exists():
                raise SystemExit(f"{path} is missing: run iaemu-validate with --grid {grid} --work {work} first")
            with np.load(path) as d:
                pts.append((a, b))
                means.append(np.nanmean(d["stats"][:, OMEGA, :], axis=0))
    return AlignmentSurface(np.array(pts), np.array(means))


def fit(sample: int, omega_at, r_min=None) -> dict:
    opts = {"sample": sample, "statistics": ["omega"]}
    if r_min is not None:
        opts["r_min"] = r_min
    like = TNG300Likelihood(opts)
    like.setup(BIN_CENTRES)
    x = np.linspace(-1.0, 1.0, 201)
    coarse = posterior_moments(x, logpost_on(like, omega_at, x, x))
    xc, xs = zoom_grid([coarse])
    lp = logpost_on(like, omega_at, xc, xs)
    p = np.exp(lp - lp.max())
    p /= p.sum()
    out = {}
    for name, axis, marg in (("mu_cen", xc, p.sum(axis=1)), ("mu_sat", xs, p.sum(axis=0))):
        mean = float((marg * axis).sum())
        out[name] = {"mean": mean, "std": float(np.sqrt((marg * (axis - mean) ** 2).sum()))}
    out["minus2_loglike_max"] = float(-2.0 * lp.max())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", nargs=4, action="append", metavar=("VERSION", "W1", "W2", "W3"), required=True,
                    help="catalog version label and the node folders of samples 1, 2, 3")
    ap.add_argument("--out", default=None, help="JSON output (default: print only)")
    args = ap.parse_args(argv)
    res = {"r_min_cut": R_MIN_CUT, "fits": {}}
    surfaces = {}
    for version, *works in args.nodes:
        for sample, work in enumerate(works, start=1):
            surf = load_surface(Path(work))
            surfaces[(version, sample)] = surf
            for cut in (None, R_MIN_CUT):
                r = fit(sample, surf, cut)
                res["fits"][f"{version} sample{sample} r_min={cut}"] = r
                print(f"{version} sample {sample} r_min {cut}: mu_cen {r['mu_cen']['mean']:.3f} +- {r['mu_cen']['std']:.3f}  "
                      f"mu_sat {r['mu_sat']['mean']:.3f} +- {r['mu_sat']['std']:.3f}  -2lnL_max {r['minus2_loglike_max']:.1f}")
    ref = load_bolplanck_reference("omega")
    point = np.array([[BOLPLANCK_REFERENCE_PARAMS["mu_cen"], BOLPLANCK_REFERENCE_PARAMS["mu_sat"]]])
    res["bolplanck_calibrated"] = {}
    for version, *_ in args.nodes:
        surf = surfaces[(version, 2)]
        ours = np.interp(np.log(ref["r"]), np.log(BIN_CENTRES), surf(point)[0], left=np.nan, right=np.nan)
        ratio = ref["value"] / ours
        ok = np.isfinite(ratio)
        scale = np.interp(np.log(BIN_CENTRES), np.log(ref["r"][ok]), ratio[ok])
        entry = res["bolplanck_calibrated"][version] = {"ref_over_ours": [float(v) for v in ratio]}
        for cut in (None, R_MIN_CUT):
            r = entry[f"r_min={cut}"] = fit(2, lambda q: surf(q) * scale, cut)
            print(f"Bolshoi-Planck-calibrated ({version} x ref/{version}) sample 2 r_min {cut}: mu_cen {r['mu_cen']['mean']:.3f} +- "
                  f"{r['mu_cen']['std']:.3f}  mu_sat {r['mu_sat']['mean']:.3f} +- {r['mu_sat']['std']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
