"""Does an emulator follow one box's sample variance? The TNG300 best fits' omega and xi of two emulators against
the boxes' own means.

Inputs: the deep pass of docs/results/box_scatter.json (five 288^3 boxes, 100 halotools-IA realisations each at
the three TNG300 best fits; the first box, seed 1, is the one-box emulator's training catalog), and the same
points measured here on the boxes of a catalog set (default hires320x3, `--realisations` fast-populate
realisations per box, master seed 2000 + k for point k as in the deep pass).

Per emulator, point and statistic, over the bins with r >= 0.3 Mpc/h: the feature of the 288^3 seed-1 box,
f = seed-1 mean - mean of the other four boxes; the emulator's e = prediction - mean of those four; the slope of
e on f (least squares through 0; about 1 when the emulator reproduces the seed-1 box's features, about 0 when
not), their correlation, and the same for each box of the set against the set's other boxes (g_b = box b -
mean of the others, e_b = prediction - mean of the others; a set-trained emulator's slope is about 1/K). The
figure shows omega at the three points.

    python scripts/bumps_check.py --before scratch/iaemu_v4_one_box.pt --out docs/results/bumps.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from iaemu_theory import BIN_CENTRES, PARAM_NAMES, STATISTICS, Emulator

R_MIN = 0.3


def slope_corr(e: np.ndarray, f: np.ndarray) -> dict:
    ok = np.isfinite(e) & np.isfinite(f) & (BIN_CENTRES >= R_MIN)
    e, f = e[ok], f[ok]
    return {"slope": float(np.sum(e * f) / np.sum(f * f)), "correlation": float(np.corrcoef(e, f)[0, 1])}


def set_means(catalog: str, points: dict, realisations: int, seed: int) -> np.ndarray:
    """(boxes, points, 3, N) fast-populate means on each box of a catalog set."""
    from training.catalogs.sources import load_catalog
    from training.mocks.fastpop import mock_model

    out = []
    for box in load_catalog(catalog):
        model = mock_model(box, populate="fast")
        out.append([model.measure(p, seed + k, n_realisations=realisations).mean() for k, p in
                    enumerate(points.values())])
    return np.asarray(out)


def main(argv=None) -> int:
    from training.catalogs.sources import DEFAULT_CATALOG

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the one-box emulator's artifact")
    ap.add_argument("--after", default=None, help="the set-trained artifact (default: the shipped one)")
    ap.add_argument("--set", default=DEFAULT_CATALOG)
    ap.add_argument("--realisations", type=int, default=100)
    ap.add_argument("--box-scatter", default="docs/results/box_scatter.json")
    ap.add_argument("--out", default="docs/results/bumps.json")
    ap.add_argument("--figure", default="docs/results/figures/bumps.png")
    a = ap.parse_args(argv)
    deep = json.loads(Path(a.box_scatter).read_text())["deep"]
    points = {name: {n: float(p["params"][n]) for n in PARAM_NAMES} for name, p in deep["points"].items()}
    lo = {name: np.array([p["statistics"][s]["box_means"] for s in STATISTICS]) for name, p in deep["points"].items()}
    hi = set_means(a.set, points, a.realisations, deep["mock_seed"])
    emus = {"before": Emulator.load(a.before, device="cpu", dtype="float64"),
            "after": Emulator.load(a.after, device="cpu", dtype="float64")}
    x = np.array([[p[n] for n in PARAM_NAMES] for p in points.values()])
    preds = {k: e.predict(x, outside="ignore") for k, e in emus.items()}
    res = {"command": "python scripts/bumps_check.py " + " ".join(argv or []), "r_min": R_MIN, "set": a.set,
           "realisations_per_set_box": a.realisations, "points": {}}
    for i, name in enumerate(points):
        entry = {}
        for k, s in enumerate(STATISTICS[:2]):
            lo_s = lo[name][k]                         # (5, N)
            others = lo_s[1:].mean(axis=0)
            f = lo_s[0] - others
            hi_s = hi[:, i, k]                         # (K, N)
            for which, pred in preds.items():
                p = pred[s][i]
                row = {"vs_288_seed1": slope_corr(p - others, f),
                       "set_boxes": [slope_corr(p - np.delete(hi_s, b, 0).mean(0), hi_s[b] - np.delete(hi_s, b, 0).mean(0))
                                     for b in range(len(hi_s))]}
                entry[f"{s}_{which}"] = row
            entry[f"{s}_288_means"] = lo_s.tolist()
            entry[f"{s}_set_means"] = hi_s.tolist()
            for which, pred in preds.items():
                entry[f"{s}_{which}_prediction"] = pred[s][i].tolist()
        res["points"][name] = entry
        print(name, {key: (round(v["vs_288_seed1"]["slope"], 2), round(v["vs_288_seed1"]["correlation"], 2),
                           [round(b["slope"], 2) for b in v["set_boxes"]])
                     for key, v in entry.items() if key.endswith(("_before", "_after"))}, flush=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    plot(res, a.figure)
    return 0


def plot(res: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = BIN_CENTRES
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (name, e) in zip(axes, res["points"].items()):
        lo, hi = np.asarray(e["omega_288_means"]), np.asarray(e["omega_set_means"])
        ax.plot(r, r * lo[0], "C3:", lw=1.2, label="288^3 seed-1 box (one-box training catalog)")
        ax.plot(r, r * lo.mean(0), "C3-", lw=0.8, alpha=0.5, label="mean of five 288^3 boxes")
        ax.plot(r, r * hi.mean(0), "k-", lw=1.0, label="mean of the three 320^3 boxes")
        ax.plot(r, r * np.asarray(e["omega_before_prediction"]), "C0--", label="emulator trained on one box")
        ax.plot(r, r * np.asarray(e["omega_after_prediction"]), "C2-", lw=1.6, label="emulator trained on the set")
        ax.set_xscale("log")
        ax.set_xlabel("r [Mpc/h]")
        ax.set_title(name.replace("tng300_", "TNG300 ").replace("sample", "sample "), fontsize=9)
    axes[0].set_ylabel("r omega(r)")
    axes[0].legend(fontsize=6.5)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
