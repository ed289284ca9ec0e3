"""Dataset files after generation: merge shards, clean, split into train / validation / test.

    iaemu-dataset merge A.h5 B.h5 C.h5.parts --out ALL.h5
    iaemu-dataset split ALL.h5 --seed 0 [--out SPLIT.h5]     (cleans, then writes `split`)
    iaemu-dataset summary ALL.h5                            (status and cleaning counts)

(`python -m training.dataset ...` is the same command.) Outputs are written atomically under the
output's lock (`training.common.fileio`): a second merge or split into the same file is refused, naming
the process that holds it. Parts of a parts folder that fail their checksum are reported and left
out of a merge.

Cleaning (`clean`), in this order, each point removed by the first rule it fails:

1. not measured: status pending or error (no statistics).
2. NaN: any non-finite xi, omega or eta in any realisation (status STATUS_NAN; empty radial
   bins, typical of sparse high-logMmin samples: the paper's rule).
3. unphysical ("some value above 100", the paper's rule, made precise): |omega| > 100 or
   |eta| > 100 anywhere, or xi > 100 at any bin centre r >= XI_LIMIT_RMIN (2 Mpc/h), in any
   realisation. omega and eta are averages of (e.r)^2 - 1/3 and (e.e)^2 - 1/3 and lie in
   [-1/3, 2/3]: a value beyond 100 can only be a broken measurement. xi above 100 is physical
   inside the one-halo regime (at 0.1 Mpc/h it reaches thousands for massive hosts) but not
   beyond the virial radius of the largest hosts (~2 Mpc/h), where xi ~ b^2 xi_lin is of order
   1-30 even for cluster-mass samples; xi > 100 there is the shot noise of a very sparse sample
   (a handful of pairs over a tiny random expectation), not clustering.
4. non-positive xi (training takes ln xi): xi <= 0 in any bin of any realisation
   (`xi_positive="each"`, the default), or of the realisation mean (`xi_positive="mean"`).

The counts of every rule are reported, both in order (what each rule removed) and alone.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from iaemu_theory.conventions import BIN_CENTRES, STATISTICS
from iaemu_theory.domain import Domain
from training.common.cli import add_debug_argument, check_output_path, finite_float, run_command, seed_type
from training.common.fileio import exclusive_lock
from training.dataset.schema import (SPLIT_DROPPED, SPLIT_NAMES, SPLIT_TEST, SPLIT_TRAIN, SPLIT_VALIDATION, STATUS_DONE,
                                     STATUS_NAN, Dataset, read_dataset, write_dataset)

#: The "above 100" threshold and the smallest bin centre (Mpc/h) where it applies to xi.
UNPHYSICAL_LIMIT = 100.0
XI_LIMIT_RMIN = 2.0
CLEANING_RULES = ("not_measured", "nan", "unphysical", "non_positive_xi")

_XI, _OMEGA, _ETA = (STATISTICS.index(s) for s in ("xi", "omega", "eta"))


def rule_masks(ds: Dataset, xi_positive: str = "each", limit: float = UNPHYSICAL_LIMIT,
               xi_rmin: float = XI_LIMIT_RMIN) -> dict[str, np.ndarray]:
    """Per rule, a boolean (P,) array: True where the point FAILS the rule (see the module docstring)."""
    if xi_positive not in ("each", "mean"):
        raise ValueError(f"xi_positive={xi_positive!r}; expected 'each' or 'mean'")
    s = ds.stats
    with np.errstate(invalid="ignore"):
        measured = np.isin(ds.status, (STATUS_DONE, STATUS_NAN))
        nan = (ds.status == STATUS_NAN) | ~np.all(np.isfinite(s), axis=(1, 2, 3))
        far = np.asarray(BIN_CENTRES) >= xi_rmin
        big_align = np.any(np.abs(s[:, :, [_OMEGA, _ETA], :]) > limit, axis=(1, 2, 3))
        big_xi = np.any(s[:, :, _XI, :][:, :, far] > limit, axis=(1, 2))
        xi = s[:, :, _XI, :]
        if xi_positive == "each":
            nonpos = np.any(xi <= 0, axis=(1, 2))
        else:
            nonpos = np.any(np.mean(xi, axis=1) <= 0, axis=1)
    return {"not_measured": ~measured, "nan": nan, "unphysical": big_align | big_xi, "non_positive_xi": nonpos}


def clean(ds: Dataset, **kwargs) -> tuple[np.ndarray, dict]:
    """Boolean keep-mask and a report {rule: points removed (in order)}, {rule: failing alone}.

    Keyword arguments go to `rule_masks` (xi_positive, limit, xi_rmin).
    """
    masks = rule_masks(ds, **kwargs)
    keep = np.ones(ds.n_points, bool)
    removed, alone = {}, {}
    for rule in CLEANING_RULES:
        removed[rule] = int(np.sum(keep & masks[rule]))
        alone[rule] = int(np.sum(masks[rule] & ~masks["not_measured"])) if rule != "not_measured" \
            else int(np.sum(masks[rule]))
        keep &= ~masks[rule]
    report = {"points": ds.n_points, "removed": removed, "failing_alone": alone, "kept": int(keep.sum()),
              "rule": {"limit": kwargs.get("limit", UNPHYSICAL_LIMIT), "xi_rmin": kwargs.get("xi_rmin", XI_LIMIT_RMIN),
                       "xi_positive": kwargs.get("xi_positive", "each")}}
    return keep, report


def split(ds: Dataset, seed: int, fractions=(0.7, 0.1, 0.2), keep_from: Dataset | None = None,
          **clean_kwargs) -> Dataset:
    """A copy of `ds` with the `split` column: clean points shuffled (by `seed`) into train /
    validation / test in `fractions`, removed points SPLIT_DROPPED. A point (all its realisations)
    is never in two sets. The cleaning report goes to attrs["cleaning"].

    `keep_from`: an earlier split dataset whose points are the first rows of `ds` (an extended design,
    or the same design measured on another catalog): its train/validation/test points keep their labels
    (so a test point stays a test point); the other clean points (new ones, and earlier ones that were
    not measured then) are shuffled in `fractions`. On another catalog (attrs "catalog_hash" differ) a
    labelled point that this cleaning removes is dropped (counted in the report as "keep_from_removed");
    on the same catalog that means other cleaning options, and is an error.
    """
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions={fractions.tolist()} must be three non-negative numbers summing to 1")
    keep, report = clean(ds, **clean_kwargs)
    labelled = np.zeros(ds.n_points, dtype=bool)
    if keep_from is not None:
        n_old = keep_from.n_points
        if keep_from.split is None:
            raise ValueError("keep_from has no split to keep")
        if n_old > ds.n_points or not np.array_equal(keep_from.params, ds.params[:n_old]):
            raise ValueError(f"keep_from's {n_old} points are not the first rows of this dataset "
                             f"({ds.n_points} points): not an extension of it")
        labelled[:n_old] = keep_from.split != SPLIT_DROPPED
        lost = labelled & ~keep
        if np.any(lost):
            same_catalog = str(keep_from.attrs.get("catalog_hash")) == str(ds.attrs.get("catalog_hash"))
            if same_catalog:
                raise ValueError(f"keep_from was cleaned differently (other cleaning options?): {int(lost.sum())} "
                                 f"of its split points are removed by this cleaning")
            labelled &= keep
        report["keep_from_removed"] = int(lost.sum())
    idx = np.flatnonzero(keep & ~labelled)
    order = idx[np.random.default_rng(seed).permutation(idx.size)]
    n_train = int(round(fractions[0] * idx.size))
    n_val = int(round(fractions[1] * idx.size))
    labels = np.full(ds.n_points, SPLIT_DROPPED, np.int8)
    if keep_from is not None:
        labels[:n_old][labelled[:n_old]] = keep_from.split[labelled[:n_old]]
    labels[order[:n_train]] = SPLIT_TRAIN
    labels[order[n_train:n_train + n_val]] = SPLIT_VALIDATION
    labels[order[n_train + n_val:]] = SPLIT_TEST
    report["split"] = {SPLIT_NAMES[c]: int(np.sum(labels == c)) for c in SPLIT_NAMES}
    out = ds.subset(np.arange(ds.n_points))
    out.split = labels
    out.attrs.update(cleaning=json.dumps(report), split_seed=int(seed),
                     split_fractions=json.dumps(fractions.tolist()))
    return out


def merge(parts_or_files, out) -> Dataset:
    """Join dataset files and/or FILE.parts folders of one generation (same arguments) into `out`.

    Rows are design points; a point finished in several inputs must have identical results. Inputs
    of a Sobol' design extended to more points (`iaemu-generate --points` larger) merge into the
    largest design. A part that fails its checksum is reported and left out (its row is pending).
    `out` is written atomically, holding its lock.
    """
    out = check_output_path(out)
    with exclusive_lock(out, shlex.join(["iaemu-dataset", "merge", *map(str, parts_or_files), "--out", str(out)])):
        return _merge(parts_or_files, out)


def _merge(parts_or_files, out: Path) -> Dataset:
    from training.dataset.design import realistic_design
    from training.dataset.generate import (PartsStore, assemble, can_extend, check_same_config, dataset_attrs,
                                           parts_from_dataset, settled_design)

    inputs = [Path(p) for p in parts_or_files]
    if not inputs:
        raise ValueError("merge needs at least one dataset file or parts folder")
    config, command, parts, stored_design = None, None, {}, None
    for path in inputs:
        if path.is_dir():
            store = PartsStore.at(path)
            meta = store.read_manifest()
            if meta is None:
                raise ValueError(f"{path} is not a parts folder of iaemu-generate (no manifest.json)")
            this_config, this_command = meta["config"], meta.get("command")
            these = store.finished(quarantine=False)
        else:
            ds = read_dataset(path)
            if "generation_config" not in ds.attrs:
                raise ValueError(f"{path} has no generation_config attribute: not written by iaemu-generate")
            this_config, this_command = json.loads(ds.attrs["generation_config"]), ds.attrs.get("creation_command")
            these = parts_from_dataset(ds)
            if stored_design is None or len(ds.params) > len(stored_design):
                stored_design = ds.params
        if config is None:
            config, command = this_config, this_command
        else:
            if not (can_extend(config, this_config) or can_extend(this_config, config)):
                check_same_config(config, this_config, str(path))
            if this_config["n_points"] > config["n_points"]:
                config = this_config
        for i, part in these.items():
            if i in parts and not _same_result(parts[i], part):
                raise ValueError(f"point {i} differs between inputs (last: {path}); they are not one generation")
            parts[i] = part
    if stored_design is not None and len(stored_design) == config["n_points"]:
        design = stored_design  # a dataset's design is the one it was started with (see settled_design)
    else:
        domain = Domain.from_dict(config["domain"])
        design = realistic_design(config["n_points"], config["master_seed"], domain, config["design_method"])
        design = settled_design(design, stored_design)
        if stored_design is None:  # parts folders only: each part carries the point it measured
            for i, part in parts.items():
                design[i] = part["params"]
    attrs = dataset_attrs(config, command or "")
    attrs["merged_from"] = json.dumps([str(p) for p in inputs])
    ds = assemble(config, design, parts, attrs)
    write_dataset(out, ds)
    return ds


def _same_result(a: dict, b: dict) -> bool:
    return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k]), equal_nan=k == "stats")
               for k in ("params", "stats", "n_galaxies", "seeds")) and int(a["status"]) == int(b["status"])


def summary_text(ds: Dataset, **clean_kwargs) -> str:
    counts = json.loads(ds.attrs.get("status_counts", "{}"))
    _, report = clean(ds, **clean_kwargs)
    lines = [f"{ds.n_points} points x {ds.n_realisations} realisations; catalog {ds.attrs.get('catalog_id')}",
             f"status: {counts}",
             f"cleaning (rule: {report['rule']}):"]
    for rule in CLEANING_RULES:
        lines.append(f"  {rule:<16s} removed {report['removed'][rule]:6d}   (failing alone: "
                     f"{report['failing_alone'][rule]})")
    lines.append(f"  kept {report['kept']}")
    if ds.split is not None:
        lines.append("split: " + ", ".join(f"{SPLIT_NAMES[c]} {int(np.sum(ds.split == c))}" for c in SPLIT_NAMES)
                     + f", dropped {int(np.sum(ds.split == SPLIT_DROPPED))}")
    for key in ("seconds_per_point_mean", "seconds_per_point_median", "cpu_seconds_total"):
        if key in ds.attrs:
            lines.append(f"{key}: {ds.attrs[key]:.3f}")
    return "\n".join(lines)


def build_parser(prog: str = "iaemu-dataset") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    add_debug_argument(p)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("merge", help="join dataset files and/or OUT.parts folders of one generation")
    m.add_argument("inputs", nargs="+")
    m.add_argument("--out", required=True)
    s = sub.add_parser("split", help="clean, then write the train/validation/test split column")
    s.add_argument("input")
    s.add_argument("--out", help="output file (default: rewrite the input)")
    s.add_argument("--seed", type=seed_type, default=0)
    s.add_argument("--fractions", type=finite_float, nargs=3, default=[0.7, 0.1, 0.2])
    s.add_argument("--xi-positive", choices=("each", "mean"), default="each")
    s.add_argument("--keep-split-from", default=None, metavar="FILE",
                   help="an earlier split dataset whose points are this one's first rows: they keep their labels")
    q = sub.add_parser("summary", help="status, cleaning counts, split sizes, timings")
    q.add_argument("input")
    q.add_argument("--xi-positive", choices=("each", "mean"), default="each")
    return p


def main(argv=None) -> int:
    """Entry point of `iaemu-dataset` (and `python -m training.dataset`); returns the exit status."""
    return run_command("iaemu-dataset", _main, argv)


def _main(argv: list) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "merge":
        ds = merge(args.inputs, args.out)
        print(f"wrote {args.out}")
        print(summary_text(ds))
    elif args.command == "split":
        out = check_output_path(args.out or args.input)
        previous = read_dataset(args.keep_split_from) if args.keep_split_from else None
        with exclusive_lock(out, shlex.join(["iaemu-dataset"] + argv)):
            ds = split(read_dataset(args.input), args.seed, args.fractions, keep_from=previous,
                       xi_positive=args.xi_positive)
            ds.attrs["split_command"] = shlex.join(["iaemu-dataset"] + argv)
            write_dataset(out, ds)
        print(f"wrote {out}")
        print(summary_text(ds, xi_positive=args.xi_positive))
    else:
        print(summary_text(read_dataset(args.input), xi_positive=args.xi_positive))
    return 0


if __name__ == "__main__":
    sys.exit(main())
