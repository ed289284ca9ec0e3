"""The NUTS Cobaya sampler: gradients, the bounded-prior transform, agreement with Cobaya's mcmc on the
TNG300 sample-1 likelihood, chain files that GetDist reads, resume, and refusal of non-differentiable models.

A tiny untrained artifact keeps every call cheap. Its TNG300 sample-1 posterior is broad (close to the
uniform prior box), which makes the comparison a sharp test of the logit transform and its Jacobian:
without the Jacobian the NUTS draws would pile up in the middle of the box.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyro")
torch = pytest.importorskip("torch")

from cobaya.log import LoggedError  # noqa: E402
from cobaya.model import get_model  # noqa: E402
from cobaya.run import run  # noqa: E402
from cobaya.sampler import get_sampler  # noqa: E402
from cobaya.yaml import yaml_dump, yaml_load_file  # noqa: E402

from iaemu_theory.artifact import make_random_artifact  # noqa: E402
from iaemu_theory.likelihoods import torch_logposterior  # noqa: E402
from iaemu_theory.samplers.nuts import NUTS, UnitIntervalTransform, diagnostics, load_summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["mu_cen", "mu_sat"]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return str(make_random_artifact(tmp_path_factory.mktemp("artifact") / "tiny.pt", tiny=True))


def tng_info(artifact, sampler=None, output=None):
    info = {"theory": {"iaemu_theory.IAEmu": {"artifact": artifact}},
            "likelihood": {"tng300": {"class": "iaemu_theory.TNG300Likelihood", "sample": 1}}}
    if sampler:
        info["sampler"] = sampler
    if output:
        info["output"] = str(output)
    return info


@pytest.fixture(scope="module")
def model(artifact):
    return get_model(tng_info(artifact))


@pytest.fixture(scope="module")
def grid_posterior(model):
    """Exact posterior means and stds of (mu_cen, mu_sat) by quadrature on a 401 x 401 grid."""
    names, logpost = torch_logposterior(model)
    assert names == NAMES
    x = np.linspace(-1.0, 1.0, 401)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    with torch.no_grad():
        lp = logpost(torch.as_tensor(np.stack([xx, yy], axis=-1))).numpy()
    p = np.exp(lp - lp.max())
    p /= p.sum()
    mean = np.array([(p * xx).sum(), (p * yy).sum()])
    std = np.sqrt([(p * (xx - mean[0]) ** 2).sum(), (p * (yy - mean[1]) ** 2).sum()])
    return mean, std


def weighted_moments(collection):
    w = collection["weight"].to_numpy(dtype=float)
    x = collection[NAMES].to_numpy(dtype=float)
    mean = np.average(x, axis=0, weights=w)
    return mean, np.sqrt(np.average((x - mean) ** 2, axis=0, weights=w))


def test_logposterior_gradient_matches_finite_differences(model):
    names, logpost = torch_logposterior(model)
    for point in ([0.3, -0.2], [-0.7, 0.55]):
        theta = torch.tensor(point, dtype=torch.float64, requires_grad=True)
        grad, = torch.autograd.grad(logpost(theta), theta)
        h = 1e-5
        for j in range(2):
            e = torch.zeros(2, dtype=torch.float64)
            e[j] = h
            with torch.no_grad():
                fd = (logpost(theta + e) - logpost(theta - e)) / (2 * h)
            assert float(grad[j]) == pytest.approx(float(fd), rel=1e-5, abs=1e-7), (names[j], point)


def test_transform_roundtrip_and_jacobian():
    t = UnitIntervalTransform([-1.0, -np.inf, 2.0], [1.0, np.inf, 5.0])
    z = torch.tensor([0.3, -1.7, -2.2], dtype=torch.float64, requires_grad=True)
    theta, logj = t.forward(z)
    assert torch.allclose(t.inverse(theta.detach()), z.detach(), atol=1e-10)
    assert -1 < theta[0] < 1 and theta[1] == z[1] and 2 < theta[2] < 5
    jac = torch.autograd.functional.jacobian(lambda v: t.forward(v)[0], z.detach())
    assert float(logj) == pytest.approx(float(torch.log(torch.diagonal(jac)).sum()), rel=1e-12)
    with pytest.raises(ValueError, match="half-bounded"):
        UnitIntervalTransform([0.0], [np.inf])


def test_sampler_potential_gradient_matches_finite_differences(model):
    """The potential NUTS sees (log-posterior + log-Jacobian in the logit space) has correct gradients."""
    sampler = get_sampler({"iaemu_theory.samplers.NUTS": {"samples": 8, "warmup": 0, "chains": 1}}, model)
    assert isinstance(sampler, NUTS)
    sampler._n_grad = 0
    z = torch.tensor([0.4, -1.1], dtype=torch.float64, requires_grad=True)
    grad, = torch.autograd.grad(sampler.potential(z), z)
    h = 1e-5
    for j in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[j] = h
        with torch.no_grad():
            fd = (sampler.potential(z + e) - sampler.potential(z - e)) / (2 * h)
        assert float(grad[j]) == pytest.approx(float(fd), rel=1e-5, abs=1e-7)


@pytest.fixture(scope="module")
def nuts_run(artifact, tmp_path_factory):
    out = tmp_path_factory.mktemp("nuts") / "tng"
    sampler = {"iaemu_theory.samplers.NUTS": {"warmup": 150, "samples": 700, "chains": 2, "seed": 11,
                                              "progress": False}}
    _, nuts = run(tng_info(artifact, sampler, out))
    return out, nuts


@pytest.fixture(scope="module")
def mcmc_run(artifact, grid_posterior):
    _, std = grid_posterior
    sampler = {"mcmc": {"max_samples": 6000, "Rminus1_stop": 0.001, "burn_in": 0, "seed": 5,
                        "covmat": np.diag(std ** 2), "covmat_params": NAMES}}
    _, mcmc = run(tng_info(artifact, sampler))
    return mcmc


def test_nuts_agrees_with_mcmc_and_the_exact_posterior(nuts_run, mcmc_run, grid_posterior):
    _, nuts = nuts_run
    s_nuts = nuts.products(combined=True)["sample"]
    m_nuts, sd_nuts = weighted_moments(s_nuts)
    m_mcmc, sd_mcmc = weighted_moments(mcmc_run.products()["sample"])
    m_grid, sd_grid = grid_posterior
    # the brief's criterion: means within 0.1 sigma, standard deviations within 10%
    assert np.all(np.abs(m_nuts - m_mcmc) < 0.1 * sd_mcmc), (m_nuts, m_mcmc, sd_mcmc)
    assert np.all(np.abs(sd_nuts / sd_mcmc - 1) < 0.10), (sd_nuts, sd_mcmc)
    # both against the exact (quadrature) posterior
    assert np.all(np.abs(m_nuts - m_grid) < 0.1 * sd_grid), (m_nuts, m_grid)
    assert np.all(np.abs(sd_nuts / sd_grid - 1) < 0.10), (sd_nuts, sd_grid)
    assert np.all(np.abs(m_mcmc - m_grid) < 0.1 * sd_grid), (m_mcmc, m_grid)


def test_summary_and_chain_files_read_by_getdist(nuts_run):
    from getdist import loadMCSamples

    out, nuts = nuts_run
    summary = load_summary(str(out))
    assert summary == nuts.products()["summary"]
    assert summary["chains"] == 2 and summary["draws_per_chain"] == 700
    for name in NAMES:
        p = summary["params"][name]
        assert p["ess"] > 200 and abs(p["rhat"] - 1) < 0.05
    for chain in summary["per_chain"].values():
        assert chain["gradient_evaluations"] > 850 and chain["divergences"] == 0
        assert chain["max_abs_logpost_difference_cobaya_vs_torch"] < 1e-2     # float32 Cobaya vs float64 torch
    for i in (1, 2):
        assert Path(f"{out}.{i}.txt").is_file()
    assert Path(f"{out}.updated.yaml").is_file() and Path(f"{out}.input.yaml").is_file()
    samples = loadMCSamples(str(out))
    assert samples.numrows == 1400
    merged = nuts.products(to_getdist=True)["sample"]
    assert np.allclose(samples.getMeans()[:2], merged.getMeans()[:2])
    stats = samples.getMargeStats()
    assert stats.parWithName("mu_cen").mean == pytest.approx(summary["params"]["mu_cen"]["mean"], abs=1e-6)


def test_diagnostics_detect_disagreeing_chains():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(3, 500, 2))
    d = diagnostics(good)
    assert np.all(np.abs(d["rhat"] - 1) < 0.02) and np.all(d["ess"] > 1000)
    bad = good + np.array([0.0, 0.0, 3.0])[:, None, None]
    assert np.all(diagnostics(bad)["rhat"] > 1.5)


def test_refuses_a_non_differentiable_likelihood(artifact):
    info = tng_info(artifact, sampler={"iaemu_theory.samplers.NUTS": {"samples": 10, "warmup": 0}})
    info["likelihood"]["gauss"] = {"external": "lambda mu_cen: -0.5 * (mu_cen / 0.3) ** 2"}
    with pytest.raises(LoggedError, match="gauss.*not differentiable|not differentiable.*gauss"):
        run(info)


@pytest.mark.parametrize("option, value", [("samples", 2), ("chains", 0), ("target_accept", 1.5),
                                           ("step_size", -0.1), ("warmup", 1.5)])
def test_bad_options_are_named(artifact, option, value):
    info = tng_info(artifact, sampler={"iaemu_theory.samplers.NUTS": {"samples": 10, "warmup": 0, option: value}})
    with pytest.raises(LoggedError, match=option):
        run(info)


def test_cobaya_run_yaml_writes_chains_and_resumes(artifact, tmp_path):
    """`cobaya-run` on (a shortened copy of) yaml/iaemu_tng_nuts.yaml; then -r skips the finished chains."""
    from getdist import loadMCSamples

    info = yaml_load_file(str(ROOT / "yaml" / "iaemu_tng_nuts.yaml"))
    info["sampler"]["iaemu_theory.samplers.NUTS"].update(warmup=30, samples=60, chains=2, seed=1, progress=False)
    info["output"] = str(tmp_path / "chains" / "nuts")
    path = tmp_path / "nuts.yaml"
    path.write_text(yaml_dump(info))
    env = {**os.environ, "IAEMU_ARTIFACT": artifact}
    cli = [sys.executable, "-m", "cobaya", "run", str(path)]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    samples = loadMCSamples(info["output"])
    assert samples.numrows == 120 and {"mu_cen", "mu_sat"} <= set(samples.getParamNames().list())
    first = Path(info["output"] + ".1.txt").read_text()
    again = subprocess.run(cli + ["-r"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "finished in the previous run" in again.stdout + again.stderr
    assert Path(info["output"] + ".1.txt").read_text() == first
