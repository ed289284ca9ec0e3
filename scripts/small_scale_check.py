"""omega below 0.3 Mpc/h against the Bolshoi-Planck reference mocks, pooled over many independent realisations.

The realism test of `iaemu-catalog validate` uses 10 realisations, whose mean scatters by 1-2 reference errors in
the bins below 0.3 Mpc/h; this pools `--seeds` independent seeds of `--realisations` each (TNG300 sample 2's
parameters, as the reference), per catalog, and prints the pooled (ours - ref)/err there, the scatter of the
per-seed values, the pooled median over 0.3-14 Mpc/h and omega ours/ref summed over r > 2 Mpc/h.

    python scripts/small_scale_check.py default-v2 default-v3 default-v4 --out docs/results/catalog_small_scale.json
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from iaemu_theory.tng300 import BOLPLANCK_REFERENCE_PARAMS
from training.catalogs import load_catalog
from training.mocks import IAMockModel
from training.nbody.validate import realism_numbers


def pooled_small_scales(catalog: str, seeds, realisations: int) -> dict:
    """Per-seed and pooled realism numbers of omega for one catalog (name or path)."""
    cat = load_catalog(catalog)
    model = IAMockModel(cat)
    params = dict(BOLPLANCK_REFERENCE_PARAMS)
    t0 = time.perf_counter()
    means, per_seed = [], []
    for seed in seeds:
        mean = model.measure(params, seed=int(seed), n_realisations=realisations).mean()
        means.append(mean)
        per_seed.append(realism_numbers(mean)["omega"]["dev_over_err_below_0.3"])
    pooled = realism_numbers(np.mean(means, axis=0))
    omega = pooled["omega"]
    per_seed = np.asarray(per_seed)
    return {
        "catalog_id": str(cat.catalog_id), "seeds": [int(s) for s in seeds], "realisations_per_seed": realisations,
        "omega_below_0.3_pooled": omega["dev_over_err_below_0.3"],
        "omega_below_0.3_per_seed": per_seed.tolist(),
        "omega_below_0.3_seed_std": per_seed.std(axis=0, ddof=1).tolist() if len(seeds) > 1 else None,
        "omega_ratio_below_0.3_pooled": omega["ratio_below_0.3"],
        "xi_ratio_below_0.3_pooled": pooled["xi"]["ratio_below_0.3"],
        "omega_median_0.3_14": omega["median_abs_dev_over_err"],
        "omega_ratio_r_gt_2": omega["ratio_r_gt_2"],
        "xi_median_0.3_14": pooled["xi"]["median_abs_ratio_minus_1"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("catalogs", nargs="+", help="catalog names (default-v2, default-v3, ...) or npz paths")
    p.add_argument("--seeds", type=int, nargs="+", default=[8, 9, 10, 11, 12])
    p.add_argument("--realisations", type=int, default=30, help="realisations per seed (default 30)")
    p.add_argument("--out", default=None, help="write the numbers as JSON here (an existing file keeps the catalogs "
                   "not measured this time)")
    args = p.parse_args(argv)
    out = {}
    for name in args.catalogs:
        res = pooled_small_scales(name, args.seeds, args.realisations)
        out[name] = res
        n = len(args.seeds) * args.realisations
        print(f"{res['catalog_id']}: omega (ours - ref)/err below 0.3 Mpc/h over {n} realisations "
              + ", ".join(f"{v:+.2f}" for v in res["omega_below_0.3_pooled"])
              + " (ours/ref " + ", ".join(f"{v:.2f}" for v in res["omega_ratio_below_0.3_pooled"]) + "); per-seed std "
              + (", ".join(f"{v:.2f}" for v in res["omega_below_0.3_seed_std"]) if res["omega_below_0.3_seed_std"] else "-")
              + f"; median 0.3-14 Mpc/h {res['omega_median_0.3_14']:.2f}; ours/ref r > 2 Mpc/h "
              f"{res['omega_ratio_r_gt_2']:.3f}; {res['seconds']:.0f} s", flush=True)
    if args.out:
        if os.path.exists(args.out):
            with open(args.out) as fh:
                out = {**json.load(fh), **out}
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
