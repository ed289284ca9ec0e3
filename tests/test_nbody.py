"""Tests of the N-body catalog pipeline (training.catalogs.nbody) on the seconds-long `test` preset."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", message=".*jax_enable_x64.*")

from training.catalogs.nbody import COLUMNS, build_catalog, get_preset, load_catalog_columns, read_diagnostics  # noqa: E402
from training.catalogs.nbody import cosmology  # noqa: E402
from training.catalogs.nbody.catalog import catalog_id  # noqa: E402
from training.catalogs.nbody.halos import DEFAULT_MODEL, MODELS, satellite_sites  # noqa: E402
from training.catalogs.nbody.mesh import cic_paint, pm_accelerations  # noqa: E402
from training.catalogs.nbody.simulation import initial_conditions, run_pm  # noqa: E402
from training.mocks.catalog_validation import MASS_FUNCTION_TOLERANCE  # noqa: E402


@pytest.fixture(scope="module")
def test_build(tmp_path_factory):
    cache = tmp_path_factory.mktemp("iaemu_cache")
    path = build_catalog("test", seed=3, progress=False, cache_dir=cache)
    return cache, path


def test_cic_conserves_mass_and_pm_conserves_momentum():
    rng = np.random.default_rng(0)
    L, n = 20.0, 16
    pos = (rng.random((5000, 3)) * L).astype(np.float32)
    mesh = cic_paint(pos, n, L)
    assert mesh.sum(dtype=np.float64) == pytest.approx(5000.0, rel=1e-6)
    # clustered particles: the total PM force (action = reaction) vanishes
    pos[:2000] = (5.0 + rng.normal(size=(2000, 3))).astype(np.float32) % L
    acc = pm_accelerations(pos, n, L)
    typical = np.abs(acc).mean()
    assert typical > 0
    assert np.all(np.abs(acc.sum(axis=0, dtype=np.float64)) / len(pos) < 1e-3 * typical)


def test_ic_power_matches_colossus(test_build):
    _, path = test_build
    d = read_diagnostics(path)
    k, n = d["ic_k"], d["ic_n_modes"]
    ok = (n > 0) & (k < 0.5 * d["ic_k_nyquist_particles"])
    # the realised linear field against colossus: a mode-weighted average, error ~ sqrt(1 / modes)
    ratio = np.sum(n[ok] * d["ic_p_lin_field"][ok] / d["ic_p_colossus"][ok]) / n[ok].sum()
    assert abs(ratio - 1) < 3 / np.sqrt(n[ok].sum()) + 0.01
    # the 2LPT particles against the field they were displaced by (same modes, no cosmic variance)
    lpt = np.sum(n[ok] * d["ic_p_ic"][ok]) / np.sum(n[ok] * d["ic_p_lin_field"][ok])
    assert abs(lpt - 1) < 0.05


def test_column_contract(test_build):
    cache, _ = test_build
    cols, meta = load_catalog_columns("test", seed=3, cache_dir=cache, build_if_missing=False)
    assert set(COLUMNS) <= set(cols)
    n = len(cols["halo_id"])
    assert all(len(cols[c]) == n for c in COLUMNS)
    L = meta["Lbox"]
    assert meta["redshift"] == 0.0 and meta["seed"] == 3 and meta["preset"] == "test"
    assert meta["catalog_id"] == catalog_id("test", 3, DEFAULT_MODEL) == f"iaemu-pm-test-s3-v{DEFAULT_MODEL}"
    assert meta["particle_mass"] == pytest.approx(get_preset("test").particle_mass)
    for c in "xyz":
        assert np.all((cols[f"halo_{c}"] >= 0) & (cols[f"halo_{c}"] < L))
    host = cols["halo_upid"] == -1
    assert 50 < host.sum() < n
    assert np.all(cols["halo_hostid"][host] == cols["halo_id"][host])
    ids = dict(zip(cols["halo_id"][host], np.flatnonzero(host)))
    sub = ~host
    assert np.all(cols["halo_upid"][sub] == cols["halo_hostid"][sub])
    hidx = np.array([ids[h] for h in cols["halo_hostid"][sub]])
    assert np.allclose(cols["halo_mvir_host_halo"][sub], cols["halo_mvir"][hidx])
    assert np.allclose(cols["halo_mvir_host_halo"][host], cols["halo_mvir"][host])
    assert np.all(cols["halo_mpeak"][sub] < cols["halo_mvir"][hidx])
    axis = np.stack([cols[f"halo_axisA_{c}"] for c in "xyz"], axis=1)
    assert np.allclose(np.linalg.norm(axis, axis=1), 1.0, atol=1e-6)
    # masses rank-matched to Tinker08: the abundance above each mass equals the rank
    m = np.sort(cols["halo_mvir"][host])[::-1]
    nexp = cosmology.tinker08_cumulative(m[[0, len(m) // 2, -1]]) * L ** 3
    assert np.allclose(nexp, [0.5, len(m) // 2 + 0.5, len(m) - 0.5], rtol=0.02)
    assert np.all(cols["halo_rvir"] > 0) and np.all(cols["halo_nfw_conc"] > 1)
    # satellite sites stay near their host (periodic distance <= 3 R_vir)
    dx = np.stack([cols[f"halo_{c}"][sub] - cols[f"halo_{c}"][hidx] for c in "xyz"], axis=1)
    dx -= L * np.round(dx / L)
    assert np.all(np.linalg.norm(dx, axis=1) <= 3.0 * cols["halo_rvir"][hidx] * 1.001)


def test_missing_catalog_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="iaemu-catalog build --preset test"):
        load_catalog_columns("test", seed=99, cache_dir=tmp_path, build_if_missing=False)
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        load_catalog_columns("nope", cache_dir=tmp_path)


def test_determinism_and_resume():
    pr = get_preset("test")
    pos1, mom1, _ = initial_conditions(pr, 5)
    pos2, mom2, _ = initial_conditions(pr, 5)
    assert np.array_equal(pos1, pos2) and np.array_equal(mom1, mom2)
    pos3, _, _ = initial_conditions(pr, 6)
    assert not np.array_equal(pos1, pos3)
    # an interrupted run resumed from its checkpoint equals the uninterrupted run, bit for bit
    a_pos, a_mom = run_pm(pr, pos1.copy(), mom1.copy(), progress=False, log=lambda m: None)
    b_pos, b_mom = pos1.copy(), mom1.copy()
    run_pm(pr, b_pos, b_mom, progress=False, log=lambda m: None, stop_step=4)
    run_pm(pr, b_pos, b_mom, start_step=4, progress=False, log=lambda m: None)
    assert np.array_equal(a_pos, b_pos) and np.array_equal(a_mom, b_mom)


def test_satellite_sites_follow_host_shape():
    rng = np.random.default_rng(1)
    nh = 200
    axis = rng.normal(size=(nh, 3))
    axis /= np.linalg.norm(axis, axis=1)[:, None]
    other = np.cross(axis, rng.normal(size=(nh, 3)))
    other /= np.linalg.norm(other, axis=1)[:, None]
    hosts = {"mvir": np.full(nh, 1e14), "conc": np.full(nh, 5.0), "b_to_a": np.full(nh, 0.5),
             "c_to_a": np.full(nh, 0.4), "axisA": axis, "axisB": other}
    sites = satellite_sites(hosts, 100.0, seed=2)
    off = sites["offset_rvir"]
    cosang = np.abs(np.sum(off * axis[sites["host"]], axis=1)) / np.linalg.norm(off, axis=1)
    assert cosang.mean() > 0.6  # isotropic: 0.5
    again = satellite_sites(hosts, 100.0, seed=2)
    assert np.array_equal(again["offset_rvir"], off)
    # NFW radii: median r/R_vir below 0.5 for c = 5 (spherical median at about 0.38)
    r = np.linalg.norm(off, axis=1)
    assert 0.25 < np.median(r) < 0.55


def test_validate_writes_page(test_build, tmp_path):
    from training.mocks.catalog_validation import validate

    cache, _ = test_build
    res = validate("test", seed=3, out_dir=tmp_path, cache_dir=cache, mocks=False)
    saved = json.loads((tmp_path / "catalog_validation.json").read_text())
    assert saved["catalog"]["catalog_id"] == catalog_id("test", 3, DEFAULT_MODEL)
    assert saved["verdicts"] == res["verdicts"] and "realism" not in res["verdicts"]      # no mocks, no realism
    assert res["verdicts"]["mass_function"]["target"] == MASS_FUNCTION_TOLERANCE
    assert saved["command"].startswith("iaemu-catalog validate --preset test --seed 3")
    for name in ("ic_power", "pk_z0", "mass_function", "bias", "shapes", "halo_alignment"):
        assert (tmp_path / "figures" / f"catalog_{name}.png").stat().st_size > 1000
    assert abs(res["ic_power"]["lpt_vs_field_weighted"] - 1) < 0.05
    assert res["shapes"]["all"]["n"] == res["catalog"]["n_hosts"]


def test_catalog_names_and_model_versions(tmp_path):
    from training.catalogs.nbody import split_name

    assert split_name("default") == ("default", DEFAULT_MODEL)
    assert split_name("default-v1") == ("default", 1)
    assert split_name("default-v2") == ("default", 2)
    assert split_name("default", model=2) == ("default", 2)
    assert catalog_id("default", 1, 2) == "iaemu-pm-default-s1-v2"
    with pytest.raises(ValueError, match="unknown halo model version 7"):
        split_name("default-v7")
    other = next(v for v in MODELS if v != DEFAULT_MODEL)
    with pytest.raises(FileNotFoundError, match=f"iaemu-catalog build --preset test-v{other} --seed 99"):
        load_catalog_columns(f"test-v{other}", seed=99, cache_dir=tmp_path, build_if_missing=False)


def test_repository_catalogs_come_from_the_manifest_and_retired_ones_from_the_cache(tmp_path, monkeypatch):
    """PACKAGED holds the catalogs recorded in training/data/MANIFEST.json (v4 only); a retired version is found in
    the cache as any other catalog, and its absence names both the build command and the `git show` restore."""
    from training.common import datafiles
    from training.catalogs.nbody import catalog as C

    recorded = {int(n[len("default_catalog_v"):-len(".npz")]) for n in datafiles.recorded_files()
                if n.startswith("default_catalog_v")}
    assert set(C.PACKAGED) == recorded == {DEFAULT_MODEL}
    assert C.PACKAGED[DEFAULT_MODEL] == datafiles.DATA_DIR / f"default_catalog_v{DEFAULT_MODEL}.npz"
    if C.PACKAGED[DEFAULT_MODEL].exists():
        assert C.catalog_path("default", cache_dir=tmp_path) == C.PACKAGED[DEFAULT_MODEL]
    seed = get_preset("default").default_seed
    for v in (1, 2, 3):
        commit = datafiles.retired_files()[f"default_catalog_v{v}.npz"]["commit"]
        cached = tmp_path / f"{catalog_id('default', seed, v)}.npz"
        assert C.catalog_path(f"default-v{v}", cache_dir=tmp_path) is None
        with pytest.raises(FileNotFoundError) as err:
            load_catalog_columns(f"default-v{v}", cache_dir=tmp_path, build_if_missing=False)
        msg = str(err.value)
        assert f"iaemu-catalog build --preset default-v{v}`" in msg
        assert f"git show {commit}:training/data/default_catalog_v{v}.npz > {cached}" in msg
        cached.write_bytes(b"")
        assert C.catalog_path(f"default-v{v}", cache_dir=tmp_path) == cached
    # as in an installed package: the repository's catalog is recorded but absent, and not cached
    monkeypatch.setattr(C, "PACKAGED", {DEFAULT_MODEL: tmp_path / "absent" / f"default_catalog_v{DEFAULT_MODEL}.npz"})
    for build in (True, False):
        with pytest.raises(FileNotFoundError, match=r"lives in the source repository .*iaemu-catalog build "
                                                    r"--preset default`"):
            load_catalog_columns("default", cache_dir=tmp_path, build_if_missing=build)


def test_shape_estimators_on_an_ellipsoid():
    from training.catalogs.nbody.halos import group_shapes

    rng = np.random.default_rng(4)
    n = 20000
    u = rng.normal(size=(n, 3))
    u /= np.linalg.norm(u, axis=1)[:, None]
    # uniform in an ellipsoid of semi-axes (1, 0.7, 0.4), rotated, in a box around (50, 50, 50)
    local = u * rng.random(n)[:, None] ** (1 / 3) * np.array([1.0, 0.7, 0.4])
    rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    pos = 50.0 + local @ rot.T
    args = (pos, np.arange(n), np.array([0]), np.array([n]), np.array([[50.0, 50.0, 50.0]]), np.array([1.0]), 100.0)
    radius = (1.0 * 0.7 * 0.4) ** (1 / 3) * 1.2  # an ellipsoid of this volume holds (almost) the whole body
    for reduced in (False, True):
        axes, ratios = group_shapes(*args, radius, reduced, True)
        assert np.allclose(ratios[0], [0.7, 0.4], atol=0.03)
        assert abs(axes[0, :3] @ rot[:, 0]) > 0.99 and abs(axes[0, 3:] @ rot[:, 1]) > 0.99
    # a sphere inside the body cuts the long axis: the non-iterative estimate is rounder
    _, round_ratios = group_shapes(*args, 0.5, False, False)
    assert round_ratios[0, 1] > 0.55


def test_model_v2_shares_the_halos_of_v1(test_build):
    cache, _ = test_build
    # the version that is not the default is built here from the fixture's saved z = 0 particles
    c1, m1 = load_catalog_columns("test-v1", seed=3, cache_dir=cache)
    c2, m2 = load_catalog_columns("test-v2", seed=3, cache_dir=cache)
    assert m2["catalog_id"] == "iaemu-pm-test-s3-v2" and m2["halo_model"] == 2
    h1, h2 = c1["halo_upid"] == -1, c2["halo_upid"] == -1
    assert h1.sum() == h2.sum()
    for col in ("halo_x", "halo_mvir", "halo_rvir"):
        assert np.array_equal(c1[col][h1], c2[col][h2])
    a1 = np.stack([c1[f"halo_axisA_{c}"][h1] for c in "xyz"], axis=1)
    a2 = np.stack([c2[f"halo_axisA_{c}"][h2] for c in "xyz"], axis=1)
    assert np.mean(np.abs(np.sum(a1 * a2, axis=1)) < 0.99) > 0.2  # other axis estimator
    assert np.median(c2["halo_c_to_a"][h2]) < np.median(c1["halo_c_to_a"][h1])  # iterative ratios: more elongated

    def site_radius(c, h):
        sub = ~h
        idx = np.searchsorted(c["halo_id"][h], c["halo_hostid"][sub])
        dx = np.stack([c[f"halo_{k}"][sub] - c[f"halo_{k}"][h][idx] for k in "xyz"], axis=1)
        dx -= m1["Lbox"] * np.round(dx / m1["Lbox"])
        return np.median(np.linalg.norm(dx, axis=1) / c["halo_rvir"][h][idx])

    assert site_radius(c2, h2) > 1.1 * site_radius(c1, h1)  # c(M)/2: satellite sites less concentrated


def test_site_mass_fractions_follow_the_subhalo_mass_function():
    from scipy.integrate import quad

    from training.catalogs.nbody.halos import SHMF_EVOLVED, site_mass_fractions

    psi = site_mass_fractions(np.full(20000, 5), 0.1, seed=1).reshape(20000, 5)
    assert np.all(np.diff(psi, axis=1) <= 0) and np.all(psi > 0)   # the most massive subhalo is rank 0
    p = SHMF_EVOLVED
    n_above = quad(lambda lnx: 0.1 * p["gamma_per_fsub"] * np.exp(p["alpha"] * lnx) * np.exp(-p["beta"] * np.exp(p["omega"] * lnx)),
                   np.log(0.01), 0.0)[0]
    # a Poisson process: P(largest > x) = 1 - exp(-N(>x))
    assert np.mean(psi[:, 0] > 0.01) == pytest.approx(1 - np.exp(-n_above), abs=0.015)
    assert not np.array_equal(psi, site_mass_fractions(np.full(20000, 5), 0.1, seed=2).reshape(20000, 5))
    with pytest.raises(ValueError, match="f_sub=0"):
        site_mass_fractions(np.full(3, 2), 0, seed=1)


def test_a_massive_site_pulls_the_host_axis():
    from training.catalogs.nbody.halos import _axes_with_sites

    rng = np.random.default_rng(5)
    n = 20000
    u = rng.normal(size=(n, 3))
    pos = 50.0 + 0.4 * u / np.linalg.norm(u, axis=1)[:, None] * rng.random(n)[:, None] ** (1 / 3)  # a round halo
    axes = np.empty((1, 6))
    site_rel = np.array([[0.0, 0.3, 0.0], [0.0, 0.0, 0.9]])    # inside R_vir / 2; outside it (mass only)
    args = (pos, np.arange(n), np.array([0]), np.array([n]), np.array([[50.0, 50.0, 50.0]]), np.array([1.0]),
            np.array([0.5]))
    rest = (np.array([1e12]), 100.0, 10, np.array([0]), np.array([2]), site_rel, np.array([5e10, 5e11]), axes)
    _axes_with_sites(*args, np.array([0.5]), *rest)
    assert abs(axes[0, 1]) > 0.99     # major axis towards the site inside the aperture
    _axes_with_sites(*args, np.array([1.0]), *rest)
    assert abs(axes[0, 2]) > 0.99     # sites counted out to R_vir: the heavier, outer one wins


def test_model_v3_moves_only_the_axes_towards_the_sites(test_build):
    cache, _ = test_build
    c2, _ = load_catalog_columns("test-v2", seed=3, cache_dir=cache)
    c3, m3 = load_catalog_columns("test-v3", seed=3, cache_dir=cache)
    assert m3["halo_model"] == 3 and m3["halo_model_spec"]["site_mass_fsub"] == 0.1
    for col in ("halo_x", "halo_y", "halo_mvir", "halo_rvir", "halo_hostid", "halo_b_to_a"):
        assert np.array_equal(c2[col], c3[col])           # same hosts and satellite sites
    h = c2["halo_upid"] == -1
    a2 = np.stack([c2[f"halo_axisA_{c}"][h] for c in "xyz"], axis=1)
    a3 = np.stack([c3[f"halo_axisA_{c}"][h] for c in "xyz"], axis=1)
    assert np.mean(np.abs(np.sum(a2 * a3, axis=1)) < 0.99) > 0.05

    def alignment_with_first_sites(c, a):
        """mean (a . r)^2 of the rank-0 (most massive) sites inside R_vir / 2 of their host, r the unit offset."""
        sub = ~h
        idx = np.searchsorted(c["halo_id"][h], c["halo_hostid"][sub])
        dx = np.stack([c[f"halo_{k}"][sub] - c[f"halo_{k}"][h][idx] for k in "xyz"], axis=1)
        dx -= m3["Lbox"] * np.round(dx / m3["Lbox"])
        d = np.linalg.norm(dx, axis=1)
        ratio = c["halo_mpeak"][sub] / c["halo_mvir"][h][idx]
        near = (d > 0) & (d < 0.5 * c["halo_rvir"][h][idx]) & np.isclose(ratio, ratio.max())
        assert near.sum() > 50
        return np.mean(np.sum(a[idx[near]] * dx[near], axis=1) ** 2 / d[near] ** 2)

    # 0.445 -> 0.564 when written; isotropic would be 1/3
    assert alignment_with_first_sites(c3, a3) > alignment_with_first_sites(c2, a2) + 0.05


def test_compare_models_refuses_an_unknown_halo_model(capsys):
    from training.mocks.catalog_cli import main

    assert main(["compare-models", "--models", "1", "7"]) == 2
    assert f"unknown halo model version 7; expected one of {sorted(MODELS)}" in capsys.readouterr().err


def test_small_scale_verdict_needs_every_bin_within_tolerance():
    from training.mocks.catalog_validation import SMALL_SCALE_OMEGA_MIN, small_scale_verdict

    v = small_scale_verdict([1.08, 0.98, 0.97], [-1.34, -1.32, -1.40])
    assert v["met"] and v["omega_all_below_reference"] and v["omega"]["value"] == -1.40
    assert v["omega"]["target"] == SMALL_SCALE_OMEGA_MIN and v["omega"]["kind"] == ">="
    v = small_scale_verdict([1.08, 0.98, 0.97], [-4.07, -3.82, 0.2])
    assert not v["met"] and not v["omega"]["met"] and v["xi"]["met"] and not v["omega_all_below_reference"]
    v = small_scale_verdict([0.80, 0.98, 0.97], [0.1, 0.3, -0.2])
    assert not v["met"] and not v["xi"]["met"] and v["omega"]["met"]
    assert not small_scale_verdict([], [])["met"]                     # no bins: nothing is shown to be met


def test_catalog_verdicts_combine_every_small_scale_check():
    """The realism verdict below 0.3 Mpc/h holds only when the validation's bins, the compare-models check and the
    pooled check of this catalog all hold; checks of other catalogs are ignored."""
    from training.mocks.catalog_validation import BIAS_TOLERANCE, catalog_verdicts

    realism = {"xi": {"median_abs_ratio_minus_1": 0.1, "ratio_below_0.3": [1.0, 1.0]},
               "omega": {"median_abs_dev_over_err": 0.9, "dev_over_err_below_0.3": [-1.0, 0.5]}}
    res = {"catalog": {"catalog_id": "cat-v4"},
           "ic_power": {"field_vs_colossus_weighted": 1.01, "ic_vs_colossus_weighted_linear_k": 0.97},
           "mass_function": {"corrected_max_dev_100p": 0.05},
           "bias": [{"ratio": 1.1}, {"ratio": 0.8}],
           "halo_alignments": {"ed_all_positive_r_lt_5": True, "ee_all_positive_r_lt_5": False},
           "mocks": {"realism": realism}}
    v = catalog_verdicts(res)
    assert not v["ic_power"]["met"] and not v["ic_power"]["particles"]["met"] and v["ic_power"]["field"]["met"]
    assert v["bias"]["value"] == pytest.approx(0.2) and v["bias"]["target"] == BIAS_TOLERANCE and not v["bias"]["met"]
    assert v["mass_function"]["met"] and not v["halo_alignments"]["met"]
    assert v["realism"]["xi_median"]["met"] and v["realism"]["omega_median"]["met"] and v["realism"]["small_scale_met"]
    check = {"realisations": 30, "seed": 8, "xi_below_0.3": [1.0, 1.0], "omega_below_0.3": [-3.9, 0.1]}
    models = {"models": {"4": {"catalog_id": "cat-v4", "check": check}, "3": {"catalog_id": "cat-v3"}}}
    pooled = {"default-v3": {"catalog_id": "cat-v3", "xi_ratio_below_0.3_pooled": [0.5],
                             "omega_below_0.3_pooled": [-9.0]}}
    v = catalog_verdicts(res, models, pooled)["realism"]
    assert v["small_scale"]["met"] and not v["small_scale_check"]["met"] and not v["small_scale_met"]
    assert "small_scale_pooled" not in v                            # the pooled numbers are of another catalog


def test_models_check_is_found_by_catalog_id():
    from training.mocks.catalog_validation import models_check

    check = {"realisations": 30, "seed": 8, "xi_below_0.3": [1.0, 1.0, 1.0], "omega_below_0.3": [0.1, -3.9, -1.3]}
    models = {"models": {"2": {"catalog_id": "cat-v2"}, "3": {"catalog_id": "cat-v3", "check": check}}}
    assert models_check(models, "cat-v3") == check
    assert models_check(models, "cat-v2") is None          # measured without a check
    assert models_check(None, "cat-v3") is None            # no catalog_models.json beside the page


def test_pooled_check_is_found_by_catalog_id():
    from training.mocks.catalog_validation import pooled_check

    pooled = {"default-v3": {"catalog_id": "cat-v3", "seeds": [8, 9]}, "default-v4": {"catalog_id": "cat-v4", "seeds": [8]}}
    assert pooled_check(pooled, "cat-v4")["seeds"] == [8]
    assert pooled_check(pooled, "cat-v2") is None         # not pooled
    assert pooled_check(None, "cat-v4") is None           # no catalog_small_scale.json beside the page


def test_models_figure_is_drawn_from_the_saved_results(tmp_path):
    import json
    from pathlib import Path

    from iaemu_theory.conventions import N_BINS
    from training.mocks.catalog_validation import plot_models

    res = json.loads((Path(__file__).resolve().parent / "data" / "catalog_models.json").read_text())
    for k, e in res["models"].items():
        e["mean_stats"] = (np.ones((3, N_BINS)) * 0.01 * int(k)).tolist()
    plot_models(res, tmp_path / "realism.png")
    assert (tmp_path / "realism.png").stat().st_size > 10_000


def test_variant_overrides_parse_and_refuse_unknown_keys():
    v = MODELS[2].variant("site_radius=1.0,site_mass_fsub=0.2", 100)
    assert v.site_radius == 1.0 and v.site_mass_fsub == 0.2 and v.axis_radius == MODELS[2].axis_radius
    assert v.version == 100 and MODELS[2].site_radius is None      # the base model is not modified (frozen)
    with pytest.raises(ValueError, match="axis_radiu"):
        MODELS[2].variant("axis_radiu=1", 100)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        MODELS[2].variant("site_radius", 100)


def test_halo_models_are_frozen_and_record_their_spec():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        MODELS[4].conc_factor = 1.0
    assert MODELS[1].to_dict() == {"axis_radius": 1.0, "axis_reduced": True, "axis_iterative": False,
                                   "ratio_radius": 1.0, "ratio_reduced": True, "ratio_iterative": False,
                                   "conc_factor": 1.0}
    assert MODELS[4].to_dict()["site_radius"] == 0.75 and MODELS[3].site_window == MODELS[3].axis_radius
    for v, m in MODELS.items():
        assert type(m).from_dict(m.to_dict(), v) == m
