"""The page docs/results/catalog.md, from catalog_validation.json (`iaemu-catalog validate`), catalog_models.json
(`iaemu-catalog compare-models`) and catalog_small_scale.json (scripts/small_scale_check.py).

The numbers and the verdicts come from the JSON and from `training.mocks.catalog_validation` (the checks and their
target constants); the method prose and the tables' layout live here.
"""
from __future__ import annotations

import math

import numpy as np

from training.catalogs.nbody.cosmology import COSMOLOGY
from training.catalogs.nbody.halos import DEFAULT_MODEL, MODELS, HaloModel
from training.catalogs.nbody.simulation import PRESETS, get_preset
from training.mocks.catalog_validation import (BIAS_RANGE, BIAS_TOLERANCE, IC_POWER_TOLERANCE,
                                               MASS_FUNCTION_MIN_PARTICLES, OMEGA_MEDIAN_TARGET, REALISM_RANGE,
                                               SMALL_SCALE_OMEGA_MIN, SMALL_SCALE_XI_MIN, XI_MEDIAN_TARGET,
                                               catalog_verdicts, models_check, pooled_check, realism_verdicts,
                                               small_scale_verdict)

#: The JSON files the page is rendered from.
RESULTS, MODELS_RESULTS, POOLED = "catalog_validation.json", "catalog_models.json", "catalog_small_scale.json"
#: The heading of the halo-model section (written from catalog_models.json alone).
MODELS_MARK = "## Halo model versions"
#: The command line shown on the page when the JSON does not record the one that made it.
DEFAULT_COMMAND = "iaemu-catalog validate"


def _f(x, nd=3):
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


def render(res: dict, models: dict | None = None, pooled: dict | None = None, command: str | None = None) -> str:
    """catalog.md: method, storage, every measured number of `res` and the verdicts against the targets."""
    command = command or res.get("command") or DEFAULT_COMMAND
    c = res["catalog"]
    ic, pk, mf = res["ic_power"], res["matter_power"], res["mass_function"]
    pr = get_preset(c["preset"])
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
        f"   Bolshoi-Planck's flat LCDM (Om = {COSMOLOGY['Om0']:g}, Ob = {COSMOLOGY['Ob0']:g}, h = {COSMOLOGY['h']:g}, "
        f"sigma8 = {COSMOLOGY['sigma8']:g}, ns = {COSMOLOGY['ns']:g}) on the particle",
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
        f"Mode-weighted PM / halofit over 0.3 < k < 1 h/Mpc: **{_f(pk['ratio_weighted_0.3_1'])}**. The PM run is "
        f"~{100 * (1 - pk['ratio_weighted_0.3_1']):.0f}%",
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
        "Rank-matched masses agree with Tinker08 by construction (largest bin deviation where halos have >= "
        f"{MASS_FUNCTION_MIN_PARTICLES}",
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
        shapes_sentence(res["catalog"].get("halo_model_spec") or {}),
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
    v = catalog_verdicts(res, models, pooled)
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    L.append(f"- IC linear power vs colossus <= {IC_POWER_TOLERANCE:.0%}: realised field "
             f"{_f(ic['field_vs_colossus_weighted'], 4)}, particles (k <= {ic['linear_k']:g}) "
             f"{_f(ic['ic_vs_colossus_weighted_linear_k'], 4)}: {met(v['ic_power']['met'])}.")
    L.append(f"- Mass function vs Tinker08 <= {v['mass_function']['target']:.0%} at >= {MASS_FUNCTION_MIN_PARTICLES} "
             f"particles: {_f(mf['corrected_max_dev_100p'])} (by construction of the rank matching).")
    L.append(f"- Halo bias vs Tinker10 <= {BIAS_TOLERANCE:.0%} on {BIAS_RANGE[0]:g}-{BIAS_RANGE[1]:g} Mpc/h: worst bin "
             f"{_f(v['bias']['value'])}: {met(v['bias']['met'])}.")
    L.append(f"- Halo-halo ed and ee positive at r < 5 Mpc/h: ed {ha['ed_all_positive_r_lt_5']}, ee {ha['ee_all_positive_r_lt_5']}.")
    if "mocks" in res:
        r, rv = res["mocks"]["realism"], v["realism"]
        L.append(f"- Realism xi: median abs(xi/ref - 1) {_f(r['xi']['median_abs_ratio_minus_1'])} <= "
                 f"{XI_MEDIAN_TARGET:g}: {met(rv['xi_median']['met'])}.")
        L.append(f"- Realism omega: median abs(omega - ref)/err {_f(r['omega']['median_abs_dev_over_err'], 2)} <= "
                 f"{OMEGA_MEDIAN_TARGET:g}: {met(rv['omega_median']['met'])}.")
        L.append(small_scale_line(rv["small_scale"]))
        check = models_check(models, c["catalog_id"])
        if check is not None:
            L.append(f"- The same with {check['realisations']} realisations (seed {check['seed']}, `compare-models` check "
                     "below): omega (ours - ref)/err below 0.3 Mpc/h "
                     f"{', '.join(_f(x, 2) for x in check['omega_below_0.3'])} ({met(rv['small_scale_check']['met'])}); "
                     f"a {r['realisations']}-realisation mean scatters more there, so the larger sample is the better "
                     "estimate.")
        many = pooled_check(pooled, c["catalog_id"])
        if many is not None:
            n = len(many["seeds"]) * many["realisations_per_seed"]
            L.append(f"- Pooled over {n} realisations (seeds {', '.join(str(s) for s in many['seeds'])}, "
                     f"`scripts/small_scale_check.py`, {POOLED}): omega (ours - ref)/err below 0.3 Mpc/h "
                     f"{', '.join(_f(x, 2) for x in many['omega_below_0.3_pooled'])}, ours/ref "
                     f"{', '.join(_f(x, 2) for x in many['omega_ratio_below_0.3_pooled'])} "
                     f"({met(rv['small_scale_pooled']['met'])}).")
        why = []
        if not rv["omega_median"]["met"]:
            why.append("on large scales the PM halo axes measured from the members inside R_vir (halo model v1) are more "
                       "aligned with the large-scale structure than the reference's Rockstar axes (omega ours/ref summed "
                       f"over r > 2 Mpc/h: {r['omega']['ratio_r_gt_2']:.2f}, far above the box's cosmic variance)")
        if not rv["small_scale_met"]:
            why.append("below 0.3 Mpc/h the satellite sites are not concentrated enough along the central's axis (the PM run "
                       "resolves no subhalos)")
        if why:
            L += ["", "What sets the omega misses was measured afterwards (section \"Halo model versions\" below): "
                  + "; ".join(why) + "."]
    L += ["", f"All numbers: `{RESULTS}` (written by the same command).", ""]
    if models is not None:
        L += [models_section(models, pooled), ""]
    return "\n".join(L)


def small_scale_line(v: dict) -> str:
    """The verdict line of `small_scale_verdict` output: every bin below 0.3 Mpc/h against the tolerances."""
    line = (f"- No systematic deficit below 0.3 Mpc/h (every bin within xi/ref >= {SMALL_SCALE_XI_MIN:g} and "
            f"(omega - ref)/err >= {SMALL_SCALE_OMEGA_MIN:g}): "
            f"xi/ref {', '.join(_f(x) for x in v['xi_ratios'])} ({'met' if v['xi']['met'] else 'NOT met'}); "
            f"omega (ours - ref)/err {', '.join(_f(x, 2) for x in v['omega_devs'])} "
            f"({'met' if v['omega']['met'] else 'NOT met'}).")
    if v["omega_all_below_reference"]:
        line += " Every omega bin lies below the reference" + (", by less than the tolerance." if v["omega"]["met"] else ".")
    return line


def shapes_sentence(spec: dict) -> str:
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


def _window(radius: float) -> str:
    """A radius in units of R_vir, as the page writes it (R_vir, R_vir / 2, 0.75 R_vir)."""
    return "R_vir" if radius == 1.0 else f"R_vir / {1 / radius:g}" if radius < 1 and (1 / radius).is_integer() \
        else f"{radius:g} R_vir"


def _small_r(res: dict) -> list[float]:
    """The reference radii below REALISM_RANGE[0] (the small-scale bins of every table)."""
    r = next(iter(res["models"].values()))["validation"]["omega"]["r"]
    return [x for x in r if x < REALISM_RANGE[0]]


def _versions_prose(res: dict, pooled: dict | None) -> list[str]:
    """What the measured versions are and which one is the default; every number from the JSON results."""
    ms = {int(k): e for k, e in res["models"].items()}
    r_small = _small_r(res)
    L = []
    if 2 in ms:
        v2 = realism_verdicts(ms[2]["validation"])
        meets = "meets" if v2["xi_median"]["met"] and v2["omega_median"]["met"] else "misses"
        small = small_scale_verdict(ms[2]["validation"]["xi"]["ratio_below_0.3"],
                                    ms[2]["validation"]["omega"]["dev_over_err_below_0.3"])
        L += [f"v2 {meets} the xi and omega medians; its large-scale omega agrees because its axes, measured from the "
              f"few central members inside {_window(MODELS[2].axis_radius)}, are noisier and so less aligned with the "
              "large-scale structure than v1's (a calibration of the estimator against the reference, not a gain in "
              "resolution)" + ("" if small["met"] else ", and the omega deficit below 0.3 Mpc/h remains (no subhalos "
                               "in the PM run)") + ". How v2 was found, the trials, the noise test, the one-halo "
              "decomposition and what would close the rest: "
              "[catalog_models_exploration.md](../catalog_models_exploration.md).", ""]
    if 3 in ms and 2 in ms:
        gain = np.subtract(ms[3]["validation"]["omega"]["dev_over_err_below_0.3"],
                           ms[2]["validation"]["omega"]["dev_over_err_below_0.3"])
        check = ms[3]["check"]
        low = [f"{x:.2f}" for x, d in zip(r_small, check["omega_below_0.3"]) if d < SMALL_SCALE_OMEGA_MIN]
        stays = (f"the bin{'s' if len(low) > 1 else ''} at {', '.join(low)} Mpc/h stay{'' if len(low) > 1 else 's'} "
                 f"low in the {check['realisations']}-realisation check, " if low else "")
        L += ["v3 keeps v2's simulation, hosts, ratios and satellite sites and moves only `halo_axisA`: every satellite "
              "site gets a subhalo mass (the evolved subhalo mass function of Jiang & van den Bosch 2016, "
              f"f_sub = {MODELS[3].site_mass_fsub:g}, the most massive sites at the lowest ranks) and the sites inside "
              f"{_window(MODELS[3].site_window)} add their m x x^T to the host's tensor, as a halo finder's axis "
              "includes its subhalos' particles. The central galaxies' axis then leans towards their satellites, which "
              "is the one-halo anisotropy that the PM halos lack. It raises omega in the two innermost bins by "
              f"{gain[0]:.1f} and {gain[1]:.1f} reference errors and in the third by {gain[2]:.1f} (tables below), "
              f"{stays}and the large scales stay as they were "
              "([catalog_models_exploration.md](../catalog_models_exploration.md), \"A candidate v3\").", ""]
    p3, p4 = (pooled_check(pooled, ms[v]["catalog_id"]) if v in ms else None for v in (3, 4))
    if 4 in ms:
        text = (f"v4 is v3 with the satellite sites out to {_window(MODELS[4].site_window)} (not "
                f"{_window(MODELS[3].site_window)}) in the axis tensor, since a halo finder's axis includes the "
                "subhalos throughout R_vir while v3's window was inherited from the member aperture.")
        if p3 is not None and p4 is not None:
            n = len(p4["seeds"]) * p4["realisations_per_seed"]
            d3, d4 = p3["omega_below_0.3_pooled"], p4["omega_below_0.3_pooled"]
            left = [i for i, d in enumerate(d3) if d < SMALL_SCALE_OMEGA_MIN]
            closes = "; ".join(f"{r_small[i]:.2f} Mpc/h ({d4[i]:.1f} err against {d3[i]:.1f})" for i in left)
            text += (f" Pooled over {n} realisations it closes the deficit v3 left at {closes} and keeps every bin "
                     f"below 0.3 Mpc/h within {math.ceil(max(abs(d) for d in d4)):g} err, at the price of about "
                     f"{100 * (1 - p4['omega_ratio_r_gt_2']):.0f}% less omega above 2 Mpc/h than the reference;")
        text += (" with all sites inside R_vir the third bin overshoots and more of the large-scale omega is lost. The "
                 f"{MODELS[4].site_window:g} is a calibration against the reference at one parameter point, like v2's "
                 "aperture ([catalog_models_exploration.md](../catalog_models_exploration.md), last section).")
        L += [text, ""]
    return L + [_default_sentence(), ""]


def models_section(res: dict, pooled: dict | None = None) -> str:
    """The halo-model-versions section of catalog.md from compare_models' numbers (and the pooled check's)."""
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
         "and the halo columns rebuild bit-identically). "
         "Numbers and figure: `iaemu-catalog compare-models --models " + " ".join(str(k) for k in keys)
         + " --out docs/results` (writes `catalog_models.json`).", "",
         *_versions_prose(res, pooled),
         *_unbuilt_models_sentence(keys),
         "![halo model versions against the Bolshoi-Planck mocks](figures/catalog_models_realism.png)", "",
         f"Realism at TNG300 sample 2's parameters against the Bolshoi-Planck reference mocks (targets: xi <= {XI_MEDIAN_TARGET:g}, omega <= {OMEGA_MEDIAN_TARGET:g}, "
         f"medians over {REALISM_RANGE[0]:g}-{REALISM_RANGE[1]:g} Mpc/h; no deficit below 0.3 Mpc/h):", "",
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
    L += ["", f"Cosmic variance of omega in our {get_preset('default').boxsize:g} Mpc/h box (delete-one jackknife over "
          f"{ms[keys[-1]]['jackknife']['regions']} sub-volumes of the pair sums of "
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
