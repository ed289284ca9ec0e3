import numpy as np
import pytest

from iaemu_theory.conventions import (BIN_CENTRES, BIN_EDGES, PARAM_NAMES, parse_params, validate_params)
from iaemu_theory.domain import Domain

GOOD = dict(mu_cen=0.5, mu_sat=0.1, logMmin=12.0, sigma_logM=0.26, logM0=12.0, logM1=13.0, alpha=1.0)


def test_bins_match_the_paper():
    assert BIN_EDGES.size == 21
    assert np.isclose(BIN_EDGES[0], 0.1) and np.isclose(BIN_EDGES[-1], 10**1.2)
    assert np.isclose(BIN_CENTRES[0], 0.11441, atol=1e-5)
    assert np.isclose(BIN_CENTRES[-1], 14.0758, atol=1e-4)


@pytest.mark.parametrize("name,value,needle", [
    ("mu_cen", 1.5, "mu_cen=1.5"), ("mu_sat", -1.01, "mu_sat"), ("sigma_logM", 0.0, "sigma_logM=0.0"),
    ("alpha", -0.1, "alpha"), ("logMmin", float("nan"), "logMmin=nan"),
])
def test_bad_parameters_name_the_parameter_and_range(name, value, needle):
    bad = dict(GOOD, **{name: value})
    with pytest.raises(ValueError, match=needle) as err:
        validate_params(bad)
    assert "range" in str(err.value)


def test_parse_params_and_missing():
    text = ",".join(f"{k}={v}" for k, v in GOOD.items())
    assert parse_params(text) == GOOD
    with pytest.raises(ValueError, match="missing"):
        parse_params("mu_cen=0.1")


def test_domain_contains_tng_best_fits_and_design_maps_inside():
    dom = Domain()
    tng = [[0.5, 0.1, 12.54, 0.26, 12.68, 13.48, 1.0], [0.5, 0.1, 11.93, 0.26, 12.05, 12.85, 1.0],
           [0.5, 0.1, 11.61, 0.26, 11.80, 12.60, 1.0]]
    assert dom.contains(tng).all()
    pts = dom.from_unit(np.random.default_rng(0).random((500, len(PARAM_NAMES))))
    assert dom.contains(pts).all()
    assert not dom.contains(dict(GOOD, logMmin=14.0)).any()
    assert "logMmin" in dom.explain(dict(GOOD, logMmin=14.0))[0]
    assert Domain.from_dict(dom.to_dict()) == dom
