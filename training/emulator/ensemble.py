"""`iaemu-ensemble`: one artifact from several networks trained alike, whose predictions the emulator averages.

    iaemu-ensemble --members seed0.pt seed1.pt --out iaemu_theory/artifacts/iaemu_default.pt

Networks trained by the same recipe from different seeds err in partly independent ways, so their average is more
accurate than each (docs/decisions.md). The members must share the network, the dataset, the standardisation,
the input encoding, the bins and the training domain: the emulator averages their outputs in one set of units.
The ensemble's training record keeps what the members share at its top level and each member's own record
(seed, loss curves) under "members".
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from iaemu_theory.artifact import Artifact, library_versions, load_artifact, save_artifact
from training.common.cli import add_debug_argument, run_command

#: What every member must share, with the attribute that holds it.
_SHARED = ("input_encoding", "dataset_hash", "domain")
_SHARED_ARRAYS = ("input_mean", "input_std", "output_mean", "output_scale", "bin_edges")


def build_ensemble(members, out) -> Path:
    """Write the ensemble of the artifacts `members` (paths, two or more, single networks) to `out`."""
    if len(members) < 2:
        raise ValueError(f"an ensemble needs two or more member artifacts, got {len(members)}")
    arts = [load_artifact(p) for p in members]
    first = arts[0]
    for path, art in zip(members[1:], arts[1:]):
        if art.config.to_dict() != first.config.to_dict():
            raise ValueError(f"member {path}: its network {art.config.to_dict()} differs from {members[0]}'s "
                             f"{first.config.to_dict()}")
        for key in _SHARED:
            if getattr(art, key) != getattr(first, key):
                raise ValueError(f"member {path}: its {key} {getattr(art, key)!r} differs from {members[0]}'s "
                                 f"{getattr(first, key)!r}; members must be trained on one dataset alike")
        for key in _SHARED_ARRAYS:
            if not np.array_equal(getattr(art, key), getattr(first, key)):
                raise ValueError(f"member {path}: its {key} differs from {members[0]}'s (another dataset or "
                                 f"standardisation); members must be trained on one dataset alike")
    digests = [a.weights_sha256 for a in arts]
    if len(set(digests)) < len(digests):
        raise ValueError("the same network is listed twice among the members")
    states = [state for a in arts for state in a.members]
    records = [a.training or {} for a in arts]
    shared = {k: v for k, v in records[0].items() if all(k in r and r[k] == v for r in records[1:])}
    training = {**shared, "members": [{**r, "artifact": str(p), "weights_sha256": d}
                                      for r, p, d in zip(records, members, digests)]}
    metrics = {"members": [a.metrics for a in arts]}
    ens = Artifact(config=first.config, members=states, input_mean=first.input_mean, input_std=first.input_std,
                   output_mean=first.output_mean, output_scale=first.output_scale, bin_edges=first.bin_edges,
                   domain=first.domain, dataset_hash=first.dataset_hash, metrics=metrics, training=training,
                   versions=library_versions(), input_encoding=first.input_encoding)
    return save_artifact(out, ens)


def build_parser():
    p = argparse.ArgumentParser(prog="iaemu-ensemble", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--members", nargs="+", required=True, help="the member artifacts (iaemu-train outputs)")
    p.add_argument("--out", required=True, help="the ensemble artifact to write")
    add_debug_argument(p)
    return p


def main(argv=None) -> int:
    """Entry point of `iaemu-ensemble`; returns the exit status (see `training.common.cli.run_command`)."""
    return run_command("iaemu-ensemble", _main, argv)


def _main(argv: list) -> int:
    args = build_parser().parse_args(argv)
    out = build_ensemble(args.members, args.out)
    print(f"wrote {out}: the average of {len(args.members)} networks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
