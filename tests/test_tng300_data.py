"""The package's TNG300 data files agree with the measured figures they were written from."""
from pathlib import Path

import numpy as np
import pytest

from iaemu_theory import tng300

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


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


@pytest.mark.skipif(not SHARED.exists(), reason="the workspace's shared data folder is not beside this checkout")
def test_files_match_their_source():
    for sample in (1, 2, 3):
        for stat, tag in (("xi", "xi"), ("omega", "ed"), ("eta", "ee")):
            src = np.loadtxt(SHARED / "tng300" / f"TNG300-1_99-sample_{sample}_{tag}.dat", skiprows=1)
            d = tng300.load_tng300(sample, stat)
            assert np.allclose(d["value"], src[:, 1], rtol=1e-9) and np.allclose(d["err"], src[:, 2], rtol=1e-9)
    src = np.loadtxt(SHARED / "bolplanck_mocks" / "TNG300-1_99-sample_2_model_ed.dat", skiprows=1)
    assert np.allclose(tng300.load_bolplanck_reference("omega")["value"], src[:, 1], rtol=1e-9)
