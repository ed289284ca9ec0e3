"""The fast populate against halotools-IA on the real default catalog, at benchmark size.

Part 1: at the three TNG300 best fits (TNG300_HOD with (mu_cen, mu_sat) = (0.762, 0.299), (0.749, 0.060),
(0.672, 0.006)) and at the shipped design points nearest the dataset's median and 90th-percentile galaxy
counts, `--realisations` (default 100) realisations of each populate (FastIAMockModel and IAMockModel, the
fused engine measuring both): per bin of xi, omega, eta a Welch t-test of the two means, Bonferroni over bins.
Part 2: `--shipped-points` (default 200) done points of training/data/dataset_v4.h5 measured again with the
fast populate (same point seeds and 10 realisations): per point the Welch tests against the shipped
realisations, Bonferroni over its bins; across points the share of small p-values against the uniform law.

    nice python scripts/fastpop_check.py --out docs/results/fastpop_check.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np
from scipy import stats

from iaemu_theory.conventions import STATISTICS, array_to_params
from iaemu_theory.tng300 import TNG300_HOD

TNG300_MU = {1: (0.762, 0.299), 2: (0.749, 0.060), 3: (0.672, 0.006)}
#: The halotools-IA-populated dataset on the default catalog (retired: restore it with the command in
#: training/data/README.md).
DATASET = "training/data/dataset_v4.h5"


def tng300_points() -> dict[str, dict[str, float]]:
    return {f"tng300_sample{s}": dict(mu_cen=TNG300_MU[s][0], mu_sat=TNG300_MU[s][1], **TNG300_HOD[s])
            for s in (1, 2, 3)}


def dataset_count_points(ds) -> dict[str, dict]:
    """The done design points whose mean galaxy count is nearest the dataset's median and 90th percentile."""
    from training.dataset.schema import STATUS_DONE

    done = np.flatnonzero(ds.status == STATUS_DONE)
    counts = ds.n_galaxies[done].mean(axis=1)
    out = {}
    for name, q in (("dataset_median", 50), ("dataset_p90", 90)):
        target = np.percentile(counts, q)
        i = int(done[np.argmin(np.abs(counts - target))])
        out[name] = dict(index=i, target_count=float(target), params=array_to_params(ds.params[i]))
    return out


def welch_pvalues(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-bin Welch t-test p-values of two (R, 3, N_BINS) stacks (NaN where a bin is not finite everywhere)."""
    ok = np.all(np.isfinite(a), axis=0) & np.all(np.isfinite(b), axis=0)
    ok &= (np.std(a, axis=0) > 0) | (np.std(b, axis=0) > 0)
    p = np.full(a.shape[1:], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p[ok] = stats.ttest_ind(a[:, ok], b[:, ok], axis=0, equal_var=False).pvalue
    return p


def bonferroni(p: np.ndarray) -> float:
    q = p[np.isfinite(p)]
    return float(min(1.0, q.size * q.min())) if q.size else float("nan")


def summarise(fast, ref, seconds) -> dict:
    p = welch_pvalues(fast.stats, ref.stats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        err = np.sqrt(fast.std() ** 2 / len(fast.stats) + ref.std() ** 2 / len(ref.stats))
        z = (fast.mean() - ref.mean()) / err
    return dict(
        n_realisations=[len(fast.stats), len(ref.stats)],
        mean_galaxies=dict(fast=float(np.mean(fast.n_galaxies)), halotools=float(np.mean(ref.n_galaxies))),
        galaxies_z=float((np.mean(fast.n_galaxies) - np.mean(ref.n_galaxies))
                         / np.sqrt(np.var(fast.n_galaxies, ddof=1) / len(fast.n_galaxies)
                                   + np.var(ref.n_galaxies, ddof=1) / len(ref.n_galaxies))),
        bonferroni_p=bonferroni(p), n_tests=int(np.isfinite(p).sum()),
        max_abs_z={s: float(np.nanmax(np.abs(z[i]))) for i, s in enumerate(STATISTICS)},
        min_p={s: float(np.nanmin(p[i])) for i, s in enumerate(STATISTICS)},
        seconds=seconds)


def part_points(fast_model, ref_model, points: dict, realisations: int) -> dict:
    out = {}
    for k, (name, params) in enumerate(points.items()):
        t0 = time.perf_counter()
        fast = fast_model.measure(params, 10_000 + k, n_realisations=realisations)
        t1 = time.perf_counter()
        ref = ref_model.measure(params, 20_000 + k, n_realisations=realisations)
        t2 = time.perf_counter()
        out[name] = dict(params=params, **summarise(fast, ref, dict(fast=t1 - t0, halotools=t2 - t1)))
        row = out[name]
        print(f"{name}: {row['mean_galaxies']['fast']:.0f} galaxies, Bonferroni p = {row['bonferroni_p']:.3g}"
              f" over {out[name]['n_tests']} bins, |z| max {max(out[name]['max_abs_z'].values()):.2f}"
              f" (fast {t1 - t0:.1f} s, halotools {t2 - t1:.1f} s)", flush=True)
    return out


def part_shipped(fast_model, ds, n_points: int, seed: int = 0) -> dict:
    from training.dataset.generate import point_seed
    from training.dataset.schema import STATUS_DONE

    config = json.loads(ds.attrs["generation_config"])
    done = np.flatnonzero(ds.status == STATUS_DONE)
    pick = np.sort(np.random.default_rng(seed).choice(done, size=min(n_points, done.size), replace=False))
    per_point, t0 = [], time.perf_counter()
    for i in pick:
        res = fast_model.measure(array_to_params(ds.params[i]), point_seed(config["master_seed"], int(i)),
                                 n_realisations=ds.stats.shape[1])
        p = welch_pvalues(res.stats, ds.stats[i])
        per_point.append(dict(index=int(i), bonferroni_p=bonferroni(p), n_tests=int(np.isfinite(p).sum()),
                              mean_galaxies_fast=float(np.mean(res.n_galaxies)),
                              mean_galaxies_shipped=float(np.mean(ds.n_galaxies[i])), all_p=p[np.isfinite(p)]))
    seconds = time.perf_counter() - t0
    all_p = np.concatenate([q.pop("all_p") for q in per_point])
    point_p = np.array([q["bonferroni_p"] for q in per_point])
    n_fast = np.array([q["mean_galaxies_fast"] for q in per_point])
    n_ship = np.array([q["mean_galaxies_shipped"] for q in per_point])
    return dict(
        n_points=len(pick), seconds=seconds,
        n_points_with_p_below_001=int(np.sum(point_p < 0.01)),
        smallest_point_p_times_points=float(min(1.0, point_p.min() * len(point_p))),
        bins_tested=int(all_p.size),
        share_of_bin_p_below={str(a): float(np.mean(all_p < a)) for a in (0.001, 0.01, 0.05, 0.1)},
        galaxy_count_ratio_fast_over_shipped=dict(median=float(np.median(n_fast / n_ship)),
                                                  mean=float(np.mean(n_fast / n_ship))),
        per_point=per_point)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--catalog", default="default")
    p.add_argument("--realisations", type=int, default=100)
    p.add_argument("--shipped-points", type=int, default=200)
    p.add_argument("--out", default="docs/results/fastpop_check.json")
    args = p.parse_args(argv)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    from training.catalogs.sources import load_catalog
    from training.dataset.schema import read_dataset
    from training.mocks.fastpop import FastIAMockModel
    from training.mocks.model import IAMockModel

    catalog = load_catalog(args.catalog)
    fast_model, ref_model = FastIAMockModel(catalog), IAMockModel(catalog)
    ds = read_dataset(DATASET)
    count_points = dataset_count_points(ds)
    points = dict(tng300_points(), **{k: v["params"] for k, v in count_points.items()})
    fast_model.measure(points["tng300_sample1"], 0, n_realisations=1)  # compile the engine
    report = dict(command="nice python scripts/fastpop_check.py " + " ".join(argv or []),
                  catalog=dict(id=catalog.catalog_id, hash=catalog.catalog_hash),
                  dataset=dict(path=DATASET, catalog_hash=ds.attrs["catalog_hash"],
                               count_points={k: dict(index=v["index"], target_count=v["target_count"])
                                             for k, v in count_points.items()}),
                  test="per-bin Welch t-test of the mean over realisations, Bonferroni over bins; pass: p > 1e-3",
                  points=part_points(fast_model, ref_model, points, args.realisations))
    if args.shipped_points > 0:
        if ds.attrs["catalog_hash"] != catalog.catalog_hash:
            raise SystemExit(f"{DATASET} was measured on catalog {ds.attrs['catalog_hash']}, "
                             f"not on {catalog.catalog_hash}")
        report["shipped"] = part_shipped(fast_model, ds, args.shipped_points)
        s = report["shipped"]
        print(f"shipped points: {s['n_points']} in {s['seconds']:.0f} s, {s['n_points_with_p_below_001']} with "
              f"p < 0.01; share of bin p-values below 0.01: {s['share_of_bin_p_below']['0.01']:.4f}, below 0.05: "
              f"{s['share_of_bin_p_below']['0.05']:.4f}", flush=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
