"""Benchmark: the fused engine (training.mocks.correlations) against halotools' tpcf + ed_3d + ee_3d.

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

import numpy as np
from harness import clustered_mock, halotools_statistics, timed

from iaemu_theory.conventions import BIN_EDGES


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

    from training.mocks.correlations import PairGeometry, measure_correlations

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
    halotools_statistics(warm_pos, warm_ori, args.lbox, args.threads)  # imports outside the timings

    rows = []
    for size in args.sizes:
        n = int(size)
        mocks = [clustered_mock(n, args.lbox, rng) for _ in range(n_real)]

        refs, t_ht = timed(lambda: [halotools_statistics(p, o, args.lbox, args.threads) for p, o in mocks[:n_ht]])
        ours, t_fused = timed(
            lambda: [measure_correlations(p, o, args.lbox, num_threads=args.threads).as_array() for p, o in mocks])
        worst_full = np.max([differences(a, b) for a, b in zip(ours, refs)], axis=0)

        # orientation-only draws: positions of realisation 0, orientations of every realisation
        pos0 = mocks[0][0]
        draws = [o for _, o in mocks]
        geometry, t_build = timed(lambda: PairGeometry(pos0, args.lbox, num_threads=args.threads))
        drawn, t_draw = timed(lambda: [geometry.measure(o).as_array() for o in draws])
        fused_draws = [measure_correlations(pos0, o, args.lbox, num_threads=args.threads).as_array() for o in draws]
        worst_draw = np.max([differences(a, b) for a, b in zip(drawn, fused_draws)], axis=0)
        worst_draw_ht = differences(drawn[0], refs[0])
        _, t_ht_align = timed(lambda: halotools_alignment_only(pos0, draws[1], args.lbox, args.threads))

        rows.append(dict(n=n, pairs=geometry.n_unordered_pairs, ht=t_ht / n_ht, ht_align=t_ht_align,
                         fused=t_fused / n_real, build=t_build, draw=t_draw / n_real,
                         worst_full=worst_full, worst_draw=worst_draw, worst_draw_ht=worst_draw_ht))
        print(f"done N={n}", flush=True)

    clocks = [(1, "CPU seconds (process time)"), (0, "wall-clock seconds")]
    if args.threads > 1:
        # halotools runs num_threads > 1 in worker processes, whose CPU time process_time() misses
        clocks = clocks[1:]
    for clock, label in clocks:
        print()
        print(f"{label} per realisation")
        header = (f"{'N':>7} {'pairs':>9} {'halotools':>10} {'ht ed+ee':>9} {'fused':>8} {'geometry':>9} {'draw':>8} "
                  f"{'full x':>7} {'draw x':>7} {'(geom+R draw)/R x':>19} {'draw x vs ed+ee':>16}")
        print(header)
        print("-" * len(header))
        for r in rows:
            t = {k: r[k][clock] for k in ("ht", "ht_align", "fused", "build", "draw")}
            amortised = (t["build"] + n_real * t["draw"]) / n_real
            print(f"{r['n']:>7d} {r['pairs']:>9d} {t['ht']:>10.3f} {t['ht_align']:>9.3f} {t['fused']:>8.3f} "
                  f"{t['build']:>9.3f} {t['draw']:>8.4f} {t['ht'] / t['fused']:>7.1f} {t['ht'] / t['draw']:>7.1f} "
                  f"{t['ht'] / amortised:>19.1f} {t['ht_align'] / t['draw']:>16.1f}")
    print()
    print("halotools = tpcf + ed_3d + ee_3d; ht ed+ee = ed_3d + ee_3d only (what an orientation draw needs);")
    print("fused = measure_correlations; geometry = PairGeometry build (once per positions); draw = one .measure;")
    print("pairs = unordered galaxy pairs within the bins (realisation 0)")
    print()
    failed = False
    for r in rows:
        wf, wd, wh = r["worst_full"], r["worst_draw"], r["worst_draw_ht"]
        print(f"N={r['n']}: fused vs halotools max|xi/ht-1|={wf[0]:.1e} max|omega,eta - ht|={wf[1]:.1e}; "
              f"draws vs fused {wd[0]:.1e} / {wd[1]:.1e}; draw 0 vs halotools {wh[0]:.1e} / {wh[1]:.1e}")
        failed |= bool(wf[0] > 1e-4 or wf[1] > 1e-6 or wd[0] > 1e-4 or wd[1] > 1e-6 or wh[1] > 1e-6)
    if failed:
        raise SystemExit("results differ beyond tolerance (1e-4 relative on xi, 1e-6 absolute on omega, eta)")
    print("all results equal to tolerance (1e-4 relative on xi, 1e-6 absolute on omega, eta)")


if __name__ == "__main__":
    main()
