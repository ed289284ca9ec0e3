"""halotools-IA fits of TNG300's omega on the project's halo catalogs, without the emulator.

For each TNG300 sample and catalog version: the (mu_cen, mu_sat) posterior of TNG300Likelihood (omega, uniform priors)
with halotools-IA's expected omega at fixed best-fit HOD, from the 11 x 11 mock nodes that `iaemu-validate` measured
(the alignment surrogate a(r) P2(mu_cen) + b(r) P2(mu_sat), exact for this model), over all fitted bins and over
r >= 0.3 Mpc/h. For sample 2 also a "Bolshoi-Planck-calibrated" fit per catalog: its omega scaled bin by bin by
reference / ours at the reference mocks' parameters (the Bolshoi-Planck mocks exist at that one point only), i.e.
what the fit would give on a catalog that matches Bolshoi-Planck there and shares our catalog's mu-dependence.

Usage (nodes from `iaemu-validate --sample S --catalog default-vN --grid 11 --work W`, S = 1, 2, 3):
    python scripts/catalog_tng_fits.py --nodes v1 W1 W2 W3 --nodes v2 W1 W2 W3 [--out docs/results/catalog_tng_fits.json] \
        [--figure docs/results/figures/catalog_tng_fits.png]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from iaemu_theory.conventions import BIN_CENTRES, STATISTICS
from iaemu_theory.tng300 import BOLPLANCK_REFERENCE_PARAMS, load_bolplanck_reference
from training.emulator.validation import (AlignmentSurface, node_path, logpost_on, mock_likelihood, node_grid, posterior_moments,
                                          zoom_grid)

R_MIN_CUT = 0.3


def load_surface(work: Path, grid: int = 11) -> AlignmentSurface:
    """The alignment surrogate of the nodes' mean omega in an `iaemu-validate --grid grid --work work` folder."""
    nodes = node_grid(grid)
    omega = STATISTICS.index("omega")
    means = []
    for i in range(grid):
        for j in range(grid):
            path = node_path(work, (i, j))
            if not path.exists():
                raise SystemExit(f"{path} is missing: run iaemu-validate with --grid {grid} --work {work} first")
            with np.load(path) as d:
                means.append(np.nanmean(d["stats"][:, omega, :], axis=0))
    return AlignmentSurface(nodes.reshape(-1, 2), np.array(means))


def fit(sample: int, omega_at, r_min=None) -> dict:
    """Posterior moments on a fine grid around the peak (found on the full prior square) and the best -2 ln L."""
    like = mock_likelihood(sample, r_min=r_min)
    x = np.linspace(-1.0, 1.0, 201)
    x_cen, x_sat = zoom_grid([posterior_moments(x, logpost_on(like, omega_at, x, x))])
    lp = logpost_on(like, omega_at, x_cen, x_sat)
    out = posterior_moments((x_cen, x_sat), lp)
    out["minus2_loglike_max"] = float(-2.0 * lp.max())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", nargs=4, action="append", metavar=("VERSION", "W1", "W2", "W3"), required=True,
                    help="catalog version label and the node folders of samples 1, 2, 3")
    ap.add_argument("--out", default=None, help="JSON output (default: print only)")
    ap.add_argument("--figure", default=None, help="PNG of the fits per sample and catalog version")
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
    if args.figure:
        plot_fits(res, [v for v, *_ in args.nodes], Path(args.figure))
    return 0


def plot_fits(res: dict, versions: list[str], path: Path) -> None:
    """mu_cen, mu_sat (mean +- std) per TNG300 sample and catalog version: all fitted bins (filled) and r >= R_MIN_CUT
    (open); for sample 2 also the Bolshoi-Planck-calibrated fits (grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for sample, ax in enumerate(axes, start=1):
        for k, version in enumerate(versions):
            for cut, face in ((None, f"C{k}"), (R_MIN_CUT, "none")):
                f = res["fits"][f"{version} sample{sample} r_min={cut}"]
                label = f"{version}" + ("" if cut is None else f", r >= {cut} Mpc/h")
                ax.errorbar(f["mu_cen"]["mean"], f["mu_sat"]["mean"], xerr=f["mu_cen"]["std"], yerr=f["mu_sat"]["std"],
                            fmt="o", color=f"C{k}", mfc=face, ms=6, capsize=2, label=label)
        if sample == 2:
            label = "Bolshoi-Planck-calibrated (each version, both cuts)"
            for version in versions:
                for cut in (None, R_MIN_CUT):
                    c = res["bolplanck_calibrated"][version][f"r_min={cut}"]
                    ax.errorbar(c["mu_cen"]["mean"], c["mu_sat"]["mean"], xerr=c["mu_cen"]["std"], yerr=c["mu_sat"]["std"],
                                fmt="s", color="0.6", mfc="none", ms=5, capsize=2, zorder=0, label=label)
                    label = None
        ax.set_title(f"TNG300 sample {sample}: halotools-IA fits on our catalog", fontsize=9)
        ax.set_xlabel("mu_cen")
        ax.set_ylabel("mu_sat")
        ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
