"""Try variants of a halo model version on the default simulation, without defining them in MODELS.

Each variant is a base version's spec with KEY=VALUE overrides (keys of training.catalogs.nbody.halos.MODELS entries, e.g.
site_radius=1.0 site_mass_fsub=0.2). It is built from the z = 0 particles of the build folder (a first build runs
the simulation, 11-15 minutes on one core; each variant then takes about a minute), written to OUTDIR, and measured
against the Bolshoi-Planck mocks below 0.3 Mpc/h with scripts/small_scale_check.py's pooled seeds.

    python scripts/halo_model_variants.py --cache-dir scratch/build --outdir scratch/variants \\
        --variant site_radius=1.0 --variant site_mass_fsub=0.2 --out scratch/variants.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from training.catalogs.nbody import halos
from training.catalogs.nbody.catalog import build_catalog
from training.mocks.catalog_validation import pooled_small_scales

#: Variants get version numbers from here up, for this process only (their catalog ids say "-v<N>").
FIRST_VARIANT = 100


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=int, default=halos.DEFAULT_MODEL, help="halo model version the variants start from")
    p.add_argument("--variant", action="append", default=[], help="KEY=VALUE[,KEY=VALUE...]; repeat for more")
    p.add_argument("--cache-dir", required=True, help="build folder with (or for) the z = 0 particles")
    p.add_argument("--outdir", required=True, help="where the variant catalogs are written")
    p.add_argument("--seeds", type=int, nargs="+", default=[8, 9, 10, 11, 12])
    p.add_argument("--realisations", type=int, default=30)
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = p.parse_args(argv)
    base = halos.get_model(args.base)
    Path(args.outdir).mkdir(parents=True, exist_ok=True)
    out = {}
    for i, text in enumerate(args.variant):
        version = FIRST_VARIANT + i
        halos.MODELS[version] = base.variant(text, version)
        t0 = time.perf_counter()
        path = build_catalog("default", model=version, out=Path(args.outdir) / f"variant_{version}.npz",
                             cache_dir=args.cache_dir, progress=False)
        build_s = time.perf_counter() - t0
        res = pooled_small_scales(str(path), args.seeds, args.realisations)
        res.update(base=args.base, overrides=text, spec=halos.MODELS[version].to_dict(), build_s=round(build_s, 1))
        out[text] = res
        print(f"v{args.base} + {text}: omega (ours - ref)/err below 0.3 Mpc/h "
              + ", ".join(f"{v:+.2f}" for v in res["omega_below_0.3_pooled"])
              + f"; median 0.3-14 Mpc/h {res['omega_median_0.3_14']:.2f}; ours/ref r > 2 Mpc/h "
              f"{res['omega_ratio_r_gt_2']:.3f}; build {build_s:.0f} s", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
