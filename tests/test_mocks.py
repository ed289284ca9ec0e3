"""The halotools-IA mock model (training.mocks.model) and the iaemu-mock command (training.common.cli) on the toy catalog."""
import warnings

import numpy as np
import pytest

from iaemu_theory.conventions import BIN_CENTRES, N_BINS
from training.mocks.model import (IAMockModel, SeededCentralAlignment, SeededRadialSatelliteAlignment, galaxy_arrays,
                                  host_mass_bins, realisation_seed)

SMALL_R = BIN_CENTRES < 1.0


def _same_tables(a, b):
    assert a.colnames == b.colnames
    return all(np.array_equal(np.asarray(a[c]), np.asarray(b[c])) for c in a.colnames)


def test_same_seed_gives_a_bit_identical_galaxy_table(toy_catalog, toy_model, toy_params):
    """Orientations included, whatever the global numpy RNG did in between, and from a fresh model."""
    np.random.seed(1)
    first = toy_model.populate(toy_params, 12345)
    np.random.seed(2)
    np.random.random(17)
    second = toy_model.populate(toy_params, 12345)
    assert second is not first
    assert _same_tables(first, second)
    assert _same_tables(first, IAMockModel(toy_catalog).populate(toy_params, 12345))
    assert len(first) > 500 and np.any(first["gal_type"] == "satellites")
    ori = galaxy_arrays(first)[1]
    assert np.allclose(np.linalg.norm(ori, axis=1), 1.0, atol=1e-6)


def test_different_seed_gives_a_different_table(toy_model, toy_params):
    a = toy_model.populate(toy_params, 1)
    b = toy_model.populate(toy_params, 2)
    assert len(a) != len(b) or not np.array_equal(np.asarray(a["x"]), np.asarray(b["x"]))
    # same positions are impossible to compare if sizes differ; orientations differ in any case
    n = min(len(a), len(b))
    assert not np.array_equal(np.asarray(a["galaxy_axisA_x"])[:n], np.asarray(b["galaxy_axisA_x"])[:n])


def test_populate_leaves_the_global_rng_alone(toy_model, toy_params):
    np.random.seed(99)
    before = np.random.get_state()
    toy_model.populate(toy_params, 5)
    after = np.random.get_state()
    assert np.array_equal(before[1], after[1]) and before[2] == after[2]


def test_measure_is_reproducible_and_records_seeds(toy_model, toy_params):
    a = toy_model.measure(toy_params, 7, n_realisations=2, orientation_draws=2)
    b = toy_model.measure(toy_params, 7, n_realisations=2, orientation_draws=2)
    assert a.stats.shape == (2, 3, N_BINS) and a.stats.dtype == np.float64
    assert a.orientation_stats.shape == (2, 3, N_BINS)
    assert a.n_galaxies.dtype == np.int64 and a.seeds.dtype == np.uint64
    assert np.array_equal(a.stats, b.stats) and np.array_equal(a.orientation_stats, b.orientation_stats)
    assert list(a.seeds) == [realisation_seed(7, 0), realisation_seed(7, 1)]
    assert a.seeds[0] != a.seeds[1]
    assert a.mean().shape == (3, N_BINS) and not a.nan_flag
    # orientation-only draws keep the last realisation's positions: same xi, new omega
    assert np.array_equal(a.orientation_stats[:, 0], np.repeat(a.stats[-1:, 0], 2, axis=0))
    assert not np.array_equal(a.orientation_stats[0, 1], a.stats[-1, 1])
    assert toy_model.measure(toy_params, 8, n_realisations=1).stats[0, 1, 0] != a.stats[0, 1, 0]


def test_statistics_agree_with_halotools(toy_model, toy_params):
    """The realisation statistics are halotools' tpcf, ed_3d and ee_3d on the same galaxies."""
    from halotools.mock_observables import tpcf
    from halotools.mock_observables.ia_correlations import ed_3d, ee_3d

    from iaemu_theory.conventions import BIN_EDGES

    table = toy_model.populate(toy_params, 3)
    pos, ori = galaxy_arrays(table)
    ours = toy_model.statistics(table)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xi = tpcf(pos, BIN_EDGES, period=60.0)
        omega = ed_3d(pos, ori, pos, BIN_EDGES, period=60.0)
        eta = ee_3d(pos, ori, pos, ori, BIN_EDGES, period=60.0)
    assert np.allclose(ours[0], xi, rtol=1e-4)
    assert np.allclose(ours[1], omega, atol=1e-6)
    assert np.allclose(ours[2], eta, atol=1e-6)


def _z_scores(res):
    n = res.stats.shape[0]
    return res.mean() / (res.std() / np.sqrt(n))


def test_no_alignment_gives_omega_and_eta_consistent_with_zero(toy_model, toy_params):
    """mu_cen = mu_sat = 0: each bin within 3 sigma of the realisation scatter (standard error of the mean
    of 16 realisations), allowing 2 of the 40 bins up to 4 sigma (t-distributed noise, 15 dof)."""
    res = toy_model.measure(dict(toy_params, mu_cen=0.0, mu_sat=0.0), 11, n_realisations=16)
    z = np.abs(_z_scores(res)[1:])
    assert np.all(np.isfinite(z))
    assert np.all(z < 4.0) and np.sum(z > 3.0) <= 2, z


def test_full_alignment_gives_positive_omega_at_small_r(toy_model, toy_params):
    res = toy_model.measure(dict(toy_params, mu_cen=1.0, mu_sat=1.0), 12, n_realisations=4)
    omega = res.mean()[1]
    assert np.all(omega[SMALL_R] > 0)
    assert np.all(_z_scores(res)[1][SMALL_R] > 3)
    assert np.all(res.mean()[2][BIN_CENTRES < 0.3] > 0)  # eta too: aligned satellites within one host


def test_anti_alignment_gives_negative_omega_at_small_r(toy_model, toy_params):
    res = toy_model.measure(dict(toy_params, mu_cen=-1.0, mu_sat=-1.0), 13, n_realisations=4)
    omega = res.mean()[1]
    assert np.all(omega[SMALL_R] < 0)
    assert np.all(_z_scores(res)[1][SMALL_R] < -3)


def test_seeded_components_draw_like_halotools(toy_catalog, toy_model, toy_params):
    """Same positions as halotools' own components (same seed), and the same alignment distribution:
    <cos^2> between galaxy and halo axes (centrals) or radial direction (satellites) agrees within 5 sigma."""
    from halotools.empirical_models import (HodModelFactory, SubhaloPhaseSpace, TrivialPhaseSpace, Zheng07Cens,
                                            Zheng07Sats)
    from halotools.empirical_models.factories.hod_mock_factory import HodMockFactory
    from halotools.empirical_models.ia_models.ia_model_components import CentralAlignment, RadialSatelliteAlignment

    params = dict(toy_params, mu_cen=0.5, mu_sat=0.4, logMmin=11.3, logM0=11.3, logM1=12.3)
    original = HodModelFactory(
        centrals_occupation=Zheng07Cens(), centrals_profile=TrivialPhaseSpace(),
        satellites_occupation=Zheng07Sats(), satellites_profile=SubhaloPhaseSpace("satellites", toy_model.host_bins),
        centrals_orientation=CentralAlignment(), satellites_orientation=RadialSatelliteAlignment(Lbox=np.full(3, 60.0)),
        model_feature_calling_sequence=("centrals_occupation", "centrals_profile", "satellites_occupation",
                                        "satellites_profile", "centrals_orientation", "satellites_orientation"))
    toy_model.set_params(params)
    original.param_dict.update(toy_model.model.param_dict)
    original.mock = HodMockFactory(halocat=toy_catalog, model=original, Num_ptcl_requirement=0)

    def cos2(table):
        pos, ori = galaxy_arrays(table)
        cen = np.asarray(table["gal_type"]) == "centrals"
        ref = np.column_stack([np.asarray(table[f"halo_axisA_{c}"]) for c in "xyz"])
        radial = pos - np.column_stack([np.asarray(table[f"halo_{c}"]) for c in "xyz"])
        radial -= 60.0 * np.round(radial / 60.0)
        ref = np.where(cen[:, None], ref, radial)
        c = np.sum(ori * ref, axis=1) / np.linalg.norm(ref, axis=1)
        return c[cen] ** 2, c[~cen] ** 2

    ours, theirs = [[], []], [[], []]
    for seed in (21, 22):
        mine = toy_model.populate(params, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            original.mock.populate(seed=seed)
        other = original.mock.galaxy_table
        for c in ("x", "y", "z", "gal_type"):
            assert np.array_equal(np.asarray(mine[c]), np.asarray(other[c]))
        for lst, tab in ((ours, mine), (theirs, other)):
            for i, values in enumerate(cos2(tab)):
                lst[i].append(values)
    for i in range(2):
        a, b = np.concatenate(ours[i]), np.concatenate(theirs[i])
        err = np.sqrt(a.var() / a.size + b.var() / b.size)
        assert abs(a.mean() - b.mean()) < 5 * err
        assert a.mean() > 0.38  # aligned (isotropic: 1/3)


def test_bad_parameters_raise_naming_the_parameter(toy_model, toy_params):
    for name, value in (("mu_cen", 1.5), ("mu_sat", float("nan")), ("sigma_logM", -0.1), ("alpha", -1.0)):
        with pytest.raises(ValueError, match=name) as err:
            toy_model.measure(dict(toy_params, **{name: value}), 0, n_realisations=1)
        assert "range" in str(err.value)
    with pytest.raises(ValueError, match="seed=-1"):
        toy_model.populate(toy_params, -1)
    with pytest.raises(ValueError, match="below 2\\*\\*31"):
        toy_model.populate(toy_params, 2**40)


@pytest.mark.parametrize("log_mmin", [15.5, 13.9])
def test_too_few_galaxies_give_flagged_nan_not_a_crash(toy_model, toy_params, log_mmin):
    params = dict(toy_params, logMmin=log_mmin, sigma_logM=0.05, logM0=log_mmin, logM1=log_mmin + 1.0)
    res = toy_model.measure(params, 4, n_realisations=2, orientation_draws=1)
    assert res.nan_flag
    assert res.n_galaxies.max() < 20
    assert np.isnan(res.stats).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res.mean()


def test_host_mass_bins_bracket_hosts_and_hold_subhalos():
    rng = np.random.default_rng(0)
    hosts = 10 ** rng.uniform(11, 14, 500)
    subs = np.concatenate([np.repeat(hosts[hosts > 10**12.5], 3), hosts[:1]])
    bins = host_mass_bins(hosts, subs)
    assert bins[0] < hosts.min() and bins[-1] > hosts.max()
    assert np.all(np.histogram(subs, bins=bins)[0] >= 2)
    with pytest.raises(ValueError, match="needs at least 2"):
        host_mass_bins(hosts, subs[:1])


def test_model_components_and_box_checks(toy_catalog, toy_model):
    assert isinstance(toy_model.model.model_dictionary["centrals_orientation"], SeededCentralAlignment)
    assert isinstance(toy_model.model.model_dictionary["satellites_orientation"], SeededRadialSatelliteAlignment)
    assert toy_model.model._mock_generation_calling_sequence == [
        "mc_occupation_centrals", "assign_phase_space_centrals", "mc_occupation_satellites",
        "inherit_subhalo_properties_satellites", "assign_central_orientation_centrals",
        "inherit_halocat_properties_satellites", "assign_satellite_orientation_satellites"]
    from training.catalogs.sources import make_toy_catalog

    with pytest.raises(ValueError, match="too small for the radial bins"):
        IAMockModel(make_toy_catalog(n_hosts=200, Lbox=40.0))


def test_cli_writes_npz_and_plot(toy_catalog_file, toy_params, tmp_path, capsys):
    from training.mocks.mock_cli import mock_main

    out, png = tmp_path / "point.npz", tmp_path / "point.png"
    params = ",".join(f"{k}={v}" for k, v in toy_params.items())
    rc = mock_main(["--catalog", str(toy_catalog_file), "--params", params, "--realisations", "3", "--seed", "5",
                    "--out", str(out), "--plot", str(png)])
    assert rc == 0
    with np.load(out) as d:
        assert np.allclose(d["r"], BIN_CENTRES)
        for name in ("xi", "omega", "eta"):
            assert d[name].shape == (N_BINS,) and d[f"{name}_all"].shape == (3, N_BINS)
            assert np.allclose(d[name], d[f"{name}_all"].mean(axis=0))
        assert d["n_galaxies"].shape == (3,) and np.all(d["n_galaxies"] > 0)
        assert str(d["catalog_id"]) == "toy-n3000-L60-s0"
    assert png.stat().st_size > 10_000

    rc = mock_main(["--catalog", str(toy_catalog_file), "--params", params.replace("alpha=1.0", "alpha=-2"),
                    "--out", str(out)])
    assert rc == 2 and "alpha=-2.0 is outside its allowed range" in capsys.readouterr().err
    rc = mock_main(["--catalog", str(tmp_path / "missing.npz"), "--params", params, "--out", str(out)])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def test_same_seed_is_identical_across_processes(toy_model, toy_params):
    """Another interpreter (different PYTHONHASHSEED, as a pool worker would be) gives the same table."""
    import hashlib
    import os
    import subprocess
    import sys

    def digest(table):
        h = hashlib.sha256()
        for c in table.colnames:
            values = np.asarray(table[c])
            h.update(c.encode() + (values.astype(str) if values.dtype == object else values).tobytes())
        return h.hexdigest()

    code = (
        "import hashlib, numpy as np\n"
        "from training.catalogs.sources import make_toy_catalog\n"
        "from training.mocks.model import IAMockModel\n"
        f"t = IAMockModel(make_toy_catalog(n_hosts=3000, Lbox=60.0, seed=0)).populate({toy_params!r}, 777)\n"
        "h = hashlib.sha256()\n"
        "for c in t.colnames:\n"
        "    v = np.asarray(t[c])\n"
        "    h.update(c.encode() + (v.astype(str) if v.dtype == object else v).tobytes())\n"
        "print(h.hexdigest())\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == digest(toy_model.populate(toy_params, 777))


def test_the_model_runs_on_the_nbody_test_preset(nbody_test_catalog):
    """The project's own catalog (test preset) feeds SubhaloPhaseSpace and the alignment components;
    full alignment gives omega > 0 inside hosts, anti-alignment omega < 0."""
    model = IAMockModel(nbody_test_catalog)
    base = dict(logMmin=12.6, sigma_logM=0.3, logM0=12.6, logM1=13.3, alpha=1.0)  # enough pairs below 0.15 Mpc/h in the small box
    inside = BIN_CENTRES < 0.5
    aligned = model.measure(dict(base, mu_cen=1.0, mu_sat=1.0), 0, n_realisations=3, orientation_draws=1)
    anti = model.measure(dict(base, mu_cen=-1.0, mu_sat=-1.0), 0, n_realisations=3)
    assert not aligned.nan_flag and aligned.n_galaxies.min() > 100
    assert np.all(aligned.mean()[1][inside] > 0) and np.all(anti.mean()[1][inside] < 0)
    assert np.array_equal(aligned.stats[:, 0], anti.stats[:, 0])  # same seed: same positions, so same xi
