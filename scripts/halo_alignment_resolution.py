"""Halo-halo alignments of M >= 1e12 Msun/h hosts against SMDPL's, at two mass resolutions.

Measures halo-halo ed (position-orientation, halotools ed_3d) and ee (orientation-orientation, ee_3d) of the host
halos of each catalog with halo_mpeak >= MASS_MIN, their major axes `halo_axisA`, in SMDPL's bins (edges
numpy.logspace(-1, 1.8, 29) Mpc/h, the bins whose upper edge lies below a third of the box), and compares them with
the SMDPL reference (training/data/smdpl_halo_alignments.txt, written by scripts/make_reference_data.py).

Selection: hosts only (halo_upid == -1). The catalogs' satellite sites carry radial, not measured, axes and no
halo of their own, so SMDPL's subhalos (if its selection holds them) have no counterpart. A host's halo_mpeak
equals its halo_mvir (the catalogs keep no merger history); the script checks that and selects on halo_mpeak.

Errors: per catalog, a delete-one jackknife over 4x4x4 sub-volumes (by halo position), as SMDPL's; for one box
also the box-to-box standard deviation over the 288^3 boxes (sample variance of a (128 Mpc/h)^3 volume). A ratio's
error adds SMDPL's jackknife error in quadrature. The summary, per catalog, over the bins with centres at
1-10 Mpc/h: the ratios, how many lie within TOLERANCE of 1 (also allowing 2 errors), the largest |ratio - 1|, and
the mean ratio with weights common to all catalogs (one box's and SMDPL's errors), whose one-box error is the
spread of the 288^3 boxes' mean ratios (it holds the correlation between bins). The resolution step: the mean of the 320^3 boxes against the mean of the 288^3 boxes, per factor in the
number of particles of a 1e12 halo, and its extrapolation to 384^3, linear in log particles and as a dilution
by axis noise, q(N) = q_inf (1 - c / N).

Usage:
    python scripts/halo_alignment_resolution.py [--boxes default training/data/boxes/*default*.npz]
        [--hires training/data/boxes/*hires320*.npz] [--reference training/data/smdpl_halo_alignments.txt]
        [--out docs/results/halo_alignment_resolution.json]

A catalog is a name (loaded from its packaged or cached file) or the path of its .npz file.
"""
from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

import numpy as np

from training.catalogs.nbody.catalog import catalog_path, load_catalog_file
from training.mocks.correlations import measure_correlations

ROOT = Path(__file__).resolve().parents[1]
MASS_MIN = 1e12
#: SMDPL's bin edges [Mpc/h]
SMDPL_EDGES = np.logspace(-1, 1.8, 29)
#: the comparison range (bin centres) and the target: |ours / SMDPL - 1| <= TOLERANCE
RANGE = (1.0, 10.0)
TOLERANCE = 0.15
JACKKNIFE_SIDE = 4
#: particles of a 1e12 Msun/h halo at 384^3 in 128 Mpc/h, the extrapolation's target
EXTRAPOLATE_TO = 384
#: further host-mass thresholds measured on the 288^3 boxes (how strongly the ratio depends on the selection)
THRESHOLDS = (7e11, 1.4e12)


def load_reference(path) -> dict:
    """SMDPL's r, ed, ee, their errors and covariances from the project's data file."""
    t = np.loadtxt(path)
    n = len(SMDPL_EDGES) - 1
    if t.shape != (n, 5 + 2 * n):
        raise ValueError(f"{path}: table of shape {t.shape}; expected ({n}, {5 + 2 * n})")
    return {"r": t[:, 0], "ed": t[:, 1], "ed_err": t[:, 2], "ee": t[:, 3], "ee_err": t[:, 4],
            "ed_cov": t[:, 5:5 + n], "ee_cov": t[:, 5 + n:]}


def read_catalog(name: str) -> tuple[dict, dict]:
    """(columns, meta) of a catalog given by name or path."""
    path = Path(name).expanduser()
    if not path.suffix == ".npz":
        found = catalog_path(name)
        if found is None:
            raise FileNotFoundError(f"catalog {name!r}: no packaged or cached file; expected a name or an .npz path")
        path = found
    return load_catalog_file(path)


def hosts_above(cols: dict, mass_min: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions and major axes of the hosts with halo_mpeak >= mass_min."""
    host = cols["halo_upid"] == -1
    if not np.array_equal(cols["halo_mpeak"][host], cols["halo_mvir"][host]):
        raise ValueError("hosts' halo_mpeak differs from halo_mvir; expected a catalog without merger history")
    sel = host & (cols["halo_mpeak"] >= mass_min)
    pos = np.stack([cols[f"halo_{c}"][sel] for c in "xyz"], axis=1)
    ori = np.stack([cols[f"halo_axisA_{c}"][sel] for c in "xyz"], axis=1)
    return pos, ori


def measure(pos, ori, L: float, edges, jackknife: bool = True) -> dict:
    """ed and ee in `edges`, with delete-one jackknife errors over JACKKNIFE_SIDE^3 sub-volumes."""
    c = measure_correlations(pos, ori, L, rbins=edges, num_threads=1)
    out = {"ed": c.omega, "ee": c.eta}
    if not jackknife:
        return out
    side = JACKKNIFE_SIDE
    region = (np.floor(pos / (L / side)).astype(np.int64) % side) @ np.array([side * side, side, 1])
    loo = []
    for k in range(side ** 3):
        keep = region != k
        d = measure_correlations(pos[keep], ori[keep], L, rbins=edges, num_threads=1)
        loo.append([d.omega, d.eta])
    loo = np.asarray(loo)
    n = side ** 3
    err = np.sqrt((n - 1) / n * np.sum((loo - loo.mean(0)) ** 2, axis=0))
    out["ed_err"], out["ee_err"] = err[0], err[1]
    return out


def ratio(ours, ours_err, ref, ref_err):
    """ours / ref and its error (both errors in quadrature)."""
    q = ours / ref
    return q, np.abs(q) * np.sqrt((ours_err / ours) ** 2 + (ref_err / ref) ** 2)


def summary(q, q_err, w) -> dict:
    """The 1-10 Mpc/h verdict of a ratio array (already cut to the range); w: the weights of its mean."""
    dev = np.abs(q - 1)
    mean = float(np.sum(w * q) / np.sum(w))
    return {"ratios": q.tolist(), "ratio_errs": q_err.tolist(),
            "bins_within_tolerance": int(np.sum(dev <= TOLERANCE)), "bins": int(len(q)),
            "max_abs_ratio_minus_1": float(dev.max()), "median_ratio": float(np.median(q)),
            "weighted_mean_ratio": mean,
            "all_bins_within_tolerance": bool(np.all(dev <= TOLERANCE)),
            "all_bins_within_tolerance_at_2_sigma": bool(np.all(dev - 2 * q_err <= TOLERANCE)),
            "weighted_mean_within_tolerance": bool(abs(mean - 1) <= TOLERANCE)}


def compare(stat: str, values, errs, ref, sel, w) -> dict:
    q, e = ratio(np.asarray(values)[sel], np.asarray(errs)[sel], ref[stat][sel], ref[f"{stat}_err"][sel])
    return summary(q, e, w)


def inverse_n_extrapolation(q1: float, q2: float, n1: float, n2: float, n3: float) -> float:
    """The ratio at n3 particles per halo of q(N) = q_inf (1 - c / N) through (n1, q1) and (n2, q2): a dilution of
    the alignment by axis noise whose variance falls as 1/N."""
    c = (q2 - q1) / (q2 / n1 - q1 / n2)
    return float(q1 / (1 - c / n1) * (1 - c / n3))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boxes", nargs="+", default=["default"] + sorted(glob.glob(str(ROOT / "training/data/boxes/*default*.npz"))),
                    help="the 288^3 boxes, the first the shipped one")
    ap.add_argument("--hires", nargs="+", default=sorted(glob.glob(str(ROOT / "training/data/boxes/*hires320*.npz"))),
                    help="the 320^3 boxes")
    ap.add_argument("--reference", default=str(ROOT / "training/data/smdpl_halo_alignments.txt"))
    ap.add_argument("--out", default=str(ROOT / "docs/results/halo_alignment_resolution.json"))
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    ref = load_reference(a.reference)
    res = {"mass_min": MASS_MIN, "selection": "hosts (halo_upid == -1) with halo_mpeak >= mass_min "
           "(a host's halo_mpeak equals its halo_mvir, rank-matched to the Tinker08 abundance); axes halo_axisA",
           "range": list(RANGE), "tolerance": TOLERANCE, "jackknife_subvolumes": JACKKNIFE_SIDE ** 3,
           "catalogs": {}}
    catalogs = {}
    for name in a.boxes + a.hires:
        cols, meta = read_catalog(name)
        L = float(meta["Lbox"])
        nb = int(np.sum(SMDPL_EDGES[1:] < L / 3))
        edges = SMDPL_EDGES[:nb + 1]
        pos, ori = hosts_above(cols, MASS_MIN)
        m = measure(pos, ori, L, edges)
        n_part = int(meta["simulation"]["n_particles"])
        entry = {"catalog_id": meta["catalog_id"], "n_particles": n_part, "Lbox": L,
                 "particle_mass": float(meta["particle_mass"]),
                 "particles_in_1e12": float(MASS_MIN / meta["particle_mass"]),
                 "n_hosts": int(len(pos)), "halo_model_spec": meta.get("halo_model_spec"),
                 "ed": m["ed"].tolist(), "ed_err_jackknife": m["ed_err"].tolist(),
                 "ee": m["ee"].tolist(), "ee_err_jackknife": m["ee_err"].tolist()}
        if n_part == 288:
            entry["thresholds"] = {f"{t:.1e}": {k: v.tolist() for k, v in
                                                measure(*hosts_above(cols, t), L, edges, jackknife=False).items()}
                                   for t in THRESHOLDS}
            entry["thresholds_n_hosts"] = {f"{t:.1e}": int(len(hosts_above(cols, t)[0])) for t in THRESHOLDS}
        catalogs[name] = entry
        print(f"{meta['catalog_id']}: {len(pos)} hosts, {time.perf_counter() - t0:.0f} s", flush=True)
    nb = min(len(e["ed"]) for e in catalogs.values())
    r = ref["r"][:nb]
    sel = (r >= RANGE[0]) & (r <= RANGE[1])
    ref_cut = {k: ref[k][:nb] for k in ("ed", "ed_err", "ee", "ee_err")}
    res["r"] = r.tolist()
    res["r_in_range"] = r[sel].tolist()
    res["smdpl"] = {k: v.tolist() for k, v in ref_cut.items()}
    lo = [e for e in catalogs.values() if e["n_particles"] == 288]
    his = [catalogs[n] for n in a.hires]
    base, others = lo[0], lo[1:]
    names = {stat: {} for stat in ("ed", "ee")}
    for stat in ("ed", "ee"):
        allv = np.array([e[stat][:nb] for e in lo])
        sd = allv.std(axis=0, ddof=1)
        oth = np.array([e[stat][:nb] for e in others])
        # common weights of the 1-10 Mpc/h mean ratio: one box's error (box-to-box sd) and SMDPL's, per bin
        w = 1 / ((sd[sel] / ref_cut[stat][sel]) ** 2 + (ref_cut[f"{stat}_err"][sel] / ref_cut[stat][sel]) ** 2)
        res[f"box_sd_{stat}"] = sd.tolist()
        for e in catalogs.values():
            v = np.asarray(e[stat][:nb])
            e[f"vs_smdpl_{stat}_jackknife"] = compare(stat, v, np.asarray(e[f"{stat}_err_jackknife"][:nb]), ref_cut,
                                                      sel, w)
            e[f"vs_smdpl_{stat}_box_sd"] = compare(stat, v, sd, ref_cut, sel, w)
        # one box's error of the mean ratio: the spread of the 288^3 boxes' mean ratios (holds the bins' correlation)
        wm_sd = float(np.std([e[f"vs_smdpl_{stat}_box_sd"]["weighted_mean_ratio"] for e in lo], ddof=1))
        res[f"weighted_mean_ratio_sd_one_box_{stat}"] = wm_sd
        res[f"others_288_{stat}"] = {"boxes": [e["catalog_id"] for e in others], "mean": oth.mean(0).tolist(),
                                     "sd": oth.std(axis=0, ddof=1).tolist(),
                                     "vs_smdpl": compare(stat, oth.mean(0), oth.std(axis=0, ddof=1) / np.sqrt(len(oth)),
                                                         ref_cut, sel, w),
                                     "weighted_mean_ratio_err": wm_sd / np.sqrt(len(oth))}
        res[f"all_288_{stat}"] = {"boxes": [e["catalog_id"] for e in lo], "mean": allv.mean(0).tolist(),
                                  "vs_smdpl": compare(stat, allv.mean(0), sd / np.sqrt(len(lo)), ref_cut, sel, w),
                                  "weighted_mean_ratio_err": wm_sd / np.sqrt(len(lo))}
        hiv = np.array([e[stat][:nb] for e in his])
        res[f"all_320_{stat}"] = {"boxes": [e["catalog_id"] for e in his], "mean": hiv.mean(0).tolist(),
                                  "vs_smdpl": compare(stat, hiv.mean(0), sd / np.sqrt(len(his)), ref_cut, sel, w),
                                  "weighted_mean_ratio_err": wm_sd / np.sqrt(len(his))}
        # resolution: the mean of the 320^3 boxes (other phases than any 288^3 box) against the mean of the 288^3
        # boxes; the difference carries the sample variance of both means
        s288 = res[f"all_288_{stat}"]["vs_smdpl"]
        s320 = res[f"all_320_{stat}"]["vs_smdpl"]
        step = s320["weighted_mean_ratio"] - s288["weighted_mean_ratio"]
        step_err = wm_sd * np.sqrt(1 / len(his) + 1 / len(lo))
        hi = his[0]
        lnf = np.log(hi["particles_in_1e12"] / base["particles_in_1e12"])
        target = MASS_MIN / (base["particle_mass"] * (288 / EXTRAPOLATE_TO) ** 3)
        lnt = np.log(target / base["particles_in_1e12"])
        res[f"resolution_{stat}"] = {
            "particles_in_1e12": [base["particles_in_1e12"], hi["particles_in_1e12"]],
            "weighted_mean_ratio_288_mean_of_boxes": s288["weighted_mean_ratio"],
            "weighted_mean_ratio_320": s320["weighted_mean_ratio"],
            "step_320_minus_288": step, "step_err": float(step_err),
            "step_per_e_fold_in_particles": step / lnf, "step_per_e_fold_err": float(step_err / lnf),
            "per_bin_step_320_minus_288": (np.asarray(s320["ratios"]) - np.asarray(s288["ratios"])).tolist(),
            "extrapolated_to": f"{EXTRAPOLATE_TO}^3", "particles_in_1e12_extrapolated": float(target),
            "weighted_mean_ratio_extrapolated": float(s288["weighted_mean_ratio"] + step / lnf * lnt),
            "extrapolated_err": float(step_err / lnf * lnt),
            "weighted_mean_ratio_extrapolated_axis_noise": inverse_n_extrapolation(
                s288["weighted_mean_ratio"], s320["weighted_mean_ratio"], base["particles_in_1e12"],
                hi["particles_in_1e12"], target),
            "extrapolated_axis_noise_err": abs(inverse_n_extrapolation(
                s288["weighted_mean_ratio"], s320["weighted_mean_ratio"] + step_err, base["particles_in_1e12"],
                hi["particles_in_1e12"], target) - inverse_n_extrapolation(
                s288["weighted_mean_ratio"], s320["weighted_mean_ratio"] - step_err, base["particles_in_1e12"],
                hi["particles_in_1e12"], target)) / 2,
        }
        candidates = [(e["catalog_id"], e[f"vs_smdpl_{stat}_box_sd"]) for e in catalogs.values()]
        candidates += [("mean of the 288^3 boxes", s288), ("mean of the 320^3 boxes", s320)]
        for crit in ("all_bins_within_tolerance", "all_bins_within_tolerance_at_2_sigma",
                     "weighted_mean_within_tolerance"):
            names[stat][crit] = [n for n, c in candidates if c[crit]]
    res["catalogs"] = {e["catalog_id"]: e for e in catalogs.values()}
    res["catalogs_within_tolerance"] = names
    res["seconds"] = round(time.perf_counter() - t0, 1)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {a.out}")
    return res


if __name__ == "__main__":
    main()
