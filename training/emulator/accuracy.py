"""The emulator's accuracy on a fresh hidden set, with the truth's own noise floor removed (`iaemu-accuracy`).

    python -m training.emulator.accuracy [--catalogs hires320x3 | CATALOG ...] [--points 25] [--realisations R]
        [--seed 20250] [--data training/data/dataset_hires320x3.h5] [--out docs/results/hidden_accuracy.json]

Hidden points: candidate k is drawn uniformly (independent draws, not a low-discrepancy sequence) in the unit cube
from `numpy.random.default_rng(SeedSequence(seed, spawn_key=(k, 0)))` and mapped into the artifact's training domain
(`Domain.from_unit`); the dataset's design is a scrambled Sobol' sequence of its own master seed, so no hidden point
is a design point (with --data the nearest design point's distance is reported and the dataset's master seed is
refused as --seed). Each candidate is populated with the fast populate (`training.mocks.fastpop`), R realisations
spread evenly over the catalogs (R/B per box, box-major; box b's master seed from SeedSequence(seed, spawn_key=(k,
1 + b))), and kept when it passes the training set's cleaning rules (`training.dataset.manage.rule_masks`) over all R
realisations (--rules selects among them); candidates are taken in order until N are kept.

Truth per point and bin: the mean over its R realisations; sigma_true, the scatter of one realisation about it
(std, ddof=1, over all R: with several boxes it includes their sample variance); se, the standard error of the mean
(one box: sigma_true / sqrt(R); B boxes: std over the B box means / sqrt(B), divided by the c4(B) bias factor of a
Gaussian standard deviation, so that it includes the boxes' sample variance). On the emulator's own training boxes
(`--floor within`, chosen by the default `--floor auto` when the catalogs' set hash is the artifact's training
catalog hash) the box means are shared by truth and emulator, so only the shape noise within the boxes, the
pooled within-box scatter / sqrt(R), is noise of the truth.

Measures (`hidden_measures`; those of the test split, `training.emulator.evaluate.measures`, are reused, and kept
under "standard"):

- xi mean fractional error: mean over bins of the mean over points of |pred - true| / |true| (evaluate's
  `fractional_error`, no outlier rule); the truth's noise floor: the same mean of se / |true|;
- the same for xi with the log-normal mean exp(mu + s^2 / 2) (s^2 the predicted Var[ln xi]) in place of the
  emulator's median exp(mu): the truths are arithmetic means of the realisations;
- the emulator's own error, sqrt(err^2 - (c floor)^2) (`remove_noise_floor`), with c = sqrt(2/pi) = 0.798: with an
  emulator error d ~ N(0, s_d^2) and a truth error e ~ N(0, s^2) per point and bin, E|d - e| = sqrt(2/pi)
  sqrt(s_d^2 + s^2) and E|d| = sqrt(2/pi) s_d, so E|d| = sqrt(E|d - e|^2 - (2/pi) s^2) exactly, where s is the
  standard error (a standard deviation, not a mean absolute deviation). For an error that is systematic (|d| >> s
  at every point) the noise adds nothing to E|d - e| and the removal subtracts too much; `own_rms_fractional_error`
  (RMS error with the mean squared floor removed, exact for any error distribution) and `c_from_halves` (c measured
  from the error against half-truths of R/2 realisations, which carry twice the within-box noise variance) check the
  constant on the data;
- omega (and eta) median fractional error over the (point, bin) pairs where |true| > 3 se; the truth's noise
  floor for it, the median a perfect emulator would show against this truth (|z| se / |true| over those pairs and
  seeded normal draws z, `noise_only_median`), and the emulator's own median error sqrt(median^2 - floor^2) (exact
  when the emulator's error and the truth's noise scale alike over the pairs); checked on the data by the median
  against half-truths (twice the noise variance: own^2 = 2 median^2 - median_half^2);
- median |pred - true| / se;
- the epistemic variance as an error bar on the emulator itself: the fraction of (point, bin) pairs with
  |pred - true| < sqrt(var_epistemic + se^2) (0.683 when calibrated), and the factor on sigma_epistemic that would
  calibrate it (`epistemic_scale`; 1 when calibrated);
- aleatoric calibration: median log10(sigma_aleatoric / sigma_true) (as evaluate's);
- 68% bootstrap intervals over the points (`bootstrap_68`) for the own xi error and the omega median error;
- coverage: the fraction of single realisations inside the predicted aleatoric 68% interval, pred +- sigma_aleatoric
  for omega and eta, pred exp(+-sigma_aleatoric / pred) for xi (the network's interval in ln xi).

Resumable: every candidate's measurement is saved to OUT.parts/ as it finishes (atomic writes), so a killed run
continues where it stopped and gives the same JSON; the folder is removed once the record is written (--keep-parts
keeps it). The truths depend on the catalogs, the domain, R and the seed, not on the artifact: a retrained emulator
with the same domain is measured on the same truths. With --data the same measures are taken on the dataset's test
split (without MC dropout). The command writes only the JSON; `scripts/render_docs.py` renders
docs/results/hidden_accuracy.md from every docs/results/hidden_accuracy*.json.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from iaemu_theory.conventions import BIN_EDGES, PARAM_NAMES, STATISTICS
from training.catalogs.sources import DEFAULT_CATALOG, expand_catalog_names, set_hash
from training.common.cli import add_debug_argument, check_output_path, positive_int, run_command, seed_type
from training.common.fileio import atomic_savez, atomic_write_text, exclusive_lock
from training.dataset.manage import CLEANING_RULES
from training.emulator.evaluate import fractional_error, measures

#: E|z| of a standard normal: the mean absolute error a noise of standard deviation s adds in quadrature is c s.
MAE_NOISE_FACTOR = math.sqrt(2.0 / math.pi)
DEFAULT_SEED = 20250
DEFAULT_OUT = "docs/results/hidden_accuracy.json"
#: Targets for the hidden-set measures.
TARGETS = {"xi_own_mean_fractional_error": 0.020, "xi_noise_floor": 0.012, "omega_own_median_fractional_error": 0.04,
           "calibration_dex": {"xi": 0.15, "omega": 0.05, "eta": 0.05}, "coverage_68": (0.63, 0.73)}
SNR_THRESHOLD = 3.0
BOOTSTRAP_RESAMPLES = 1000
PARTS_VERSION = 1


# ---------------------------------------------------------------------------------------------- metrics
def remove_noise_floor(error, floor, c: float = MAE_NOISE_FACTOR):
    """The emulator's own error sqrt(error^2 - (c floor)^2) (see the module docstring for c); 0 where the
    measured error is within the floor (the emulator's error is then not resolved by the truth)."""
    error, floor = np.asarray(error, dtype=float), np.asarray(floor, dtype=float)
    if np.any(floor < 0) or np.any(error < 0):
        raise ValueError(f"error {error} and floor {floor} must be >= 0")
    own = np.sqrt(np.maximum(error**2 - (c * floor) ** 2, 0.0))
    return float(own) if own.ndim == 0 else own


def noise_only_median(rel_se: np.ndarray, draws: int = 64, seed: int = 0) -> float:
    """The median fractional error of a perfect emulator against truths whose relative standard errors are
    `rel_se` (one per (point, bin) pair): the median of |z| rel_se over the pairs and `draws` seeded normal z."""
    rel_se = np.asarray(rel_se, dtype=float).ravel()
    if rel_se.size == 0:
        return float("nan")
    z = np.random.default_rng(seed).standard_normal((draws, rel_se.size))
    return float(np.median(np.abs(z) * rel_se))


def epistemic_scale(residual: np.ndarray, epistemic_var: np.ndarray, se: np.ndarray) -> float:
    """The factor k on sigma_epistemic for which |pred - truth| / sqrt(k^2 var_epistemic + se^2) has the median of
    |N(0, 1)|, 0.674: 1 when the epistemic sigma describes the emulator's own error, > 1 when it is too small. 0 when
    the truth's noise alone explains the residuals; inf when no finite k does (bisection in log k)."""
    r, v, e = (np.asarray(a, dtype=float).ravel() for a in (residual, epistemic_var, se))
    ok = np.isfinite(r) & np.isfinite(v) & np.isfinite(e) & (v > 0)
    r, v, e = np.abs(r[ok]), v[ok], e[ok]
    if r.size == 0:
        return float("nan")
    target = 0.6745
    med = lambda k: np.median(r / np.sqrt(k * k * v + e * e))  # noqa: E731  (decreasing in k)
    lo, hi = 1e-4, 1e4
    if med(lo) <= target:
        return 0.0
    if med(hi) > target:
        return float("inf")
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if med(mid) > target else (lo, mid)
    return float(math.sqrt(lo * hi))


def bootstrap_68(statistic, n_points: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> list[float]:
    """16th and 84th percentiles of statistic(rows) over bootstrap resamples of the points (the uncertainty that
    the choice of points adds to a figure; seeded, so reproducible)."""
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        draws = [statistic(rng.integers(0, n_points, n_points)) for _ in range(resamples)]
        return [float(v) for v in np.nanpercentile(draws, [16, 84])]


def c4(n: int) -> float:
    """E[s] / sigma for the standard deviation s (ddof=1) of n Gaussian draws."""
    return math.sqrt(2.0 / (n - 1)) * math.exp(math.lgamma(n / 2.0) - math.lgamma((n - 1) / 2.0))


#: The noise floors: "boxes" counts the boxes' sample variance (truths on boxes the emulator was not trained on);
#: "within" only the shape noise within a box (truths on its own training boxes, whose means it shares); "auto"
#: (the command's default) is "within" when the catalogs are the emulator's training catalog set, else "boxes".
FLOORS = ("boxes", "within")


def pooled_within_se(stats: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(P, 3, N) standard error of the realisation mean from the scatter within boxes: the pooled within-box
    variance (sum of squares about each box's mean over R - K degrees of freedom) / R, for realisations (P, R, 3, N)
    whose box labels are `boxes` (P, R), any number per box (a box with one realisation adds no degree of freedom)."""
    p, r = stats.shape[:2]
    boxes = np.asarray(boxes)
    if boxes.shape != (p, r):
        raise ValueError(f"box labels of shape {boxes.shape}, expected {(p, r)}")
    ss = np.zeros((p, *stats.shape[2:]))
    dof = np.zeros(p)
    for b in np.unique(boxes):
        m = (boxes == b)[:, :, None, None]
        n = m.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_b = np.where(n > 0, np.sum(np.where(m, stats, 0.0), axis=1) / n, 0.0)
        ss += np.sum(np.where(m, (stats - mean_b[:, None]) ** 2, 0.0), axis=1)
        dof += np.maximum((boxes == b).sum(axis=1) - 1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(ss / np.where(dof > 0, dof, np.nan)[:, None, None] / r)


def truth_with_floor(stats: np.ndarray, n_boxes: int = 1, floor: str = "boxes", boxes: np.ndarray | None = None) -> dict:
    """Truth of (P, R, 3, N) realisations, box-major (R/B per box): mean, sigma_true, se and se_within (the shape
    noise alone: pooled within-box scatter / sqrt(R)), each (P, 3, N); with floor="within", se is se_within. See
    the module docstring. `boxes` (P, R), box labels of realisations in any order (a dataset on a catalog set,
    n_boxes=1), gives se_within and, with floor="within", se from `pooled_within_se`."""
    if floor not in FLOORS:
        raise ValueError(f"floor {floor!r}: expected one of {list(FLOORS)}")
    if boxes is not None:
        mean, sigma, within = stats.mean(axis=1), stats.std(axis=1, ddof=1), pooled_within_se(stats, boxes)
        se = within if floor == "within" else sigma / np.sqrt(stats.shape[1])
        return {"mean": mean, "sigma": sigma, "se": se, "se_within": within}
    p, r = stats.shape[:2]
    if n_boxes < 1 or r % n_boxes or r // n_boxes < 2:
        raise ValueError(f"{r} realisations cannot be spread evenly over {n_boxes} boxes with at least 2 each")
    per = stats.reshape(p, n_boxes, r // n_boxes, *stats.shape[2:])
    mean = stats.mean(axis=1)
    sigma = stats.std(axis=1, ddof=1)
    se_within = pooled_within_se(stats, np.broadcast_to(np.repeat(np.arange(n_boxes), r // n_boxes), (p, r)))
    if n_boxes == 1:
        se = sigma / np.sqrt(r)
    elif floor == "within":
        se = se_within
    else:
        se = per.mean(axis=2).std(axis=1, ddof=1) / np.sqrt(n_boxes) / c4(n_boxes)
    return {"mean": mean, "sigma": sigma, "se": se, "se_within": se_within}


def _halves(stats: np.ndarray, n_boxes: int) -> list[np.ndarray] | None:
    """The means of the first and second half of every box's realisations, or None when R/B is odd."""
    p, r = stats.shape[:2]
    m = r // n_boxes
    if m % 2:
        return None
    per = stats.reshape(p, n_boxes, m, *stats.shape[2:])
    return [per[:, :, :m // 2].mean(axis=(1, 2)), per[:, :, m // 2:].mean(axis=(1, 2))]


def _coverage(stat: str, pred: np.ndarray, var: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """Per bin, the fraction of single realisations (P, R, N) inside the predicted aleatoric 68% interval."""
    sig = np.sqrt(var)[:, None, :]
    if stat == "xi":
        with np.errstate(divide="ignore", invalid="ignore"):
            inside = np.abs(np.log(stats / pred[:, None, :])) <= sig / pred[:, None, :]
    else:
        inside = np.abs(stats - pred[:, None, :]) <= sig
    return inside.mean(axis=(0, 1))


def hidden_measures(pred: dict, stats: np.ndarray, n_boxes: int = 1, resamples: int = BOOTSTRAP_RESAMPLES,
                    floor: str = "boxes", boxes: np.ndarray | None = None) -> dict:
    """Every measure of the module docstring from predictions {stat, stat_aleatoric_var[, _epistemic_var]: (P, N)}
    and realisations (P, R, 3, N), box-major over n_boxes; `resamples` bootstrap resamples for the intervals;
    `floor` and `boxes` as truth_with_floor's."""
    t = truth_with_floor(stats, n_boxes, floor, boxes)
    n_real = stats.shape[1]
    out = {"n_points": int(stats.shape[0]), "n_realisations": int(n_real), "n_boxes": int(n_boxes),
           "floor": floor if (n_boxes > 1 or boxes is not None) else "within",
           "noise_factor_c": MAE_NOISE_FACTOR, "summary": {}, "per_bin": {}}
    halves = _halves(stats, n_boxes)
    for k, s in enumerate(STATISTICS):
        if s not in pred:
            continue
        p, true, se, sig = pred[s], t["mean"][:, k], t["se"][:, k], t["sigma"][:, k]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.abs(p - true) / np.abs(true)
            rel_se = se / np.abs(true)
            rel_se_within = t["se_within"][:, k] / np.abs(true)
            z = np.abs(p - true) / se
        sm, pb = {}, {}
        sm["median_abs_residual_se"] = float(np.nanmedian(z))
        if f"{s}_epistemic_var" in pred:
            epi = pred[f"{s}_epistemic_var"]
            with np.errstate(divide="ignore", invalid="ignore"):
                z_epi = np.abs(p - true) / np.sqrt(epi + se**2)
            sm["epistemic_coverage_68"] = float(np.mean(z_epi[np.isfinite(z_epi)] < 1.0))
            sm["epistemic_scale"] = epistemic_scale(p - true, epi, se)
        cov = _coverage(s, p, pred[f"{s}_aleatoric_var"], stats[:, :, k, :])
        pb["coverage_68"], sm["coverage_68"] = cov, float(cov.mean())
        bright = np.abs(true) > SNR_THRESHOLD * se
        sm["median_fractional_error_snr3"] = float(np.median(frac[bright])) if bright.any() else float("nan")
        sm["median_fractional_error_snr3_bootstrap_68"] = bootstrap_68(
            lambda i: np.median(frac[i][bright[i]]) if bright[i].any() else np.nan, frac.shape[0], resamples)
        sm["snr3_kept_fraction"] = float(bright.mean())
        median = sm["median_fractional_error_snr3"]
        sm["median_fractional_error_snr3_noise_floor"] = noise_only_median(rel_se[bright])

        def own_median(i, draws=16):
            f, a = frac[i][bright[i]], rel_se[i][bright[i]]
            return remove_noise_floor(np.median(f), noise_only_median(a, draws), c=1.0) if f.size else float("nan")
        sm["own_median_fractional_error_snr3"] = own_median(slice(None), draws=64)
        sm["own_median_fractional_error_snr3_bootstrap_68"] = bootstrap_68(own_median, frac.shape[0], resamples)
        if halves is not None and bright.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                half = float(np.mean([np.median((np.abs(p - h[:, k]) / np.abs(true))[bright]) for h in halves]))
            sm["median_fractional_error_snr3_half_truths"] = half
            sm["own_median_fractional_error_snr3_from_halves"] = float(np.sqrt(max(2 * median**2 - half**2, 0.0)))
        pb["median_fractional_error_snr3"] = np.array([np.median(frac[bright[:, b], b]) if bright[:, b].any()
                                                       else np.nan for b in range(frac.shape[1])])
        if s in ("xi", "omega"):
            err_bin, _ = fractional_error(p, true, sig, n_real, "none")
            floor_bin = np.nanmean(np.where(np.isfinite(frac), rel_se, np.nan), axis=0)
            err, floor = float(np.nanmean(err_bin)), float(np.nanmean(floor_bin))
            pb["mean_fractional_error"], pb["noise_floor"] = err_bin, floor_bin
            pb["own_mean_fractional_error"] = remove_noise_floor(err_bin, floor_bin)
            if s == "xi":       # the log-normal mean exp(mu + s^2 / 2) instead of the median exp(mu)
                with np.errstate(divide="ignore", invalid="ignore"):
                    p_mean = p * np.exp(0.5 * pred["xi_aleatoric_var"] / p**2)
                err_mean = float(np.nanmean(fractional_error(p_mean, true, sig, n_real, "none")[0]))
                sm["own_mean_fractional_error_lognormal_mean"] = remove_noise_floor(err_mean, floor)
            sm.update(mean_fractional_error=err, noise_floor=floor,
                      noise_floor_within_box=float(np.nanmean(rel_se_within[np.isfinite(frac)])),
                      own_mean_fractional_error=remove_noise_floor(err, floor),
                      own_mean_fractional_error_per_bin_removal=float(np.nanmean(pb["own_mean_fractional_error"])))
            ok = np.isfinite(frac)
            fr, fl = np.where(ok, frac, np.nan), np.where(ok, rel_se, np.nan)
            sm["own_mean_fractional_error_bootstrap_68"] = bootstrap_68(
                lambda i: remove_noise_floor(np.nanmean(np.nanmean(fr[i], axis=0)),
                                             np.nanmean(np.nanmean(fl[i], axis=0))), frac.shape[0], resamples)
            rms, rms_floor = np.sqrt(np.mean(frac[ok] ** 2)), np.sqrt(np.mean(rel_se[ok] ** 2))
            sm.update(rms_fractional_error=float(rms), rms_noise_floor=float(rms_floor),
                      own_rms_fractional_error=remove_noise_floor(rms, rms_floor, c=1.0))
            sm["c_from_halves"] = float("nan")
            if halves is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    half_err = np.mean([np.nanmean(np.abs(p - h[:, k]) / np.abs(true)) for h in halves])
                full_err = np.nanmean(frac)
                within = np.nanmean(rel_se_within[ok])
                c2 = (half_err**2 - full_err**2) / within**2
                sm.update(mean_fractional_error_half_truths=float(half_err), c_from_halves=float(np.sign(c2) *
                                                                                              np.sqrt(abs(c2))))
        out["summary"][s] = sm
        out["per_bin"][s] = {key: [float(v) for v in val] for key, val in pb.items()}
    std = measures(pred, t["mean"], t["sigma"], n_real)
    for s in out["summary"]:
        out["summary"][s]["calibration_dex_median"] = std["summary"][s]["calibration_dex_median"]
        if "epistemic_over_aleatoric_median" in std["summary"][s]:
            out["summary"][s]["epistemic_over_aleatoric_median"] = std["summary"][s]["epistemic_over_aleatoric_median"]
    if "xi" in pred:
        xi = stats[:, :, STATISTICS.index("xi"), :]
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            off = np.nanmedian(xi.mean(axis=1) / np.exp(np.log(xi).mean(axis=1)) - 1, axis=0)
        out["summary"]["xi"]["arithmetic_over_geometric_mean_minus_1"] = float(np.nanmean(off))
    out["standard"] = {"summary": std["summary"], "per_bin": std["per_bin"]}
    out["targets"] = check_targets(out["summary"])
    return out


def check_targets(summary: dict) -> dict:
    """Each target of TARGETS with the measured value and whether it is met."""
    res = {}

    def put(key, value, target, met):
        res[key] = {"value": value, "target": target, "met": bool(met)}

    if "xi" in summary:
        v = summary["xi"]["own_mean_fractional_error"]
        put("xi_own_mean_fractional_error", v, TARGETS["xi_own_mean_fractional_error"],
            v <= TARGETS["xi_own_mean_fractional_error"])
        v = summary["xi"]["noise_floor"]
        put("xi_noise_floor", v, TARGETS["xi_noise_floor"], v <= TARGETS["xi_noise_floor"])
    if "omega" in summary:
        v = summary["omega"]["own_median_fractional_error_snr3"]
        put("omega_own_median_fractional_error", v, TARGETS["omega_own_median_fractional_error"],
            v <= TARGETS["omega_own_median_fractional_error"])
    lo, hi = TARGETS["coverage_68"]
    for s in summary:
        v, lim = summary[s]["calibration_dex_median"], TARGETS["calibration_dex"][s]
        put(f"{s}_calibration_dex", v, lim, abs(v) <= lim)
        v = summary[s]["coverage_68"]
        put(f"{s}_coverage_68", v, [lo, hi], lo <= v <= hi)
    return res


# ---------------------------------------------------------------------------------------------- hidden set
def candidate(domain, seed: int, k: int, n_boxes: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(unit point (7,), parameters (7,), master seed of each box) of hidden candidate k (module docstring)."""
    u = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(k, 0))).random(len(PARAM_NAMES))
    seeds = [int(np.random.SeedSequence(seed, spawn_key=(k, 1 + b)).generate_state(1, np.uint64)[0] >> np.uint64(1))
             for b in range(n_boxes)]
    return u, domain.from_unit(u)[0], seeds


def measure_candidate(models: list, params: np.ndarray, seeds: list[int], realisations: int,
                      rules=CLEANING_RULES) -> dict:
    """R realisations of one point, R/B on each model (box-major), and which of the cleaning `rules` it fails."""
    from training.dataset.manage import rule_masks
    from training.dataset.schema import STATUS_DONE, STATUS_NAN, Dataset

    per = realisations // len(models)
    p = dict(zip(PARAM_NAMES, (float(v) for v in params)))
    results = [m.measure(p, s, n_realisations=per) for m, s in zip(models, seeds)]
    stats = np.concatenate([r.stats for r in results])
    n_gal = np.concatenate([r.n_galaxies for r in results])
    real_seeds = np.concatenate([r.seeds for r in results]).astype(np.uint64)
    status = STATUS_NAN if any(r.nan_flag for r in results) else STATUS_DONE
    ds = Dataset(params[None].astype(np.float64), stats[None], n_gal[None], real_seeds[None], np.array([status]))
    masks = rule_masks(ds)
    failed = [rule for rule in rules if masks[rule][0]]
    return dict(params=np.asarray(params, dtype=np.float64), stats=stats, n_galaxies=n_gal, seeds=real_seeds,
                failed=np.array(",".join(failed)))


def parts_dir(out) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


def _check_manifest(folder: Path, manifest: dict) -> None:
    """Write the parts' manifest, or refuse parts made with other settings."""
    path = folder / "manifest.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != manifest:
            diff = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
            raise ValueError(f"{folder} holds candidates measured with other settings ({', '.join(diff)}: "
                             f"{[old.get(k) for k in diff]} there, {[manifest.get(k) for k in diff]} now); delete "
                             f"the folder or choose another --out")
    else:
        atomic_write_text(path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _load_part(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def hidden_set(catalog_names: list[str], domain, n_points: int, realisations: int, seed: int, folder: Path,
               max_candidates: int | None = None, rules=CLEANING_RULES, log=print) -> tuple[list[dict], list[dict]]:
    """Measure (or load from `folder`) candidates in order until n_points pass the cleaning rules.
    Returns (kept parts, every candidate's short record)."""
    from training.catalogs.sources import load_catalog
    from training.mocks.fastpop import mock_model

    b = len(catalog_names)
    bad = [r for r in rules if r not in CLEANING_RULES]
    if bad:
        raise ValueError(f"cleaning rules {bad}: expected some of {list(CLEANING_RULES)}")
    if realisations % b or realisations // b < 2:
        raise ValueError(f"--realisations {realisations} must be a multiple of the {b} catalogs with at least 2 per "
                         f"catalog (e.g. {max(2, -(-realisations // b)) * b})")
    catalogs = [load_catalog(name) for name in catalog_names]
    manifest = {"version": PARTS_VERSION, "seed": seed, "realisations": realisations, "populate": "fast",
                "rules": list(rules), "domain": domain.to_dict(), "bin_edges": [float(v) for v in BIN_EDGES],
                "catalogs": [{"catalog_id": c.catalog_id, "catalog_hash": c.catalog_hash} for c in catalogs]}
    folder.mkdir(exist_ok=True)
    _check_manifest(folder, manifest)
    models = None
    max_candidates = max_candidates or 20 * n_points
    kept, records = [], []
    k = 0
    while len(kept) < n_points:
        if k >= max_candidates:
            raise ValueError(f"only {len(kept)} of {k} candidates passed the cleaning rules; need {n_points} (raise "
                             f"--max-candidates, or lower --points or --realisations)")
        u, params, seeds = candidate(domain, seed, k, b)
        path = folder / f"candidate_{k:05d}.npz"
        if path.exists():
            part = _load_part(path)
        else:
            if models is None:
                models = [mock_model(c, populate="fast") for c in catalogs]
            t0 = time.perf_counter()
            part = measure_candidate(models, params, seeds, realisations, rules)
            atomic_savez(path, **part)
            log(f"candidate {k}: {time.perf_counter() - t0:.2f} s, {part['n_galaxies'].mean():.0f} galaxies"
                + (f", rejected ({part['failed']})" if str(part["failed"]) else f", kept ({len(kept) + 1}/{n_points})"))
        if not np.array_equal(part["params"], params):
            raise ValueError(f"{path} holds parameters {part['params']}, not candidate {k}'s {params}; delete {folder}")
        failed = str(part["failed"])
        records.append({"candidate": k, "unit": [float(v) for v in u], "kept": not failed,
                        "failed_rules": failed.split(",") if failed else [],
                        "mean_galaxies": float(part["n_galaxies"].mean())})
        if not failed:
            kept.append(part)
        k += 1
    return kept, records


def default_realisations(n_boxes: int, at_least: int = 40) -> int:
    """The hidden set's realisations per point when not given: at least `at_least`, a multiple of the boxes."""
    return -(-int(at_least) // int(n_boxes)) * int(n_boxes)


def evaluate_hidden(artifact, catalogs=(DEFAULT_CATALOG,), out=DEFAULT_OUT, n_points: int = 25,
                    realisations: int | None = None,
                    seed: int = DEFAULT_SEED, data=None, mc_passes: int = 50, max_candidates: int | None = None,
                    rules=CLEANING_RULES, keep_parts: bool = False, floor: str = "auto", log=print) -> dict:
    """Measure the hidden set (resumably), predict, write the JSON record to `out`; returns the record."""
    from iaemu_theory.emulator import Emulator

    out = Path(out)
    if n_points < 2:
        raise ValueError(f"--points {n_points}: need at least 2 hidden points")
    names = [str(c) for c in catalogs]
    catalogs = expand_catalog_names(names)
    if not catalogs:
        raise ValueError("--catalogs: give at least one catalog")
    realisations = default_realisations(len(catalogs)) if realisations is None else int(realisations)
    command = (f"python -m training.emulator.accuracy --catalogs {' '.join(names)} --points {n_points} "
               f"--realisations {realisations} --seed {seed} --mc-passes {mc_passes}"
               + (f" --rules {' '.join(rules)}" if tuple(rules) != CLEANING_RULES else "")
               + (f" --floor {floor}" if floor != "auto" else "")
               + (f" --data {data}" if data else "") + f" --out {out}")
    emu = Emulator.load(artifact)
    test = design = None
    if data is not None:
        test, design = _test_split(emu, data, seed, log)
    with exclusive_lock(out, command):
        folder = parts_dir(out)
        kept, records = hidden_set(catalogs, emu.domain, n_points, realisations, seed, folder, max_candidates,
                                   rules, log)
        params = np.stack([p["params"] for p in kept])
        stats = np.stack([p["stats"] for p in kept])
        pred = emu.predict(params, mc_passes=mc_passes, seed=0, outside="raise")
        ids = json.loads((folder / "manifest.json").read_text())["catalogs"]
        own = len(ids) > 1 and trained_on(emu, set_hash([c["catalog_hash"] for c in ids]))
        if floor == "auto":
            floor = "within" if own else "boxes"
        record = hidden_measures(pred, stats, n_boxes=len(catalogs), floor=floor)
        record["catalogs_are_training_set"] = bool(own)
        record.update(
            command=command, seed=seed, design="independent uniform draws in the unit cube, "
            "numpy default_rng(SeedSequence(seed, spawn_key=(k, 0))), mapped by Domain.from_unit",
            populate="fast", cleaning_rules=list(rules), catalogs=[dict(name=n, **c) for n, c in zip(catalogs, ids)],
            artifact=Path(emu.artifact.path).name, artifact_weights_sha256=emu.artifact.weights_sha256,
            artifact_dataset_sha256=emu.artifact.dataset_hash, mc_passes=mc_passes,
            candidates=len(records), rejected=sum(not r["kept"] for r in records),
            points=[{**dict(zip(PARAM_NAMES, (float(v) for v in p["params"]))),
                     "mean_galaxies": float(p["n_galaxies"].mean())} for p in kept],
            rejected_candidates=[r for r in records if not r["kept"]])
        if design is not None:
            units = np.array([r["unit"] for r in records if r["kept"]])
            dist = np.sqrt(((units[:, None, :] - design[None]) ** 2).sum(axis=2)).min(axis=1)
            record["nearest_design_point_unit_distance"] = {"min": float(dist.min()), "median": float(np.median(dist))}
            record["test_split"] = test
        atomic_write_text(out, json.dumps(record, indent=1) + "\n")
        if not keep_parts:
            for f in sorted(folder.iterdir()):
                f.unlink()
            folder.rmdir()
    log(summary_text(record))
    log(f"written {out}")
    return record


def _test_split(emu, data, seed, log):
    """The hidden measures on the dataset's test split (10-realisation truths) and its design in unit coordinates."""
    from training.emulator.train import dataset_sha256, load_splits

    ds, rows, _ = load_splits(data, log=log)
    master = ds.attrs.get("master_seed")
    if master is not None and int(master) == int(seed):
        raise ValueError(f"--seed {seed} is the dataset's own master seed; choose another so that the hidden set is "
                         f"drawn independently of {data}'s design")
    idx = rows["test"]
    pred = emu.predict(ds.params[idx], outside="ignore")      # no MC dropout: none of these measures needs it
    boxes = dataset_boxes(ds, idx)
    own = boxes is not None and trained_on(emu, ds.attrs.get("catalog_hash"))
    test = hidden_measures(pred, ds.stats[idx], n_boxes=1, boxes=boxes, floor="within" if own else "boxes")
    if boxes is not None:
        test["n_boxes_in_set"] = int(boxes.max()) + 1
    test.pop("standard")
    digest = dataset_sha256(data)
    test.update(dataset=Path(data).name, dataset_sha256=digest, trained_on_this_dataset=emu.artifact.dataset_hash == digest)
    return test, _to_unit(emu.domain, ds.params)


def trained_on(emu, catalog_hash) -> bool:
    """Whether the emulator's training data were measured on the catalog (or catalog set) of this hash."""
    return (emu.artifact.training or {}).get("catalog_hash") == catalog_hash


def dataset_boxes(ds, rows) -> np.ndarray | None:
    """(len(rows), R) box of each realisation of a dataset measured on a catalog set (the generator's
    box_of_realisation of the design point's seed), or None for a single catalog."""
    from training.catalogs.sources import set_members
    from training.dataset.generate import point_seed
    from training.mocks.model import box_of_realisation

    members = set_members(str(ds.attrs.get("catalog_id", "")))
    master = ds.attrs.get("master_seed")
    if not members or master is None:
        return None
    r = ds.stats.shape[1]
    return np.array([[box_of_realisation(point_seed(int(master), int(i)), k, len(members)) for k in range(r)]
                     for i in rows])


def _to_unit(domain, params: np.ndarray) -> np.ndarray:
    """Inverse of Domain.from_unit."""
    u = np.empty_like(params, dtype=float)
    x = params[:, PARAM_NAMES.index("logMmin")]
    lo, hi = domain.logMmin_range
    u[:, PARAM_NAMES.index("logMmin")] = (x - lo) / (hi - lo)
    for name in ("mu_cen", "mu_sat"):
        j = PARAM_NAMES.index(name)
        u[:, j] = (params[:, j] - domain.mu_range[0]) / (domain.mu_range[1] - domain.mu_range[0])
    for name in domain.bands:
        j = PARAM_NAMES.index(name)
        blo, bhi = domain.band_limits(name, x)
        u[:, j] = (params[:, j] - blo) / (bhi - blo)
    return u


# ---------------------------------------------------------------------------------------------- report
def summary_text(record: dict) -> str:
    sm = record["summary"]
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    return (f"{record['n_points']} hidden points x {record['n_realisations']} realisations on {record['n_boxes']} "
            f"catalog(s): xi mean fractional error {pct(sm['xi']['mean_fractional_error'])}, floor "
            f"{pct(sm['xi']['noise_floor'])}, own {pct(sm['xi']['own_mean_fractional_error'])}; omega median "
            f"(truth > 3 s.e.) {pct(sm['omega']['median_fractional_error_snr3'])}, floor "
            f"{pct(sm['omega']['median_fractional_error_snr3_noise_floor'])}, own "
            f"{pct(sm['omega']['own_median_fractional_error_snr3'])}; calibration "
            + " / ".join(f"{sm[s]['calibration_dex_median']:+.3f}" for s in STATISTICS) + " dex; coverage "
            + " / ".join(f"{sm[s]['coverage_68']:.3f}" for s in STATISTICS))


# ---------------------------------------------------------------------------------------------- command
def build_parser():
    p = argparse.ArgumentParser(prog="iaemu-accuracy", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--artifact", default=None, help="artifact file (default: the shipped one)")
    p.add_argument("--catalogs", nargs="+", default=[DEFAULT_CATALOG],
                   help="catalog names, sets or paths (load_catalog); the realisations are spread evenly over the boxes")
    p.add_argument("--points", type=positive_int, default=25, help="hidden points kept")
    p.add_argument("--realisations", type=positive_int, default=None,
                   help="realisations per point over all boxes (default: 40 rounded up to a multiple of the boxes)")
    p.add_argument("--seed", type=seed_type, default=DEFAULT_SEED, help="seed of the hidden design and populates")
    p.add_argument("--data", default=None,
                   help="the emulator's dataset: its test split is measured the same way, beside the hidden set")
    p.add_argument("--mc-passes", type=int, default=50, help="MC-dropout passes for the epistemic variance")
    p.add_argument("--rules", nargs="+", default=list(CLEANING_RULES), choices=CLEANING_RULES,
                   help="cleaning rules a candidate must pass over all its realisations (default: the dataset's)")
    p.add_argument("--floor", choices=(*FLOORS, "auto"), default="auto",
                   help="the truth's noise floor over several boxes: 'boxes' counts their sample variance (boxes "
                        "the emulator was not trained on), 'within' only the shape noise (its own training boxes); "
                        "auto: 'within' when the catalogs are the emulator's training catalog set")
    p.add_argument("--max-candidates", type=positive_int, default=None, help="give up after this many (default 20 N)")
    p.add_argument("--out", default=DEFAULT_OUT, help="JSON record; candidates are kept in OUT.parts/")
    p.add_argument("--keep-parts", action="store_true",
                   help="keep OUT.parts/ once the record is written (the same seed redraws the same truths anyway)")
    add_debug_argument(p)
    return p


def main(argv=None) -> int:
    """Entry point of `iaemu-accuracy`; returns the exit status."""
    return run_command("iaemu-accuracy", _main, argv)


def _main(argv: list) -> int:
    args = build_parser().parse_args(argv)
    from iaemu_theory.artifact import DEFAULT_ARTIFACT

    out = check_output_path(args.out)
    evaluate_hidden(args.artifact or DEFAULT_ARTIFACT, args.catalogs, out, n_points=args.points,
                    realisations=args.realisations, seed=args.seed, data=args.data, mc_passes=args.mc_passes,
                    max_candidates=args.max_candidates, rules=tuple(args.rules), keep_parts=args.keep_parts,
                    floor=args.floor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
