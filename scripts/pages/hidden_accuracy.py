"""The table docs/results/hidden_accuracy.md (included by results/index.md), from hidden_accuracy*.json
(`python -m training.emulator.accuracy`): every hidden-set record beside the test split measured the same way,
with the targets of `training.emulator.accuracy`."""
from __future__ import annotations

import math

from iaemu_theory.conventions import STATISTICS
from training.emulator.accuracy import MAE_NOISE_FACTOR, TARGETS


def _pct(v) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.2f}%"


def _interval(lo_hi) -> str:
    """' [lo-hi%]': a 68% bootstrap interval over the points."""
    return "" if not lo_hi else f" [{100 * lo_hi[0]:.2f}-{100 * lo_hi[1]:.2f}%]"


def _column_name(rec: dict) -> str:
    if "dataset" in rec:
        return f"test split ({rec['n_points']} x {rec['n_realisations']})"
    if rec["n_boxes"] == 1:
        boxes = f"catalog {rec['catalogs'][0]['name']}"
    else:
        floor = ", shape-noise floor" if rec.get("floor") == "within" else ""
        boxes = f"{rec['n_boxes']} boxes mixed{floor}"
    return f"hidden, {boxes} ({rec['n_points']} x {rec['n_realisations']})"


def _mark(rec: dict, key: str) -> str:
    """' (no)' after a value whose target this record does not meet."""
    tg = rec.get("targets", {}).get(key)
    return "" if tg is None or tg["met"] else " (no)"


def emulator_dataset(rec: dict) -> str:
    """The data file (training/data/MANIFEST.json, kept or retired) the record's emulator was trained on."""
    from training.common import datafiles

    digest = rec.get("artifact_dataset_sha256")
    names = {d: n for n, d in datafiles.recorded_files().items()}
    names.update({r["sha256"]: n for n, r in datafiles.retired_files().items()})
    return names.get(digest, f"dataset sha256 {str(digest)[:12]}")


def render(records: list[dict]) -> str:
    """One table per emulator (the shipped one first): a column per hidden-set record, then the test split of the
    first record that measured it."""
    if not records:
        raise ValueError("no hidden-set records to render")
    from training.common.datafiles import SHIPPED_DATASET

    by_emulator: dict[str, list[dict]] = {}
    for rec in records:
        by_emulator.setdefault(emulator_dataset(rec), []).append(rec)
    order = sorted(by_emulator, key=lambda name: (name != SHIPPED_DATASET, name))
    parts = []
    for name in order:
        title = "the shipped emulator" if name == SHIPPED_DATASET else "the previous emulator"
        parts.append(f"**{title}, trained on `{name}`**\n\n" + _table(by_emulator[name]))
    return "\n".join(parts)


def _triple(rec: dict, key: str, fmt: str) -> str:
    """'a / b / c' of a summary key over xi, omega, eta; '-' where the record lacks it (the test split has no MC
    dropout)."""
    vals = [rec["summary"].get(s, {}).get(key) for s in STATISTICS]
    return "-" if any(v is None for v in vals) else " / ".join(fmt.format(v) for v in vals)


def _table(records: list[dict]) -> str:
    cols = sorted(records, key=lambda r: (r["n_boxes"], r["n_points"]))
    test = next((r["test_split"] for r in records if "test_split" in r), None)
    if test is not None:
        cols.append(test)
    g = lambda r, s, k: r["summary"][s].get(k)  # noqa: E731
    lo, hi = TARGETS["coverage_68"]
    cal = TARGETS["calibration_dex"]
    rows = [
        ("xi mean fractional error, measured", "", lambda r: _pct(g(r, "xi", "mean_fractional_error"))),
        ("truth's noise floor: xi s.e. / mean", f"<= {100 * TARGETS['xi_noise_floor']:.1f}%",
         lambda r: _pct(g(r, "xi", "noise_floor")) + _mark(r, "xi_noise_floor")),
        ("... of which shape noise within a box", "", lambda r: _pct(g(r, "xi", "noise_floor_within_box"))),
        (f"**xi own error**, sqrt(err^2 - ({MAE_NOISE_FACTOR:.3f} floor)^2)",
         f"<= {100 * TARGETS['xi_own_mean_fractional_error']:.1f}%",
         lambda r: f"**{_pct(g(r, 'xi', 'own_mean_fractional_error'))}**" + _mark(r, "xi_own_mean_fractional_error")
         + _interval(g(r, "xi", "own_mean_fractional_error_bootstrap_68"))),
        ("... with the log-normal mean exp(mu + s^2 / 2) for the median exp(mu)", "",
         lambda r: _pct(g(r, "xi", "own_mean_fractional_error_lognormal_mean"))),
        ("xi own RMS error (RMS floor removed; exact for any error law)", "",
         lambda r: _pct(g(r, "xi", "own_rms_fractional_error"))),
        (f"c measured from half-truths (Gaussian errors: {MAE_NOISE_FACTOR:.3f})", "",
         lambda r: "-" if not math.isfinite(g(r, "xi", "c_from_halves")) else f"{g(r, 'xi', 'c_from_halves'):.2f}"),
        ("median abs(pred - truth) / s.e., xi / omega / eta", "",
         lambda r: " / ".join(f"{g(r, s, 'median_abs_residual_se'):.2f}" for s in STATISTICS)),
        ("omega median fractional error where truth > 3 s.e., measured", "",
         lambda r: _pct(g(r, "omega", "median_fractional_error_snr3"))
         + _interval(g(r, "omega", "median_fractional_error_snr3_bootstrap_68"))
         + f", {100 * g(r, 'omega', 'snr3_kept_fraction'):.0f}% of bins"),
        ("truth's noise floor: a perfect emulator's omega median", "",
         lambda r: _pct(g(r, "omega", "median_fractional_error_snr3_noise_floor"))),
        ("**omega own median error**, sqrt(median^2 - floor^2)",
         f"<= {100 * TARGETS['omega_own_median_fractional_error']:.0f}%",
         lambda r: f"**{_pct(g(r, 'omega', 'own_median_fractional_error_snr3'))}**"
         + _mark(r, "omega_own_median_fractional_error")
         + _interval(g(r, "omega", "own_median_fractional_error_snr3_bootstrap_68"))),
        ("... the same from half-truths, sqrt(2 median^2 - median_half^2)", "",
         lambda r: _pct(g(r, "omega", "own_median_fractional_error_snr3_from_halves"))),
        ("aleatoric calibration, median log10(sigma_pred / sigma_true), xi / omega / eta [dex]",
         " / ".join(f"+-{cal[s]:g}" for s in STATISTICS),
         lambda r: " / ".join(f"{g(r, s, 'calibration_dex_median'):+.3f}" + _mark(r, f"{s}_calibration_dex")
                              for s in STATISTICS)),
        ("coverage of the aleatoric 68% interval by single realisations, xi / omega / eta", f"{lo:g}-{hi:g}",
         lambda r: " / ".join(f"{g(r, s, 'coverage_68'):.3f}" + _mark(r, f"{s}_coverage_68") for s in STATISTICS)),
        ("epistemic sigma as the emulator's error bar: fraction with abs(pred - truth) < sqrt(var_epi + s.e.^2), "
         "xi / omega / eta", "(0.683)", lambda r: _triple(r, "epistemic_coverage_68", "{:.3f}")),
        ("... the factor on sigma_epistemic that would calibrate it, xi / omega / eta", "(1)",
         lambda r: _triple(r, "epistemic_scale", "{:.2f}")),
    ]
    lines = ["| Measure | Target | " + " | ".join(_column_name(c) for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for name, target, cell in rows:
        cells = [cell(c) for c in cols]
        if any(c != "-" for c in cells):        # a measure none of these records has (older records) is left out
            lines.append(f"| {name} | {target} | " + " | ".join(cells) + " |")
    commands = "\n".join(f"    {r['command']}" for r in cols if "command" in r)
    return ("Hidden sets, each measured with\n\n" + commands + "\n\n" + "\n".join(lines) + "\n\n"
            "(no): target not met; [a-b%]: 68% bootstrap interval over the points. Truth: the realisation mean; "
            "its noise floor: the standard error of that mean "
            "(with several boxes, from the scatter of the box means, so it includes their sample variance); own "
            f"error: the floor removed in quadrature with c = sqrt(2/pi) = {MAE_NOISE_FACTOR:.3f}, exact for "
            "Gaussian errors of a mean absolute error; for the omega median, the floor is the median a perfect "
            "emulator would show against the same truth, removed in quadrature. xi's interval is the network's, in "
            "ln xi.\n")
