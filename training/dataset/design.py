"""The parameter design: where in the 7-parameter space the training mocks are measured.

IAEmu's "realistic" design (Pandya et al. 2025): x = logMmin spans the domain's range; each other
occupation parameter (logM0, logM1, sigma_logM, alpha) is uniform inside +-n_rmse RMSE of the
authors' linear fit in x (with floors: sigma_logM >= 0.05, alpha >= 0); mu_cen and mu_sat are
uniform on [-1, 1]. The region itself is `iaemu_theory.domain.Domain`.

The points are a space-filling design (scrambled Sobol' or Latin hypercube, scipy.stats.qmc) in
the unit cube of *band coordinates*, mapped to parameters by `Domain.from_unit`: coordinate j of
a point is the fraction of the way across parameter j's band at that point's logMmin. Uniform
coverage of the unit cube is therefore uniform coverage of the band region, conditional on x.

The design is a pure function of (n_points, seed, domain, method): every process and every shard
of a generation run recomputes it and gets the same points, so a point is named by its index.
"""
from __future__ import annotations

import warnings

import numpy as np

from iaemu_theory.conventions import PARAM_NAMES
from iaemu_theory.domain import Domain

DESIGN_METHODS = ("sobol", "lhs")


def unit_design(n_points: int, seed: int, method: str = "sobol") -> np.ndarray:
    """(n_points, 7) points in [0, 1)^7 from a scrambled Sobol' sequence or a Latin hypercube.

    Sobol': the first n_points of the scrambled sequence (a prefix of a Sobol' sequence is
    still low-discrepancy; its balance is best when n_points is a power of 2, which is why
    scipy warns otherwise; the warning is silenced here because any prefix is a valid design).
    LHS: a plain Latin hypercube (each 1-D margin hits every 1/n_points stratum once).
    """
    n_points = int(n_points)
    if n_points < 1:
        raise ValueError(f"n_points={n_points} must be >= 1")
    from scipy.stats import qmc

    d = len(PARAM_NAMES)
    if method == "sobol":
        sampler = _qmc_engine(qmc.Sobol, d, seed, scramble=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*balance properties of Sobol.*")
            return sampler.random(n_points)
    if method == "lhs":
        return _qmc_engine(qmc.LatinHypercube, d, seed).random(n_points)
    raise ValueError(f"unknown design method {method!r}; expected one of {list(DESIGN_METHODS)}")


def _qmc_engine(cls, d: int, seed: int, **kwargs):
    """A scipy.stats.qmc engine driven by a numpy Generator (`rng=` since SciPy 1.15, `seed=` before)."""
    try:
        return cls(d=d, rng=np.random.default_rng(seed), **kwargs)
    except TypeError:
        return cls(d=d, seed=np.random.default_rng(seed), **kwargs)


def realistic_design(n_points: int, seed: int, domain: Domain | None = None, method: str = "sobol") -> np.ndarray:
    """(n_points, 7) parameter points (PARAM_NAMES order) of the realistic design inside `domain`.

    domain: defaults to `Domain()` (logMmin in [11.5, 13.5], +-4 RMSE bands). Pass
    `Domain(logMmin_range=(lo, hi))` to match the range a catalog resolves; the domain is stored
    with the dataset. Deterministic in (n_points, seed, domain, method).
    """
    domain = Domain() if domain is None else domain
    return domain.from_unit(unit_design(n_points, seed, method))


def design_summary(params: np.ndarray) -> str:
    """A few lines: per-parameter min / median / max of a design (for --dry-run)."""
    params = np.atleast_2d(params)
    lines = [f"{params.shape[0]} parameter points"]
    for j, name in enumerate(PARAM_NAMES):
        v = params[:, j]
        lines.append(f"  {name:<11s} min {v.min():8.4f}  median {np.median(v):8.4f}  max {v.max():8.4f}")
    return "\n".join(lines)
