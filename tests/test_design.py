"""The realistic parameter design: inside the domain and its bands, space-filling, deterministic."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import qmc

from iaemu_theory.conventions import PARAM_NAMES
from iaemu_theory.domain import Domain
from training.dataset.design import realistic_design, unit_design

J = {n: i for i, n in enumerate(PARAM_NAMES)}


@pytest.mark.parametrize("method", ["sobol", "lhs"])
def test_design_stays_in_domain_and_bands(method):
    domain = Domain(logMmin_range=(11.8, 13.2))
    p = realistic_design(2000, 3, domain, method)
    assert p.shape == (2000, 7)
    assert domain.contains(p).all()
    x = p[:, J["logMmin"]]
    assert x.min() >= 11.8 and x.max() <= 13.2 and x.max() - x.min() > 1.35
    for name in ("logM0", "logM1", "sigma_logM", "alpha"):
        lo, hi = domain.band_limits(name, x)
        frac = (p[:, J[name]] - lo) / (hi - lo)
        assert frac.min() >= 0 and frac.max() <= 1
        assert frac.min() < 0.01 and frac.max() > 0.99  # the whole band is used
    assert p[:, J["sigma_logM"]].min() >= 0.05  # the floor
    for name in ("mu_cen", "mu_sat"):
        assert -1 <= p[:, J[name]].min() < -0.99 and 0.99 < p[:, J[name]].max() <= 1


def test_band_coordinates_are_the_unit_design():
    """Mapping back to band fractions recovers the low-discrepancy unit points exactly."""
    domain = Domain()
    u = unit_design(256, 5)
    p = realistic_design(256, 5, domain)
    x = p[:, J["logMmin"]]
    np.testing.assert_allclose((x - 11.5) / 2.0, u[:, J["logMmin"]], atol=1e-12)
    lo, hi = domain.band_limits("logM1", x)
    np.testing.assert_allclose((p[:, J["logM1"]] - lo) / (hi - lo), u[:, J["logM1"]], atol=1e-12)


def test_space_filling_beats_random_draws():
    u = unit_design(512, 1)
    rand = np.random.default_rng(1).random((512, 7))
    assert qmc.discrepancy(u) < 0.5 * qmc.discrepancy(rand)
    lhs = unit_design(500, 1, "lhs")
    for j in range(7):  # every 1/n stratum of every margin holds exactly one point
        np.testing.assert_array_equal(np.sort(np.floor(lhs[:, j] * 500)), np.arange(500))


def test_design_is_deterministic_and_prefix_stable():
    a = realistic_design(300, 11)
    np.testing.assert_array_equal(a, realistic_design(300, 11))
    np.testing.assert_array_equal(a[:100], realistic_design(100, 11))
    assert not np.allclose(a, realistic_design(300, 12))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n_points=0"):
        realistic_design(0, 1)
    with pytest.raises(ValueError, match="unknown design method 'grid'"):
        realistic_design(10, 1, method="grid")
