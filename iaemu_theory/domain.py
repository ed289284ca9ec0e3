"""The training domain: where the emulator's predictions are trusted.

IAEmu's "realistic" design (Pandya et al. 2025) draws logMmin over a range and every other
occupation parameter inside a band of +-n_rmse RMSE around a linear fit in logMmin; mu_cen and
mu_sat are uniform on [-1, 1]. The domain is that region. It is stored with the dataset and
with the emulator artifact (as a plain dict, see `Domain.to_dict`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .conventions import ALIGNMENT_PARAMS, PARAM_NAMES

#: The authors' linear fits in x = logMmin: name -> (slope, intercept, rmse).
REALISTIC_BANDS: dict[str, tuple[float, float, float]] = {
    "logM0": (1.12840622, -1.89515523, 0.41188),
    "logM1": (0.72541259, 4.43594518, 0.17060),
    "sigma_logM": (0.17341474, -1.7840547, 0.065612),
    "alpha": (-0.0016207, 1.0332986, 0.100653),
}
#: Lower floors applied to band edges (sigma_logM must stay positive).
REALISTIC_FLOORS: dict[str, float] = {"sigma_logM": 0.05, "alpha": 0.0}


@dataclass(frozen=True)
class Domain:
    """logMmin range, band fits for the other HOD parameters, alignment ranges."""

    logMmin_range: tuple[float, float] = (11.5, 13.5)
    n_rmse: float = 4.0
    bands: Mapping[str, tuple[float, float, float]] = field(default_factory=lambda: dict(REALISTIC_BANDS))
    floors: Mapping[str, float] = field(default_factory=lambda: dict(REALISTIC_FLOORS))
    mu_range: tuple[float, float] = (-1.0, 1.0)

    def band_limits(self, name: str, logMmin):
        """Lower and upper edge of parameter `name`'s band at the given logMmin (array-friendly)."""
        slope, intercept, rmse = self.bands[name]
        centre = slope * np.asarray(logMmin, dtype=float) + intercept
        lo = centre - self.n_rmse * rmse
        hi = centre + self.n_rmse * rmse
        if name in self.floors:
            lo = np.maximum(lo, self.floors[name])
        return lo, hi

    def box(self) -> dict[str, tuple[float, float]]:
        """The bounding box of the domain, per parameter."""
        out = {"mu_cen": tuple(self.mu_range), "mu_sat": tuple(self.mu_range), "logMmin": tuple(self.logMmin_range)}
        x = np.asarray(self.logMmin_range, dtype=float)
        for name in self.bands:
            lo, hi = self.band_limits(name, x)
            out[name] = (float(np.min(lo)), float(np.max(hi)))
        return {n: out[n] for n in PARAM_NAMES}

    def contains(self, params, tol: float = 1e-9) -> np.ndarray:
        """Boolean per row: is each point (array (n, 7) in PARAM_NAMES order, or a mapping) inside?"""
        p = _as_array(params)
        x = p[:, PARAM_NAMES.index("logMmin")]
        ok = (x >= self.logMmin_range[0] - tol) & (x <= self.logMmin_range[1] + tol)
        for name in ALIGNMENT_PARAMS:
            v = p[:, PARAM_NAMES.index(name)]
            ok &= (v >= self.mu_range[0] - tol) & (v <= self.mu_range[1] + tol)
        for name in self.bands:
            lo, hi = self.band_limits(name, x)
            v = p[:, PARAM_NAMES.index(name)]
            ok &= (v >= lo - tol) & (v <= hi + tol)
        ok &= np.all(np.isfinite(p), axis=1)
        return ok

    def explain(self, params) -> list[str]:
        """Human-readable reasons why a single point lies outside (empty list if inside)."""
        p = _as_array(params)[0]
        x = p[PARAM_NAMES.index("logMmin")]
        reasons = []
        lo, hi = self.logMmin_range
        if not lo <= x <= hi:
            reasons.append(f"logMmin={x:g} outside [{lo:g}, {hi:g}]")
        for name in ALIGNMENT_PARAMS:
            v = p[PARAM_NAMES.index(name)]
            if not self.mu_range[0] <= v <= self.mu_range[1]:
                reasons.append(f"{name}={v:g} outside [{self.mu_range[0]:g}, {self.mu_range[1]:g}]")
        for name in self.bands:
            blo, bhi = self.band_limits(name, x)
            v = p[PARAM_NAMES.index(name)]
            if not blo - 1e-9 <= v <= bhi + 1e-9:
                reasons.append(f"{name}={v:g} outside its band [{float(blo):.4g}, {float(bhi):.4g}] at logMmin={x:g}")
        return reasons

    def from_unit(self, u) -> np.ndarray:
        """Map points of the unit cube [0, 1]^7 (PARAM_NAMES order) to the domain's band coordinates."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        out = np.empty_like(u)
        x = self.logMmin_range[0] + u[:, PARAM_NAMES.index("logMmin")] * (self.logMmin_range[1] - self.logMmin_range[0])
        out[:, PARAM_NAMES.index("logMmin")] = x
        for name in ALIGNMENT_PARAMS:
            j = PARAM_NAMES.index(name)
            out[:, j] = self.mu_range[0] + u[:, j] * (self.mu_range[1] - self.mu_range[0])
        for name in self.bands:
            j = PARAM_NAMES.index(name)
            lo, hi = self.band_limits(name, x)
            out[:, j] = lo + u[:, j] * (hi - lo)
        return out

    def to_dict(self) -> dict:
        return {
            "logMmin_range": [float(v) for v in self.logMmin_range],
            "n_rmse": float(self.n_rmse),
            "bands": {k: [float(v) for v in val] for k, val in self.bands.items()},
            "floors": {k: float(v) for k, v in self.floors.items()},
            "mu_range": [float(v) for v in self.mu_range],
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "Domain":
        return cls(
            logMmin_range=tuple(d["logMmin_range"]),
            n_rmse=float(d["n_rmse"]),
            bands={k: tuple(v) for k, v in d["bands"].items()},
            floors=dict(d.get("floors", {})),
            mu_range=tuple(d.get("mu_range", (-1.0, 1.0))),
        )


def _as_array(params) -> np.ndarray:
    if isinstance(params, Mapping):
        return np.array([[float(params[n]) for n in PARAM_NAMES]])
    p = np.atleast_2d(np.asarray(params, dtype=float))
    if p.shape[-1] != len(PARAM_NAMES):
        raise ValueError(f"expected parameter arrays of shape (n, {len(PARAM_NAMES)}) in order {list(PARAM_NAMES)}, got {p.shape}")
    return p
