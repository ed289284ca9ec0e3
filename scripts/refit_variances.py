"""Refit an artifact's variance outputs on its own dataset (`training.emulator.train.refit_variances`).

    python scripts/refit_variances.py --artifact seed0.pt \\
        --data training/data/dataset_hires320x3.h5 --steps 500 --out seed0_refit.pt

The result is what `iaemu-train` writes when the recipe has `variance_refit_steps: STEPS`: the same means (the
mean outputs are untouched), variances refitted by the plain NLL, and a training record naming the step count.
The artifact is one network (an `iaemu-train` output); refit an ensemble's members, then join them again with
`iaemu-ensemble`.
"""
from __future__ import annotations

import argparse
import sys

from training.emulator.train import refit_artifact_variances


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps={args.steps}: expected >= 1")
    refit_artifact_variances(args.artifact, args.data, args.out, args.steps)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
