"""`iaemu-mock`: xi, omega, eta of one parameter point of the halotools-IA model, to an npz (and a PNG).

    iaemu-mock --catalog NAME --params mu_cen=..,mu_sat=..,logMmin=..,sigma_logM=..,logM0=..,logM1=..,alpha=..
               [--realisations 10] [--seed S] --out FILE.npz [--plot FILE.png]

NAME: "bolplanck", "toy", an N-body preset ("default", "test") or a catalog file (.npz/.hdf5).
The npz holds r (bin centres), xi, omega, eta (means over realisations), xi_all, omega_all, eta_all
(R x 20), n_galaxies (R), plus seeds, params, param_names, catalog_id, catalog_hash and nan_flag.
The PNG error bars are the standard error of the mean over realisations, std(ddof=1) / sqrt(R).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from iaemu_theory.conventions import (BIN_CENTRES, BIN_EDGES, DEFAULT_REALISATIONS, PARAM_NAMES, STATISTICS,
                                      parse_params)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iaemu-mock", description=__doc__.split("\n\n")[0])
    p.add_argument("--catalog", default="default",
                   help="bolplanck, toy, an N-body preset (default, test) or a catalog file path (default: default)")
    p.add_argument("--params", required=True,
                   help="all seven parameters as NAME=VALUE,...: " + ",".join(f"{n}=.." for n in PARAM_NAMES))
    p.add_argument("--realisations", type=int, default=DEFAULT_REALISATIONS,
                   help=f"independent mock realisations (default {DEFAULT_REALISATIONS})")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--plot", default=None, help="optional PNG of the three statistics")
    return p


def plot_point(path, r, stats_all: np.ndarray, title: str = "") -> None:
    """Three panels (xi, omega, eta) of the mean over realisations with standard-error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.sum(np.isfinite(stats_all), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(stats_all, axis=0)
        err = np.nanstd(stats_all, axis=0, ddof=1) / np.sqrt(n) if stats_all.shape[0] > 1 else np.zeros_like(mean)
    labels = {"xi": r"$\xi(r)$", "omega": r"$\omega(r)$", "eta": r"$\eta(r)$"}
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for i, (ax, name) in enumerate(zip(axes, STATISTICS)):
        ax.errorbar(r, mean[i], yerr=err[i], fmt="o-", ms=3, capsize=2)
        ax.set_xscale("log")
        if name == "xi":
            ax.set_yscale("log")
        else:
            ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlabel(r"$r\ [h^{-1}\,{\rm Mpc}]$")
        ax.set_ylabel(labels[name])
    fig.suptitle(f"{title}\nmean of {stats_all.shape[0]} realisations; error bars: std / sqrt(R)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mock_main(argv=None) -> int:
    """Entry point of `iaemu-mock`; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        params = parse_params(args.params)
        if args.realisations < 1:
            raise ValueError(f"--realisations {args.realisations} must be >= 1")
        if args.seed < 0:
            raise ValueError(f"--seed {args.seed} must be >= 0")
    except ValueError as err:
        print(f"iaemu-mock: error: {err}", file=sys.stderr)
        return 2
    from training.catalogs import load_catalog
    from training.mocks import IAMockModel

    t0 = time.perf_counter()
    try:
        catalog = load_catalog(args.catalog)
        model = IAMockModel(catalog)
    except (FileNotFoundError, ValueError) as err:
        print(f"iaemu-mock: error: {err}", file=sys.stderr)
        return 2
    t1 = time.perf_counter()
    res = model.measure(params, args.seed, n_realisations=args.realisations, progress=True)
    t2 = time.perf_counter()
    mean = res.mean()
    out = dict(r=np.asarray(BIN_CENTRES), rbins=np.asarray(BIN_EDGES), n_galaxies=res.n_galaxies, seeds=res.seeds,
               params=np.array([params[n] for n in PARAM_NAMES]), param_names=np.array(PARAM_NAMES),
               seed=np.int64(args.seed), catalog_id=np.str_(catalog.catalog_id),
               catalog_hash=np.str_(catalog.catalog_hash), nan_flag=np.bool_(res.nan_flag))
    for i, name in enumerate(STATISTICS):
        out[name] = mean[i]
        out[f"{name}_all"] = res.stats[:, i, :]
    np.savez(args.out, **out)
    print(f"catalog {catalog.catalog_id}: {model.n_hosts} hosts, loaded in {t1 - t0:.1f} s; "
          f"{args.realisations} realisations in {t2 - t1:.1f} s; mean {res.n_galaxies.mean():.0f} galaxies")
    if res.nan_flag:
        print("warning: some bins are NaN (too few galaxies or pairs); see nan_flag", file=sys.stderr)
    print(f"wrote {args.out}")
    if args.plot:
        plot_point(args.plot, BIN_CENTRES, res.stats,
                   title=f"{catalog.catalog_id}: " + ", ".join(f"{k}={v:g}" for k, v in params.items()))
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(mock_main())
