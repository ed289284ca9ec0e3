"""iaemu_theory.alignment: mean_p2 against halotools' own Dimroth-Watson draws, and the exact form it
implies for the mock engine's omega (used by iaemu-validate's alignment surrogate)."""
import numpy as np
import pytest

from iaemu_theory.alignment import _SERIES_KAPPA, dimroth_watson_kappa, mean_p2, mean_p2_torch


def test_mean_p2_limits_symmetry_and_refusal():
    assert mean_p2([-1.0, 0.0, 1.0]) == pytest.approx([-0.5, 0.0, 1.0], abs=1e-12)
    mu = np.linspace(-1, 1, 20001)
    assert np.all(np.diff(mean_p2(mu)) > 0)
    # continuous across the series / closed-form switch near kappa = 0
    kappa_edge = np.arctan(_SERIES_KAPPA) * 2 / np.pi
    near = mean_p2([kappa_edge * (1 - 1e-9), kappa_edge * (1 + 1e-9)])
    assert near[0] == pytest.approx(near[1], rel=1e-7)
    with pytest.raises(ValueError, match=r"1\.5"):
        dimroth_watson_kappa([0.2, 1.5])


def test_mean_p2_torch_matches_values_and_slopes():
    torch = pytest.importorskip("torch")
    mu = np.concatenate([np.linspace(-1, 1, 2001), np.random.default_rng(0).uniform(-1, 1, 2000)])
    x = torch.tensor(mu, dtype=torch.float64, requires_grad=True)
    y = mean_p2_torch(x)
    assert np.abs(y.detach().numpy() - mean_p2(mu)).max() < 1e-10
    (grad,) = torch.autograd.grad(y.sum(), x)
    inner = np.abs(mu) < 1 - 1e-5
    fd = (mean_p2(mu[inner] + 1e-6) - mean_p2(mu[inner] - 1e-6)) / 2e-6
    assert np.allclose(grad.numpy()[inner], fd, rtol=1e-4)
    assert grad[0].item() == pytest.approx(3 * np.pi / 8) and grad[2000].item() == pytest.approx(3 * np.pi / 4)
    assert mean_p2_torch(torch.tensor([0.5], dtype=torch.float32)).dtype == torch.float32


@pytest.mark.parametrize("mu", [-0.95, -0.5, -0.1, 0.3, 0.8, 0.99])
def test_mean_p2_matches_halotools_dimroth_watson_draws(mu):
    from halotools.empirical_models.ia_models.ia_model_components import alignment_strength, axes_correlated_with_z

    n = 100_000
    axes = axes_correlated_with_z(np.full(n, mu), seed=7)
    p2 = 1.5 * axes[:, 2] ** 2 - 0.5
    assert dimroth_watson_kappa(mu) == pytest.approx(-alignment_strength(np.array([mu]))[0])
    assert abs(p2.mean() - mean_p2(mu)) < 4 * p2.std() / np.sqrt(n)


def test_engine_omega_is_linear_in_mean_p2_at_fixed_positions(toy_model, toy_params):
    """E[omega | positions] = a(r) P2(mu_cen) + b(r) P2(mu_sat): a and b from orientation redraws at (1, 0)
    and (0, 1) predict the redraw mean at two other strengths within the draws' noise; the naive form linear
    in mu itself does not."""
    k = 40
    draws = {key: toy_model.measure(dict(toy_params, mu_cen=key[0], mu_sat=key[1]), 5, n_realisations=1,
                                    orientation_draws=k).orientation_stats[:, 1]
             for key in [(1.0, 0.0), (0.0, 1.0), (0.6, -0.4), (-0.7, 0.9)]}
    a, b = draws[(1.0, 0.0)], draws[(0.0, 1.0)]

    def chi2(key, weight):
        wc, ws = weight(key[0]), weight(key[1])
        pred = wc * a.mean(0) + ws * b.mean(0)
        var = (draws[key].var(0, ddof=1) + wc**2 * a.var(0, ddof=1) + ws**2 * b.var(0, ddof=1)) / k
        return float(np.sum((draws[key].mean(0) - pred) ** 2 / var))

    for key in [(0.6, -0.4), (-0.7, 0.9)]:
        assert chi2(key, mean_p2) < 45.0                      # 20 bins; 99.9% point of chi2(20) is 45
        assert chi2(key, lambda mu: mu) > 3 * chi2(key, mean_p2)
