"""What the benchmarks share: call timing, one-thread setup, halotools' own statistics as the reference and the
clustered, aligned mock catalogues the engine benchmarks time. The scripts beside this module import it by name
(`python benchmarks/NAME.py` puts this folder first on the module path)."""
from __future__ import annotations

import time

import numpy as np

from iaemu_theory.conventions import BIN_EDGES


def call_times(fn, calls: int, warmup: int = 0) -> np.ndarray:
    """Wall seconds of `calls` calls of fn() after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    out = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out


def median_seconds(fn, calls: int, warmup: int = 0) -> float:
    """The median of `call_times`."""
    return float(np.median(call_times(fn, calls, warmup)))


def timed(fn):
    """(fn(), (wall seconds, CPU seconds of this process)) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, np.array([time.perf_counter() - w0, time.process_time() - c0])


def single_thread() -> None:
    """Limit torch and numba to one thread (the one-core comparisons)."""
    import torch

    torch.set_num_threads(1)
    try:
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):
        pass


def halotools_statistics(pos, ori, lbox: float, num_threads: int = 1) -> np.ndarray:
    """xi, omega, eta (3, bins) from halotools' own tpcf, ed_3d and ee_3d on the project's bins."""
    from halotools.mock_observables import ed_3d, ee_3d, tpcf

    xi = tpcf(pos, BIN_EDGES, period=lbox, num_threads=num_threads)
    omega = ed_3d(pos, ori, pos, BIN_EDGES, period=lbox, num_threads=num_threads)
    eta = ee_3d(pos, ori, pos, ori, BIN_EDGES, period=lbox, num_threads=num_threads)
    return np.stack([xi, omega, eta])


def clustered_mock(n_galaxies: int, lbox: float, rng: np.random.Generator, sat_fraction: float = 0.7,
                   scatter: float = 0.4):
    """Galaxies in halos: centrals at uniform random centres, satellites Gaussian around them.

    Centrals point along their halo's (random) major axis, satellites radially towards their
    central, both with Gaussian scatter `scatter` on the direction, so omega and eta are positive.
    Returns positions (N, 3) in [0, lbox) and orientations (N, 3), unnormalised.
    """
    n_cen = max(1, int(round(n_galaxies * (1.0 - sat_fraction))))
    n_sat = n_galaxies - n_cen
    centres = rng.uniform(0.0, lbox, (n_cen, 3))
    halo_axis = rng.normal(size=(n_cen, 3))
    halo_axis /= np.linalg.norm(halo_axis, axis=1, keepdims=True)
    host = rng.integers(0, n_cen, n_sat)
    offsets = rng.normal(scale=0.5, size=(n_sat, 3))
    sat_pos = np.mod(centres[host] + offsets, lbox)
    radial = offsets / np.linalg.norm(offsets, axis=1, keepdims=True)
    positions = np.concatenate([centres, sat_pos])
    orientations = np.concatenate([halo_axis, radial]) + rng.normal(scale=scatter, size=(n_galaxies, 3))
    return np.mod(positions, lbox), orientations
