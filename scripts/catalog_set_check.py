"""The development target on candidate catalogs: mocks at TNG300 sample 2's parameters (the Bolshoi-Planck
reference mocks' point) on each box and on their mixture, against halotools-IA's mocks on Bolshoi-Planck.

Per catalog (each box alone, the box set's mixture, and the shipped 288^3 box for comparison): the mean of
`--realisations` fast-populate realisations per box, and the realism verdicts of
`training.mocks.catalog_validation` (median |xi/ref - 1| <= 15% and median |omega - ref|/err <= 1.5 at
0.3-14 Mpc/h; below 0.3 Mpc/h xi/ref >= 0.85 and (omega - ref)/err >= -1.5 in every bin).

    nice python scripts/catalog_set_check.py --out docs/results/catalog_set.json
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def measure_mean(model, params: dict, seed: int, realisations: int) -> tuple[np.ndarray, float]:
    """(mean (3, N_BINS) over the realisations, mean galaxy count)."""
    res = model.measure(params, seed=seed, n_realisations=realisations)
    return res.mean(), float(np.mean(res.n_galaxies))


def summary(mean: np.ndarray) -> dict:
    from training.mocks.catalog_validation import realism_numbers, realism_verdicts

    numbers = realism_numbers(mean)
    verdicts = realism_verdicts(numbers)
    return {"xi_median_abs_ratio_minus_1": numbers["xi"]["median_abs_ratio_minus_1"],
            "omega_median_abs_dev_over_err": numbers["omega"]["median_abs_dev_over_err"],
            "eta_median_abs_dev_over_err": numbers["eta"]["median_abs_dev_over_err"],
            "xi_ratio_below_0.3": numbers["xi"]["ratio_below_0.3"],
            "omega_dev_over_err_below_0.3": numbers["omega"]["dev_over_err_below_0.3"],
            "omega_dev_over_err": numbers["omega"]["dev_over_err"], "xi_ratio": numbers["xi"]["ratio"],
            "r": numbers["xi"]["r"], "verdicts": verdicts,
            "met": all(v["met"] for v in verdicts.values())}


def main(argv=None) -> int:
    from iaemu_theory.tng300 import BOLPLANCK_REFERENCE_PARAMS
    from training.catalogs.sources import CATALOG_SETS, DEFAULT_CATALOG, load_catalog
    from training.mocks.fastpop import mock_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", default=DEFAULT_CATALOG, help=f"catalog set (default {DEFAULT_CATALOG})")
    p.add_argument("--compare", nargs="*", default=["default"], help="single catalogs measured beside it")
    p.add_argument("--realisations", type=int, default=30, help="realisations per box (default 30)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default="docs/results/catalog_set.json")
    args = p.parse_args(argv)
    params = dict(BOLPLANCK_REFERENCE_PARAMS)
    boxes = list(CATALOG_SETS.get(args.set, args.set.split("+")))
    out = {"command": "python scripts/catalog_set_check.py " + " ".join(argv or []), "params": params,
           "realisations_per_box": args.realisations, "populate": "fast", "set": args.set, "catalogs": {}}
    means = []
    for name in [*args.compare, *boxes]:
        t0 = time.perf_counter()
        cat = load_catalog(name)
        mean, n_gal = measure_mean(mock_model(cat, populate="fast"), params, args.seed, args.realisations)
        if name in boxes:
            means.append(mean)
        spec = os.path.relpath(name) if os.path.isabs(name) else str(name)
        out["catalogs"][str(cat.catalog_id)] = {"spec": spec, "n_galaxies": n_gal, **summary(mean),
                                                "seconds": round(time.perf_counter() - t0, 1)}
        entry = out["catalogs"][str(cat.catalog_id)]
        print(f"{cat.catalog_id}: xi {entry['xi_median_abs_ratio_minus_1']:.3f}, omega "
              f"{entry['omega_median_abs_dev_over_err']:.2f} err, met {entry['met']} ({entry['seconds']} s)", flush=True)
    out["catalogs"][f"{args.set} (mean of the boxes)"] = summary(np.mean(means, axis=0))
    entry = out["catalogs"][f"{args.set} (mean of the boxes)"]
    print(f"{args.set} mean: xi {entry['xi_median_abs_ratio_minus_1']:.3f}, omega "
          f"{entry['omega_median_abs_dev_over_err']:.2f} err, met {entry['met']}")
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
