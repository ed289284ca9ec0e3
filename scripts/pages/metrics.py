"""The page docs/results/emulator_metrics.md (the README's accuracy table), from emulator_metrics.json
(`iaemu-evaluate`): measured values beside the paper's and the targets of `training.emulator.evaluate`."""
from __future__ import annotations

from iaemu_theory.conventions import STATISTICS
from training.emulator.evaluate import PAPER, TARGETS


def _pct(v: float, nd: int = 2) -> str:
    return f"{100 * v:.{nd}f}%"


def render(metrics: dict) -> str:
    """The table of the test metrics; the "Met" column is the verdicts (`targets`) of the JSON."""
    sm, tg = metrics["summary"], metrics["targets"]
    ok = lambda key: "yes" if tg[key]["met"] else "**no**"  # noqa: E731
    xi_t, om_t = TARGETS["xi_mean_fractional_error"], TARGETS["omega_mean_fractional_error"]
    rows = [
        "| Measure (test split) | xi | omega | eta | Paper | Target | Met |",
        "|---|---|---|---|---|---|---|",
        f"| Mean fractional error (mean over bins, no outlier rule) | {_pct(sm['xi']['mean_fractional_error_none'])} | "
        f"{_pct(sm['omega']['mean_fractional_error_none'])} | - | xi {PAPER['xi_mean_fractional_error']}, omega "
        f"{PAPER['omega_mean_fractional_error']} | <= {_pct(xi_t, 0)}, <= {_pct(om_t, 0)} | "
        f"{ok('xi_mean_fractional_error')}, {ok('omega_mean_fractional_error')} |",
        f"| Mean fractional error, `snr` rule (bins where truth > 1 standard error) | "
        f"{_pct(sm['xi']['mean_fractional_error_snr'])} | {_pct(sm['omega']['mean_fractional_error_snr'])} | - | | | |",
        f"| Mean fractional error, `trim95` rule | {_pct(sm['xi']['mean_fractional_error_trim95'])} | "
        f"{_pct(sm['omega']['mean_fractional_error_trim95'])} | - | | | |",
        "| Max over bins of abs(median residual / sigma_true) | " +
        " | ".join(f"{sm[s]['max_abs_median_residual_sigma']:.2f}" for s in STATISTICS) +
        f" | | <= {TARGETS['median_residual_sigma']:g} (omega, eta) | {ok('omega_max_abs_median_residual_sigma')}, "
        f"{ok('eta_max_abs_median_residual_sigma')} |",
        "| Aleatoric calibration, median log10(sigma_pred / sigma_true) | " +
        " | ".join(f"{sm[s]['calibration_dex_median']:+.3f} dex" for s in STATISTICS) +
        f" | {PAPER['calibration_dex']} | within +-{TARGETS['calibration_dex']:g} dex | " +
        ", ".join(ok(f"{s}_calibration_dex") for s in STATISTICS) + " |",
        "| Mean Spearman correlation over bins | " + " | ".join(f"{sm[s]['mean_spearman']:.3f}" for s in STATISTICS)
        + " | | | |",
        "| Mean NRMSE over bins | " + " | ".join(f"{sm[s]['mean_nrmse']:.4f}" for s in STATISTICS) + " | | | |",
        "| Mean SMAPE over bins | " + " | ".join(_pct(sm[s]["mean_smape"]) for s in STATISTICS) + " | | | |",
    ]
    if all("epistemic_over_aleatoric_median" in sm[s] for s in STATISTICS):
        rows.append("| Median sigma_epistemic / sigma_aleatoric | " +
                    " | ".join(f"{sm[s]['epistemic_over_aleatoric_median']:.3f}" for s in STATISTICS) + " | | | |")
    head = (f"Test split: {metrics['n_points']} parameter points x {metrics['n_realisations']} realisations "
            f"(truth = realisation mean; sigma_true = realisation scatter).")
    return head + "\n\n" + "\n".join(rows) + "\n"
