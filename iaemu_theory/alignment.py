"""The halotools-IA alignment model's one number per strength: the mean P2 of the galaxy-axis angle.

halotools' CentralAlignment and RadialSatelliteAlignment draw a galaxy's major axis from a Dimroth-Watson
distribution about a reference axis (the halo's major axis, or the host-centre direction):
p(t) ~ exp(-k t^2) in t = cos(angle), with k = -tan(pi mu / 2) for strength mu in [-1, 1]
(halotools' `alignment_strength`). The draw is axisymmetric about the reference axis, so by the addition
theorem of Legendre polynomials, for any fixed direction u,

    E[P2(galaxy axis . u)] = mean_p2(mu) * P2(reference axis . u),   mean_p2(mu) = E[P2(t)].

omega (ed) is a pair average of (axis . r_hat)^2 - 1/3 = (2/3) P2, so at fixed HOD its expectation over
realisations is exactly a(r) mean_p2(mu_cen) + b(r) mean_p2(mu_sat); eta (ee) is a quadratic form in the
two. mean_p2 runs from -1/2 (mu = -1, axes perpendicular) through 0 (mu = 0, random) to 1 (mu = 1).
"""
from __future__ import annotations

import numpy as np

__all__ = ["dimroth_watson_kappa", "mean_p2"]

#: Below this |kappa| E[t^2] comes from its cumulant series 1/3 + 4 k/45 + 8 k^2/945 - 16 k^3/14175
#: (truncation < 1e-12), where the closed forms lose digits to cancellation.
_SERIES_KAPPA = 1e-2


def dimroth_watson_kappa(mu) -> np.ndarray:
    """kappa = -k = tan(pi mu / 2): the galaxy-axis density is ~ exp(kappa t^2). Refuses |mu| > 1."""
    mu = np.asarray(mu, dtype=np.float64)
    bad = ~np.isfinite(mu) | (np.abs(mu) > 1.0)
    if np.any(bad):
        raise ValueError(f"alignment strength mu={mu[bad].ravel()[:5].tolist()} outside [-1, 1]")
    return np.tan(0.5 * np.pi * mu)


def mean_p2(mu) -> np.ndarray:
    """E[P2(cos angle)] between a galaxy's major axis and its reference axis for strength mu (array-like).

    Closed forms of E[t^2] under exp(kappa t^2) on [-1, 1]: (sqrt(kappa) / F(sqrt(kappa)) - 1) / (2 kappa)
    for kappa > 0 (F: Dawson's integral), (1 - 2 sqrt(a) e^-a / (sqrt(pi) erf(sqrt(a)))) / (2 a) for
    kappa = -a < 0, and a series near 0.
    """
    from scipy.special import dawsn, erf

    kappa = dimroth_watson_kappa(mu)
    t2 = np.empty_like(kappa)
    small = np.abs(kappa) < _SERIES_KAPPA
    pos, neg = (kappa > 0) & ~small, (kappa < 0) & ~small
    k = kappa[small]
    t2[small] = 1.0 / 3.0 + k * (4.0 / 45.0 + k * (8.0 / 945.0 - k * 16.0 / 14175.0))
    s = np.sqrt(kappa[pos])
    t2[pos] = (s / dawsn(s) - 1.0) / (2.0 * kappa[pos])
    a = -kappa[neg]
    s = np.sqrt(a)
    with np.errstate(under="ignore"):
        t2[neg] = (1.0 - 2.0 * s * np.exp(-a) / (np.sqrt(np.pi) * erf(s))) / (2.0 * a)
    return 1.5 * t2 - 0.5


#: Knots of the torch table of mean_p2 (uniform in mu on [-1, 1]); cubic Hermite error < 1e-12.
_TABLE_KNOTS = 4097
_TABLES: dict = {}


def _mean_p2_slope(mu: np.ndarray) -> np.ndarray:
    """d mean_p2 / d mu: fourth-order central differences (step 1e-4) inside, and the limits at the ends,
    3 pi / 8 at mu = -1 (girdle, E[t^2] ~ 1 / (2 |kappa|)) and 3 pi / 4 at mu = 1 (E[t^2] ~ 1 - 1 / kappa)."""
    step = 1e-4
    inner = np.abs(mu) <= 1.0 - 2.0 * step
    slope = np.where(mu > 0, 0.75 * np.pi, 0.375 * np.pi)
    m = mu[inner]
    slope[inner] = (8.0 * (mean_p2(m + step) - mean_p2(m - step))
                    - (mean_p2(m + 2 * step) - mean_p2(m - 2 * step))) / (12.0 * step)
    return slope


def mean_p2_torch(mu):
    """Differentiable torch version of `mean_p2` (C1 cubic Hermite on a fine table, same dtype and device
    as `mu`). mu is clamped to [-1, 1]: outside it the alignment model is undefined (check the domain)."""
    import torch

    key = (mu.dtype, mu.device)
    h = 2.0 / (_TABLE_KNOTS - 1)
    if key not in _TABLES:
        # per interval, the cubic Hermite polynomial in t = (mu - knot) / h: c0 + c1 t + c2 t^2 + c3 t^3
        knots = np.linspace(-1.0, 1.0, _TABLE_KNOTS)
        v, m = mean_p2(knots), h * _mean_p2_slope(knots)
        coef = np.stack([v[:-1], m[:-1], 3 * (v[1:] - v[:-1]) - 2 * m[:-1] - m[1:],
                         2 * (v[:-1] - v[1:]) + m[:-1] + m[1:]], axis=-1)
        _TABLES[key] = torch.as_tensor(coef, dtype=mu.dtype, device=mu.device)
    coef = _TABLES[key]
    u = (mu.clamp(-1.0, 1.0) + 1.0) / h
    i = torch.floor(u).clamp(0, _TABLE_KNOTS - 2).long()
    t = u - i
    c = coef[i]
    return ((c[..., 3] * t + c[..., 2]) * t + c[..., 1]) * t + c[..., 0]
