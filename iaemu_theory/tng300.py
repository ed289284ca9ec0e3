"""Real TNG300-1 intrinsic-alignment measurements and the Bolshoi-Planck reference mocks.

Package data written by scripts/make_reference_data.py (provenance in iaemu_theory/data/README.md).
"""
from __future__ import annotations

from importlib import resources

import numpy as np

from .conventions import STATISTICS

#: TNG300-1 box side, Mpc/h.
TNG300_LBOX = 205.0
#: Bin edges of the TNG300 and reference files (14 bins; centres are arithmetic means).
TNG300_BIN_EDGES = np.logspace(-1, 1.5, 15)
#: Bin edges of the 19-bin sample-3 omega measurements.
TNG300_BIN_EDGES_19 = np.logspace(-1, 1.4, 20)
#: Jackknife subvolumes behind the TNG300 errors and the 14-bin sample-3 covariance.
TNG300_N_JACKKNIFE = 27
#: Stellar-mass thresholds log10(M*/(Msun/h)) of the three samples.
TNG300_MSTAR_THRESHOLDS = {1: 10.5, 2: 10.0, 3: 9.5}

#: Best-fit Zheng07 HOD of each TNG300 sample (Van Alfen et al. 2024).
TNG300_HOD: dict[int, dict[str, float]] = {
    1: dict(logMmin=12.54, sigma_logM=0.26, logM0=12.68, logM1=13.48, alpha=1.0),
    2: dict(logMmin=11.93, sigma_logM=0.26, logM0=12.05, logM1=12.85, alpha=1.0),
    3: dict(logMmin=11.61, sigma_logM=0.26, logM0=11.80, logM1=12.60, alpha=1.0),
}

#: The 7 parameters of the Bolshoi-Planck reference mocks (TNG300 sample 2's best fit).
BOLPLANCK_REFERENCE_PARAMS: dict[str, float] = dict(mu_cen=0.64, mu_sat=0.084, **TNG300_HOD[2])


def _data_path(name: str):
    return resources.files("iaemu_theory") / "data" / name


def _load_table(name: str, statistic: str, edges: np.ndarray) -> dict[str, np.ndarray]:
    if statistic not in STATISTICS:
        raise ValueError(f"statistic {statistic!r} is not one of {list(STATISTICS)}")
    with _data_path(name).open("r") as fh:
        table = np.loadtxt(fh)
    j = 1 + 2 * STATISTICS.index(statistic)
    return {"r": table[:, 0], "value": table[:, j], "err": table[:, j + 1], "bin_edges": edges.copy()}


def _check_sample(sample: int) -> int:
    if sample not in TNG300_HOD:
        raise ValueError(f"TNG300 sample {sample!r} does not exist; expected one of {sorted(TNG300_HOD)}")
    return int(sample)


def load_tng300(sample: int, statistic: str) -> dict[str, np.ndarray]:
    """r, value, err (jackknife, diagonal) and bin_edges of one TNG300 statistic ("xi", "omega", "eta")."""
    sample = _check_sample(sample)
    return _load_table(f"tng300_sample{sample}.txt", statistic, TNG300_BIN_EDGES)


def load_tng300_omega_cov(sample: int = 3) -> np.ndarray:
    """Full 14x14 jackknife covariance of omega (27 subvolumes); only sample 3 has one."""
    sample = _check_sample(sample)
    if sample != 3:
        raise ValueError(f"only TNG300 sample 3 has a full omega covariance; samples 1 and 2 have diagonal errors "
                         f"(use load_tng300({sample}, 'omega')['err'])")
    with _data_path("tng300_sample3_omega_cov.txt").open("r") as fh:
        return np.loadtxt(fh)


def load_tng300_omega19(n_jackknife: int = 125) -> dict[str, np.ndarray]:
    """Sample 3 omega in 19 bins with the full covariance from 27 or 125 jackknife subvolumes."""
    if n_jackknife not in (27, 125):
        raise ValueError(f"n_jackknife={n_jackknife!r}: expected 27 or 125")
    with _data_path(f"tng300_sample3_omega19_jk{n_jackknife}.txt").open("r") as fh:
        table = np.loadtxt(fh)
    return {"r": table[:, 0], "value": table[:, 1], "cov": table[:, 2:], "bin_edges": TNG300_BIN_EDGES_19.copy(),
            "n_jackknife": n_jackknife}


def load_bolplanck_reference(statistic: str) -> dict[str, np.ndarray]:
    """Mean and std over 10 halotools-IA mocks on Bolshoi-Planck at BOLPLANCK_REFERENCE_PARAMS."""
    return _load_table("bolplanck_sample2_reference.txt", statistic, TNG300_BIN_EDGES)
