"""`iaemu-plot`: GetDist triangle plots of Cobaya chains and posterior-predictive bands from the emulator.

    iaemu-plot chains/iaemu_tng [chains/other ...] [--markers mu_cen=0.6,mu_sat=0.1] [--out figs/tng.png]

writes OUT.png and OUT.pdf (the triangle plot of every sampled parameter the chains share) and, for chains of
IAEmu likelihoods (TNG300Likelihood, IACorrelationLikelihood), OUT_ppd.png/.pdf: the data with the
posterior-predictive band of the fitted statistic(s) (68% and 95% of the emulator mean over posterior draws).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from .conventions import PARAM_NAMES, statistics_list

_OUR_LIKELIHOODS = ("TNG300Likelihood", "IACorrelationLikelihood")


def parse_markers(items) -> dict[str, float]:
    """'mu_cen=0.6,mu_sat=0.1' (possibly several such strings) -> {name: value}."""
    out: dict[str, float] = {}
    for item in items or []:
        for part in filter(None, (p.strip() for p in item.split(","))):
            if "=" not in part:
                raise ValueError(f"marker {part!r}: expected NAME=VALUE")
            name, value = (s.strip() for s in part.split("=", 1))
            try:
                out[name] = float(value)
            except ValueError:
                raise ValueError(f"marker {part!r}: {value!r} is not a number") from None
    return out


def load_chain(prefix: str, burn_in: float = 0.3):
    """GetDist MCSamples of a Cobaya chain prefix (the first `burn_in` fraction of each chain dropped)."""
    from getdist import loadMCSamples

    files = list(Path(prefix).parent.glob(Path(prefix).name + ".*txt"))
    if not files:
        raise FileNotFoundError(f"no chain files {prefix}.*.txt (or {prefix}.txt); give the chain prefix, "
                                f"e.g. chains/iaemu_tng")
    return loadMCSamples(str(prefix), settings={"ignore_rows": burn_in})


def sampled_names(samples) -> list[str]:
    return [p.name for p in samples.getParamNames().names
            if not p.isDerived and not p.name.startswith(("chi2", "minuslog"))]


def triangle_plot(prefixes, out: str, markers=None, burn_in: float = 0.3) -> list[str]:
    """Triangle plot of the chains' common sampled parameters; returns the files written."""
    from getdist import plots

    samples = [load_chain(p, burn_in) for p in prefixes]
    names = sampled_names(samples[0])
    for s in samples[1:]:
        names = [n for n in names if n in sampled_names(s)]
    if not names:
        raise ValueError(f"the chains {list(prefixes)} share no sampled parameter")
    g = plots.get_subplot_plotter(width_inch=3 + 1.6 * len(names))
    for s, p in zip(samples, prefixes):
        s.label = Path(p).name
    g.triangle_plot(samples, names, filled=True, legend_labels=[Path(p).name for p in prefixes] if len(prefixes) > 1
                    else None, markers={k: v for k, v in (markers or {}).items() if k in names})
    return _save(g.fig, out)


def _save(fig, out: str) -> list[str]:
    stem = os.path.splitext(out)[0]
    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    files = [stem + ".png", stem + ".pdf"]
    fig.savefig(files[0], dpi=150, bbox_inches="tight")
    fig.savefig(files[1], bbox_inches="tight")
    return files


def _class_name(name: str, info: dict) -> str:
    return str((info or {}).get("class") or name).rsplit(".", 1)[-1]


def _ppd_panels(prefix: str, n_draws: int, burn_in: float, seed: int):
    """For one chain: [(title, stat, r_model, draws (n, nbins), r_data, data, err)] of our likelihoods."""
    from cobaya.yaml import yaml_load_file

    from .emulator import Emulator
    from .likelihoods import read_data_file
    from .theory import resolve_artifact
    from .tng300 import load_tng300

    path = f"{prefix}.updated.yaml"
    if not os.path.isfile(path):
        return []
    info = yaml_load_file(path)
    theories = {(t or {}).get("suffix", "") or "": t or {} for n, t in (info.get("theory") or {}).items()
                if _class_name(n, t) == "IAEmu"}
    if not theories:
        return []
    samples = load_chain(prefix, burn_in)
    weights = samples.weights / samples.weights.sum()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(weights), size=n_draws, p=weights)
    params = info.get("params") or {}
    panels = []
    for name, like in (info.get("likelihood") or {}).items():
        kind = _class_name(name, like)
        if kind not in _OUR_LIKELIHOODS:
            continue
        suffix = like.get("suffix") or ""
        theory = theories.get(suffix)
        if theory is None:
            continue
        emu = Emulator.load(resolve_artifact(theory.get("artifact")), device="cpu")
        x = np.empty((n_draws, len(PARAM_NAMES)))
        for j, p in enumerate(PARAM_NAMES):
            cname = p + suffix
            if cname in samples.getParamNames().list():
                x[:, j] = samples[cname][rows]
            else:
                value = params.get(cname)
                value = value.get("value") if isinstance(value, dict) else value
                if not isinstance(value, (int, float)):
                    raise ValueError(f"{prefix}: parameter {cname} is neither in the chain nor fixed")
                x[:, j] = value
        stats = statistics_list(like.get("statistics") or ["omega"], option=f"{prefix}: likelihood option statistics")
        pred = emu.predict(x, statistics=stats)
        for stat in stats:
            if kind == "TNG300Likelihood":
                d = load_tng300(int(like.get("sample", 1)), stat)
                r_data, data, err = d["r"], d["value"], d["err"]
                title = f"TNG300 sample {like.get('sample', 1)}"
            else:
                rows_d = [row for row in read_data_file(like["data_file"]) if row[0] == stat]
                r_data = np.array([r[1] for r in rows_d])
                data = np.array([r[2] for r in rows_d])
                err = np.array([r[3] for r in rows_d])
                title = name
            panels.append((f"{title} ({Path(prefix).name})", stat, emu.r, pred[stat], r_data, data, err))
    return panels


def ppd_plot(prefixes, out: str, n_draws: int = 300, burn_in: float = 0.3, seed: int = 0) -> list[str]:
    """Data vs the posterior-predictive band of the emulator mean; returns the files written ([] if no panel)."""
    import matplotlib.pyplot as plt

    panels = [p for prefix in prefixes for p in _ppd_panels(prefix, n_draws, burn_in, seed)]
    if not panels:
        return []
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    labels = {"xi": r"$\xi(r)$", "omega": r"$\omega(r)$", "eta": r"$\eta(r)$"}
    for ax, (title, stat, r, draws, r_data, data, err) in zip(axes[0], panels):
        lo95, lo68, med, hi68, hi95 = np.percentile(draws, [2.5, 16, 50, 84, 97.5], axis=0)
        ax.fill_between(r, lo95, hi95, color="C0", alpha=0.2, lw=0, label="95%")
        ax.fill_between(r, lo68, hi68, color="C0", alpha=0.4, lw=0, label="68%")
        ax.plot(r, med, color="C0", lw=1.2, label="emulator, posterior median")
        inside = (r_data >= r[0]) & (r_data <= r[-1])
        ax.errorbar(r_data[inside], data[inside], yerr=np.where(np.isfinite(err), err, 0)[inside], fmt="o", ms=3,
                    color="k", label="data (fitted range)")
        if np.any(~inside):
            ax.errorbar(r_data[~inside], data[~inside], yerr=np.where(np.isfinite(err), err, 0)[~inside], fmt="o",
                        ms=3, mfc="none", color="0.5", label="data (outside emulator)")
        ax.set_xscale("log")
        if stat == "xi":
            ax.set_yscale("log")
        ax.set_xlabel(r"$r$ [$h^{-1}$ Mpc]")
        ax.set_ylabel(labels[stat])
        ax.set_title(title, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    files = _save(fig, os.path.splitext(out)[0] + "_ppd.png")
    plt.close(fig)
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="iaemu-plot", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="+", metavar="CHAIN_PREFIX", help="Cobaya output prefix, e.g. chains/iaemu_tng")
    parser.add_argument("--markers", action="append", default=[],
                        help="reference values to mark, e.g. mu_cen=0.6,mu_sat=0.1 (repeatable)")
    parser.add_argument("--out", default=None, help="output file (PNG; a PDF is written beside it); default: "
                                                    "FIRST_PREFIX_triangle.png")
    parser.add_argument("--burn-in", type=float, default=0.3, help="fraction of each chain dropped (default 0.3)")
    parser.add_argument("--draws", type=int, default=300, help="posterior draws for the predictive band")
    parser.add_argument("--no-ppd", action="store_true", help="skip the posterior-predictive figure")
    import matplotlib

    matplotlib.use("Agg")  # a command: figures go to files, never to a window
    args = parser.parse_args(argv)
    try:
        markers = parse_markers(args.markers)
    except ValueError as excpt:
        parser.error(str(excpt))
    out = args.out or f"{args.prefixes[0]}_triangle.png"
    try:
        files = triangle_plot(args.prefixes, out, markers, args.burn_in)
        if not args.no_ppd:
            files += ppd_plot(args.prefixes, out, args.draws, args.burn_in)
    except (FileNotFoundError, ValueError) as excpt:
        parser.exit(2, f"iaemu-plot: error: {excpt}\n")
    for f in files:
        print(f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
