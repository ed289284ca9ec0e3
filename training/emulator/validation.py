"""`iaemu-validate`: the paper's Table 1 check: emulator posteriors against halotools-IA's own.

For one TNG300 sample (HOD fixed to the sample's best fit, as in TNG300Likelihood), fit (mu_cen, mu_sat)
to the TNG300 omega with the same data, covariance, scale cuts and interpolation as `TNG300Likelihood`, twice:

1. Direct (halotools-IA): a G x G grid of (mu_cen, mu_sat) nodes over [-1, 1]^2; each node is a fresh
   mock of `--realisations` full realisations (positions and orientations re-populated; independent seeds
   per node) on the catalog, measured with the fused engine (`IAMockModel.measure`). The nodes' mean omega
   (20 bins) is interpolated by a surrogate fitted by least squares per radial bin: by default
   (`--surrogate alignment`) the exact form of the expected omega, a(r) P2(mu_cen) + b(r) P2(mu_sat)
   (`iaemu_theory.alignment`), which has no shape error and averages the realisation noise of all nodes;
   or a tensor-product Legendre polynomial of degree `--degree` (`--surrogate legendre`). Its reduced chi2
   against the node noise is reported, and the scatter of the direct posterior means over `--bootstrap`
   resamplings of the realisations of every node (the reference's own noise). The posterior (uniform
   priors on [-1, 1]^2) is evaluated on a fine grid with the likelihood's own `loglike_from_predictions`.
2. Emulator: Cobaya mcmc with IAEmu + TNG300Likelihood (R-1 < 0.01), timed; plus the emulator's posterior
   on the same fine grid (no Monte Carlo noise) as a cross-check.

Reported (validation_sample<S>.json in --out, figures in --out/figures; the page is rendered from the JSON by
`python scripts/render_docs.py`): means, standard deviations, the differences in units of the direct posterior's
sigma and the verdict against SHIFT_TARGET_SIGMA, wall times and speed-ups. The grid is the heavy
part: nodes run in a process pool (`--workers`) and each finished node is saved in --work, so an
interrupted run resumes where it stopped (a node file made with other settings is refused).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from concurrent.futures import BrokenExecutor
from pathlib import Path

import numpy as np

from iaemu_theory.conventions import ALIGNMENT_PARAMS, BIN_CENTRES, DEFAULT_REALISATIONS, STATISTICS
from training.catalogs.sources import DEFAULT_CATALOG
from training.common import tasks as farms
from training.common.cli import add_debug_argument, run_command
from training.common.fileio import atomic_savez

__all__ = ["main", "validate_sample", "measure_mock_grid", "node_grid", "run_grid", "AlignmentSurface",
           "PolynomialSurface", "grid_posterior", "posterior_moments", "reference_scatter", "mock_likelihood",
           "emulator_mcmc", "timed_sampler", "shift_verdict", "SHIFT_TARGET_SIGMA"]

#: Master seed offset so that validation mocks never reuse dataset seeds by accident.
_SEED_TAG = 0x5A11D


# ---------------------------------------------------------------------------- the grid of mocks

def node_grid(n: int) -> np.ndarray:
    """The (mu_cen, mu_sat) nodes, shape (n, n, 2), on linspace(-1, 1, n) in each."""
    if n < 3:
        raise ValueError(f"--grid {n}: need at least 3 nodes per axis")
    x = np.linspace(-1.0, 1.0, n)
    return np.stack(np.meshgrid(x, x, indexing="ij"), axis=-1)


def node_seed(seed: int, sample: int, i: int, j: int) -> int:
    """Master seed of node (i, j): independent across nodes (SeedSequence([tag, seed, sample, i, j]))."""
    return int(np.random.SeedSequence([_SEED_TAG, seed, sample, i, j]).generate_state(1, np.uint32)[0] >> 1)


def mock_model(catalog_name: str, threads: int | None = None):
    """A worker's state (the task farm's setup): the mock model on the catalog, numba limited to `threads`."""
    import numba

    if threads:
        numba.set_num_threads(int(threads))
    from training.catalogs.sources import load_catalog
    from training.mocks.fastpop import mock_model as populate_model

    return populate_model(load_catalog(catalog_name), populate="halotools")


def measure_node(model, node):
    """One node's mock (the task farm's work): (key, stats, n_galaxies, wall seconds) for node (key, params, seed,
    realisations)."""
    key, params, seed, realisations = node
    t0 = time.perf_counter()
    res = model.measure(params, seed=seed, n_realisations=realisations)
    return key, res.stats, res.n_galaxies, time.perf_counter() - t0


def node_path(work: Path, key) -> Path:
    """The file of node `key` in the folder `work` (a grid node (i, j) or a named diagnostic mock)."""
    return work / (f"node_{key[0]:02d}_{key[1]:02d}.npz" if isinstance(key, tuple) else f"node_{key}.npz")


def _node_meta(params, seed, realisations, catalog_hash) -> str:
    return json.dumps({"params": params, "seed": int(seed), "realisations": int(realisations),
                       "catalog_hash": str(catalog_hash)}, sort_keys=True)


def _load_node(path: Path, meta: str):
    with np.load(path) as f:
        if str(f["meta"]) != meta:
            raise ValueError(f"checkpoint {path} was made with other settings ({f['meta']}) than this run ({meta}); "
                             f"use another --work folder or delete it")
        return f["stats"], f["n_galaxies"], float(f["wall_s"])


def _save_node(path: Path, meta: str, stats, n_galaxies, wall_s):
    atomic_savez(path, meta=np.array(meta), stats=stats, n_galaxies=n_galaxies, wall_s=np.array(wall_s))


def run_grid(catalog, catalog_name: str, tasks: dict, work: Path, realisations: int, workers: int = 1,
             threads: int | None = None, progress: bool = True, replace_stale: bool = False) -> dict:
    """Measure every task {key: (params, seed)} (resuming from `work`); returns {key: (stats, n_gal, wall_s)}.

    Finished nodes are written to `work` one by one as they complete. A node file made with other settings
    is refused, or with `replace_stale` (single diagnostic mocks whose point follows the posterior) measured
    again and overwritten.
    """
    from tqdm.auto import tqdm

    work.mkdir(parents=True, exist_ok=True)
    chash = getattr(catalog, "catalog_hash", catalog_name)
    results, todo = {}, {}
    for key, (params, seed) in tasks.items():
        meta = _node_meta(params, seed, realisations, chash)
        path = node_path(work, key)
        if path.is_file():
            try:
                results[key] = _load_node(path, meta)
            except ValueError:
                if not replace_stale:
                    raise
                todo[key] = (params, seed, meta)
        else:
            todo[key] = (params, seed, meta)
    if results:
        print(f"resuming: {len(results)} of {len(tasks)} mock node(s) already in {work}", flush=True)
    if not todo:
        return results
    bar = tqdm(total=len(todo), desc="halotools-IA mocks", unit="node", disable=not progress)
    if workers <= 1:
        if threads:
            import numba

            numba.set_num_threads(int(threads))
        from training.mocks.fastpop import mock_model as populate_model

        farm = farms.SerialFarm(measure_node, state=populate_model(catalog, populate="halotools"))
    else:
        farm = farms.PoolFarm(workers, measure_node, mock_model, (catalog_name, threads or 1))
    nodes = [(key, params, seed, realisations) for key, (params, seed, _) in todo.items()]
    try:
        for key, stats, ngal, wall in farms.run_all(farm, nodes):
            _save_node(node_path(work, key), todo[key][2], stats, ngal, wall)
            results[key] = (stats, ngal, wall)
            bar.update()
    except BrokenExecutor:
        raise farms.WorkerLost(f"a worker process died; {len(results)} of {len(tasks)} node(s) are saved in {work}: "
                           "run the same command again to resume") from None
    finally:
        bar.close()
    return results


# ---------------------------------------------------------------------------- smooth surrogate

class _LinearSurface:
    """Least-squares fit y(mu_cen, mu_sat) = design(mu_cen, mu_sat) @ coef, one fit per output column
    (radial bin); nodes whose bin is empty in every realisation are left out of that bin's fit.

    `sigma` (the nodes' standard errors) gives the reduced chi2 of the fit; with errors estimated from R
    realisations a correct surrogate gives about (R - 1) / (R - 3) (Student t), not 1.
    """

    kind = ""

    def __init__(self, x: np.ndarray, y: np.ndarray, sigma: np.ndarray | None = None):
        x = np.asarray(x, dtype=float).reshape(-1, 2)
        y = np.asarray(y, dtype=float).reshape(x.shape[0], -1)
        a = self._design(x)
        if a.shape[1] > x.shape[0]:
            raise ValueError(f"the {self.kind} surrogate needs {a.shape[1]} coefficients but there are only "
                             f"{x.shape[0]} nodes; lower --degree or raise --grid")
        finite = np.isfinite(y)
        self.coef = np.zeros((a.shape[1], y.shape[1]))
        for b in range(y.shape[1]):
            rows = finite[:, b]
            if rows.sum() < a.shape[1]:
                raise ValueError(f"radial bin {b}: only {rows.sum()} of {x.shape[0]} nodes have a finite value, fewer "
                                 f"than the {a.shape[1]} coefficients of the {self.kind} surrogate; too few galaxies "
                                 f"(more realisations, a larger catalog or a lower --degree)")
            self.coef[:, b] = np.linalg.lstsq(a[rows], y[rows, b], rcond=None)[0]
        resid = np.where(finite, y - a @ self.coef, 0.0)
        self.dof = int(finite.sum()) - a.shape[1] * y.shape[1]
        self.n_missing = int((~finite).sum())
        self.rms = np.sqrt(np.sum(resid**2, axis=0) / np.maximum(finite.sum(axis=0), 1))
        self.reduced_chi2 = None
        if sigma is not None and self.dof > 0:
            s = np.asarray(sigma, dtype=float).reshape(resid.shape)
            ok = finite & (s > 0)
            self.reduced_chi2 = float(np.sum((resid[ok] / s[ok]) ** 2) / self.dof)

    def _design(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return (self._design(x.reshape(-1, 2)) @ self.coef).reshape(*x.shape[:-1], -1)


class AlignmentSurface(_LinearSurface):
    """omega = a(r) mean_p2(mu_cen) + b(r) mean_p2(mu_sat): the exact form of halotools-IA's expected omega
    at fixed HOD (`iaemu_theory.alignment`), so the fit has no shape error and 2 coefficients per bin
    average the noise of every node."""

    kind = "alignment"
    description = "exact alignment form a(r) P2(mu_cen) + b(r) P2(mu_sat)"

    def _design(self, x):
        from iaemu_theory.alignment import mean_p2

        return np.column_stack([mean_p2(x[:, 0]), mean_p2(x[:, 1])])


class PolynomialSurface(_LinearSurface):
    """Tensor-product Legendre polynomial of degree `degree` in each of mu_cen, mu_sat (a generic smoother)."""

    kind = "legendre"

    def __init__(self, x: np.ndarray, y: np.ndarray, degree: int, sigma: np.ndarray | None = None):
        self.degree = int(degree)
        self.description = f"Legendre polynomial of degree {self.degree} per parameter"
        super().__init__(x, y, sigma)

    def _design(self, x):
        from numpy.polynomial import legendre

        return legendre.legvander2d(x[:, 0], x[:, 1], [self.degree, self.degree])


# ---------------------------------------------------------------------------- likelihood and posteriors

def mock_likelihood(sample: int, r_model=BIN_CENTRES, r_min: float | None = None):
    """TNG300Likelihood of `sample` (omega; default cuts, or data below `r_min` Mpc/h left out), set up for
    predictions at radii `r_model`."""
    from iaemu_theory.likelihoods import TNG300Likelihood

    options = {"sample": int(sample), "statistics": ["omega"]}
    if r_min is not None:
        options["r_min"] = float(r_min)
    like = TNG300Likelihood(options)
    like.setup(np.asarray(r_model, dtype=float))
    return like


def grid_posterior(like, omega_at, n_fine: int = 201):
    """Posterior on an n_fine^2 grid over [-1, 1]^2 (uniform priors): returns (x, logpost (n, n))."""
    x = np.linspace(-1.0, 1.0, n_fine)
    return x, logpost_on(like, omega_at, x, x)


def zoom_grid(posteriors, n_sigma: float = 5.0, n: int = 121) -> tuple[np.ndarray, np.ndarray]:
    """Axes (mu_cen, mu_sat) of an n x n grid covering mean +- n_sigma std of every posterior given (within
    [-1, 1]): where the figure zooms in, resolved far better than the full-prior grid."""
    axes = []
    for name in ALIGNMENT_PARAMS:
        lo = min(p[name]["mean"] - n_sigma * p[name]["std"] for p in posteriors)
        hi = max(p[name]["mean"] + n_sigma * p[name]["std"] for p in posteriors)
        axes.append(np.linspace(max(lo, -1.0), min(hi, 1.0), n))
    return axes[0], axes[1]


def logpost_on(like, omega_at, x_cen: np.ndarray, x_sat: np.ndarray) -> np.ndarray:
    """Log-posterior (uniform priors) on the grid x_cen x x_sat, shape (len(x_cen), len(x_sat))."""
    pts = np.stack(np.meshgrid(x_cen, x_sat, indexing="ij"), axis=-1).reshape(-1, 2)
    omega = omega_at(pts)
    return np.array([like.loglike_from_predictions({"omega": w}) for w in omega]).reshape(len(x_cen), len(x_sat))


def posterior_moments(x, logpost: np.ndarray) -> dict:
    """Means, stds and central 68% intervals of both parameters from a grid posterior; `x` is the axis of a
    square grid or the pair (x_cen, x_sat) of a rectangular one (`zoom_grid`)."""
    p = np.exp(logpost - np.max(logpost))
    p /= p.sum()
    axes = x if isinstance(x, tuple) else (x, x)
    out = {}
    for k, name in enumerate(ALIGNMENT_PARAMS):
        x = axes[k]
        marg = p.sum(axis=1 - k)
        mean = float((marg * x).sum())
        std = float(np.sqrt((marg * (x - mean) ** 2).sum()))
        cdf = np.cumsum(marg)
        lo, hi = np.interp([0.16, 0.84], cdf, x)
        out[name] = {"mean": mean, "std": std, "lo68": float(lo), "hi68": float(hi)}
    return out


def reference_scatter(make_surface, nodes: np.ndarray, node_stats: np.ndarray, like, n_boot: int,
                      seed: int = 0, n_fine: int = 201) -> dict:
    """Standard deviation of the direct posterior means over `n_boot` bootstrap resamplings of the
    realisations of every node (`node_stats`: (nodes, R, bins) omega): the reference's own noise."""
    rng = np.random.default_rng([_SEED_TAG, seed])
    n_nodes, n_real = node_stats.shape[:2]
    means = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(n_boot):
            pick = rng.integers(0, n_real, size=(n_nodes, n_real))
            resampled = np.take_along_axis(node_stats, pick[:, :, None], axis=1)
            surface = make_surface(nodes, np.nanmean(resampled, axis=1), None)
            m = posterior_moments(*grid_posterior(like, surface, n_fine))
            means.append([m["mu_cen"]["mean"], m["mu_sat"]["mean"]])
    sd = np.std(np.array(means), axis=0, ddof=1) if n_boot > 1 else np.full(2, np.nan)
    return {"n_boot": int(n_boot), "mu_cen": float(sd[0]), "mu_sat": float(sd[1])}


def timed_sampler(info: dict, sampler_info: dict):
    """Build Cobaya's model and sampler from `info` and `sampler_info` and run it; returns (sampler, wall seconds
    {"init_s", "sampling_s", "wall_s"})."""
    from cobaya.model import get_model
    from cobaya.sampler import get_sampler

    t0 = time.perf_counter()
    sampler = get_sampler(sampler_info, get_model(info))
    t1 = time.perf_counter()
    sampler.run()
    t2 = time.perf_counter()
    return sampler, {"init_s": t1 - t0, "sampling_s": t2 - t1, "wall_s": t2 - t0}


def emulator_mcmc(artifact: str | None, sample: int, seed: int, max_samples: int = 10**7,
                  rminus1: float = 0.01) -> dict:
    """Cobaya mcmc of the emulator posterior (IAEmu + TNG300Likelihood): means, stds (first 30% dropped),
    the number of likelihood calls, and wall times of initialisation and of sampling."""
    info = {"theory": {"iaemu_theory.IAEmu": {"artifact": artifact}},
            "likelihood": {"tng300": {"class": "iaemu_theory.TNG300Likelihood", "sample": int(sample),
                                      "statistics": ["omega"]}}}
    sampler_info = {"mcmc": {"Rminus1_stop": rminus1, "Rminus1_cl_stop": 0.2, "max_tries": 10000,
                             "max_samples": int(max_samples), "seed": int(seed)}}
    sampler, walls = timed_sampler(info, sampler_info)
    s = sampler.products()["sample"]
    burn = s.skip_samples(0.3, inplace=False)
    w = burn["weight"].to_numpy(dtype=float)
    out = {"wall_s": walls["wall_s"], "init_s": walls["init_s"], "sampling_s": walls["sampling_s"],
           "likelihood_calls": int(round(float(s["weight"].sum()))), "accepted": int(len(s)),
           "converged": bool(getattr(sampler, "converged", False))}
    for name in ALIGNMENT_PARAMS:
        v = burn[name].to_numpy(dtype=float)
        mean = float(np.average(v, weights=w))
        out[name] = {"mean": mean, "std": float(np.sqrt(np.average((v - mean) ** 2, weights=w)))}
    return out


def compare(direct: dict, emulator: dict, scatter: dict | None = None) -> dict:
    """|emulator mean - direct mean| in units of the direct sigma, and of the two sigmas in quadrature;
    with `scatter` (reference_scatter) also the reference's own noise in units of the direct sigma."""
    out = {}
    for name in ALIGNMENT_PARAMS:
        d, e = direct[name], emulator[name]
        diff = e["mean"] - d["mean"]
        out[name] = {"difference": diff, "in_direct_sigma": abs(diff) / d["std"],
                     "in_combined_sigma": abs(diff) / math.hypot(d["std"], e["std"]),
                     "std_ratio": e["std"] / d["std"],
                     "reference_scatter_in_direct_sigma": (scatter[name] / d["std"] if scatter else float("nan"))}
    return out


# ---------------------------------------------------------------------------- figures and report

def _posterior_figure(path_base: Path, x, lp_direct, lp_emu, mcmc, sample, labels, zoom=None):
    """Left: the 68% and 95% regions in the whole prior square; right (zoom = (x_cen, x_sat, lp_direct,
    lp_emu) on a finer local grid): the same regions where the posteriors are."""
    import matplotlib.pyplot as plt

    def levels(lp):
        p = np.exp(lp - lp.max())
        flat = np.sort(p.ravel())[::-1]
        cum = np.cumsum(flat) / flat.sum()
        return sorted({float(flat[np.searchsorted(cum, q)]) for q in (0.954, 0.683)} | {float(p.max()) * 1.0001})

    panels = [(x, x, lp_direct, lp_emu)] + ([zoom] if zoom is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    for ax, (xc, xs, lpd, lpe) in zip(axes[0], panels):
        xx, yy = np.meshgrid(xc, xs, indexing="ij")
        ax.contourf(xx, yy, np.exp(lpd - lpd.max()), levels=levels(lpd), colors=["#9ecae1", "#3182bd"], alpha=0.8)
        ax.contour(xx, yy, np.exp(lpe - lpe.max()), levels=levels(lpe)[:-1], colors="#d6604d", linewidths=1.6)
        if mcmc is not None:
            ax.errorbar(mcmc["mu_cen"]["mean"], mcmc["mu_sat"]["mean"], xerr=mcmc["mu_cen"]["std"],
                        yerr=mcmc["mu_sat"]["std"], fmt="o", color="#b2182b", ms=4, label="emulator + Cobaya mcmc")
        ax.set_xlabel(r"$\mu_{\rm cen}$")
        ax.set_ylabel(r"$\mu_{\rm sat}$")
    ax = axes[0][0]
    ax.plot([], [], color="#3182bd", lw=6, label=labels[0])
    ax.plot([], [], color="#d6604d", lw=1.6, label=labels[1])
    ax.set_title(f"TNG300 sample {sample}: 68% and 95% regions")
    ax.legend(fontsize=8, loc="lower left")
    if zoom is not None:
        axes[0][1].set_title("zoom (finer grid)")
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(f"{path_base}.{ext}", dpi=150)
    plt.close(fig)


def _statistics_figure(path_base: Path, mock_stats, emu_at_mock, emu_at_emu, sample, point, emu_point,
                       direct_omega=None, n_node_realisations: int = 0):
    import matplotlib.pyplot as plt

    from iaemu_theory.tng300 import load_tng300

    r = np.asarray(BIN_CENTRES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(mock_stats, axis=0)
        std = np.nanstd(mock_stats, axis=0, ddof=1)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    for k, (stat, ax) in enumerate(zip(STATISTICS, axes)):
        scale = r if stat == "xi" else np.ones_like(r)
        ax.fill_between(r, scale * (mean[k] - std[k]), scale * (mean[k] + std[k]), color="#9ecae1", alpha=0.7,
                        label=f"halotools-IA ({mock_stats.shape[0]} real.), mean $\\pm$ 1 std")
        ax.plot(r, scale * mean[k], color="#3182bd")
        if emu_at_mock is not None:
            e = emu_at_mock[stat][0]
            es = np.sqrt(emu_at_mock[f"{stat}_aleatoric_var"][0])
            ax.errorbar(r, scale * e, yerr=scale * es, fmt=".", color="#b2182b", ms=4, capsize=0,
                        label="emulator, same point ($\\pm$ aleatoric)")
        if emu_at_emu is not None:
            ax.plot(r, scale * emu_at_emu[stat][0], "--", color="#d6604d", lw=1, label="emulator at its own mean")
        if stat == "omega" and direct_omega is not None:
            ax.plot(r, direct_omega, color="#08306b", lw=1.2,
                    label=f"halotools-IA expectation (surrogate of {n_node_realisations} realisations)")
            ax.legend(fontsize=7)
        d = load_tng300(sample, stat)
        ds = d["r"] if stat == "xi" else np.ones_like(d["r"])
        ax.errorbar(d["r"], ds * d["value"], yerr=ds * d["err"], fmt="s", mfc="none", color="k", ms=3,
                    label=f"TNG300 sample {sample}")
        ax.set_xscale("log")
        ax.set_xlabel(r"$r$ [Mpc/$h$]")
        ax.set_ylabel(r"$r\,\xi(r)$" if stat == "xi" else {"omega": r"$\omega(r)$", "eta": r"$\eta(r)$"}[stat])
        if stat == "xi":
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"at the halotools-IA posterior mean mu_cen={point['mu_cen']:.3f}, mu_sat={point['mu_sat']:.3f}"
                 + (f" (emulator's: {emu_point['mu_cen']:.3f}, {emu_point['mu_sat']:.3f})" if emu_point else ""),
                 fontsize=9)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(f"{path_base}.{ext}", dpi=150)
    plt.close(fig)


# ---------------------------------------------------------------------------- one sample's validation

#: The target: the emulator's posterior means within this many sigma of the direct posterior's.
SHIFT_TARGET_SIGMA = 1.0


def surrogate_factory(surrogate: str, degree: int | None, grid: int):
    """(make_surface(x, y, sigma), degree) for `--surrogate` and `--degree` (checked against the grid)."""
    if surrogate == "legendre":
        degree = degree if degree is not None else min(5, grid - 2)
        if not 1 <= degree <= grid - 1:
            raise ValueError(f"--degree {degree}: must lie in [1, grid - 1 = {grid - 1}]")
        return (lambda x, y, sigma: PolynomialSurface(x, y, degree, sigma=sigma)), degree
    if surrogate != "alignment":
        raise ValueError(f"--surrogate {surrogate!r}: expected 'alignment' or 'legendre'")
    if degree is not None:
        raise ValueError(f"--degree {degree}: applies to --surrogate legendre only")
    return AlignmentSurface, None


def measure_mock_grid(catalog, catalog_name: str, sample: int, point, grid: int, realisations: int, seed: int,
                      work: Path, workers: int, threads: int | None, progress: bool) -> dict:
    """Step 1: the grid of halotools-IA mocks (resumable from `work`): node positions, per-realisation omega
    (nodes, R, bins), the nodes' mean omega and its standard error, wall seconds and mean galaxy counts."""
    nodes = node_grid(grid)
    tasks = {(i, j): (point(*nodes[i, j]), node_seed(seed, sample, i, j)) for i in range(grid) for j in range(grid)}
    t0 = time.perf_counter()
    results = run_grid(catalog, catalog_name, tasks, work, realisations, workers=workers, threads=threads,
                       progress=progress)
    wall = time.perf_counter() - t0
    omega_idx = STATISTICS.index("omega")
    omega = np.array([results[k][0][:, omega_idx] for k in tasks])          # (nodes, R, bins)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(omega, axis=1)
        noise = np.nanstd(omega, axis=1, ddof=1) / np.sqrt(realisations)
    return {"x": nodes.reshape(-1, 2), "omega": omega, "means": means, "noise": noise, "wall_s": wall,
            "node_walls": np.array([results[k][2] for k in tasks]),
            "n_gal": np.array([np.mean(results[k][1]) for k in tasks])}


def shift_verdict(comparison: dict) -> dict:
    """The target's verdict: the largest |emulator - direct| posterior mean in direct sigma, against
    SHIFT_TARGET_SIGMA."""
    worst = max(comparison[n]["in_direct_sigma"] for n in ALIGNMENT_PARAMS)
    return {"value": float(worst), "target": SHIFT_TARGET_SIGMA, "kind": "<", "met": bool(worst < SHIFT_TARGET_SIGMA)}


def validate_sample(sample: int = 1, catalog: str = DEFAULT_CATALOG, artifact: str | None = None, grid: int = 9,
                    realisations: int = DEFAULT_REALISATIONS, surrogate: str = "alignment", degree: int | None = None,
                    bootstrap: int = 100, fine: int = 201, workers: int = 1, threads: int | None = None, seed: int = 0,
                    mcmc_max_samples: int = 10**7, rminus1: float = 0.01, work: str | None = None,
                    out: str = "docs/results", progress: bool = True) -> dict:
    """One TNG300 sample's validation (the options of `iaemu-validate`): the mock grid, the direct and emulator
    posteriors, the comparison and its verdict, timings; draws the figures into <out>/figures and returns the
    report (the JSON of the page)."""
    for name, value in (("grid", grid), ("realisations", realisations), ("workers", workers), ("fine", fine)):
        if value < 1:
            raise ValueError(f"--{name} {value}: must be a positive integer")
    if bootstrap < 0:
        raise ValueError(f"--bootstrap {bootstrap}: must be 0 (none) or a positive integer")
    make_surface, degree = surrogate_factory(surrogate, degree, grid)

    from iaemu_theory.emulator import Emulator
    from iaemu_theory.theory import resolve_artifact
    from iaemu_theory.tng300 import TNG300_HOD
    from training.catalogs.sources import load_catalog

    artifact = resolve_artifact(artifact)
    emu = Emulator.load(artifact, device="cpu", dtype="float64")
    if not np.allclose(emu.r, BIN_CENTRES):
        raise ValueError(f"the emulator's bins {emu.r} differ from the mocks' {BIN_CENTRES}")
    t_cat = time.perf_counter()
    cat = load_catalog(catalog)
    print(f"catalog {cat.catalog_id} loaded in {time.perf_counter() - t_cat:.1f} s", flush=True)
    hod = dict(TNG300_HOD[sample])
    point = lambda mc, ms: {"mu_cen": float(mc), "mu_sat": float(ms), **hod}  # noqa: E731
    if not emu.domain.contains(point(0.0, 0.0))[0]:
        raise ValueError(f"TNG300 sample {sample}'s HOD {hod} lies outside the emulator's training domain")

    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    cat_tag = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(cat.catalog_id))
    work = Path(work or f"validation_work/sample{sample}-{cat_tag}-g{grid}-r{realisations}-s{seed}")

    mocks = measure_mock_grid(cat, catalog, sample, point, grid, realisations, seed, work, workers, threads, progress)
    surface = make_surface(mocks["x"], mocks["means"], mocks["noise"] if realisations > 1 else None)

    # step 2: posteriors on the fine grid, direct (surrogate of the mocks) and emulator, and the emulator's mcmc
    like = mock_likelihood(sample, emu.r)
    x, lp_direct = grid_posterior(like, surface, fine)
    direct = posterior_moments(x, lp_direct)
    scatter = None
    if bootstrap and realisations > 1:
        scatter = reference_scatter(make_surface, mocks["x"], mocks["omega"], like, bootstrap, seed, fine)

    def emu_omega(pts):
        full = np.column_stack([pts, np.tile([hod[n] for n in emu.param_names[2:]], (len(pts), 1))])
        return emu.predict(full, statistics=["omega"])["omega"]

    _, lp_emu = grid_posterior(like, emu_omega, fine)
    emu_grid = posterior_moments(x, lp_emu)
    print("running Cobaya mcmc on the emulator posterior ...", flush=True)
    mcmc = emulator_mcmc(artifact, sample, seed, mcmc_max_samples, rminus1)
    comparison = compare(direct, mcmc, scatter)

    # step 3: a fresh mock at the direct posterior mean, for the statistics figure
    mean_point = point(direct["mu_cen"]["mean"], direct["mu_sat"]["mean"])
    at_mean = run_grid(cat, catalog, {"at_mean": (mean_point, node_seed(seed, sample, 2**31, 0))},
                       work, realisations, workers=1, threads=threads, progress=False,
                       replace_stale=True)["at_mean"]
    emu_at_mock = emu.predict(mean_point)
    direct_at_mean = surface(np.array([[mean_point["mu_cen"], mean_point["mu_sat"]]]))[0]
    data_err = np.sqrt(np.diag(like.cov_data))
    emu_residual = ((like.model_vector({"omega": emu_at_mock["omega"][0]})
                     - like.model_vector({"omega": direct_at_mean})) / data_err)
    emu_at_emu = emu.predict(point(mcmc["mu_cen"]["mean"], mcmc["mu_sat"]["mean"]))

    node_walls = mocks["node_walls"]
    node_s = float(np.mean(node_walls))
    timing = {"mock_node_s": node_s, "mock_grid_cpu_s": float(node_walls.sum()), "mock_grid_wall_s": mocks["wall_s"],
              "workers": workers, "emulator_mcmc_s": mcmc["wall_s"],
              "mock_mcmc_estimate_s": node_s * mcmc["likelihood_calls"],
              "speedup_vs_grid": float(node_walls.sum()) / mcmc["wall_s"],
              "speedup_vs_mcmc_estimate": node_s * mcmc["likelihood_calls"] / mcmc["wall_s"]}
    base = f"validation_sample{sample}"
    figures = {"posterior": f"figures/{base}_posterior", "statistics": f"figures/{base}_statistics"}
    x_cen, x_sat = zoom_grid([direct, emu_grid])
    zoom = (x_cen, x_sat, logpost_on(like, surface, x_cen, x_sat), logpost_on(like, emu_omega, x_cen, x_sat))
    _posterior_figure(out / figures["posterior"], x, lp_direct, lp_emu, mcmc, sample,
                      ("halotools-IA (mock grid + surrogate)", "emulator (same likelihood)"), zoom=zoom)
    _statistics_figure(out / figures["statistics"], at_mean[0], emu_at_mock, emu_at_emu, sample,
                       mean_point, {n: mcmc[n]["mean"] for n in ALIGNMENT_PARAMS}, direct_omega=direct_at_mean,
                       n_node_realisations=int(np.isfinite(mocks["omega"]).any(axis=2).sum()))
    return {
        "sample": sample, "hod": hod,
        "catalog": {"id": str(cat.catalog_id), "hash": str(getattr(cat, "catalog_hash", "")), "name": catalog},
        "direct": {"grid": grid, "realisations": realisations, "surrogate": surrogate,
                   "surrogate_description": surface.description, "degree": degree, "seed": seed,
                   "surrogate_reduced_chi2": surface.reduced_chi2 if surface.reduced_chi2 is not None else float("nan"),
                   "surrogate_reduced_chi2_expected": ((realisations - 1) / (realisations - 3)
                                                       if realisations > 3 else float("nan")),
                   "bootstrap_scatter_of_means": scatter,
                   "mean_galaxies": float(mocks["n_gal"].mean()), "posterior": direct, "work": str(work)},
        "emulator": {"artifact": artifact or "(shipped default)", "mcmc": mcmc, "grid": emu_grid},
        "comparison": comparison, "verdict": shift_verdict(comparison), "timing": timing, "figures": figures,
        "emulator_minus_direct_omega_at_direct_mean_in_data_err": emu_residual.tolist(),
        "data": {"r": like.blocks[0][1].tolist(), "omega": like.data_vector.tolist(),
                 "err": data_err.tolist()},
    }


# ---------------------------------------------------------------------------- command

def _parser():
    p = argparse.ArgumentParser(prog="iaemu-validate", description=__doc__.split("\n\n")[0])
    p.add_argument("--sample", type=int, default=1, choices=(1, 2, 3), help="TNG300 sample (default 1)")
    p.add_argument("--catalog", default=DEFAULT_CATALOG,
                   help=f"halo catalog or catalog set: the one the emulator was trained on (default {DEFAULT_CATALOG}), "
                        "'toy', or a path")
    p.add_argument("--artifact", default=None, help="emulator artifact (default: $IAEMU_ARTIFACT or the shipped one)")
    p.add_argument("--grid", type=int, default=9, help="nodes per axis of the (mu_cen, mu_sat) grid (default 9)")
    p.add_argument("--realisations", type=int, default=DEFAULT_REALISATIONS,
                   help=f"full mock realisations per node (default {DEFAULT_REALISATIONS})")
    p.add_argument("--surrogate", choices=("alignment", "legendre"), default="alignment",
                   help="surrogate of the nodes' mean omega: the exact form a(r) P2(mu_cen) + b(r) P2(mu_sat) "
                        "(default) or a Legendre polynomial (--degree)")
    p.add_argument("--degree", type=int, default=None,
                   help="with --surrogate legendre: degree per parameter (default min(5, grid - 2))")
    p.add_argument("--bootstrap", type=int, default=100,
                   help="resamplings of the node realisations for the reference's own scatter (default 100; 0: none)")
    p.add_argument("--fine", type=int, default=201, help="fine-grid points per axis for the posteriors (default 201)")
    p.add_argument("--workers", type=int, default=1, help="mock processes (default 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="numba threads per mock process (default: 1 with several workers, numba's default otherwise)")
    p.add_argument("--seed", type=int, default=0, help="master seed of the mocks and of mcmc (default 0)")
    p.add_argument("--mcmc-max-samples", type=int, default=10**7,
                   help="cap on accepted mcmc steps (default: run to R-1 < 0.01)")
    p.add_argument("--rminus1", type=float, default=0.01, help="mcmc convergence R-1 (default 0.01)")
    p.add_argument("--work", default=None,
                   help="checkpoint folder of the mock nodes (default: validation_work/sample<S>-<catalog>-g<G>-r<R>-s<seed>)")
    p.add_argument("--out", default="docs/results", help="folder of the report (JSON) and figures (default docs/results)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_debug_argument(p)
    return p


def main(argv=None) -> int:
    """Entry point of `iaemu-validate`; returns the exit status (see `training.common.cli.run_command`)."""
    return run_command("iaemu-validate", _main, argv)


def _main(argv: list) -> int:
    args = vars(_parser().parse_args(argv))
    progress = not args.pop("no_progress")
    args.pop("debug")
    report = validate_sample(**args, progress=progress)
    out = Path(args["out"])
    path = out / f"validation_sample{report['sample']}.json"
    path.write_text(json.dumps(report, indent=1, default=float))
    v = report["verdict"]
    print(f"{path}: largest difference {v['value']:.2f} sigma ({'within' if v['met'] else 'NOT within'} the "
          f"{v['target']:g}-sigma target)")
    print(f"render the page: python scripts/render_docs.py --results {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
