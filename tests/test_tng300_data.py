"""The package's TNG300 data files load with the documented shapes and a consistent covariance."""
import numpy as np
import pytest

from iaemu_theory import tng300


def test_loaders_shapes_and_covariance():
    for sample in (1, 2, 3):
        for stat in ("xi", "omega", "eta"):
            d = tng300.load_tng300(sample, stat)
            assert d["r"].shape == d["value"].shape == d["err"].shape == (14,)
            assert np.allclose(d["r"], 0.5 * (d["bin_edges"][1:] + d["bin_edges"][:-1]))
    cov = tng300.load_tng300_omega_cov(3)
    assert cov.shape == (14, 14)
    assert np.allclose(np.sqrt(np.diag(cov)), tng300.load_tng300(3, "omega")["err"], rtol=1e-8)
    assert np.linalg.eigvalsh(cov).min() > 0
    d19 = tng300.load_tng300_omega19(125)
    assert d19["cov"].shape == (19, 19)
    with pytest.raises(ValueError, match="sample 3"):
        tng300.load_tng300_omega_cov(1)
    with pytest.raises(ValueError, match="sample 4"):
        tng300.load_tng300(4, "xi")
