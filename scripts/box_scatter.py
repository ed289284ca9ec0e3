"""Box-to-box scatter of xi, omega, eta between independent N-body boxes, against the within-box noise.

Every box is populated with the project's halotools-IA mock model (`training.mocks.model.IAMockModel`) at the three
TNG300 best fits and at a few fixed points of the training domain, `realisations` times each (the paper's 10), and
the statistics' means over the realisations are compared between boxes:

- box_sd: standard deviation (ddof=1) over the boxes of the R-realisation means;
- within_se: root-mean-square over the boxes of the standard error of an R-realisation mean, std(ddof=1)/sqrt(R)
  (shape noise and HOD sampling);
- ratio = box_sd / within_se: about 1 when the boxes differ only by that noise; its excess measures one box's
  sample variance, sample_sd = sqrt(max(box_sd^2 - within_se^2, 0));
- the shipped emulator's prediction minus the reference box's mean (the first box, the emulator's training
  catalog) and minus the mean over all boxes, in units of box_sd.

`bumps`: for every box b and statistic, d_b = (mean of box b - mean of the other boxes) / box_sd per bin; the
Pearson correlation of d_b over the bins between the three TNG300 points (a feature of the box shows up at every
point; the points' realisation seeds are independent), and for the reference box the correlation of d_1 with
the emulator's (prediction - mean of the other boxes) / box_sd (does the emulator follow its training box?).

A deep pass (--deep-realisations, default 100) repeats the TNG300 points with that many realisations per box,
whose means are almost free of shape noise: its sample_sd is the boxes' own scatter, and its `bumps` are the
box features themselves (record "deep"; the figure shows it).

Usage:
    python scripts/box_scatter.py [--boxes default training/data/boxes/*.npz] [--realisations 10]
        [--design-points 5] [--design-seed 7] [--seed 1000] [--deep-realisations 100] [--deep-seed 2000] [--cache DIR]
        [--out docs/results/box_scatter.json] [--figure docs/results/figures/box_scatter.png]

A box is a catalog name or path as `training.catalogs.sources.load_catalog` takes it. With --cache, each box's raw
statistics are kept in DIR (keyed by the catalog hash, the points, seeds and realisations) and reused.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from iaemu_theory import BIN_CENTRES, Domain, Emulator, PARAM_NAMES, STATISTICS
from iaemu_theory.tng300 import TNG300_HOD
from training.catalogs.sources import load_catalog
from training.mocks.mock_cli import check_galaxy_budget
from training.mocks.model import IAMockModel

#: Best-fit alignment strengths (mu_cen, mu_sat) of the shipped emulator's TNG300 fits, samples 1-3.
TNG300_ALIGNMENT = {1: (0.762, 0.299), 2: (0.749, 0.060), 3: (0.672, 0.006)}
#: Indices of the bins (centres 1.44 and 3.08 Mpc/h) where the posterior-predictive omega of the TNG300 fits
#: shows its bumps.
BUMP_BINS = (10, 13)
DEFAULT_BOX_DIR = Path("training/data/boxes")


def sobol_exponent(n_design: int) -> int:
    """m of the scrambled Sobol draw of 2**m points whose first `n_design` are the design points."""
    return max(3, int(np.ceil(np.log2(max(n_design, 1)))))


def points(n_design: int, design_seed: int) -> dict[str, dict[str, float]]:
    """The three TNG300 best fits and the first `n_design` points of a scrambled Sobol draw mapped into Domain()."""
    from scipy.stats import qmc

    out = {}
    for s, (mu_cen, mu_sat) in TNG300_ALIGNMENT.items():
        out[f"tng300_sample{s}"] = dict(mu_cen=mu_cen, mu_sat=mu_sat, **TNG300_HOD[s])
    if n_design:
        unit = qmc.Sobol(d=len(PARAM_NAMES), scramble=True, seed=design_seed).random_base2(sobol_exponent(n_design))
        unit = unit[:n_design]
        for k, row in enumerate(Domain().from_unit(unit)):
            out[f"design{k}"] = {n: float(v) for n, v in zip(PARAM_NAMES, row)}
    return {name: {n: float(p[n]) for n in PARAM_NAMES} for name, p in out.items()}


def _key(catalog_hash: str, pts: dict, seed: int, realisations: int) -> str:
    text = json.dumps([catalog_hash, pts, seed, realisations], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def measure_box(name: str, pts: dict, seed: int, realisations: int, cache: Path | None) -> dict:
    """Raw statistics (P, R, 3, N_BINS) and galaxy counts (P, R) of one box at every point."""
    t0 = time.time()
    catalog = load_catalog(name)
    key = _key(catalog.catalog_hash, pts, seed, realisations)
    path = cache / f"{catalog.catalog_id}-{key}.npz" if cache else None
    if path is not None and path.exists():
        with np.load(path) as f:
            print(f"{name}: cached {path}", flush=True)
            return {k: f[k] for k in f.files} | {"catalog_id": str(catalog.catalog_id),
                                                  "catalog_hash": str(catalog.catalog_hash), "name": name}
    model = IAMockModel(catalog)
    stats = np.full((len(pts), realisations, len(STATISTICS), BIN_CENTRES.size), np.nan)
    n_gal = np.zeros((len(pts), realisations), dtype=np.int64)
    for k, (pname, params) in enumerate(pts.items()):
        check_galaxy_budget(params, catalog)
        t1 = time.time()
        res = model.measure(params, seed + k, n_realisations=realisations)
        stats[k], n_gal[k] = res.stats, res.n_galaxies
        print(f"{catalog.catalog_id} {pname}: {n_gal[k].mean():.0f} galaxies, {time.time() - t1:.1f} s", flush=True)
    out = dict(stats=stats, n_galaxies=n_gal, n_hosts=np.int64(model.n_hosts), seconds=np.float64(time.time() - t0))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, **out)
        tmp.replace(path)
    return out | {"catalog_id": str(catalog.catalog_id), "catalog_hash": str(catalog.catalog_hash), "name": name}


def box_seed(catalog_id: str) -> int | None:
    m = re.search(r"-s(\d+)-v\d+$", catalog_id)
    return int(m.group(1)) if m else None


def _num(x) -> float | None:
    """A float for the JSON record (None for NaN or infinity)."""
    x = float(x)
    return x if np.isfinite(x) else None


def _corr(a, b) -> float | None:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return None
    return _num(np.corrcoef(a[ok], b[ok])[0, 1])


def _list(a, digits=6):
    return [None if not np.isfinite(v) else float(f"{v:.{digits}g}") for v in np.asarray(a, dtype=float).ravel()]


def summarise(boxes: list[dict], pts: dict, realisations: int, emulator: Emulator) -> dict:
    """The JSON record: per point, statistic and bin the scatter numbers; a summary; the bump correlations."""
    stats = np.stack([b["stats"] for b in boxes])  # (B, P, R, 3, N)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        n = np.sum(np.isfinite(stats), axis=2)
        mean = np.nanmean(stats, axis=2)  # (B, P, 3, N)
        se = np.nanstd(stats, axis=2, ddof=1) / np.sqrt(n)
        box_mean = mean.mean(axis=0)
        box_sd = mean.std(axis=0, ddof=1)
        within = np.sqrt(np.mean(se ** 2, axis=0))
        ratio = box_sd / within
        sample_sd = np.sqrt(np.maximum(box_sd ** 2 - within ** 2, 0.0))
    B = len(boxes)
    params = np.array([[p[n] for n in PARAM_NAMES] for p in pts.values()])
    pred = emulator.predict(params, outside="ignore")
    emu = np.stack([pred[s] for s in STATISTICS], axis=1)  # (P, 3, N)
    emu_se = np.stack([np.sqrt(pred[f"{s}_aleatoric_var"] / realisations) for s in STATISTICS], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        z_ref = (emu - mean[0]) / box_sd
        z_all = (emu - box_mean) / box_sd
        others = np.stack([np.delete(mean, b, axis=0).mean(axis=0) for b in range(B)])  # (B, P, 3, N)
        dev = (mean - others) / box_sd  # d_b
        emu_dev = (emu - others[0]) / box_sd
    record_points = {}
    for k, (pname, p) in enumerate(pts.items()):
        entry = {"params": p, "inside_domain": bool(pred["inside"][k]),
                 "mean_galaxies": [float(b["n_galaxies"][k].mean()) for b in boxes], "statistics": {}}
        for i, s in enumerate(STATISTICS):
            entry["statistics"][s] = {
                "box_means": [_list(mean[b, k, i]) for b in range(B)],
                "box_se": [_list(se[b, k, i]) for b in range(B)],
                "box_sd": _list(box_sd[k, i]), "within_se": _list(within[k, i]), "ratio": _list(ratio[k, i], 4),
                "sample_sd": _list(sample_sd[k, i]), "emulator": _list(emu[k, i]),
                "emulator_aleatoric_se": _list(emu_se[k, i]),
                "emulator_minus_reference_over_box_sd": _list(z_ref[k, i], 4),
                "emulator_minus_box_mean_over_box_sd": _list(z_all[k, i], 4),
            }
        record_points[pname] = entry
    tng = [k for k, name in enumerate(pts) if name.startswith("tng300")]
    summary, bumps = {}, {}
    warnings.simplefilter("ignore", RuntimeWarning)  # medians of all-NaN bins are recorded as None
    for i, s in enumerate(STATISTICS):
        q = ratio[:, i]
        small, large = BIN_CENTRES < 1.0, BIN_CENTRES >= 1.0
        summary[s] = {
            "median_ratio": _num(np.nanmedian(q)), "ratio_range": [_num(np.nanmin(q)), _num(np.nanmax(q))],
            "median_ratio_r_below_1": _num(np.nanmedian(q[:, small])),
            "median_ratio_r_above_1": _num(np.nanmedian(q[:, large])),
            "median_ratio_tng300": _num(np.nanmedian(q[tng])),
            "median_sample_sd_over_within_se_tng300": _num(np.nanmedian((sample_sd / within)[tng, i])),
            "median_abs_emulator_minus_reference_over_box_sd": _num(np.nanmedian(np.abs(z_ref[:, i]))),
            "median_abs_emulator_minus_box_mean_over_box_sd": _num(np.nanmedian(np.abs(z_all[:, i]))),
            "median_box_sd_over_abs_box_mean_tng300": _num(np.nanmedian((box_sd / np.abs(box_mean))[tng, i])),
            "median_sample_sd_over_abs_box_mean_tng300": _num(np.nanmedian((sample_sd / np.abs(box_mean))[tng, i])),
            "median_abs_emulator_minus_reference_over_abs_reference_tng300":
                _num(np.nanmedian(np.abs((emu - mean[0]) / mean[0])[tng, i])),
        }
        pairs = [(a, b) for j, a in enumerate(tng) for b in tng[j + 1:]]
        names = list(pts)
        bumps[s] = {
            "tng_pair_correlation_per_box": {
                boxes[b]["catalog_id"]: {f"{names[a]}~{names[c]}": _corr(dev[b, a, i], dev[b, c, i]) for a, c in pairs}
                for b in range(B)},
            "reference_box_vs_emulator_correlation": {names[a]: _corr(dev[0, a, i], emu_dev[a, i]) for a in tng},
            "bump_bins": {
                f"{BIN_CENTRES[j]:.3g}": {names[a]: {
                    "reference_minus_others_over_box_sd": _num(dev[0, a, i, j]),
                    "emulator_minus_others_over_box_sd": _num(emu_dev[a, i, j]),
                    "emulator_minus_reference_over_box_sd": _num(z_ref[a, i, j]),
                    "ratio": _num(ratio[a, i, j])} for a in tng} for j in BUMP_BINS},
        }
    return {"r": _list(BIN_CENTRES), "realisations": realisations,
            "boxes": [{"name": b["name"], "catalog_id": b["catalog_id"], "catalog_hash": b["catalog_hash"],
                       "seed": box_seed(b["catalog_id"]), "n_hosts": int(b["n_hosts"])} for b in boxes],
            "reference_box": boxes[0]["catalog_id"], "emulator": str(emulator.artifact.path),
            "summary": summary, "bumps": bumps, "points": record_points}


def figure(record: dict, path: Path) -> None:
    """omega, omega / box mean and xi / box mean per box at the TNG300 points, with the emulator.

    Lines: each box's mean over the deep pass's realisations (the main pass's without one), with its standard
    error; grey band: +- the within-box standard error of a `realisations`-realisation mean (main pass) around
    the mean over boxes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = np.array(record["r"])
    source = record.get("deep", record)
    tng = [k for k in source["points"] if k.startswith("tng300")]
    fig, axes = plt.subplots(3, len(tng), figsize=(4.3 * len(tng), 10), sharex=True)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(record["boxes"])))
    for col, name in enumerate(tng):
        point = source["points"][name]
        for row, (stat, relative) in enumerate((("omega", False), ("omega", True), ("xi", True))):
            ax = axes[row, col]
            d = point["statistics"][stat]
            means = np.array(d["box_means"], dtype=float)
            ses = np.array(d["box_se"], dtype=float)
            centre = means.mean(axis=0)
            ref = centre if relative else 1.0
            band = np.array(record["points"][name]["statistics"][stat]["within_se"], dtype=float)
            ax.fill_between(r, (centre - band) / ref, (centre + band) / ref, color="0.85", zorder=1,
                            label=f"+- s.e. of a {record['realisations']}-realisation mean")
            for b, box in enumerate(record["boxes"]):
                label = f"box seed {box['seed']}" + (" (emulator's)" if b == 0 else "")
                ax.errorbar(r * (1 + 0.012 * (b - 2)), means[b] / ref, yerr=ses[b] / np.abs(ref), fmt="o-",
                            ms=2.5, lw=1.6 if b == 0 else 0.8, capsize=1.5, color=colours[b], label=label,
                            zorder=3 if b == 0 else 2)
            ax.plot(r, np.array(d["emulator"], dtype=float) / ref, "r--", lw=1.4, label="shipped emulator", zorder=4)
            ax.set_xscale("log")
            for j in BUMP_BINS:
                ax.axvline(r[j], color="0.6", lw=0.6, ls=":", zorder=0)
            if relative:
                ax.axhline(1.0, color="0.5", lw=0.7)
                ax.set_ylim(*((0.7, 1.3) if stat == "omega" else (0.8, 1.2)))
                ax.set_ylabel(rf"$\{stat}$ / mean over boxes")
            else:
                ax.set_ylabel(r"$\omega(r)$")
            if row == 0:
                ax.set_title(name.replace("tng300_sample", "TNG300 sample "))
            if row == 2:
                ax.set_xlabel(r"$r\ [h^{-1}\,{\rm Mpc}]$")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"lines: mean of {source['realisations']} realisations per box (error bars: its standard error); "
                 f"band: s.e. of a {record['realisations']}-realisation mean; dotted: r = "
                 + ", ".join(f"{r[j]:.2f}" for j in BUMP_BINS) + " Mpc/h", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boxes", nargs="+", default=None,
                    help="catalog names or paths; the first is the emulator's training box (default: default and "
                         f"{DEFAULT_BOX_DIR}/*.npz)")
    ap.add_argument("--realisations", type=int, default=10)
    ap.add_argument("--design-points", type=int, default=5)
    ap.add_argument("--design-seed", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1000, help="master mock seed of the first point (point k: seed + k)")
    ap.add_argument("--deep-realisations", type=int, default=100,
                    help="realisations of a second pass at the TNG300 points alone, whose box means are almost free "
                         "of shape noise (0: skip)")
    ap.add_argument("--deep-seed", type=int, default=2000, help="master mock seed of the deep pass's first point")
    ap.add_argument("--cache", default=None, help="folder for each box's raw statistics (reused when present)")
    ap.add_argument("--out", default="docs/results/box_scatter.json")
    ap.add_argument("--figure", default="docs/results/figures/box_scatter.png")
    args = ap.parse_args(argv)
    boxes = args.boxes or ["default", *sorted(str(p) for p in DEFAULT_BOX_DIR.glob("*.npz"))]
    if len(boxes) < 3:
        ap.error(f"need at least 3 boxes for a scatter, got {len(boxes)}: {boxes}")
    if args.realisations < 2:
        ap.error(f"--realisations {args.realisations}: need at least 2 for a standard error")
    if args.deep_realisations == 1 or args.deep_realisations < 0:
        ap.error(f"--deep-realisations {args.deep_realisations}: expected 0 (no deep pass) or at least 2")
    if args.design_points < 0:
        ap.error(f"--design-points {args.design_points}: expected a count >= 0")
    pts = points(args.design_points, args.design_seed)
    cache = Path(args.cache) if args.cache else None
    emulator = Emulator.load()
    measured = [measure_box(b, pts, args.seed, args.realisations, cache) for b in boxes]
    record = summarise(measured, pts, args.realisations, emulator)
    record["command"] = "python scripts/box_scatter.py " + " ".join(sys.argv[1:] if argv is None else argv)
    record["mock_seed"], record["design_seed"] = args.seed, args.design_seed
    if args.deep_realisations:
        tng = {k: v for k, v in pts.items() if k.startswith("tng300")}
        deep = [measure_box(b, tng, args.deep_seed, args.deep_realisations, cache) for b in boxes]
        record["deep"] = summarise(deep, tng, args.deep_realisations, emulator)
        record["deep"]["mock_seed"] = args.deep_seed
        for name, entry in record["deep"]["points"].items():
            for s, d in entry["statistics"].items():
                shallow = np.array(record["points"][name]["statistics"][s]["within_se"], dtype=float)
                d["sample_sd_over_within_se_of_shallow_mean"] = _list(np.array(d["sample_sd"], dtype=float) / shallow, 4)
    record["design"] = (f"Domain().from_unit(scipy.stats.qmc.Sobol(d=7, scramble=True, seed={args.design_seed})"
                        f".random_base2({sobol_exponent(args.design_points)})[:{args.design_points}])")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=1)
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    out.write_text(text + "\n")
    print(f"wrote {out}")
    def f(x):
        return "n/a" if x is None else f"{x:.2f}"

    for s, v in record["summary"].items():
        print(f"{s}: median box_sd/within_se {f(v['median_ratio'])} (range {f(v['ratio_range'][0])}-"
              f"{f(v['ratio_range'][1])}; r<1 {f(v['median_ratio_r_below_1'])}, r>1 {f(v['median_ratio_r_above_1'])}); "
              f"median |emu - ref|/box_sd {f(v['median_abs_emulator_minus_reference_over_box_sd'])}")
    if args.figure:
        figure(record, Path(args.figure))
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
