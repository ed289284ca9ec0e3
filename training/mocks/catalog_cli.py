"""`iaemu-catalog`: build or validate the project's N-body halo catalogs."""
from __future__ import annotations

import argparse
import sys
import warnings

from training.common.cli import add_debug_argument, run_command


def main(argv=None) -> int:
    """Entry point of `iaemu-catalog`; returns the exit status (see `training.common.cli.run_command`)."""
    return run_command("iaemu-catalog", _main, argv)


def _main(argv: list) -> int:
    parser = argparse.ArgumentParser(prog="iaemu-catalog", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="run ICs + PM + FoF and write the catalog file (resumes from checkpoints)")
    b.add_argument("--preset", default="default", help="preset, optionally with a halo model version: default, default-v2")
    b.add_argument("--seed", type=int, default=None)
    b.add_argument("--out", default=None, help="output npz (default: the user cache directory)")
    b.add_argument("--cache-dir", default=None, help="cache/checkpoint directory (default $IAEMU_CACHE or ~/.cache/iaemu)")
    v = sub.add_parser("validate", help="physics validation figures and numbers (docs/results/catalog.md)")
    v.add_argument("--preset", default="default")
    v.add_argument("--seed", type=int, default=None)
    v.add_argument("--out", default="docs/results", help="directory for catalog.md and figures/")
    v.add_argument("--cache-dir", default=None)
    v.add_argument("--realisations", type=int, default=10, help="mock realisations for the HOD comparisons")
    v.add_argument("--skip-mocks", action="store_true", help="skip the HOD-mock comparisons")
    c = sub.add_parser("compare-models", help="realism of the default catalog's halo model versions (v1 and v2 unless "
                       "--models) vs the Bolshoi-Planck reference mocks (section of docs/results/catalog.md)")
    c.add_argument("--out", default="docs/results")
    c.add_argument("--models", type=int, nargs="+", default=[1, 2], help="halo model versions to compare (default 1 2)")
    c.add_argument("--realisations", type=int, default=10)
    for command in (b, v, c):
        add_debug_argument(command)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*jax_enable_x64.*")
    if args.command == "compare-models":
        from training.catalogs.nbody.halos import get_model
        from training.mocks.catalog_validation import compare_models

        for version in args.models:
            try:
                get_model(version)
            except ValueError as err:
                parser.error(str(err))
        compare_models(args.out, models=tuple(args.models), realisations=args.realisations)
        return 0
    from training.catalogs.nbody.simulation import PRESETS

    from training.catalogs.nbody.catalog import split_name

    try:
        base, _ = split_name(args.preset)
    except ValueError as err:
        parser.error(str(err))
    if base not in PRESETS:
        parser.error(f"unknown preset {args.preset!r}; expected one of {sorted(PRESETS)}")
    if args.command == "build":
        from training.catalogs.nbody.catalog import build_catalog

        path = build_catalog(args.preset, args.seed, out=args.out, progress=True, cache_dir=args.cache_dir)
        print(path)
        return 0
    from training.mocks.catalog_validation import validate

    validate(args.preset, args.seed, out_dir=args.out, cache_dir=args.cache_dir, realisations=args.realisations,
             mocks=not args.skip_mocks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
