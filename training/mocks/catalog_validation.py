"""`iaemu-catalog validate`: physics validation of an N-body catalog, written to docs/results/catalog.md + figures.

Checks: the initial conditions' linear power against colossus, the z = 0 matter power
against halofit, the halo mass function against Tinker08, the halo bias on 5-20 Mpc/h against Tinker10, halo
axis ratios, halo-halo shape correlations (ed, ee) for M > 1e12, HOD mocks at the three TNG300 samples' best
fits next to TNG300's xi, and the realism target against the Bolshoi-Planck reference mocks.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from training.catalogs.nbody import cosmology
from training.catalogs.nbody.catalog import build_catalog, catalog_path, load_catalog_file, read_diagnostics, split_name
from training.catalogs.nbody.halos import DEFAULT_MODEL, MODELS, HaloModel
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
#: the physics checks: IC linear power vs colossus, halo bias vs Tinker10 (fractional)
IC_POWER_TOLERANCE = 0.02
BIAS_TOLERANCE = 0.15


def verdict(value: float, target: float, kind: str = "<=") -> dict:
    """A structured verdict: the measured value, the target, how they compare and whether it is met."""
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
            sel = good & (npart >= 100) & (cnt >= 10)
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
    """Run all checks, write figures to <out_dir>/figures/catalog_*.png and numbers to <out_dir>/catalog.md
    (and catalog_validation.json next to it); returns the numbers."""
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
    (out_dir / "catalog_validation.json").write_text(json.dumps(res, indent=1))
    command = f"iaemu-catalog validate --preset {preset}" + (f" --seed {seed}" if seed is not None else "") + \
        f" --out {out_dir}" + ("" if mocks else " --skip-mocks")
    write_markdown(res, out_dir / "catalog.md", command)
    print(json.dumps(res, indent=1))
    return res


def _f(x, nd=3):
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


def write_markdown(res: dict, path: Path, command: str) -> None:
    """docs/results/catalog.md: method, storage, and every measured number of `res`."""
    c = res["catalog"]
    ic, pk, mf = res["ic_power"], res["matter_power"], res["mass_function"]
    pr = get_preset(c["preset"])
    models_path = path.with_name("catalog_models.json")
    models = json.loads(models_path.read_text()) if models_path.exists() else None
    pooled_path = path.with_name("catalog_small_scale.json")
    pooled = json.loads(pooled_path.read_text()) if pooled_path.exists() else None
    L = [
        "# The project's N-body halo catalog",
        "",
        "A genuine cosmological particle-mesh simulation, built offline by one command, gives the halo catalog on",
        "which the shipped emulator's mocks are made (`training.catalogs.nbody`).",
        "",
        "```",
        "iaemu-catalog build --preset default [--seed S] [--out FILE]   # resumes from its checkpoints",
        f"{command}",
        "```",
        "",
        "## Pipeline",
        "",
        "1. **Initial conditions** (z = 9): a Gaussian linear field with colossus' Eisenstein & Hu (1998) P(k) for",
        "   Bolshoi-Planck's flat LCDM (Om = 0.307, Ob = 0.048, h = 0.678, sigma8 = 0.823, ns = 0.96) on the particle",
        "   grid (`jaxpm.pm.linear_field`), displaced by second-order LPT (`jaxpm.pm.lpt(order=2)`, jaxpm's growth",
        "   functions). The particle lattice is offset by half a PM cell (CIC has a cusp at mesh nodes; particles",
        "   sitting on nodes respond non-linearly to small displacements and mix Fourier modes by a few percent).",
        "2. **Particle mesh** to z = 0: kick-drift-kick steps uniform in a, with FastPM's growth-corrected factors",
        "   (Feng et al. 2016) from jaxpm's `growth_factor`, `Gf`, `dGfa`; forces from a CIC density on a mesh twice",
        "   as fine as the particle grid (numba CIC paint/readout, scipy FFT, jaxpm's/FastPM's 4-point gradient and",
        "   exact 1/k^2). The state is checkpointed every 5 steps and at z = 0, so a crashed build resumes where it",
        "   stopped, bit-identically.",
        "3. **Halos**: periodic friends-of-friends (kdcount, b = 0.2), groups of >= 20 particles. Per halo:",
        "   - centre: shrinking-sphere density peak of the members (Power et al. 2003), not the centre of mass;",
        "   - velocity: mean of the members;",
        "   - **mass (corrected)**: PM halos of < ~200 particles are too rare against Tinker08 and FoF over-merges at",
        "     the massive end, so halo_mvir is assigned by rank: the i-th most massive group (by particle number,",
        "     ties in random seeded order) gets the virial mass M with n_Tinker08(>M) V = i + 1/2 (colossus, mdef",
        "     'vir'). The FoF mass N_p m_p is kept as halo_n_fof (particle number);",
        "   - R_vir from that mass (colossus, Bryan & Norman); concentration from colossus' Diemer & Joyce (2019)",
        "     c(M) (PM cores are not resolved, so it is not measured);",
        "   - shape: eigenvectors of the reduced inertia tensor sum(x x^T / r^2) of the members within R_vir of the",
        "     centre (at least the 10 nearest members): halo_axisA (major axis), halo_b_to_a, halo_c_to_a.",
        "4. **Satellite sites** (\"subhalo\" rows for halotools' SubhaloPhaseSpace): per host ceil(3 M / 10^12.5)",
        "   (at least one) points drawn from an NFW profile with the host's c(M), truncated at R_vir, stretched",
        "   along the host's measured principal axes with ratios 1 : b/a : c/a (volume preserving), so satellites",
        "   trace the halo's elongation; velocities: host + isotropic Gaussian with sigma = V_vir / sqrt(2). Their",
        "   halo_upid = halo_hostid = the host's halo_id, halo_mvir_host_halo the host mass, and halo_mpeak =",
        "   halo_mvir = 0.05 M_host / (1 + rank) (a nominal mass; SubhaloPhaseSpace only uses its order).",
        "",
        "## Presets",
        "",
        "| preset | box [Mpc/h] | particles | mesh | steps | particle mass [Msun/h] |",
        "|---|---|---|---|---|---|",
    ]
    from training.catalogs.nbody.simulation import PRESETS

    for p in PRESETS.values():
        L.append(f"| {p.name} | {p.boxsize:g} | {p.n_particles}^3 | {p.n_mesh}^3 | {p.n_steps} | {p.particle_mass:.3g} |")
    L += [
        "",
        f"`default`: a 10^11.5 Msun/h halo has {10 ** 11.5 / get_preset('default').particle_mass:.0f} particles.",
        "",
        "## Storage",
        "",
        "One compressed npz (format version 1): hosts with float32 positions and masses, int16 velocities (km/s),",
        "int16 unit major axes, uint16 axis ratios; satellite sites as int16 offsets in units of 1e-4 R_vir and",
        "int16 velocity offsets; plus the build diagnostics used below. The `default` catalogs (seed 1) are committed",
        "at `training/data/default_catalog_v<halo model>.npz` and loaded from there first; other presets/seeds are cached in",
        "`$IAEMU_CACHE` (default `~/.cache/iaemu`) as `iaemu-pm-<preset>-s<seed>-v<halo model>.npz`, with their checkpoints",
        "in `build-<catalog_id>/` (the z = 0 particles stay there for reuse; delete the folder to reclaim the space).",
        "API: `training.catalogs.nbody.load_catalog_columns(preset, seed=None, cache_dir=None, build_if_missing=True)`; "
        f"`preset` may name a halo model version ({', '.join(f'`default-v{v}`' for v in sorted(MODELS))}; a name without one "
        f"means v{DEFAULT_MODEL}, see below).",
        "",
        f"## Results for `{c['catalog_id']}`",
        "",
        f"Box {c['Lbox']:g} Mpc/h, particle mass {c['particle_mass']:.4g} Msun/h, {c['n_hosts']} host halos, "
        f"{c['n_subhalos']} satellite sites, file {c['file_mb']} MB, build {c.get('build_seconds')} s "
        f"(as recorded by the build, on the machine of the report; a build of another halo model version that "
        f"reuses the z = 0 particles of the build folder records only the halo finding).",
        "",
        "### Initial conditions vs colossus",
        "",
        "![IC power](figures/catalog_ic_power.png)",
        "",
        f"- Realised linear field / colossus, mode-weighted over k <= k_Nyq/2 = {ic['k_max']:.2f} h/Mpc: "
        f"**{_f(ic['field_vs_colossus_weighted'], 4)}** (cosmic-variance sigma {_f(ic['field_vs_colossus_expected_sigma'], 4)}; "
        f"chi^2 per bin {_f(ic['field_vs_colossus_chi2_per_bin'], 2)}).",
        f"- 2LPT particles at z = 9 / D^2 x realised field (same modes, no cosmic variance): mode-weighted "
        f"**{_f(ic['lpt_vs_field_weighted'], 4)}**, largest bin deviation {_f(ic['lpt_vs_field_max_dev'], 3)} "
        "(the particle density at z = 9 already carries the non-linear terms of the LPT mapping on the smallest scales).",
        f"- 2LPT particles / (D^2 x colossus), mode-weighted over k <= {ic['linear_k']:g} h/Mpc: "
        f"**{_f(ic['ic_vs_colossus_weighted_linear_k'], 4)}** (cosmic-variance sigma {_f(ic['ic_vs_colossus_expected_sigma_linear_k'], 4)}); "
        f"particles / realised field there: {_f(ic['lpt_vs_field_weighted_linear_k'], 4)} (largest bin deviation "
        f"{_f(ic['lpt_vs_field_max_dev_linear_k'], 3)}).",
        f"- Particles / colossus in bins with cosmic variance < 1% (k in {[round(v, 2) for v in ic['ic_vs_colossus_k_range_well_sampled']]}): "
        f"largest deviation {_f(ic['ic_vs_colossus_max_dev_well_sampled'], 4)}, from the non-linear LPT terms at high k.",
        "",
        "### z = 0 matter power vs halofit",
        "",
        "![P(k) z=0](figures/catalog_pk_z0.png)",
        "",
        "| k [h/Mpc] | " + " | ".join(k.split("ratio_at_k")[-1] for k in pk if k.startswith("ratio_at")) + " |",
        "|---|" + "---|" * sum(k.startswith("ratio_at") for k in pk),
        "| PM / halofit | " + " | ".join(_f(v) for k, v in pk.items() if k.startswith("ratio_at")) + " |",
        "| cosmic variance | " + " | ".join(_f(v) for k, v in pk.items() if k.startswith("cosmic")) + " |",
        "",
        f"Mode-weighted PM / halofit over 0.3 < k < 1 h/Mpc: **{_f(pk['ratio_weighted_0.3_1'])}**. The PM run is ~10%",
        "below halofit in the quasi-linear range and falls further below the mesh scale (cell "
        f"{pr.boxsize / pr.n_mesh:.3f} Mpc/h, comparable to R_vir of 10^12 Msun/h halos): PM halo cores are puffy,",
        "so the one-halo power is low (halofit itself is good to ~5% here). The k <= 0.2 bins hold few modes.",
        "",
        "### Halo mass function vs Tinker08",
        "",
        "![mass function](figures/catalog_mass_function.png)",
        "",
        "| particles | FoF / Tinker08 | rank-matched / Tinker08 |",
        "|---|---|---|",
    ]
    fof = {tuple(e["particles"]): e for e in mf["fof_vs_tinker08"]}
    cor = {tuple(e["particles"]): e for e in mf["corrected_vs_tinker08"]}
    for key in sorted(set(fof) | set(cor)):
        a = fof.get(key, {}).get("ratio")
        b = cor.get(key, {}).get("ratio")
        L.append(f"| {key[0]:g}-{key[1]:g} | {_f(a)} | {_f(b)} |")
    L += [
        "",
        "Rank-matched masses agree with Tinker08 by construction (largest bin deviation where halos have >= 100",
        f"particles: {_f(mf['corrected_max_dev_100p'])}, Poisson error of the emptiest such bin {_f(mf['corrected_max_dev_100p_poisson'])});",
        "the FoF column shows the correction that rank matching applies. The lowest bin of the corrected masses is",
        "partly empty: no halo is assigned a mass below the abundance of the smallest kept group.",
        "",
        "### Halo bias on 5-20 Mpc/h vs Tinker10",
        "",
        "![bias](figures/catalog_bias.png)",
        "",
        "| log10 M_vir | halos | b (PM) | b (Tinker10) | ratio |",
        "|---|---|---|---|---|",
    ]
    for e in res["bias"]:
        L.append(f"| {e['logM'][0]}-{e['logM'][1]} | {e['n_halos']} | {_f(e['b_sim'])} | {_f(e['b_tinker10'])} | {_f(e['ratio'])} |")
    L += [
        "",
        "b = sqrt(sum xi_hh / sum xi_mm) over the r bins in 5-20 Mpc/h; xi from FFTs of CIC meshes (256^3), xi_mm",
        "from the z = 0 particles at build time; Tinker10 averaged over the bin's halos.",
        "",
        "### Halo shapes",
        "",
        "![shapes](figures/catalog_shapes.png)",
        "",
        "| log10 M_vir | halos | median b/a | median c/a |",
        "|---|---|---|---|",
    ]
    for k, e in res["shapes"].items():
        L.append(f"| {k} | {e['n']} | {_f(e['median_b_to_a'])} | {_f(e['median_c_to_a'])} |")
    ha = res["halo_alignments"]
    L += [
        "",
        _shapes_sentence(res["catalog"].get("halo_model_spec") or {}),
        "",
        "### Halo-halo shape correlations (M > 1e12)",
        "",
        "![halo alignments](figures/catalog_halo_alignment.png)",
        "",
        f"{ha['n_halos']} hosts; errors from 20 orientation shuffles. Signal-to-noise of the sum over r < 5 Mpc/h:",
        f"ed **{_f(ha['ed_snr_r_lt_5'], 1)}** (all bins positive: {ha['ed_all_positive_r_lt_5']}), ",
        f"ee **{_f(ha['ee_snr_r_lt_5'], 1)}** (all bins positive: {ha['ee_all_positive_r_lt_5']}).",
        "",
        "| r [Mpc/h] | " + " | ".join(f"{r:.2f}" for r in ha["r"]) + " |",
        "|---|" + "---|" * len(ha["r"]),
        "| ed | " + " | ".join(f"{v:.4f}" for v in ha["ed"]) + " |",
        "| err | " + " | ".join(f"{v:.4f}" for v in ha["ed_null_err"]) + " |",
        "| ee | " + " | ".join(f"{v:.4f}" for v in ha["ee"]) + " |",
        "| err | " + " | ".join(f"{v:.4f}" for v in ha["ee_null_err"]) + " |",
    ]
    if "mocks" in res:
        m = res["mocks"]
        L += [
            "",
            "### HOD mocks at the TNG300 samples' best fits",
            "",
            "![TNG300 xi](figures/catalog_tng300_xi.png)",
            "",
            "| sample | galaxies | n_gal [(h/Mpc)^3] | median abs(xi/xi_TNG - 1), 0.3-14 Mpc/h |",
            "|---|---|---|---|",
        ]
        for s, e in m["tng300"].items():
            L.append(f"| {s} | {e['n_gal_mean']:.0f} | {e['number_density']:.3e} | {_f(e['median_abs_xi_ratio_minus_1'])} |")
        r = m["realism"]
        L += [
            "",
            "The TNG300 xi is a hydrodynamical measurement; the HOD best fits come from Bolshoi-Planck mocks, so this",
            "comparison mixes model and catalog differences. The realism target below isolates the catalog.",
            "",
            "### Realism target: the same model on Bolshoi-Planck (reference mocks)",
            "",
            "![Bolshoi-Planck reference](figures/catalog_bolplanck_reference.png)",
            "",
            f"TNG300 sample 2 parameters, {r['realisations']} realisations ({r['n_gal_mean']:.0f} galaxies each), "
            "interpolated in ln r to the reference bins, over 0.3-14 Mpc/h:",
            "",
            f"- xi: median abs(xi/ref - 1) = **{_f(r['xi']['median_abs_ratio_minus_1'])}** (target <= {XI_MEDIAN_TARGET:g})",
            f"- omega: median abs(omega - ref)/err = **{_f(r['omega']['median_abs_dev_over_err'], 2)}** (target <= {OMEGA_MEDIAN_TARGET:g})",
            f"- eta: median abs(eta - ref)/err = **{_f(r['eta']['median_abs_dev_over_err'], 2)}**",
            f"- below 0.3 Mpc/h: xi/ref = {', '.join(_f(v) for v in r['xi']['ratio_below_0.3'])}; "
            f"(omega - ref)/err = {', '.join(_f(v, 2) for v in r['omega']['dev_over_err_below_0.3'])}",
            "",
            "| r [Mpc/h] | " + " | ".join(f"{v:.3f}" for v in r["xi"]["r"]) + " |",
            "|---|" + "---|" * len(r["xi"]["r"]),
        ]
        for stat in ("xi", "omega", "eta"):
            L.append(f"| {stat} ours | " + " | ".join(_f(v, 4) for v in r[stat]["ours"]) + " |")
            L.append(f"| {stat} ref | " + " | ".join(_f(v, 4) for v in r[stat]["ref"]) + " |")
    L += ["", "## Verdict against the realism targets", ""]
    ic_ok = (abs(ic['field_vs_colossus_weighted'] - 1) <= IC_POWER_TOLERANCE
             and abs(ic['ic_vs_colossus_weighted_linear_k'] - 1) <= IC_POWER_TOLERANCE)
    L.append(f"- IC linear power vs colossus <= {IC_POWER_TOLERANCE:.0%}: realised field "
             f"{_f(ic['field_vs_colossus_weighted'], 4)}, particles (k <= {ic['linear_k']:g}) "
             f"{_f(ic['ic_vs_colossus_weighted_linear_k'], 4)}: " + ("met." if ic_ok else "NOT met."))
    L.append(f"- Mass function vs Tinker08 <= 10% at >= 100 particles: {_f(mf['corrected_max_dev_100p'])} (by construction of the rank matching).")
    worst = max(abs(e['ratio'] - 1) for e in res['bias']) if res['bias'] else float('nan')
    L.append(f"- Halo bias vs Tinker10 <= {BIAS_TOLERANCE:.0%} on 5-20 Mpc/h: worst bin {_f(worst)}: "
             + ("met." if worst <= BIAS_TOLERANCE else "NOT met."))
    L.append(f"- Halo-halo ed and ee positive at r < 5 Mpc/h: ed {ha['ed_all_positive_r_lt_5']}, ee {ha['ee_all_positive_r_lt_5']}.")
    if "mocks" in res:
        r = res["mocks"]["realism"]
        verdicts = realism_verdicts(r)
        xi_ok, om_ok = verdicts["xi_median"]["met"], verdicts["omega_median"]["met"]
        L.append(f"- Realism xi: median abs(xi/ref - 1) {_f(r['xi']['median_abs_ratio_minus_1'])} <= "
                 f"{XI_MEDIAN_TARGET:g}: " + ("met." if xi_ok else "NOT met."))
        L.append(f"- Realism omega: median abs(omega - ref)/err {_f(r['omega']['median_abs_dev_over_err'], 2)} <= "
                 f"{OMEGA_MEDIAN_TARGET:g}: " + ("met." if om_ok else "NOT met."))
        line, small_ok = small_scale_verdict(r['xi']['ratio_below_0.3'], r['omega']['dev_over_err_below_0.3'])
        L.append(line)
        check = _models_check(models, res["catalog"]["catalog_id"])
        if check is not None:
            _, check_ok = small_scale_verdict(check["xi_below_0.3"], check["omega_below_0.3"])
            L.append(f"- The same with {check['realisations']} realisations (seed {check['seed']}, `compare-models` check "
                     "below): omega (ours - ref)/err below 0.3 Mpc/h "
                     f"{', '.join(_f(v, 2) for v in check['omega_below_0.3'])} ("
                     + ("met" if check_ok else "NOT met") + "); a 10-realisation mean scatters there by about 1-2 "
                     "reference errors, so the larger sample is the better estimate.")
            small_ok = small_ok and check_ok
        many = _pooled_check(pooled, res["catalog"]["catalog_id"])
        if many is not None:
            n = len(many["seeds"]) * many["realisations_per_seed"]
            _, many_ok = small_scale_verdict(many["xi_ratio_below_0.3_pooled"], many["omega_below_0.3_pooled"])
            L.append(f"- Pooled over {n} realisations (seeds {', '.join(str(s) for s in many['seeds'])}, "
                     f"`scripts/small_scale_check.py`, {pooled_path.name}): omega (ours - ref)/err below 0.3 Mpc/h "
                     f"{', '.join(_f(v, 2) for v in many['omega_below_0.3_pooled'])}, ours/ref "
                     f"{', '.join(_f(v, 2) for v in many['omega_ratio_below_0.3_pooled'])} ("
                     + ("met" if many_ok else "NOT met") + ").")
            small_ok = small_ok and many_ok
        why = []
        if not om_ok:
            why.append("above ~1.5 Mpc/h the PM halo axes measured from the ~30 members inside R_vir (halo model v1) are more "
                       "aligned with the large-scale structure than the reference's Rockstar axes (the excess is ~1.5x at all "
                       "r > 2 Mpc/h, far above the box's cosmic variance)")
        if not small_ok:
            why.append("below 0.3 Mpc/h the satellite sites are not concentrated enough along the central's axis (the PM run "
                       "resolves no subhalos)")
        if why:
            L += ["", "What sets the omega misses was measured afterwards (section \"Halo model versions\" below): "
                  + "; ".join(why) + "."]
    L += ["", f"All numbers: `{path.with_name('catalog_validation.json').name}` (written by the same command).", ""]
    if models is not None:
        L += [models_markdown(models), ""]
    path.write_text("\n".join(L))


def _entry_for(entries: dict | None, catalog_id: str) -> dict | None:
    """The value of `entries` (a results file's per-catalog dict, or None when the file is absent) measured on
    this catalog."""
    return next((e for e in (entries or {}).values() if e.get("catalog_id") == catalog_id), None)


def _models_check(models: dict | None, catalog_id: str) -> dict | None:
    """The many-realisation check of `compare-models` for this catalog, if its results (catalog_models.json) hold one."""
    entry = _entry_for(models and models["models"], catalog_id)
    return None if entry is None else entry.get("check")


def _pooled_check(pooled: dict | None, catalog_id: str) -> dict | None:
    """The pooled many-seed numbers of scripts/small_scale_check.py for this catalog, if its results
    (catalog_small_scale.json) hold them."""
    return _entry_for(pooled, catalog_id)


def small_scale_verdict(xi_ratios, omega_devs) -> tuple[str, bool]:
    """The small-scale target "no systematic deficit below 0.3 Mpc/h", as a verdict line and whether it is met: every reference
    bin there within the realism targets' tolerances (SMALL_SCALE_XI_MIN, SMALL_SCALE_OMEGA_MIN). A deficit inside
    the tolerance in every bin is named, not hidden."""
    xi_ok = bool(len(xi_ratios)) and min(xi_ratios) >= SMALL_SCALE_XI_MIN
    om_ok = bool(len(omega_devs)) and min(omega_devs) >= SMALL_SCALE_OMEGA_MIN
    line = (f"- No systematic deficit below 0.3 Mpc/h (every bin within xi/ref >= {SMALL_SCALE_XI_MIN:g} and "
            f"(omega - ref)/err >= {SMALL_SCALE_OMEGA_MIN:g}): "
            f"xi/ref {', '.join(_f(v) for v in xi_ratios)} ({'met' if xi_ok else 'NOT met'}); omega (ours - ref)/err "
            f"{', '.join(_f(v, 2) for v in omega_devs)} ({'met' if om_ok else 'NOT met'}).")
    if len(omega_devs) and max(omega_devs) < 0:
        line += " Every omega bin lies below the reference" + (", by less than the tolerance." if om_ok else ".")
    return line, xi_ok and om_ok


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
    halo shapes, and the jackknife cosmic variance of omega. Writes <out_dir>/catalog_models.json, the figure
    <out_dir>/figures/catalog_models_realism.png and the section of <out_dir>/catalog.md."""
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
    write_models_section(out_dir / "catalog.md", res)
    return res


def write_models_section(page: Path, res: dict | None = None) -> None:
    """Replace (or append) the halo-model section of catalog.md, from `res` or the catalog_models.json beside it."""
    page = Path(page)
    if res is None:
        res = json.loads(page.with_name("catalog_models.json").read_text())
    text = page.read_text() if page.exists() else ""
    start = text.find(MODELS_MARK)
    if start >= 0:
        text = text[:start].rstrip("\n") + "\n"
    page.write_text(text + "\n" + models_markdown(res) + "\n")


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


MODELS_MARK = "## Halo model versions"


def _shapes_sentence(spec: dict) -> str:
    """What the axis ratios of docs/results/catalog.md mean, for the estimator of this halo model (MODELS)."""
    if spec.get("ratio_iterative"):
        return ("The axis ratios come from the iterative reduced tensor in the ellipsoid of R_vir's volume "
                "(Allgood et al. 2006). High-resolution N-body runs give median c/a ~ 0.5-0.65 and b/a ~ 0.7-0.8 "
                "at these masses; a sphere's window (v1's estimator) makes halos look rounder. The ratios set "
                "the satellites' stretch; the axis itself comes from `halo_axisA`'s estimator (table in "
                "\"Halo model versions\").")
    return ("These PM halos are rounder than halos of high-resolution N-body runs (median c/a ~ 0.5-0.65, b/a ~ "
            "0.7-0.8 at these masses): the force softening (one mesh cell, 0.22 Mpc/h) is comparable to R_vir of "
            "10^12 Msun/h halos and rounds their inner parts, and the reduced tensor in a sphere weights the "
            "inner particles and biases the ratios up.")


def _unbuilt_models_sentence(measured) -> list[str]:
    """A line naming the halo models of MODELS that compare_models has not measured."""
    rest = [v for v in sorted(MODELS) if str(v) not in {str(k) for k in measured}]
    if not rest:
        return []
    return [f"Halo models defined but not measured here: {', '.join(f'v{v}' for v in rest)} "
            f"(`iaemu-catalog compare-models --models {' '.join(str(v) for v in sorted(MODELS))}`).", ""]


def _model_label(version: int) -> str:
    tag = " = `default`, the shipped emulator's catalog" if version == DEFAULT_MODEL else ""
    return f"v{version} (`default-v{version}`{tag})"


def _default_sentence() -> str:
    if DEFAULT_MODEL == 1:
        return "v1 stays the `default`: the shipped emulator and its dataset were made on it."
    earlier = ", ".join(f"v{v}" for v in sorted(MODELS) if v < DEFAULT_MODEL)
    return (f"v{DEFAULT_MODEL} is the `default`: the shipped emulator and its dataset are made on it; {earlier} made the "
            "earlier datasets and emulators ([dataset](../dataset.md), [emulator](../emulator.md)).")


def _estimator_cells(spec: HaloModel) -> list[str]:
    """Table cells (axis, ratios, satellite concentration) describing one MODELS entry."""
    def tensor(radius, reduced, iterative):
        kind = "reduced" if reduced else "non-reduced"
        where = "R_vir" if radius == 1.0 else f"R_vir / {1 / radius:g}" if radius < 1 else f"{radius:g} R_vir"
        if iterative:
            return f"iterative {kind} tensor (Allgood et al. 2006), ellipsoid of {where}'s volume"
        return f"{kind} tensor inside {where}"
    axis = tensor(spec.axis_radius, spec.axis_reduced, spec.axis_iterative)
    if spec.site_mass_fsub > 0:
        window = spec.site_window
        inside = "it" if window == spec.axis_radius else f"{window:g} R_vir"
        axis += (f", plus m x x^T of the satellite sites inside {inside} (evolved subhalo mass function, "
                 f"f_sub = {spec.site_mass_fsub:g})")
    conc = "c(M) (Diemer & Joyce 2019)" if spec.conc_factor == 1.0 else f"c(M) x {spec.conc_factor:g}"
    return [axis, tensor(spec.ratio_radius, spec.ratio_reduced, spec.ratio_iterative), conc]


def _versions_prose(keys) -> list[str]:
    """What the measured versions are and which one is the default."""
    L = ["v2 meets the xi and omega medians; its large-scale omega agrees because its axes, measured from ~11 central "
         "members, are noisier and so less aligned with the large-scale structure than v1's (a calibration of the "
         "estimator against the reference, not a gain in resolution), and the omega deficit below 0.3 Mpc/h remains "
         "(no subhalos in the PM run). How v2 was found, the trials, the noise test, the one-halo decomposition and "
         "what would close the rest: [catalog_models_exploration.md](../catalog_models_exploration.md).", ""]
    if 3 in {int(k) for k in keys}:
        L += ["v3 keeps v2's simulation, hosts, ratios and satellite sites and moves only `halo_axisA`: every satellite "
              "site gets a subhalo mass (the evolved subhalo mass function of Jiang & van den Bosch 2016, f_sub = 0.1, "
              "the most massive sites at the lowest ranks) and the sites inside R_vir / 2 add their m x x^T to the "
              "host's tensor, as a halo finder's axis includes its subhalos' particles. The central galaxies' axis "
              "then leans towards their satellites, which is the one-halo anisotropy that the PM halos lack. It "
              "raises omega in the two innermost bins by about 2.5 reference errors and in the third by about 0.5 "
              "(tables below), the bin at 0.19 Mpc/h stays low in the 30-realisation check, and the large scales "
              "stay as they were ([catalog_models_exploration.md](../catalog_models_exploration.md), "
              "\"A candidate v3\").", ""]
    if 4 in {int(k) for k in keys}:
        L += ["v4 is v3 with the satellite sites out to 0.75 R_vir (not R_vir / 2) in the axis tensor, since a halo "
              "finder's axis includes the subhalos throughout R_vir while v3's window was inherited from the member "
              "aperture. Pooled over 150 realisations it closes the deficit v3 left at 0.19 Mpc/h (-0.9 err against "
              "-3.9) and keeps every bin below 0.3 Mpc/h within 1 err, at the price of about 9% less omega above "
              "2 Mpc/h; with all sites inside R_vir the third bin overshoots and the large scales lose 11%. The 0.75 "
              "is a calibration against the reference at one parameter point, like v2's aperture "
              "([catalog_models_exploration.md](../catalog_models_exploration.md), last section).", ""]
    return L + [_default_sentence(), ""]


def models_markdown(res: dict) -> str:
    """The halo-model-versions section of docs/results/catalog.md from compare_models' numbers."""
    ms = res["models"]
    keys = sorted(ms, key=int)
    defined = sorted(MODELS)
    cells = {v: _estimator_cells(MODELS[v]) for v in defined}
    names = " or ".join(f"`load_catalog(\"default-v{v}\")`" for v in defined)
    L = [MODELS_MARK, "",
         "All versions use the same simulation, FoF groups, centres, velocities and rank-matched masses; they",
         "differ only in the halo shape estimators and the satellite-site profile (`training.catalogs.nbody.halos.MODELS`):", "",
         "| | " + " | ".join(_model_label(v) for v in defined) + " |", "|---|" + "---|" * len(defined),
         "| halo_axisA (central reference, satellite frame) | " + " | ".join(cells[v][0] for v in defined) + " |",
         "| b/a, c/a (satellite stretch, halo_b_to_a/c_to_a) | " + " | ".join(cells[v][1] for v in defined) + " |",
         "| satellite NFW concentration | " + " | ".join(cells[v][2] for v in defined) + " |", "",
         f"Load with {names} (training.catalogs.sources; plain `default` is "
         f"v{DEFAULT_MODEL}), or `training.catalogs.nbody.load_catalog_columns` with the same names; rebuild with "
         "`iaemu-catalog build --preset default-vN` (every version reuses the z = 0 particles of the build folder, "
         "80 s; the halo columns rebuild bit-identically). "
         "Numbers and figure: `iaemu-catalog compare-models --models " + " ".join(str(k) for k in keys)
         + " --out docs/results` (writes `catalog_models.json`).", "",
         *_versions_prose(keys),
         *_unbuilt_models_sentence(keys),
         "![halo model versions against the Bolshoi-Planck mocks](figures/catalog_models_realism.png)", "",
         f"Realism at TNG300 sample 2's parameters against the Bolshoi-Planck reference mocks (targets: xi <= {XI_MEDIAN_TARGET:g}, omega <= {OMEGA_MEDIAN_TARGET:g}, "
         "medians over 0.3-14 Mpc/h; no deficit below 0.3 Mpc/h):", "",
         "| | " + " | ".join(ms[k]["catalog_id"] for k in keys) + " |", "|---|" + "---|" * len(keys)]
    def row(label, f):
        L.append(f"| {label} | " + " | ".join(f(ms[k]) for k in keys) + " |")
    row("median b/a, c/a of hosts", lambda e: f"{e['median_b_to_a']:.2f}, {e['median_c_to_a']:.2f}")
    row("file size [MB]", lambda e: f"{e['file_mb']:.2f}")
    row(f"xi median (seed 7, {ms[keys[0]]['validation']['realisations']} realisations)", lambda e: _f(e["validation"]["xi"]["median_abs_ratio_minus_1"]))
    row("omega median", lambda e: f"**{e['validation']['omega']['median_abs_dev_over_err']:.2f}**")
    row("eta median", lambda e: _f(e["validation"]["eta"]["median_abs_dev_over_err"], 2))
    row("xi/ref below 0.3 Mpc/h", lambda e: ", ".join(f"{v:.2f}" for v in e["validation"]["xi"]["ratio_below_0.3"]))
    row("omega (ours-ref)/err below 0.3 Mpc/h", lambda e: ", ".join(f"{v:.1f}" for v in e["validation"]["omega"]["dev_over_err_below_0.3"]))
    row("omega ours/ref summed over r > 2 Mpc/h", lambda e: f"{e['validation']['omega']['ratio_r_gt_2']:.2f}")
    c0 = ms[keys[0]]["check"]
    row(f"check, seed 8, {c0['realisations']} realisations: xi / omega median", lambda e: f"{e['check']['xi_median']:.3f} / {e['check']['omega_median']:.2f}")
    row("check: omega (ours-ref)/err below 0.3 Mpc/h", lambda e: ", ".join(f"{v:.1f}" for v in e["check"]["omega_below_0.3"]))
    r = ms[keys[0]]["validation"]["omega"]["r"]
    L += ["", "(ours - ref)/err of omega per reference bin (seed 7):", "",
          "| r [Mpc/h] | " + " | ".join(f"{x:.3f}" for x in r) + " |", "|---|" + "---|" * len(r)]
    for k in keys:
        L.append(f"| v{k} | " + " | ".join(_f(v, 2) for v in ms[k]["validation"]["omega"]["dev_over_err"]) + " |")
    bc = np.array(res["bin_centres"])
    err = np.array(res["ref_err_at_bin_centres"])
    pick = [i for i, x in enumerate(bc) if 1.0 < x < 14.0]
    L += ["", "Cosmic variance of omega in our 128 Mpc/h box (delete-one jackknife over 64 sub-volumes of the pair sums of "
          f"{ms[keys[-1]]['jackknife']['realisations']} realisations, minus their realisation variance), in units of the reference error "
          "and of omega:", "",
          "| r [Mpc/h] | " + " | ".join(f"{bc[i]:.2f}" for i in pick) + " |", "|---|" + "---|" * len(pick)]
    for k in keys:
        jk = ms[k]["jackknife"]
        cv = np.array(jk["sigma_cosmic"])
        om = np.array(jk["omega"])
        L.append(f"| v{k} sigma_cv / ref err | " + " | ".join(f"{cv[i] / err[i]:.2f}" for i in pick) + " |")
        L.append(f"| v{k} sigma_cv / omega | " + " | ".join(f"{cv[i] / abs(om[i]):.2f}" if om[i] != 0 else "n/a" for i in pick) + " |")
    return "\n".join(L)
