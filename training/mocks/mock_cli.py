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
import io
import sys
import time
from pathlib import Path

import numpy as np

from iaemu_theory.conventions import (BIN_CENTRES, BIN_EDGES, DEFAULT_REALISATIONS, PARAM_NAMES, STATISTICS,
                                      parse_params)
from training.common.cli import add_debug_argument, check_output_path, positive_int, run_command, seed_type
from training.common.fileio import atomic_write_bytes
from training.mocks.occupation import expected_galaxy_counts, host_masses

#: iaemu-mock refuses a point whose expected galaxy count per realisation exceeds this (memory).
MAX_EXPECTED_GALAXIES = 5e7


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iaemu-mock", description=__doc__.split("\n\n")[0].split(":", 1)[1].strip())
    p.add_argument("--catalog", default="default",
                   help="bolplanck, toy, an N-body preset (default, test) or a catalog file path (default: default)")
    p.add_argument("--params", required=True,
                   help="all seven parameters as NAME=VALUE,...: " + ",".join(f"{n}=.." for n in PARAM_NAMES))
    p.add_argument("--realisations", type=positive_int, default=DEFAULT_REALISATIONS,
                   help=f"independent mock realisations (default {DEFAULT_REALISATIONS})")
    p.add_argument("--seed", type=seed_type, default=0, help="master seed, an integer in [0, 2**63) (default 0)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--plot", default=None, help="optional PNG of the three statistics")
    add_debug_argument(p)
    return p


def plot_point(path, r, stats_all: np.ndarray, title: str = "") -> None:
    """Three panels (xi, omega, eta) of the mean over realisations with standard-error bars."""
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


def check_galaxy_budget(params: dict, catalog, limit: float = MAX_EXPECTED_GALAXIES) -> float:
    """The expected galaxies per realisation (Zheng07 on the catalog's hosts); ValueError above `limit`."""
    masses = host_masses(catalog)
    if masses is None:
        return float("nan")
    expected = float(expected_galaxy_counts(np.array([[params[n] for n in PARAM_NAMES]]), masses)[0])
    if not expected <= limit:
        raise ValueError(f"--params logM0={params['logM0']:g}, logM1={params['logM1']:g}, alpha={params['alpha']:g} "
                         f"ask for about {expected:.3g} galaxies per realisation on catalog "
                         f"{getattr(catalog, 'catalog_id', '?')} (at most {limit:.0e} fit in memory); "
                         "expected fewer satellites: a larger logM1 or logM0, or a smaller alpha")
    return expected


def mock_main(argv=None) -> int:
    """Entry point of `iaemu-mock`; returns the exit status (see `run_command`)."""
    return run_command("iaemu-mock", _mock, argv)


def _mock(argv) -> int:
    args = _parser().parse_args(argv)
    params = parse_params(args.params)
    out = Path(args.out if str(args.out).endswith(".npz") else f"{args.out}.npz")  # numpy's naming rule
    check_output_path(out)
    if args.plot:
        check_output_path(args.plot, "--plot")
    from training.catalogs.sources import load_catalog
    from training.mocks.model import IAMockModel

    t0 = time.perf_counter()
    catalog = load_catalog(args.catalog)
    model = IAMockModel(catalog)
    check_galaxy_budget(params, catalog)
    t1 = time.perf_counter()
    try:
        res = model.measure(params, args.seed, n_realisations=args.realisations, progress=True)
    except (ValueError, MemoryError) as exc:
        raise ValueError(f"the mock at --params {args.params} on catalog {catalog.catalog_id} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    t2 = time.perf_counter()
    mean = res.mean()
    arrays = dict(r=np.asarray(BIN_CENTRES), rbins=np.asarray(BIN_EDGES), n_galaxies=res.n_galaxies, seeds=res.seeds,
                  params=np.array([params[n] for n in PARAM_NAMES]), param_names=np.array(PARAM_NAMES),
                  seed=np.int64(args.seed), catalog_id=np.str_(catalog.catalog_id),
                  catalog_hash=np.str_(catalog.catalog_hash), nan_flag=np.bool_(res.nan_flag))
    for i, name in enumerate(STATISTICS):
        arrays[name] = mean[i]
        arrays[f"{name}_all"] = res.stats[:, i, :]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(out, buffer.getvalue())
    print(f"catalog {catalog.catalog_id}: {model.n_hosts} hosts, loaded in {t1 - t0:.1f} s; "
          f"{args.realisations} realisations in {t2 - t1:.1f} s; mean {res.n_galaxies.mean():.0f} galaxies")
    if res.nan_flag:
        print("warning: some bins are NaN (too few galaxies or pairs); see nan_flag", file=sys.stderr)
    print(f"wrote {out}")
    if args.plot:
        plot_point(args.plot, BIN_CENTRES, res.stats,
                   title=f"{catalog.catalog_id}: " + ", ".join(f"{k}={v:g}" for k, v in params.items()))
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(mock_main())
