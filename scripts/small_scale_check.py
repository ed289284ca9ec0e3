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


from training.mocks.catalog_validation import pooled_small_scales


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
