"""Benchmark: the cost of one generated point, fast populate against halotools-IA, on one core.

Per parameter point (the three TNG300 best fits and the shipped design points nearest the dataset's median
and 90th-percentile galaxy counts), on the default catalog, `--realisations` (10) realisations:
  - populate alone: the fast populate (training.mocks.fastpop) against halotools' (IAMockModel.populate);
  - a whole point: fast populate + fused engine (FastIAMockModel.measure), halotools populate + fused engine
    (IAMockModel.measure, the generator's path before the fast populate), and halotools-IA itself
    (halotools populate + tpcf, ed_3d, ee_3d);
and the statistics alone on clustered mocks of 2e4, 5e4, 1e5 galaxies in a 128 Mpc/h box: the fused engine,
Corrfunc's DD (xi only; when Corrfunc is installed) and halotools' tpcf + ed_3d + ee_3d.

Everything runs on one thread (NUMBA_NUM_THREADS, OMP_NUM_THREADS = 1, set before the imports). Times are
medians of `--repeats` runs (halotools-IA's statistics: one run). Run from the repository root:

    nice python benchmarks/bench_generate.py --out docs/results/generation_benchmark.json
    python scripts/render_docs.py          # the page docs/results/generation_benchmark.md
"""
from __future__ import annotations

import os

for _name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from harness import clustered_mock, halotools_statistics, median_seconds  # noqa: E402

from iaemu_theory.conventions import BIN_EDGES, array_to_params  # noqa: E402

TNG300_MU = {1: (0.762, 0.299), 2: (0.749, 0.060), 3: (0.672, 0.006)}
#: The halotools-IA-populated dataset on the default catalog (retired: restore it with the command in
#: training/data/README.md).
DATASET = "training/data/dataset_v4.h5"
STAT_BOX = 128.0


def points() -> dict[str, dict[str, float]]:
    """The three TNG300 fits and the done dataset points nearest its median and 90th-percentile counts."""
    from iaemu_theory.tng300 import TNG300_HOD
    from training.dataset.schema import STATUS_DONE, read_dataset

    out = {f"TNG300 sample {s}": dict(mu_cen=TNG300_MU[s][0], mu_sat=TNG300_MU[s][1], **TNG300_HOD[s])
           for s in (1, 2, 3)}
    ds = read_dataset(DATASET)
    done = np.flatnonzero(ds.status == STATUS_DONE)
    counts = ds.n_galaxies[done].mean(axis=1)
    for label, q in (("dataset median", 50), ("dataset 90th pct", 90)):
        i = int(done[np.argmin(np.abs(counts - np.percentile(counts, q)))])
        out[f"{label} (point {i})"] = array_to_params(ds.params[i])
    return out


def corrfunc_dd():
    """Corrfunc's theory DD (xi's pair counts), or None when Corrfunc is not installed."""
    try:
        from Corrfunc.theory.DD import DD
    except ImportError:
        return None

    def run(pos, lbox):
        return DD(1, 1, np.asarray(BIN_EDGES), pos[:, 0], pos[:, 1], pos[:, 2], periodic=True, boxsize=lbox,
                  verbose=False)

    return run


def time_points(catalog, realisations: int, repeats: int) -> list[dict]:
    from training.mocks.fastpop import FastIAMockModel
    from training.mocks.model import IAMockModel, galaxy_arrays, realisation_seed

    fast, ref = FastIAMockModel(catalog), IAMockModel(catalog)
    first = next(iter(points().values()))
    fast.measure(first, 0, n_realisations=1)  # compile the engine outside the timings
    halotools_statistics(*galaxy_arrays(ref.populate(first, 1)), ref.Lbox)
    rows = []
    for name, params in points().items():
        seeds = [realisation_seed(1, r) for r in range(realisations)]
        n_gal = float(np.mean([len(fast.populate(params, s)) for s in seeds]))
        pop_fast = median_seconds(lambda: [fast.populator.populate(params, s) for s in seeds], repeats) / realisations
        pop_ht = median_seconds(lambda: [ref.populate(params, s) for s in seeds], repeats) / realisations
        point_fast = median_seconds(lambda: fast.measure(params, 1, n_realisations=realisations), repeats)
        point_today = median_seconds(lambda: ref.measure(params, 1, n_realisations=realisations), repeats)
        t0 = time.perf_counter()
        for s in seeds:
            pos, ori = galaxy_arrays(ref.populate(params, s))
            halotools_statistics(pos, ori, ref.Lbox)
        point_ht = time.perf_counter() - t0
        rows.append(dict(point=name, galaxies=n_gal, populate_fast=pop_fast, populate_halotools=pop_ht,
                         point_fast=point_fast, point_today=point_today, point_halotools_ia=point_ht))
        print(f"done {name}", file=sys.stderr, flush=True)
    return rows


def time_statistics(sizes, repeats: int, halotools: bool) -> list[dict]:
    from training.mocks.correlations import measure_correlations

    dd = corrfunc_dd()
    rng = np.random.default_rng(0)
    pos, ori = clustered_mock(1000, STAT_BOX, rng)
    measure_correlations(pos, ori, STAT_BOX)
    if dd is not None:
        dd(pos, STAT_BOX)
    rows = []
    for n in sizes:
        pos, ori = clustered_mock(int(n), STAT_BOX, rng)
        row = dict(galaxies=int(n), fused=median_seconds(lambda: measure_correlations(pos, ori, STAT_BOX), repeats))
        if dd is not None:
            row["corrfunc_dd"] = median_seconds(lambda: dd(pos, STAT_BOX), repeats)
            fused_dd = measure_correlations(pos, ori, STAT_BOX).n_pairs
            row["corrfunc_same_pairs"] = bool(np.array_equal(np.asarray(dd(pos, STAT_BOX)["npairs"]), fused_dd))
        if halotools:
            t0 = time.perf_counter()
            halotools_statistics(pos, ori, STAT_BOX)
            row["halotools"] = time.perf_counter() - t0
        rows.append(row)
        print(f"done statistics N={int(n)}", file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--catalog", default="default")
    p.add_argument("--realisations", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", type=float, nargs="*", default=[2e4, 5e4, 1e5])
    p.add_argument("--no-halotools-statistics", action="store_true",
                   help="skip halotools' tpcf/ed_3d/ee_3d in the statistics table (about 15 s at 1e5 galaxies)")
    p.add_argument("--out", default=None, help="write the numbers to this JSON file (render the page with "
                   "python scripts/render_docs.py)")
    args = p.parse_args(argv)
    from training.catalogs.sources import load_catalog

    command = "nice python benchmarks/bench_generate.py" + (" " + " ".join(argv) if argv else "")
    try:
        import Corrfunc
        corrfunc = f"Corrfunc {Corrfunc.__version__}"
    except ImportError:
        corrfunc = "Corrfunc not installed"
    res = dict(command=command, machine=f"{platform.machine()}, {os.cpu_count()} logical CPUs",
               date=time.strftime("%Y-%m-%d %H:%M"), corrfunc=corrfunc, realisations=args.realisations,
               stat_box=STAT_BOX)
    res["points"] = time_points(load_catalog(args.catalog), args.realisations, args.repeats)
    res["statistics"] = time_statistics(args.sizes, args.repeats, not args.no_halotools_statistics)
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        print(f"render the page: python scripts/render_docs.py --results {Path(args.out).parent}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
