"""Measure an emulator on a dataset's test split, the paper's way (`iaemu-evaluate`).

    iaemu-evaluate --artifact iaemu_theory/artifacts/iaemu_default.pt --data training/data/dataset_hires320x3.h5 --out docs/results

Truth per test point and bin: the mean over its realisations, and the scatter of one realisation
sigma_true (standard deviation over realisations, ddof=1), in physical units. (The emulator's xi is
exp(mean ln xi), slightly below the arithmetic mean when the scatter is large; the metrics JSON reports
that offset, measured on the data alone, under "diagnostics".) Measures:

- fractional error |pred - true| / |true|, mean over points per bin (xi, omega); "mean over bins" is the
  headline. The paper's exact outlier rule is not stated in our copy; two stated alternatives are reported
  beside the plain mean: `snr` drops, per bin, points whose truth is within one standard error of zero
  (|true| < sigma_true / sqrt(R), where a fractional error is undefined), `trim95` drops the largest 5%.
- residual in units of the true scatter, (pred - true) / sigma_true: median per bin, all three statistics;
- Spearman rank correlation of pred and true across points, per bin;
- NRMSE per bin: RMSE / (max - min of the truth over the test points); SMAPE: mean 2|p - t| / (|p| + |t|);
- aleatoric calibration: log10(sigma_aleatoric / sigma_true), median per bin and overall;
- epistemic vs aleatoric: median sigma_epistemic / sigma_aleatoric per bin (MC dropout, default 50 passes).

Writes OUT/emulator_metrics.json (with the verdicts against TARGETS under "targets") and figures
OUT/figures/emulator_*.png (like the paper's Fig. 3, Fig. 4 and Appendix D). With `--artifact-metrics` the summary
also goes beside the artifact, as <artifact stem>.metrics.json (one entry per split); the artifact file itself is
never modified.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from iaemu_theory.conventions import STATISTICS
from training.common.cli import add_debug_argument, run_command

#: The accuracy targets (the verdicts of `check_targets`) and the paper's quoted figures.
TARGETS = {"xi_mean_fractional_error": 0.03, "omega_mean_fractional_error": 0.05, "median_residual_sigma": 1.0,
           "calibration_dex": 0.15}
PAPER = {"xi_mean_fractional_error": "~3%", "omega_mean_fractional_error": "~5%", "calibration_dex": "0.34 / 0.18 dex"}
OUTLIER_RULES = ("none", "snr", "trim95")


def truth(ds, rows):
    """(mean, sigma_true) per point, statistic and bin in physical units; (n, 3, 20) each."""
    s = ds.stats[rows]
    return s.mean(axis=1), s.std(axis=1, ddof=1)


def fractional_error(pred, true, sigma, n_real, rule="none"):
    """Per-bin mean of |pred - true| / |true| under an outlier rule (see the module docstring)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.abs(pred - true) / np.abs(true)
    keep = np.isfinite(frac)
    if rule == "snr":
        keep &= np.abs(true) >= sigma / np.sqrt(n_real)
    elif rule == "trim95":
        cut = np.nanpercentile(np.where(keep, frac, np.nan), 95, axis=0)
        keep &= frac <= cut
    elif rule != "none":
        raise ValueError(f"outlier rule {rule!r}; expected one of {OUTLIER_RULES}")
    per_bin = np.array([frac[keep[:, b], b].mean() if keep[:, b].any() else np.nan for b in range(frac.shape[1])])
    return per_bin, keep.mean(axis=0)


def spearman_per_bin(pred, true):
    from scipy.stats import spearmanr
    return np.array([spearmanr(pred[:, b], true[:, b]).statistic for b in range(pred.shape[1])])


def measures(pred: dict, true_mean, true_sigma, n_real) -> dict:
    """All measures (see the module docstring) from predictions and truth arrays."""
    out = {"n_points": int(true_mean.shape[0]), "n_realisations": int(n_real), "per_bin": {}, "summary": {}}
    for k, s in enumerate(STATISTICS):
        if s not in pred:
            continue
        p, t, sig = pred[s], true_mean[:, k], true_sigma[:, k]
        pb, sm = {}, {}
        with np.errstate(divide="ignore", invalid="ignore"):
            resid = (p - t) / sig
            calib = np.log10(np.sqrt(pred[f"{s}_aleatoric_var"]) / sig)
        pb["median_residual_sigma"] = np.nanmedian(resid, axis=0)
        pb["residual_sigma_p16"] = np.nanpercentile(resid, 16, axis=0)
        pb["residual_sigma_p84"] = np.nanpercentile(resid, 84, axis=0)
        pb["spearman"] = spearman_per_bin(p, t)
        rmse = np.sqrt(np.mean((p - t) ** 2, axis=0))
        pb["nrmse"] = rmse / (t.max(axis=0) - t.min(axis=0))
        with np.errstate(divide="ignore", invalid="ignore"):
            pb["smape"] = np.nanmean(2 * np.abs(p - t) / (np.abs(p) + np.abs(t)), axis=0)
        pb["calibration_dex_median"] = np.nanmedian(calib, axis=0)
        sm["calibration_dex_median"] = float(np.nanmedian(calib))
        sm["max_abs_median_residual_sigma"] = float(np.nanmax(np.abs(pb["median_residual_sigma"])))
        sm["mean_spearman"] = float(np.nanmean(pb["spearman"]))
        sm["mean_nrmse"] = float(np.nanmean(pb["nrmse"]))
        sm["mean_smape"] = float(np.nanmean(pb["smape"]))
        if s in ("xi", "omega"):
            for rule in OUTLIER_RULES:
                fe, kept = fractional_error(p, t, sig, n_real, rule)
                pb[f"mean_fractional_error_{rule}"] = fe
                pb[f"kept_fraction_{rule}"] = kept
                sm[f"mean_fractional_error_{rule}"] = float(np.nanmean(fe))
            med_frac = np.nanmedian(np.abs(p - t) / np.abs(t), axis=0)
            pb["median_fractional_error"] = med_frac
            sm["median_fractional_error"] = float(np.nanmean(med_frac))
        if f"{s}_epistemic_var" in pred:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.sqrt(pred[f"{s}_epistemic_var"] / pred[f"{s}_aleatoric_var"])
            pb["epistemic_over_aleatoric_median"] = np.nanmedian(ratio, axis=0)
            sm["epistemic_over_aleatoric_median"] = float(np.nanmedian(ratio))
        out["per_bin"][s] = {key: [float(v) for v in val] for key, val in pb.items()}
        out["summary"][s] = sm
    out["targets"] = check_targets(out["summary"])
    return out


def check_targets(summary: dict) -> dict:
    """Each target of TARGETS with the measured value and whether it is met."""
    res = {}
    for s, key in (("xi", "xi_mean_fractional_error"), ("omega", "omega_mean_fractional_error")):
        if s in summary:
            v = summary[s]["mean_fractional_error_none"]
            res[key] = {"value": v, "target": TARGETS[key], "met": bool(v <= TARGETS[key])}
    for s in ("omega", "eta"):
        if s in summary:
            v = summary[s]["max_abs_median_residual_sigma"]
            t = TARGETS["median_residual_sigma"]
            res[f"{s}_max_abs_median_residual_sigma"] = {"value": v, "target": t, "met": bool(v <= t)}
    for s in summary:
        v = summary[s]["calibration_dex_median"]
        res[f"{s}_calibration_dex"] = {"value": v, "target": TARGETS["calibration_dex"],
                                       "met": bool(abs(v) <= TARGETS["calibration_dex"])}
    return res


# ---------------------------------------------------------------------------------------------- figures
_LABEL = {"xi": r"$\xi(r)$", "omega": r"$\omega(r)$", "eta": r"$\eta(r)$"}


def make_figures(out_dir: Path, r, pred, true_mean, true_sigma, metrics, n_examples=3, seed=0) -> list[Path]:
    import matplotlib.pyplot as plt

    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    pb = metrics["per_bin"]

    # Fig. 3-like: example predictions with aleatoric bands, against the truth with its scatter
    pick = np.random.default_rng(seed).choice(true_mean.shape[0], size=min(n_examples, true_mean.shape[0]), replace=False)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for k, s in enumerate(STATISTICS):
        ax = axes[k]
        for j, i in enumerate(pick):
            c = f"C{j}"
            sig = np.sqrt(pred[f"{s}_aleatoric_var"][i])
            ax.fill_between(r, pred[s][i] - sig, pred[s][i] + sig, color=c, alpha=0.2, lw=0)
            ax.plot(r, pred[s][i], color=c, lw=1.2)
            ax.errorbar(r, true_mean[i, k], yerr=true_sigma[i, k], fmt="o", ms=3, color=c, lw=0.8)
        ax.set_xscale("log")
        if s == "xi":
            ax.set_yscale("log")
        ax.set_xlabel(r"$r\ [h^{-1}{\rm Mpc}]$")
        ax.set_ylabel(_LABEL[s])
    axes[0].set_title("points: realisation mean +- scatter; lines/bands: emulator +- aleatoric", fontsize=9, loc="left")
    fig.tight_layout()
    paths.append(fig_dir / "emulator_examples.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    # Fig. 3-like accuracy summary: fractional error and normalised residuals per bin
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for k, s in enumerate(("xi", "omega")):
        axes[0].plot(r, 100 * np.array(pb[s]["mean_fractional_error_none"]), "o-", ms=3, color=f"C{k}",
                     label=f"{s} (mean)")
        axes[0].plot(r, 100 * np.array(pb[s]["mean_fractional_error_snr"]), "--", color=f"C{k}",
                     label=f"{s} (snr rule)")
    axes[0].axhline(3, color="C0", ls=":", lw=0.8, label="targets 3%, 5%")
    axes[0].axhline(5, color="C1", ls=":", lw=0.8)
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel(r"$r\ [h^{-1}{\rm Mpc}]$")
    axes[0].set_ylabel("fractional error [%]")
    axes[0].legend(fontsize=8)
    for k, s in enumerate(STATISTICS):
        med = np.array(pb[s]["median_residual_sigma"])
        axes[1].plot(r, med, "o-", ms=3, color=f"C{k}", label=s)
        axes[1].fill_between(r, pb[s]["residual_sigma_p16"], pb[s]["residual_sigma_p84"], color=f"C{k}", alpha=0.12)
    axes[1].axhspan(-1, 1, color="0.9", zorder=-1)
    axes[1].set_xscale("log")
    axes[1].set_xlabel(r"$r\ [h^{-1}{\rm Mpc}]$")
    axes[1].set_ylabel(r"(pred - true) / $\sigma_{\rm true}$: median, 16-84%")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    paths.append(fig_dir / "emulator_accuracy.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    # Fig. 4-like: uncertainty calibration and epistemic vs aleatoric
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for k, s in enumerate(STATISTICS):
        axes[0].plot(r, pb[s]["calibration_dex_median"], "o-", ms=3, color=f"C{k}", label=s)
        if "epistemic_over_aleatoric_median" in pb[s]:
            axes[1].plot(r, pb[s]["epistemic_over_aleatoric_median"], "o-", ms=3, color=f"C{k}", label=s)
    axes[0].axhspan(-0.15, 0.15, color="0.9", zorder=-1)
    axes[0].axhline(0, color="k", lw=0.6)
    axes[0].set_ylabel(r"median $\log_{10}(\sigma_{\rm aleatoric} / \sigma_{\rm true})$")
    axes[1].set_ylabel(r"median $\sigma_{\rm epistemic} / \sigma_{\rm aleatoric}$")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel(r"$r\ [h^{-1}{\rm Mpc}]$")
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(fig_dir / "emulator_uncertainty.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    # Appendix D-like: Spearman, NRMSE, SMAPE per bin
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for k, s in enumerate(STATISTICS):
        axes[0].plot(r, pb[s]["spearman"], "o-", ms=3, color=f"C{k}", label=s)
        axes[1].plot(r, pb[s]["nrmse"], "o-", ms=3, color=f"C{k}", label=s)
        axes[2].plot(r, 100 * np.array(pb[s]["smape"]), "o-", ms=3, color=f"C{k}", label=s)
    for ax, name in zip(axes, ("Spearman correlation", "NRMSE (RMSE / range)", "SMAPE [%]")):
        ax.set_xscale("log")
        ax.set_xlabel(r"$r\ [h^{-1}{\rm Mpc}]$")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(fig_dir / "emulator_appendix_d.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


# ---------------------------------------------------------------------------------------------- driver
def artifact_metrics_path(artifact) -> Path:
    """Where the summary metrics of an artifact go: beside it, as <stem>.metrics.json."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.stem + ".metrics.json")


def write_artifact_metrics(artifact, metrics: dict, log=print) -> Path:
    """Record a split's summary metrics in <artifact stem>.metrics.json, keeping the other splits' entries when the
    file describes the same weights (else starting afresh). The artifact is not touched."""
    path = artifact_metrics_path(artifact)
    record = json.loads(path.read_text()) if path.exists() else {}
    if record.get("artifact_weights_sha256") != metrics["artifact_weights_sha256"]:
        record = {"artifact": Path(artifact).name, "artifact_weights_sha256": metrics["artifact_weights_sha256"],
                  "splits": {}}
    record["splits"][metrics["split"]] = {
        "summary": metrics["summary"], "targets": metrics["targets"], "n_points": metrics["n_points"],
        "dataset": Path(metrics["dataset"]).name, "dataset_sha256": metrics["dataset_sha256"],
        "mc_passes": metrics["mc_passes"], "seed": metrics["seed"]}
    path.write_text(json.dumps(record, indent=1) + "\n")
    log(f"{metrics['split']} summary metrics written to {path}")
    return path


def evaluate(artifact, data, out_dir, split="test", mc_passes=50, seed=0, device="auto", figures=True,
             artifact_metrics=False, log=print) -> dict:
    """Evaluate and write the metrics JSON (emulator_metrics.json, with the target verdicts) and figures (and, if
    `artifact_metrics`, the summary beside the artifact: `write_artifact_metrics`). Returns the metrics dict; the
    page emulator_metrics.md is rendered from the JSON by `python scripts/render_docs.py`."""
    from iaemu_theory.emulator import Emulator
    from training.emulator.train import dataset_sha256, load_splits

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    emu = Emulator.load(artifact, device=device)
    ds, rows, report = load_splits(data, log=log)
    if split not in rows:
        raise ValueError(f"split {split!r}; expected one of {list(rows)}")
    idx = rows[split]
    if idx.size < 2:
        raise ValueError(f"the {split} split of {data} has {idx.size} usable points; need at least 2")
    true_mean, true_sigma = truth(ds, idx)
    pred = emu.predict(ds.params[idx], mc_passes=mc_passes, seed=seed)
    metrics = measures(pred, true_mean, true_sigma, ds.n_realisations)
    # The emulator's xi is exp(mean ln xi); the truth here is the arithmetic realisation mean. Their ratio
    # (from the data alone) shows how much of the xi error is this convention rather than the network.
    xi_real = ds.stats[idx][:, :, STATISTICS.index("xi"), :]
    offset = np.median(xi_real.mean(axis=1) / np.exp(np.log(xi_real).mean(axis=1)) - 1, axis=0)
    metrics["diagnostics"] = {"xi_arithmetic_over_geometric_mean_minus_1_median": [float(v) for v in offset]}
    data_hash = dataset_sha256(data)
    metrics.update(split=split, mc_passes=mc_passes, seed=seed, artifact=str(artifact), dataset=str(data),
                   dataset_sha256=data_hash, artifact_dataset_sha256=emu.artifact.dataset_hash,
                   trained_on_this_dataset=emu.artifact.dataset_hash == data_hash,
                   artifact_weights_sha256=emu.artifact.weights_sha256, r=[float(v) for v in emu.r])
    if not metrics["trained_on_this_dataset"]:
        log(f"warning: the artifact was trained on a different dataset (sha256 {str(emu.artifact.dataset_hash)[:12]}...)"
            f" than {data} ({data_hash[:12]}...): the test split may overlap its training points")
    (out_dir / "emulator_metrics.json").write_text(json.dumps(metrics, indent=1))
    if figures:
        metrics["figures"] = [str(p) for p in make_figures(out_dir, emu.r, pred, true_mean, true_sigma, metrics)]
    if artifact_metrics:
        write_artifact_metrics(artifact, metrics, log=log)
    for key, v in metrics["targets"].items():
        log(f"{key}: {v['value']:.4g} (target {v['target']:g}): {'met' if v['met'] else 'NOT met'}")
    log(f"render the page: python scripts/render_docs.py --results {out_dir}")
    return metrics


def build_parser():
    p = argparse.ArgumentParser(prog="iaemu-evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--artifact", default=None, help="artifact file (default: the shipped one)")
    p.add_argument("--data", required=True, help="dataset HDF5 file with a split")
    p.add_argument("--out", default="docs/results", help="folder for the metrics JSON and figures/")
    p.add_argument("--split", default="test", choices=("test", "validation", "train"))
    p.add_argument("--mc-passes", type=int, default=50, help="MC-dropout passes for the epistemic variance (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--artifact-metrics", action="store_true",
                   help="also write the summary metrics beside the artifact, as <artifact stem>.metrics.json")
    add_debug_argument(p)
    return p


def main(argv=None) -> int:
    """Entry point of `iaemu-evaluate`; returns the exit status (see `training.common.cli.run_command`)."""
    return run_command("iaemu-evaluate", _main, argv)


def _main(argv: list) -> int:
    args = build_parser().parse_args(argv)
    from iaemu_theory.artifact import DEFAULT_ARTIFACT

    evaluate(args.artifact or DEFAULT_ARTIFACT, args.data, args.out, split=args.split, mc_passes=args.mc_passes,
             seed=args.seed, device=args.device, figures=not args.no_figures, artifact_metrics=args.artifact_metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
