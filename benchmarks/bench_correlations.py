"""Benchmark: the fused engine (training.correlations) against halotools' tpcf + ed_3d + ee_3d.

For each catalogue size, builds clustered, aligned mock catalogues in a periodic box and times
  - halotools' three calls per realisation (new positions and orientations each time),
  - measure_correlations on the same realisations (full realisations),
  - PairGeometry built once on the first realisation's positions, then one .measure per new
    orientation draw (orientation-only draws),
checks every result against halotools / the fused engine, and prints seconds per realisation and
the speed-up ratios.  Run single-threaded for the ratio that matters:

    NUMBA_NUM_THREADS=1 python benchmarks/bench_correlations.py --sizes 20000 50000 100000
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from iaemu_theory.conventions import BIN_EDGES


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


def halotools_three(pos, ori, lbox, num_threads=1):
    from halotools.mock_observables import ed_3d, ee_3d, tpcf

    xi = tpcf(pos, BIN_EDGES, period=lbox, num_threads=num_threads)
    omega = ed_3d(pos, ori, pos, BIN_EDGES, period=lbox, num_threads=num_threads)
    eta = ee_3d(pos, ori, pos, ori, BIN_EDGES, period=lbox, num_threads=num_threads)
    return np.stack([xi, omega, eta])


def halotools_alignment_only(pos, ori, lbox, num_threads=1):
    from halotools.mock_observables import ed_3d, ee_3d

    omega = ed_3d(pos, ori, pos, BIN_EDGES, period=lbox, num_threads=num_threads)
    eta = ee_3d(pos, ori, pos, ori, BIN_EDGES, period=lbox, num_threads=num_threads)
    return omega, eta


def differences(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max |xi/ref - 1|, max |omega, eta - ref|) over bins where both are finite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(ours[0] / ref[0] - 1.0)
    absd = np.abs(ours[1:] - ref[1:])
    return float(np.nanmax(rel, initial=0.0)), float(np.nanmax(absd, initial=0.0))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[2e4, 5e4, 1e5])
    parser.add_argument("--lbox", type=float, default=250.0)
    parser.add_argument("--realisations", type=int, default=10)
    parser.add_argument("--halotools-repeats", type=int, default=None,
                        help="time halotools on only the first R realisations (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="threads for both codes (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from training.correlations import PairGeometry, measure_correlations

    import numba

    rng = np.random.default_rng(args.seed)
    n_real = args.realisations
    n_ht = n_real if args.halotools_repeats is None else min(args.halotools_repeats, n_real)
    print(f"box {args.lbox} Mpc/h, {n_real} realisations per size, threads={args.threads} "
          f"(numba threads available: {numba.config.NUMBA_NUM_THREADS}, cpu count {os.cpu_count()}); "
          f"halotools timed on {n_ht} of {n_real} realisations")
    # compile (or load the numba cache) outside the timings
    warm_pos, warm_ori = clustered_mock(500, args.lbox, rng)
    measure_correlations(warm_pos, warm_ori, args.lbox, num_threads=args.threads)
    PairGeometry(warm_pos, args.lbox, num_threads=args.threads).measure(warm_ori)
    halotools_three(warm_pos, warm_ori, args.lbox, args.threads)  # imports outside the timings

    rows = []
    for size in args.sizes:
        n = int(size)
        mocks = [clustered_mock(n, args.lbox, rng) for _ in range(n_real)]

        t0 = time.perf_counter()
        refs = [halotools_three(p, o, args.lbox, args.threads) for p, o in mocks[:n_ht]]
        t_ht = (time.perf_counter() - t0) / n_ht

        t0 = time.perf_counter()
        ours = [measure_correlations(p, o, args.lbox, num_threads=args.threads).as_array() for p, o in mocks]
        t_fused = (time.perf_counter() - t0) / n_real
        worst_full = np.max([differences(a, b) for a, b in zip(ours, refs)], axis=0)

        # orientation-only draws: fixed positions of realisation 0, orientations of each realisation
        pos0 = mocks[0][0]
        draws = [mocks[0][1]] + [clustered_mock(n, args.lbox, np.random.default_rng([args.seed, n, r]))[1]
                                 for r in range(1, n_real)]
        t0 = time.perf_counter()
        geometry = PairGeometry(pos0, args.lbox, num_threads=args.threads)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        drawn = [geometry.measure(o).as_array() for o in draws]
        t_draw = (time.perf_counter() - t0) / n_real
        fused_draws = [measure_correlations(pos0, o, args.lbox, num_threads=args.threads).as_array() for o in draws]
        worst_draw = np.max([differences(a, b) for a, b in zip(drawn, fused_draws)], axis=0)
        worst_draw_ht = differences(drawn[0], refs[0])

        t0 = time.perf_counter()
        halotools_alignment_only(pos0, draws[1], args.lbox, args.threads)
        t_ht_align = time.perf_counter() - t0

        rows.append((n, geometry.n_unordered_pairs, t_ht, t_ht_align, t_fused, t_build, t_draw,
                     worst_full, worst_draw, worst_draw_ht))

    print()
    header = (f"{'N':>7} {'pairs':>10} {'halotools':>10} {'ht ed+ee':>9} {'fused':>8} {'geom':>8} {'draw':>8} "
              f"{'full x':>7} {'draw x':>7} {'draw+geom x':>11} {'draw x(ed+ee)':>13}")
    print(header)
    print("-" * len(header))
    for n, pairs, t_ht, t_al, t_f, t_b, t_d, *_ in rows:
        amortised = (t_b + n_real * t_d) / n_real
        print(f"{n:>7d} {pairs:>10d} {t_ht:>10.3f} {t_al:>9.3f} {t_f:>8.3f} {t_b:>8.3f} {t_d:>8.4f} "
              f"{t_ht / t_f:>7.1f} {t_ht / t_d:>7.1f} {t_ht / amortised:>11.1f} {t_al / t_d:>13.1f}")
    print()
    print("seconds per realisation; 'geom' = PairGeometry build (once per positions); 'draw' = one .measure;")
    print("'draw+geom x' = halotools / ((geom + R * draw) / R); 'draw x(ed+ee)' = halotools ed_3d+ee_3d only / draw")
    print()
    for n, *_, worst_full, worst_draw, worst_draw_ht in rows:
        print(f"N={n}: full vs halotools max|xi/ht-1|={worst_full[0]:.2e} max|omega,eta - ht|={worst_full[1]:.2e}; "
              f"draws vs fused {worst_draw[0]:.2e} / {worst_draw[1]:.2e}; draw 0 vs halotools "
              f"{worst_draw_ht[0]:.2e} / {worst_draw_ht[1]:.2e}")
        if worst_full[0] > 1e-4 or worst_full[1] > 1e-6 or worst_draw[1] > 1e-6 or worst_draw_ht[1] > 1e-6:
            raise SystemExit(f"results differ beyond tolerance at N={n}")


if __name__ == "__main__":
    main()
