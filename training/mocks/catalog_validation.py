"""`iaemu-catalog validate`: physics validation of an N-body catalog, as numbers, verdicts and figures.

Checks: the initial conditions' linear power against colossus, the z = 0 matter power
against halofit, the halo mass function against Tinker08, the halo bias on 5-20 Mpc/h against Tinker10, halo
axis ratios, halo-halo shape correlations (ed, ee) for M > 1e12, HOD mocks at the three TNG300 samples' best
fits next to TNG300's xi, and the realism target against the Bolshoi-Planck reference mocks. Each check returns
its numbers; `catalog_verdicts` compares them with the named targets below. `validate` and `compare_models` write
JSON (catalog_validation.json, catalog_models.json) and figures; the page docs/results/catalog.md is rendered from
that JSON by `python scripts/render_docs.py`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from training.catalogs.nbody import cosmology
from training.catalogs.nbody.catalog import build_catalog, catalog_path, load_catalog_file, read_diagnostics, split_name
from training.catalogs.nbody.mesh import cic_paint, correlation_from_mesh, mode_averaged_power
from training.catalogs.nbody.simulation import get_preset

BIAS_RANGE = (5.0, 20.0)
#: Largest k [h/Mpc] of the IC comparison's "linear" range (Delta^2(k) D(a_i)^2 < ~1% there).
LINEAR_K = 0.5
REALISM_RANGE = (0.3, 14.0)

# The realism targets of a catalog's mocks against the Bolshoi-Planck reference mocks: their one home.
#: median over REALISM_RANGE of |xi / ref - 1|
XI_MEDIAN_TARGET = 0.15
#: median over REALISM_RANGE of |omega - ref| / err
OMEGA_MEDIAN_TARGET = 1.5
#: below REALISM_RANGE[0], every bin: xi / ref at least this ...
SMALL_SCALE_XI_MIN = 0.85
#: ... and (omega - ref) / err at least this ("no systematic deficit")
SMALL_SCALE_OMEGA_MIN = -1.5
#: the bands the realism figures shade: xi / ref and (omega - ref) / err
XI_RATIO_BAND = (SMALL_SCALE_XI_MIN, 2.0 - SMALL_SCALE_XI_MIN)
OMEGA_DEV_BAND = (SMALL_SCALE_OMEGA_MIN, -SMALL_SCALE_OMEGA_MIN)
#: the physics checks: IC linear power vs colossus, halo bias vs Tinker10, mass function vs Tinker08 (fractional)
IC_POWER_TOLERANCE = 0.02
BIAS_TOLERANCE = 0.15
MASS_FUNCTION_TOLERANCE = 0.10
#: the mass function's target holds for halos of at least this many particles
MASS_FUNCTION_MIN_PARTICLES = 100


def verdict(value: float, target: float, kind: str = "<=") -> dict:
    """A structured verdict: the measured value, the target, how they compare and whether it is met."""
    if kind not in ("<=", ">="):
        raise ValueError(f"verdict kind {kind!r}; expected '<=' or '>='")
    met = bool(value <= target) if kind == "<=" else bool(value >= target)
    return {"value": float(value), "target": float(target), "kind": kind, "met": met}


def realism_verdicts(realism: dict) -> dict:
    """The realism targets' verdicts on `realism_numbers` output (or the `realism` entry of `hod_mocks`)."""
    return {
        "xi_median": verdict(realism["xi"]["median_abs_ratio_minus_1"], XI_MEDIAN_TARGET),
        "omega_median": verdict(realism["omega"]["median_abs_dev_over_err"], OMEGA_MEDIAN_TARGET),
        "small_scale_xi": verdict(min(realism["xi"]["ratio_below_0.3"], default=float("nan")), SMALL_SCALE_XI_MIN, ">="),
        "small_scale_omega": verdict(min(realism["omega"]["dev_over_err_below_0.3"], default=float("nan")),
                                     SMALL_SCALE_OMEGA_MIN, ">="),
    }


def small_scale_verdict(xi_ratios, omega_devs) -> dict:
    """The small-scale target "no systematic deficit below 0.3 Mpc/h": every reference bin there within the realism
    targets' tolerances (SMALL_SCALE_XI_MIN, SMALL_SCALE_OMEGA_MIN). Returns the bins' values, a verdict per
    statistic on its worst bin, whether every omega bin lies below the reference (a deficit inside the tolerance is
    named, not hidden) and whether the target is met."""
    xi = verdict(min(xi_ratios, default=float("nan")), SMALL_SCALE_XI_MIN, ">=")
    omega = verdict(min(omega_devs, default=float("nan")), SMALL_SCALE_OMEGA_MIN, ">=")
    return {"xi_ratios": [float(v) for v in xi_ratios], "omega_devs": [float(v) for v in omega_devs],
            "xi": xi, "omega": omega, "omega_all_below_reference": bool(len(omega_devs)) and max(omega_devs) < 0,
            "met": xi["met"] and omega["met"]}


def catalog_verdicts(res: dict, models: dict | None = None, pooled: dict | None = None) -> dict:
    """Every target of the catalog validation against the numbers of `validate` (`res`, catalog_validation.json),
    with the many-realisation checks of `compare_models` (`models`, catalog_models.json) and of
    scripts/small_scale_check.py (`pooled`, catalog_small_scale.json) for this catalog where given."""
    ic, mf, ha = res["ic_power"], res["mass_function"], res["halo_alignments"]
    field = verdict(abs(ic["field_vs_colossus_weighted"] - 1), IC_POWER_TOLERANCE)
    particles = verdict(abs(ic["ic_vs_colossus_weighted_linear_k"] - 1), IC_POWER_TOLERANCE)
    worst = max(abs(e["ratio"] - 1) for e in res["bias"]) if res["bias"] else float("nan")
    out = {
        "ic_power": {"field": field, "particles": particles, "met": field["met"] and particles["met"]},
        "mass_function": verdict(mf["corrected_max_dev_100p"], MASS_FUNCTION_TOLERANCE),
        "bias": verdict(worst, BIAS_TOLERANCE),
        "halo_alignments": {"ed_positive": bool(ha["ed_all_positive_r_lt_5"]),
                            "ee_positive": bool(ha["ee_all_positive_r_lt_5"]),
                            "met": bool(ha["ed_all_positive_r_lt_5"]) and bool(ha["ee_all_positive_r_lt_5"])},
    }
    if "mocks" not in res:
        return out
    r = res["mocks"]["realism"]
    realism = {**realism_verdicts(r),
               "small_scale": small_scale_verdict(r["xi"]["ratio_below_0.3"], r["omega"]["dev_over_err_below_0.3"])}
    catalog_id = res["catalog"]["catalog_id"]
    check = models_check(models, catalog_id)
    if check is not None:
        realism["small_scale_check"] = small_scale_verdict(check["xi_below_0.3"], check["omega_below_0.3"])
    many = pooled_check(pooled, catalog_id)
    if many is not None:
        realism["small_scale_pooled"] = small_scale_verdict(many["xi_ratio_below_0.3_pooled"],
                                                            many["omega_below_0.3_pooled"])
    realism["small_scale_met"] = all(realism[k]["met"] for k in ("small_scale", "small_scale_check",
                                                                 "small_scale_pooled") if k in realism)
    out["realism"] = realism
    return out


def _entry_for(entries: dict | None, catalog_id: str) -> dict | None:
    """The value of `entries` (a results file's per-catalog dict, or None when the file is absent) measured on
    this catalog."""
    return next((e for e in (entries or {}).values() if e.get("catalog_id") == catalog_id), None)


def models_check(models: dict | None, catalog_id: str) -> dict | None:
    """The many-realisation check of `compare-models` for this catalog, if its results (catalog_models.json) hold one."""
    entry = _entry_for(models and models["models"], catalog_id)
    return None if entry is None else entry.get("check")


def pooled_check(pooled: dict | None, catalog_id: str) -> dict | None:
    """The pooled many-seed numbers of scripts/small_scale_check.py for this catalog, if its results
    (catalog_small_scale.json) hold them."""
    return _entry_for(pooled, catalog_id)


def read_sibling(folder, name: str) -> dict | None:
    """The JSON results file `name` in `folder`, or None where it is absent (the checks that use it are skipped)."""
    path = Path(folder) / name
    return json.loads(path.read_text()) if path.exists() else None


def render_hint(out_dir) -> str:
    """The command that renders the results pages from the JSON written to `out_dir`."""
    return f"render the page: python scripts/render_docs.py --results {out_dir}"


MASS_BIN_EDGES = (11.5, 12.0, 12.5, 13.0, 13.5, 15.5)


def _plt():
    import matplotlib.pyplot as plt

    return plt


def mode_averaged_models(diag: dict, preset) -> dict:
    """Colossus (IC) and halofit (z = 0) power averaged over the measurement's Fourier modes (rebinned here, so
    catalogs whose diagnostics hold the model at the bin centres are compared without the binning bias)."""
    pr = get_preset(preset)
    L, n = pr.boxsize, pr.n_mesh
    d2 = cosmology.growth_tables([pr.a_init])["D"][0] ** 2
    ic_bins = np.geomspace(2 * np.pi / L, np.pi * pr.n_particles / L, 25)
    pk_bins = np.geomspace(2 * np.pi / L, np.pi * n / L, 40)
    out = dict(diag)
    out["ic_p_colossus"] = mode_averaged_power(cosmology.linear_power, n, L, ic_bins) * d2
    out["pk_halofit"] = mode_averaged_power(cosmology.halofit_power, n, L, pk_bins)
    return out


def ic_power(diag: dict) -> dict:
    """IC power numbers: the realised field vs colossus (cosmic variance), the 2LPT particles vs the field."""
    k, n = diag["ic_k"], diag["ic_n_modes"]
    ok = (n > 0) & (k <= 0.5 * float(diag["ic_k_nyquist_particles"]))
    field = diag["ic_p_lin_field"][ok] / diag["ic_p_colossus"][ok]
    lpt = diag["ic_p_ic"][ok] / diag["ic_p_lin_field"][ok]
    ic = diag["ic_p_ic"][ok] / diag["ic_p_colossus"][ok]
    sigma = np.sqrt(2.0 / n[ok])  # fractional error of a band power from n/2 independent complex modes
    w = n[ok]
    well = sigma < 0.01
    return {
        "k_max": float(k[ok].max()),
        "field_vs_colossus_weighted": float(np.sum(w * field) / w.sum()),
        "field_vs_colossus_expected_sigma": float(np.sqrt(2.0 / w.sum())),
        "field_vs_colossus_chi2_per_bin": float(np.mean(((field - 1) / sigma) ** 2)),
        "ic_vs_colossus_max_dev_well_sampled": float(np.max(np.abs(ic[well] - 1))) if well.any() else float("nan"),
        "ic_vs_colossus_k_range_well_sampled": [float(k[ok][well].min()), float(k[ok][well].max())] if well.any() else [],
        "lpt_vs_field_weighted": float(np.sum(w * diag["ic_p_ic"][ok]) / np.sum(w * diag["ic_p_lin_field"][ok])),
        "lpt_vs_field_max_dev": float(np.max(np.abs(lpt - 1))),
        # on large scales (k <= LINEAR_K) the z = 9 particles are linear to better than ~1%
        "ic_vs_colossus_weighted_linear_k": float(np.sum((w * ic)[k[ok] <= LINEAR_K]) / np.sum(w[k[ok] <= LINEAR_K])),
        "ic_vs_colossus_expected_sigma_linear_k": float(np.sqrt(2.0 / np.sum(w[k[ok] <= LINEAR_K]))),
        "lpt_vs_field_weighted_linear_k": float(np.sum((w * diag["ic_p_ic"][ok])[k[ok] <= LINEAR_K])
                                                / np.sum((w * diag["ic_p_lin_field"][ok])[k[ok] <= LINEAR_K])),
        "lpt_vs_field_max_dev_linear_k": float(np.max(np.abs(lpt[k[ok] <= LINEAR_K] - 1))),
        "linear_k": LINEAR_K,
    }


def plot_ic_power(diag, path):
    plt = _plt()
    k, n = diag["ic_k"], diag["ic_n_modes"]
    ok = n > 0
    fig, ax = plt.subplots(2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax[0].loglog(k[ok], diag["ic_p_colossus"][ok], "k-", label="colossus linear x D(a_i)^2, mode-averaged")
    ax[0].loglog(k[ok], diag["ic_p_lin_field"][ok], "C0.", label="realised linear field x D^2")
    ax[0].loglog(k[ok], diag["ic_p_ic"][ok], "C1x", label="2LPT particles (CIC, deconvolved)")
    ax[0].set_ylabel("P(k) [(Mpc/h)^3]")
    ax[0].legend(fontsize=8)
    sig = np.sqrt(2.0 / n[ok])
    ax[1].fill_between(k[ok], 1 - sig, 1 + sig, color="0.85", label="cosmic variance")
    ax[1].semilogx(k[ok], diag["ic_p_ic"][ok] / diag["ic_p_colossus"][ok], "C1x", label="particles / colossus")
    ax[1].semilogx(k[ok], diag["ic_p_ic"][ok] / diag["ic_p_lin_field"][ok], "C2.", label="particles / realised field")
    ax[1].axvline(0.5 * float(diag["ic_k_nyquist_particles"]), color="0.5", ls=":")
    ax[1].set_ylim(0.9, 1.1)
    ax[1].set_xlabel("k [h/Mpc]")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def matter_power(diag: dict) -> dict:
    k, p = diag["pk_k"], diag["pk_p"]
    ok = np.isfinite(p) & (diag["pk_nmodes"] > 0)
    hf = diag["pk_halofit"][ok]
    ratio = p[ok] / hf
    sigma = np.sqrt(2.0 / diag["pk_nmodes"][ok])
    out = {}
    for kk in (0.1, 0.2, 0.5, 1.0, 2.0, 4.0):
        if k[ok].min() <= kk <= k[ok].max():
            out[f"ratio_at_k{kk:g}"] = float(np.interp(np.log(kk), np.log(k[ok]), ratio))
            out[f"cosmic_variance_at_k{kk:g}"] = float(np.interp(np.log(kk), np.log(k[ok]), sigma))
    mid = (k[ok] >= 0.3) & (k[ok] <= 1.0)
    out["ratio_weighted_0.3_1"] = float(np.sum(diag["pk_nmodes"][ok][mid] * ratio[mid]) / np.sum(diag["pk_nmodes"][ok][mid]))
    return out


def plot_matter_power(diag, path):
    plt = _plt()
    k, p = diag["pk_k"], diag["pk_p"]
    ok = np.isfinite(p) & (diag["pk_nmodes"] > 0)
    hf = diag["pk_halofit"][ok]
    fig, ax = plt.subplots(2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax[0].loglog(k[ok], hf, "k-", label="halofit (jax_cosmo, Takahashi+12), mode-averaged")
    ax[0].loglog(k[ok], cosmology.linear_power(k[ok]), "k:", label="linear")
    ax[0].loglog(k[ok], p[ok], "C0.", label="PM, z = 0")
    ax[0].set_ylabel("P(k) [(Mpc/h)^3]")
    ax[0].legend(fontsize=8)
    ax[1].semilogx(k[ok], p[ok] / hf, "C0.")
    ax[1].axhline(1, color="k", lw=0.5)
    ax[1].set_ylim(0.5, 1.2)
    ax[1].set_ylabel("PM / halofit")
    ax[1].set_xlabel("k [h/Mpc]")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mass_function(cols, meta, path) -> dict:
    plt = _plt()
    L, mp = meta["Lbox"], meta["particle_mass"]
    host = cols["halo_upid"] == -1
    mvir = cols["halo_mvir"][host]
    mfof = cols["halo_n_fof"][host] * mp
    edges = np.arange(np.log10(20 * mp), 15.3, 0.2)
    centre = 10 ** (0.5 * (edges[1:] + edges[:-1]))
    dlnm = np.log(10) * np.diff(edges)
    t08 = cosmology.tinker08_dndlnm(centre)
    out = {"fof_vs_tinker08": [], "corrected_vs_tinker08": []}
    fig, ax = plt.subplots(2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax[0].loglog(centre, t08, "k-", label="Tinker08 (vir)")
    for name, m, style in (("fof", mfof, "C1s"), ("corrected", mvir, "C0o")):
        cnt, _ = np.histogram(np.log10(m), edges)
        dn = cnt / L ** 3 / dlnm
        good = cnt > 0
        ax[0].errorbar(centre[good], dn[good], yerr=dn[good] / np.sqrt(cnt[good]), fmt=style, ms=3,
                       label="FoF mass (N_p m_p)" if name == "fof" else "rank-matched M_vir")
        ax[1].semilogx(centre[good], dn[good] / t08[good], style, ms=3)
        npart = centre / mp
        for lo, hi in ((20, 50), (50, 100), (100, 300), (300, 1000), (1000, 1e9)):
            sel = good & (npart >= lo) & (npart < hi) & (cnt >= 10)
            if sel.any():
                ratio = np.sum(cnt[sel]) / np.sum(t08[sel] * L ** 3 * dlnm[sel])
                out[f"{name}_vs_tinker08"].append({"particles": [lo, hi], "ratio": float(ratio), "n_halos": int(cnt[sel].sum())})
        if name == "corrected":
            sel = good & (npart >= MASS_FUNCTION_MIN_PARTICLES) & (cnt >= 10)
            out["corrected_max_dev_100p"] = float(np.max(np.abs(dn[sel] / t08[sel] - 1))) if sel.any() else float("nan")
            out["corrected_max_dev_100p_poisson"] = (float(np.max(1 / np.sqrt(cnt[sel]))) if sel.any() else float("nan"))
    ax[0].set_ylabel("dn/dlnM [(h/Mpc)^3]")
    ax[0].legend(fontsize=8)
    ax[1].axhline(1, color="k", lw=0.5)
    ax[1].axvline(100 * mp, color="0.5", ls=":")
    ax[1].set_ylim(0.3, 1.5)
    ax[1].set_ylabel("/ Tinker08")
    ax[1].set_xlabel("M [Msun/h]")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return out


def halo_bias(cols, meta, diag, path) -> list[dict]:
    """b = sqrt(xi_hh / xi_mm) averaged over 5-20 Mpc/h per mass bin, against Tinker10 (number-weighted)."""
    plt = _plt()
    L = meta["Lbox"]
    n = int(diag["xi_mm_mesh"])
    r_mm, xi_mm = diag["xi_mm_r"], diag["xi_mm"]
    rbins = np.geomspace(1.0, 40.0, 25)
    host = cols["halo_upid"] == -1
    pos = np.stack([cols[f"halo_{c}"][host] for c in "xyz"], axis=1)
    m = cols["halo_mvir"][host]
    out = []
    fig, ax = plt.subplots(figsize=(6, 4))
    import scipy.fft

    sel_r = (r_mm >= BIAS_RANGE[0]) & (r_mm <= BIAS_RANGE[1])
    for lo, hi in zip(MASS_BIN_EDGES[:-1], MASS_BIN_EDGES[1:]):
        sel = (m >= 10 ** lo) & (m < 10 ** hi)
        if sel.sum() < 100:
            continue
        mesh = cic_paint(pos[sel], n, L)
        mesh *= np.float32(n ** 3 / sel.sum())
        mesh -= 1
        dk = scipy.fft.rfftn(mesh)
        r, xi = correlation_from_mesh(dk, n, L, rbins)
        b2 = xi / np.interp(r, r_mm, xi_mm)
        b = float(np.sqrt(np.sum(xi[sel_r]) / np.sum(xi_mm[sel_r])))
        bt = float(np.mean(cosmology.tinker10_bias(m[sel])))
        out.append({"logM": [lo, hi], "n_halos": int(sel.sum()), "b_sim": b, "b_tinker10": bt, "ratio": b / bt})
        ax.semilogx(r, np.sqrt(np.clip(b2, 0, None)) / bt, "o-", ms=3, label=f"{lo}-{hi}: N={sel.sum()}")
    ax.axhline(1, color="k", lw=0.5)
    ax.axvspan(*BIAS_RANGE, color="0.9")
    ax.set_ylim(0.5, 1.5)
    ax.set_xlabel("r [Mpc/h]")
    ax.set_ylabel("sqrt(xi_hh / xi_mm) / b_Tinker10")
    ax.legend(fontsize=7, title="log10 M_vir")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return out


def shapes(cols, path) -> dict:
    plt = _plt()
    host = cols["halo_upid"] == -1
    m, ba, ca = cols["halo_mvir"][host], cols["halo_b_to_a"][host], cols["halo_c_to_a"][host]
    out = {"all": {"n": int(host.sum()), "median_b_to_a": float(np.median(ba)), "median_c_to_a": float(np.median(ca))}}
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    for lo, hi in zip(MASS_BIN_EDGES[:-1], MASS_BIN_EDGES[1:]):
        sel = (m >= 10 ** lo) & (m < 10 ** hi)
        if sel.sum() < 10:
            continue
        out[f"{lo}-{hi}"] = {"n": int(sel.sum()), "median_b_to_a": float(np.median(ba[sel])),
                             "median_c_to_a": float(np.median(ca[sel]))}
        ax[0].hist(ba[sel], bins=40, range=(0, 1), histtype="step", density=True, label=f"{lo}-{hi}")
        ax[1].hist(ca[sel], bins=40, range=(0, 1), histtype="step", density=True)
    ax[0].set_xlabel("b/a")
    ax[1].set_xlabel("c/a")
    ax[0].legend(fontsize=7, title="log10 M_vir")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return out


def halo_alignments(cols, meta, path, mass_min=1e12, n_null=20, seed=0) -> dict:
    """ed and ee of host halos above mass_min (their major axes), with a null from shuffled orientations."""
    from training.mocks.correlations import measure_correlations

    plt = _plt()
    L = meta["Lbox"]
    host = (cols["halo_upid"] == -1) & (cols["halo_mvir"] > mass_min)
    pos = np.stack([cols[f"halo_{c}"][host] for c in "xyz"], axis=1)
    ori = np.stack([cols[f"halo_axisA_{c}"][host] for c in "xyz"], axis=1)
    rbins = np.geomspace(0.5, min(30.0, L / 3.5), 13)
    c = measure_correlations(pos, ori, L, rbins=rbins)
    rng = np.random.default_rng(seed)
    null = np.array([measure_correlations(pos, ori[rng.permutation(len(ori))], L, rbins=rbins).as_array()
                     for _ in range(n_null)])
    err = null.std(axis=0, ddof=1)
    r = 0.5 * (rbins[1:] + rbins[:-1])
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    for i, (name, val) in enumerate((("omega (ed)", c.omega), ("eta (ee)", c.eta))):
        ax[i].errorbar(r, val, yerr=err[i + 1], fmt="o-", ms=3)
        ax[i].axhline(0, color="k", lw=0.5)
        ax[i].set_xscale("log")
        ax[i].set_xlabel("r [Mpc/h]")
        ax[i].set_title(f"{name}, halos M > {mass_min:.0e}, N={host.sum()}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    small = r < 5
    return {"n_halos": int(host.sum()), "r": r.tolist(), "ed": c.omega.tolist(), "ee": c.eta.tolist(),
            "ed_null_err": err[1].tolist(), "ee_null_err": err[2].tolist(),
            "ed_snr_r_lt_5": float(np.sum(c.omega[small]) / np.sqrt(np.sum(err[1][small] ** 2))),
            "ee_snr_r_lt_5": float(np.sum(c.eta[small]) / np.sqrt(np.sum(err[2][small] ** 2))),
            "ed_all_positive_r_lt_5": bool(np.all(c.omega[small] > 0)),
            "ee_all_positive_r_lt_5": bool(np.all(c.eta[small] > 0))}


def _interp_ln(r_from, v_from, r_to):
    return np.interp(np.log(r_to), np.log(r_from), v_from, left=np.nan, right=np.nan)


def hod_mocks(preset, seed, realisations, figdir) -> dict:
    """HOD mocks at the TNG300 samples' best fits (xi vs TNG300) and the Bolshoi-Planck realism target."""
    from iaemu_theory.conventions import BIN_CENTRES
    from iaemu_theory.tng300 import BOLPLANCK_REFERENCE_PARAMS, TNG300_HOD, load_tng300
    from training.catalogs.sources import load_catalog
    from training.mocks.model import IAMockModel

    plt = _plt()
    cat = load_catalog(preset, seed=seed)
    model = IAMockModel(cat)
    L = float(model.Lbox)
    out = {"tng300": {}, "realism": {}}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for i, s in enumerate((1, 2, 3)):
        params = dict(BOLPLANCK_REFERENCE_PARAMS)
        params.update(TNG300_HOD[s])
        res = model.measure(params, seed=100 + s, n_realisations=realisations)
        mean, std = res.mean(), res.std()
        tng = load_tng300(s, "xi")
        ours = _interp_ln(BIN_CENTRES, mean[0], tng["r"])
        sel = (tng["r"] >= REALISM_RANGE[0]) & (tng["r"] <= REALISM_RANGE[1]) & np.isfinite(ours)
        out["tng300"][s] = {"params": params, "n_gal_mean": float(res.n_galaxies.mean()),
                            "number_density": float(res.n_galaxies.mean() / L ** 3),
                            "median_abs_xi_ratio_minus_1": float(np.median(np.abs(ours[sel] / tng["value"][sel] - 1)))}
        ax = axes[i]
        ax.errorbar(tng["r"], tng["value"], yerr=tng["err"], fmt="ko", ms=3, label="TNG300-1")
        ax.errorbar(BIN_CENTRES, mean[0], yerr=std[0], fmt="C0-", label=f"HOD on PM catalog (n={res.n_galaxies.mean() / L ** 3:.2e})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"sample {s}", fontsize=9)
        ax.set_xlabel("r [Mpc/h]")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("xi(r)")
    fig.tight_layout()
    fig.savefig(figdir / "catalog_tng300_xi.png", dpi=110)
    plt.close(fig)

    res = model.measure(dict(BOLPLANCK_REFERENCE_PARAMS), seed=7, n_realisations=realisations)
    mean, std = res.mean(), res.std()
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    numbers = realism_numbers(mean)
    for j, stat in enumerate(("xi", "omega", "eta")):
        entry = numbers[stat]
        out["realism"][stat] = entry
        r_ref = np.asarray(entry["r"])
        ax = axes[0, j]
        ax.errorbar(r_ref, entry["ref"], yerr=entry["ref_err"], fmt="ko", ms=3, label="Bolshoi-Planck mocks (reference)")
        ax.errorbar(BIN_CENTRES, mean[j], yerr=std[j], fmt="C0-", label="same model on the PM catalog")
        ax.set_xscale("log")
        if stat == "xi":
            ax.set_yscale("log")
        ax.set_title(stat, fontsize=9)
        ax.legend(fontsize=7)
        ax = axes[1, j]
        if stat == "xi":
            ax.semilogx(r_ref, entry["ratio"], "C0o-", ms=3)
            ax.axhline(1, color="k", lw=0.5)
            ax.axhspan(*XI_RATIO_BAND, color="0.9")
            ax.set_ylabel("ours / ref")
        else:
            ax.semilogx(r_ref, entry["dev_over_err"], "C0o-", ms=3)
            ax.axhline(0, color="k", lw=0.5)
            ax.axhspan(*OMEGA_DEV_BAND, color="0.9")
            ax.set_ylabel("(ours - ref) / err")
        ax.axvspan(0.09, REALISM_RANGE[0], color="0.95")
        ax.set_xlabel("r [Mpc/h]")
    fig.tight_layout()
    fig.savefig(figdir / "catalog_bolplanck_reference.png", dpi=110)
    plt.close(fig)
    out["realism"]["n_gal_mean"] = float(res.n_galaxies.mean())
    out["realism"]["realisations"] = int(realisations)
    return out


def validate(preset="default", seed=None, out_dir="docs/results", cache_dir=None, realisations=10, mocks=True) -> dict:
    """Run all checks; write figures to <out_dir>/figures/catalog_*.png and the numbers, the command and the
    verdicts (`catalog_verdicts`) to <out_dir>/catalog_validation.json; returns them. The page catalog.md is
    rendered from the JSON (`render_hint`)."""
    t0 = time.time()
    base, _ = split_name(preset)
    path = catalog_path(preset, seed, cache_dir)
    if path is None:
        path = build_catalog(preset, seed, cache_dir=cache_dir)
    cols, meta = load_catalog_file(path)
    diag = mode_averaged_models(read_diagnostics(path), base)
    out_dir = Path(out_dir)
    figdir = out_dir / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    res = {"catalog": {k: meta[k] for k in ("catalog_id", "preset", "seed", "Lbox", "particle_mass", "n_hosts",
                                            "n_subhalos", "build_seconds", "path", "halo_model_spec") if k in meta}}
    res["catalog"]["file_mb"] = round(Path(path).stat().st_size / 1e6, 2)
    res["ic_power"] = ic_power(diag)
    plot_ic_power(diag, figdir / "catalog_ic_power.png")
    res["matter_power"] = matter_power(diag)
    plot_matter_power(diag, figdir / "catalog_pk_z0.png")
    res["mass_function"] = mass_function(cols, meta, figdir / "catalog_mass_function.png")
    res["bias"] = halo_bias(cols, meta, diag, figdir / "catalog_bias.png")
    res["shapes"] = shapes(cols, figdir / "catalog_shapes.png")
    res["halo_alignments"] = halo_alignments(cols, meta, figdir / "catalog_halo_alignment.png")
    if mocks:
        res["mocks"] = hod_mocks(preset, seed, realisations, figdir)
    res["validate_seconds"] = round(time.time() - t0, 1)
    res["command"] = (f"iaemu-catalog validate --preset {preset}" + (f" --seed {seed}" if seed is not None else "")
                      + f" --out {out_dir}" + ("" if mocks else " --skip-mocks"))
    res["verdicts"] = catalog_verdicts(res, read_sibling(out_dir, "catalog_models.json"),
                                       read_sibling(out_dir, "catalog_small_scale.json"))
    (out_dir / "catalog_validation.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    print(render_hint(out_dir))
    return res


def realism_numbers(mean: np.ndarray) -> dict:
    """The realism metrics of mean (3, N_BINS) xi, omega, eta against the Bolshoi-Planck reference mocks
    (interpolated in ln r to their bins), as in `hod_mocks`."""
    from iaemu_theory.conventions import BIN_CENTRES
    from iaemu_theory.tng300 import load_bolplanck_reference

    out = {}
    for j, stat in enumerate(("xi", "omega", "eta")):
        ref = load_bolplanck_reference(stat)
        ours = _interp_ln(BIN_CENTRES, mean[j], ref["r"])
        sel = (ref["r"] >= REALISM_RANGE[0]) & (ref["r"] <= REALISM_RANGE[1]) & np.isfinite(ours)
        small = (ref["r"] < REALISM_RANGE[0]) & np.isfinite(ours)
        entry = {"r": ref["r"].tolist(), "ours": ours.tolist(), "ref": ref["value"].tolist(), "ref_err": ref["err"].tolist()}
        if stat == "xi":
            entry["ratio"] = (ours / ref["value"]).tolist()
            entry["median_abs_ratio_minus_1"] = float(np.median(np.abs(ours[sel] / ref["value"][sel] - 1)))
            entry["ratio_below_0.3"] = (ours[small] / ref["value"][small]).tolist()
        else:
            dev = (ours - ref["value"]) / ref["err"]
            entry["dev_over_err"] = dev.tolist()
            entry["median_abs_dev_over_err"] = float(np.median(np.abs(dev[sel])))
            entry["dev_over_err_below_0.3"] = dev[small].tolist()
            entry["ratio_below_0.3"] = (ours[small] / ref["value"][small]).tolist()
            large = sel & (ref["r"] > 2.0)
            entry["ratio_r_gt_2"] = float(np.sum(ours[large]) / np.sum(ref["value"][large]))
        out[stat] = entry
    return out


def pooled_small_scales(catalog: str, seeds, realisations: int) -> dict:
    """Per-seed and pooled realism numbers of omega for one catalog (name or path)."""
    from iaemu_theory.tng300 import BOLPLANCK_REFERENCE_PARAMS
    from training.catalogs.sources import load_catalog
    from training.mocks.model import IAMockModel

    cat = load_catalog(catalog)
    model = IAMockModel(cat)
    params = dict(BOLPLANCK_REFERENCE_PARAMS)
    t0 = time.perf_counter()
    means, per_seed = [], []
    for seed in seeds:
        mean = model.measure(params, seed=int(seed), n_realisations=realisations).mean()
        means.append(mean)
        per_seed.append(realism_numbers(mean)["omega"]["dev_over_err_below_0.3"])
    pooled = realism_numbers(np.mean(means, axis=0))
    omega = pooled["omega"]
    per_seed = np.asarray(per_seed)
    return {
        "catalog_id": str(cat.catalog_id), "seeds": [int(s) for s in seeds], "realisations_per_seed": realisations,
        "omega_below_0.3_pooled": omega["dev_over_err_below_0.3"],
        "omega_below_0.3_per_seed": per_seed.tolist(),
        "omega_below_0.3_seed_std": per_seed.std(axis=0, ddof=1).tolist() if len(seeds) > 1 else None,
        "omega_ratio_below_0.3_pooled": omega["ratio_below_0.3"],
        "xi_ratio_below_0.3_pooled": pooled["xi"]["ratio_below_0.3"],
        "omega_median_0.3_14": omega["median_abs_dev_over_err"],
        "omega_ratio_r_gt_2": omega["ratio_r_gt_2"],
        "xi_median_0.3_14": pooled["xi"]["median_abs_ratio_minus_1"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def omega_jackknife(model, params, seed: int, realisations: int, nside: int = 4) -> dict:
    """Cosmic variance of omega in one box: delete-one jackknife over nside^3 sub-volumes (by the position of the
    galaxy whose shape enters) of the pair sums accumulated over `realisations` populations, minus the
    realisation (shape and occupation) variance of their mean. Returns per-bin sigmas (BIN_CENTRES)."""
    from scipy.spatial import cKDTree

    from iaemu_theory.conventions import BIN_EDGES
    from training.mocks.model import galaxy_arrays, realisation_seed

    L = float(model.Lbox)
    nreg, nb = nside ** 3, len(BIN_EDGES) - 1
    s_tot, n_tot, per = np.zeros((nreg, nb)), np.zeros((nreg, nb)), []
    for r in range(realisations):
        pos, ori = galaxy_arrays(model.populate(params, realisation_seed(seed, r)))
        i, j = cKDTree(pos, boxsize=L).query_pairs(BIN_EDGES[-1], output_type="ndarray").T
        d = pos[j] - pos[i]
        d = (d + L / 2) % L - L / 2
        dist = np.linalg.norm(d, axis=1)
        k = np.searchsorted(BIN_EDGES, dist) - 1
        ok = (k >= 0) & (k < nb)
        i, j, k, u = i[ok], j[ok], k[ok], d[ok] / dist[ok, None]
        reg = (np.floor(pos / (L / nside)).astype(np.int64) % nside) @ np.array([nside * nside, nside, 1])
        s, n = np.zeros((nreg, nb)), np.zeros((nreg, nb))
        for end in (i, j):
            np.add.at(s, (reg[end], k), np.einsum("ij,ij->i", ori[end], u) ** 2)
            np.add.at(n, (reg[end], k), 1.0)
        s_tot += s
        n_tot += n
        per.append(s.sum(0) / n.sum(0) - 1 / 3)
    full = s_tot.sum(0) / n_tot.sum(0) - 1 / 3
    loo = (s_tot.sum(0) - s_tot) / (n_tot.sum(0) - n_tot) - 1 / 3
    var_jk = (nreg - 1) / nreg * np.sum((loo - loo.mean(0)) ** 2, axis=0)
    var_mean = np.var(np.array(per), axis=0, ddof=1) / realisations
    return {"omega": full.tolist(), "sigma_jackknife": np.sqrt(var_jk).tolist(),
            "sigma_realisations_of_mean": np.sqrt(var_mean).tolist(),
            "sigma_cosmic": np.sqrt(np.maximum(var_jk - var_mean, 0.0)).tolist(),
            "realisations": int(realisations), "regions": int(nreg)}


def compare_models(out_dir="docs/results", models=(1, 2), realisations=10, check_realisations=30, jackknife_realisations=30) -> dict:
    """Realism of the halo model versions of the `default` catalog against the Bolshoi-Planck reference mocks:
    the validation's measurement (seed 7, `realisations`), a check with other seeds (seed 8, `check_realisations`),
    halo shapes, and the jackknife cosmic variance of omega. Writes <out_dir>/catalog_models.json and the figure
    <out_dir>/figures/catalog_models_realism.png; the section "Halo model versions" of catalog.md is rendered from
    the JSON (`render_hint`)."""
    from iaemu_theory.conventions import BIN_CENTRES
    from iaemu_theory.tng300 import BOLPLANCK_REFERENCE_PARAMS, load_bolplanck_reference
    from training.catalogs.sources import load_catalog
    from training.mocks.model import IAMockModel

    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    params = dict(BOLPLANCK_REFERENCE_PARAMS)
    res = {"params": params, "models": {}}
    for m in models:
        name = f"default-v{m}"
        cat = load_catalog(name)
        model = IAMockModel(cat)
        host = np.asarray(cat.halo_table["halo_upid"]) == -1
        cols, meta = load_catalog_file(catalog_path(name))
        hmask = cols["halo_upid"] == -1
        entry = {"catalog_id": cat.catalog_id, "file_mb": round(Path(meta["path"]).stat().st_size / 1e6, 2),
                 "halo_model_spec": meta.get("halo_model_spec"), "n_hosts": int(host.sum()),
                 "median_b_to_a": float(np.median(cols["halo_b_to_a"][hmask])),
                 "median_c_to_a": float(np.median(cols["halo_c_to_a"][hmask]))}
        r = model.measure(params, seed=7, n_realisations=realisations)
        entry["mean_stats"] = r.mean().tolist()  # (xi, omega, eta) x bins at seed 7: the figure is redrawn from it
        entry["validation"] = realism_numbers(r.mean())
        entry["validation"]["realisations"] = int(realisations)
        r2 = model.measure(params, seed=8, n_realisations=check_realisations)
        chk = realism_numbers(r2.mean())
        entry["check"] = {"realisations": int(check_realisations), "seed": 8,
                          "xi_median": chk["xi"]["median_abs_ratio_minus_1"],
                          "omega_median": chk["omega"]["median_abs_dev_over_err"],
                          "eta_median": chk["eta"]["median_abs_dev_over_err"],
                          "xi_below_0.3": chk["xi"]["ratio_below_0.3"], "omega_below_0.3": chk["omega"]["dev_over_err_below_0.3"],
                          "omega_dev_over_err": chk["omega"]["dev_over_err"], "omega_ratio_r_gt_2": chk["omega"]["ratio_r_gt_2"]}
        entry["jackknife"] = omega_jackknife(model, params, seed=9, realisations=jackknife_realisations)
        res["models"][m] = entry
    ref_err = load_bolplanck_reference("omega")
    res["bin_centres"] = BIN_CENTRES.tolist()
    res["ref_err_at_bin_centres"] = np.interp(np.log(BIN_CENTRES), np.log(ref_err["r"]), ref_err["err"]).tolist()
    (out_dir / "catalog_models.json").write_text(json.dumps(res, indent=1))
    plot_models(res, out_dir / "figures" / "catalog_models_realism.png")
    print(render_hint(out_dir))
    return res


def plot_models(res, path):
    """The realism figure of compare_models (xi and omega of every version against the Bolshoi-Planck mocks), from
    its results (catalog_models.json)."""
    from iaemu_theory.conventions import BIN_CENTRES
    from iaemu_theory.tng300 import load_bolplanck_reference

    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for col, (j, stat) in enumerate(((0, "xi"), (1, "omega"))):
        ref = load_bolplanck_reference(stat)
        ax = axes[0, col]
        if stat == "xi":
            ax.plot(ref["r"], ref["r"] ** 2 * ref["value"], "ko", ms=3, label="Bolshoi-Planck mocks (reference)")
        else:
            ax.errorbar(ref["r"], ref["value"], yerr=ref["err"], fmt="ko", ms=3, label="Bolshoi-Planck mocks (reference)")
        for m, e in res["models"].items():
            m = int(m)
            mean = np.asarray(e["mean_stats"], dtype=float)
            y = BIN_CENTRES ** 2 * mean[j] if stat == "xi" else mean[j]
            ax.plot(BIN_CENTRES, y, f"C{m - 1}-", label=f"{e['catalog_id']}")
            low = axes[1, col]
            if stat == "xi":
                low.semilogx(ref["r"], e["validation"]["xi"]["ratio"], f"C{m - 1}o-", ms=3)
            else:
                low.semilogx(ref["r"], e["validation"]["omega"]["dev_over_err"], f"C{m - 1}o-", ms=3)
                jk = e["jackknife"]
                cv = np.interp(np.log(ref["r"]), np.log(BIN_CENTRES), jk["sigma_cosmic"], left=np.nan, right=np.nan)
                if m == max(int(k) for k in res["models"]):
                    low.fill_between(ref["r"], -cv / ref["err"], cv / ref["err"], color="0.55", alpha=0.35, zorder=3,
                                     label="cosmic variance of our box (jackknife), in ref err")
        ax.set_xscale("log")
        ax.set_ylabel("r^2 xi(r)" if stat == "xi" else "omega(r)")
        ax.set_title(stat, fontsize=9)
        ax.legend(fontsize=7)
        low = axes[1, col]
        if stat == "xi":
            low.axhline(1, color="k", lw=0.5)
            low.axhspan(*XI_RATIO_BAND, color="0.9")
            low.set_ylabel("ours / ref")
        else:
            low.axhline(0, color="k", lw=0.5)
            low.axhspan(*OMEGA_DEV_BAND, color="0.9")
            low.set_ylabel("(ours - ref) / err")
            low.legend(fontsize=7)
        low.axvspan(0.09, REALISM_RANGE[0], color="0.95")
        low.set_xlabel("r [Mpc/h]")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
