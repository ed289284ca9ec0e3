"""The fused engine against halotools' tpcf / ed_3d / ee_3d, and its edge cases."""
import warnings

import numpy as np
import pytest

from iaemu_theory.conventions import BIN_EDGES, N_BINS, STATISTICS
from training.mocks.correlations import Correlations, PairGeometry, measure_correlations

halotools_mo = pytest.importorskip("halotools.mock_observables")


def uniform_catalog(n, lbox, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, lbox, (n, 3)), rng.normal(size=(n, 3))


def clustered_catalog(n, lbox, seed, scatter=0.3):
    """Galaxies in elongated halos around random centres, all pointing along their halo's axis.

    Satellites are spread mostly along the axis, so omega > 0 (axis along the separation) and
    eta > 0 (shared axes) in the one-halo regime.
    """
    rng = np.random.default_rng(seed)
    n_cen = n // 4
    centres = rng.uniform(0.0, lbox, (n_cen, 3))
    axes = rng.normal(size=(n_cen, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    host = rng.integers(0, n_cen, n - n_cen)
    offsets = rng.normal(scale=0.2, size=(n - n_cen, 3)) + axes[host] * rng.normal(scale=0.8, size=(n - n_cen, 1))
    positions = np.mod(np.concatenate([centres, centres[host] + offsets]), lbox)
    orientations = np.concatenate([axes, axes[host]]) + rng.normal(scale=scatter, size=(n, 3))
    # unnormalised on purpose: both codes normalise
    return positions, orientations * rng.uniform(0.5, 2.0, (n, 1))


def halotools_reference(pos, ori, period, rbins=BIN_EDGES):
    xi = halotools_mo.tpcf(pos, rbins, period=period)
    omega = halotools_mo.ed_3d(pos, ori, pos, rbins, period=period)
    eta = halotools_mo.ee_3d(pos, ori, pos, ori, rbins, period=period)
    return xi, omega, eta


def assert_matches_halotools(result, reference, min_filled=N_BINS - 3):
    xi, omega, eta = reference
    filled = ~result.empty_bins
    assert filled.sum() >= min_filled, "the test catalogue should fill most bins"
    np.testing.assert_allclose(result.xi[filled], xi[filled], rtol=1e-4, atol=0)
    np.testing.assert_allclose(result.omega[filled], omega[filled], rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.eta[filled], eta[filled], rtol=0, atol=1e-6)
    # where halotools has no pairs: omega, eta NaN there too; xi is -1 there and NaN here (flagged)
    assert np.all(np.isnan(omega[~filled])) and np.all(xi[~filled] == -1.0)
    assert np.all(np.isnan(result.as_array()[:, ~filled]))


@pytest.fixture(scope="module")
def clustered():
    lbox = 60.0
    pos, ori = clustered_catalog(2000, lbox, seed=3)
    return pos, ori, lbox, halotools_reference(pos, ori, lbox)


def test_uniform_catalog_matches_halotools():
    lbox = 80.0
    pos, ori = uniform_catalog(2000, lbox, seed=1)
    result = measure_correlations(pos, ori, lbox)
    assert_matches_halotools(result, halotools_reference(pos, ori, lbox), min_filled=12)
    # DD as halotools' npairs_3d: ordered pairs, cumulative counts differenced
    dd = np.diff(halotools_mo.npairs_3d(pos, pos, BIN_EDGES, period=lbox))
    np.testing.assert_array_equal(result.n_pairs, dd)


def test_clustered_catalog_matches_halotools(clustered):
    pos, ori, lbox, reference = clustered
    result = measure_correlations(pos, ori, lbox)
    assert_matches_halotools(result, reference)
    small = BIN_EDGES[1:] < 1.0
    assert np.all(result.omega[small & ~result.empty_bins] > 0.01), "aligned mock must have omega > 0"
    assert np.all(result.eta[small & ~result.empty_bins] > 0.1), "aligned mock must have eta > 0"
    assert np.all(result.xi[small & ~result.empty_bins] > 10), "clustered mock must have large xi"


def test_pair_geometry_matches_fused_and_halotools(clustered):
    pos, ori, lbox, reference = clustered
    geometry = PairGeometry(pos, lbox)
    drawn = geometry.measure(ori)
    assert_matches_halotools(drawn, reference)
    np.testing.assert_array_equal(drawn.n_pairs, measure_correlations(pos, ori, lbox).n_pairs)
    assert geometry.n_unordered_pairs == drawn.n_pairs.sum() // 2
    # a second draw: new orientations on the same positions, xi unchanged
    new_ori = np.random.default_rng(9).normal(size=ori.shape)
    again = geometry.measure(new_ori)
    fused = measure_correlations(pos, new_ori, lbox)
    np.testing.assert_allclose(again.as_array(), fused.as_array(), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(again.xi, drawn.xi)
    assert not np.allclose(again.omega, drawn.omega)


def test_nonuniform_period_and_custom_bins_match_halotools():
    period = np.array([40.0, 50.0, 60.0])
    rng = np.random.default_rng(5)
    pos = rng.uniform(0.0, 1.0, (1500, 3)) * period
    ori = rng.normal(size=(1500, 3))
    rbins = np.linspace(0.5, 9.0, 9)
    result = measure_correlations(pos, ori, period, rbins)
    assert result.xi.shape == (8,)
    assert_matches_halotools_bins(result, halotools_reference(pos, ori, period, rbins))


def assert_matches_halotools_bins(result, reference):
    xi, omega, eta = reference
    np.testing.assert_allclose(result.xi, xi, rtol=1e-4)
    np.testing.assert_allclose(result.omega, omega, atol=1e-6)
    np.testing.assert_allclose(result.eta, eta, atol=1e-6)


def test_non_periodic_matches_halotools_alignments():
    rng = np.random.default_rng(7)
    pos = rng.uniform(0.0, 30.0, (800, 3))
    ori = rng.normal(size=(800, 3))
    rbins = np.logspace(-0.5, 1.0, 8)
    with pytest.warns(UserWarning, match="xi is NaN"):
        result = measure_correlations(pos, ori, None, rbins)
    assert np.all(np.isnan(result.xi))
    np.testing.assert_allclose(result.omega, halotools_mo.ed_3d(pos, ori, pos, rbins), atol=1e-6)
    np.testing.assert_allclose(result.eta, halotools_mo.ee_3d(pos, ori, pos, ori, rbins), atol=1e-6)
    with pytest.warns(UserWarning):
        drawn = PairGeometry(pos, None, rbins).measure(ori)
    np.testing.assert_allclose(drawn.omega, result.omega, atol=1e-12)
    np.testing.assert_allclose(drawn.eta, result.eta, atol=1e-12)


def test_result_is_independent_of_threads_and_orientation_sign(clustered):
    pos, ori, lbox, _ = clustered
    one = measure_correlations(pos, ori, lbox, num_threads=1)
    many = measure_correlations(pos, ori, lbox)
    np.testing.assert_array_equal(one.as_array(), many.as_array())
    flipped = measure_correlations(pos, -3.0 * ori, lbox)
    np.testing.assert_allclose(flipped.as_array(), one.as_array(), rtol=1e-12, atol=1e-12)
    # galaxy order does not matter either
    perm = np.random.default_rng(0).permutation(len(pos))
    shuffled = measure_correlations(pos[perm], ori[perm], lbox)
    np.testing.assert_allclose(shuffled.as_array(), one.as_array(), rtol=1e-12, atol=1e-12)


def test_correlations_container():
    pos, ori = uniform_catalog(500, 50.0, seed=2)
    result = measure_correlations(pos, ori, 50.0)
    assert isinstance(result, Correlations)
    arr = result.as_array()
    assert arr.shape == (3, N_BINS) and arr.dtype == np.float64
    for row, name in zip(arr, STATISTICS):
        np.testing.assert_array_equal(row, result[name], strict=False)
    with pytest.raises(KeyError, match="unknown statistic"):
        result["wp"]
    with pytest.raises(Exception):
        result.xi = None  # frozen
    assert result.n_galaxies == 500


def test_empty_bins_and_tiny_catalogs_give_flagged_nan():
    # two galaxies 1 Mpc/h apart: one pair in one bin, every other bin empty
    pos = np.array([[10.0, 10.0, 10.0], [11.0, 10.0, 10.0]])
    ori = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    result = measure_correlations(pos, ori, 100.0)
    k = np.searchsorted(BIN_EDGES, 1.0) - 1
    assert result.n_pairs[k] == 2 and result.n_pairs.sum() == 2
    assert result.empty_bins.sum() == N_BINS - 1 and not result.ok
    # e_1 along r: cos^2 = 1; e_2 perpendicular: 0 -> mean 1/2; e_1 . e_2 = 0
    assert result.omega[k] == pytest.approx(0.5 - 1.0 / 3.0)
    assert result.eta[k] == pytest.approx(-1.0 / 3.0)
    assert np.all(np.isnan(np.delete(result.as_array(), k, axis=1)))
    for n in (0, 1):
        tiny = measure_correlations(pos[:n], ori[:n], 100.0)
        assert np.all(np.isnan(tiny.as_array())) and np.all(tiny.n_pairs == 0)
        assert np.all(np.isnan(PairGeometry(pos[:n], 100.0).measure(ori[:n]).as_array()))


def test_points_on_the_box_edge_wrap():
    # x == period is the same point as x == 0; pair across the boundary at separation 0.5
    pos = np.array([[100.0, 5.0, 5.0], [99.5, 5.0, 5.0]])
    ori = np.ones((2, 3))
    result = measure_correlations(pos, ori, 100.0)
    assert result.n_pairs.sum() == 2


def test_pairs_across_every_face_and_fine_bins_match_halotools():
    # galaxies crowded against the faces and corners of the box: pairs wrap in x, y and z at once,
    # within one column and between columns; the tiny inner bins need several steps from the bin table
    rng = np.random.default_rng(11)
    lbox = 40.0
    pos = np.mod(rng.choice([0.0, lbox], (3000, 3)) + rng.normal(scale=2.0, size=(3000, 3)), lbox)
    pos[:20] = pos[20:40] + 1e-3 * rng.normal(size=(20, 3))
    ori = rng.normal(size=(3000, 3))
    rbins = np.concatenate([np.geomspace(1e-3, 0.02, 6), np.linspace(0.5, 13.0, 6)])
    result = measure_correlations(pos, ori, lbox, rbins)
    dd = np.diff(halotools_mo.npairs_3d(pos, pos, rbins, period=lbox))
    np.testing.assert_array_equal(result.n_pairs, dd)
    assert result.n_pairs[:5].sum() > 0 and np.all(result.n_pairs[6:] > 0)
    filled = ~result.empty_bins
    np.testing.assert_allclose(result.omega[filled], halotools_mo.ed_3d(pos, ori, pos, rbins, period=lbox)[filled],
                               atol=1e-12)
    np.testing.assert_allclose(result.eta[filled],
                               halotools_mo.ee_3d(pos, ori, pos, ori, rbins, period=lbox)[filled], atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(positions=np.zeros((5, 2))), r"shape \(N, 3\)"),
        (dict(positions=np.full((5, 3), np.nan)), "not finite"),
        (dict(positions=np.full((5, 3), 120.0)), "outside the periodic box"),
        (dict(positions=np.full((5, 3), -1.0)), "outside the periodic box"),
        (dict(orientations=np.zeros((4, 3))), r"shape \(5, 3\)"),
        (dict(orientations=np.vstack([np.ones((4, 3)), np.zeros(3)])), r"orientations\[4\].*zero"),
        (dict(period=-5.0), "period must be"),
        (dict(period=(100.0, 100.0)), "period must be"),
        (dict(period=30.0), "period/3"),
        (dict(rbins=[1.0, 0.5, 2.0]), "increasing"),
        (dict(rbins=[0.0, 1.0]), "strictly positive"),
        (dict(rbins=[1.0]), "at least 2"),
        (dict(num_threads=0), "num_threads"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, match):
    args = dict(positions=np.full((5, 3), 10.0), orientations=np.ones((5, 3)), period=100.0, rbins=BIN_EDGES)
    args.update(kwargs)
    num_threads = args.pop("num_threads", None)
    with pytest.raises(ValueError, match=match):
        measure_correlations(args["positions"], args["orientations"], args["period"], args["rbins"],
                             num_threads=num_threads)


def test_pair_geometry_checks_orientation_shape():
    pos, ori = uniform_catalog(100, 50.0, seed=4)
    geometry = PairGeometry(pos, 50.0)
    with pytest.raises(ValueError, match=r"shape \(100, 3\)"):
        geometry.measure(ori[:50])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        geometry.measure(ori)
