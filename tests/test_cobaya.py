"""The Cobaya components: IAEmu Theory, IACorrelationLikelihood, TNG300Likelihood, the yaml files, MPI.

Everything runs on a tiny untrained artifact written to a temporary folder (never the shipped one).
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("cobaya")
from cobaya.likelihood import Likelihood  # noqa: E402
from cobaya.log import LoggedError  # noqa: E402
from cobaya.model import get_model  # noqa: E402
from cobaya.run import run  # noqa: E402
from cobaya.theory import Theory  # noqa: E402
from cobaya.yaml import yaml_load_file  # noqa: E402

from iaemu_theory.artifact import make_random_artifact  # noqa: E402
from iaemu_theory.conventions import PARAM_NAMES  # noqa: E402
from iaemu_theory.emulator import Emulator  # noqa: E402
from iaemu_theory.likelihoods import interpolation_matrix, torch_logposterior  # noqa: E402
from iaemu_theory.tng300 import TNG300_HOD, load_tng300  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
YAMLS = sorted((REPO / "yaml").glob("*.yaml"))
INSIDE = dict(mu_cen=0.5, mu_sat=0.1, **TNG300_HOD[2])


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return str(make_random_artifact(tmp_path_factory.mktemp("artifact") / "tiny.pt", tiny=True))


@pytest.fixture(scope="module")
def emulator(artifact):
    return Emulator.load(artifact, device="cpu")


def fixed(params):
    return {k: float(v) for k, v in params.items()}


def write_data(tmp_path, emulator, stats=("omega",), r=None, err=0.01, n_cov=None):
    """A data file at radii r (default: the emulator's centres) with values from the emulator at INSIDE."""
    r = emulator.r if r is None else np.asarray(r)
    pred = emulator.predict(INSIDE, statistics=list(stats))
    rows = []
    for s in stats:
        w = interpolation_matrix(emulator.r, r)
        values = np.exp(w @ np.log(pred[s][0])) if s == "xi" else w @ pred[s][0]
        rows += [f"{s} {ri:.12e} {vi:.12e} {err * (abs(vi) + 1e-3):.6e}" for ri, vi in zip(r, values)]
    path = tmp_path / "data.txt"
    path.write_text("# statistic r value err\n" + "\n".join(rows) + "\n")
    return str(path)


def corr_model(artifact, data_file, theory_opts=None, like_opts=None, params=None):
    info = {
        "theory": {"iaemu_theory.IAEmu": {"artifact": artifact, **(theory_opts or {})}},
        "likelihood": {"ia": {"class": "iaemu_theory.IACorrelationLikelihood", "data_file": data_file,
                              **(like_opts or {})}},
        "params": params or {**fixed(INSIDE), "mu_cen": {"prior": {"min": -1, "max": 1}},
                             "mu_sat": {"prior": {"min": -1, "max": 1}}},
    }
    return get_model(info)


def tng_model(artifact, sample=1, theory_opts=None, like_opts=None):
    info = {"theory": {"iaemu_theory.IAEmu": {"artifact": artifact, **(theory_opts or {})}},
            "likelihood": {"tng": {"class": "iaemu_theory.TNG300Likelihood", "sample": sample, **(like_opts or {})}}}
    return get_model(info)


# ---------------------------------------------------------------- Theory and likelihoods inside Cobaya

def test_tng_logpost_finite_inside_and_hod_fixed(artifact):
    model = tng_model(artifact, sample=1)
    assert list(model.parameterization.sampled_params()) == ["mu_cen", "mu_sat"]
    assert model.parameterization.constant_params() == TNG300_HOD[1]
    like = model.likelihood["tng"]
    assert like.stats == ["omega"] and like.data_vector.size == 12       # 2 of the 14 TNG bins lie outside
    theory = model.theory["iaemu_theory.IAEmu"]
    assert theory._stats == ["omega"]                                     # only the omega decoder runs
    lp = model.logposterior({"mu_cen": 0.3, "mu_sat": -0.2})
    assert np.isfinite(lp.logpost)
    assert "xi" not in theory.current_state and "omega" in theory.current_state


def test_logpost_minus_inf_outside_domain(artifact, emulator, tmp_path):
    data = write_data(tmp_path, emulator)
    params = {**fixed(INSIDE), "mu_cen": {"prior": {"min": -1, "max": 1}},
              "logMmin": {"prior": {"min": 10.0, "max": 15.0}}}
    model = corr_model(artifact, data, params=params)
    assert np.isfinite(model.logposterior({"mu_cen": 0.5, "logMmin": INSIDE["logMmin"]}).logpost)
    assert model.logposterior({"mu_cen": 0.5, "logMmin": 14.5}).logpost == -np.inf


def test_extrapolate_policy_warns_once(artifact, emulator, tmp_path, caplog):
    data = write_data(tmp_path, emulator)
    params = {**fixed(INSIDE), "logMmin": {"prior": {"min": 10.0, "max": 15.0}}}
    model = corr_model(artifact, data, theory_opts={"outside_domain": "extrapolate"}, params=params)
    with caplog.at_level(logging.WARNING):
        assert np.isfinite(model.logposterior({"logMmin": 14.5}).logpost)
        assert np.isfinite(model.logposterior({"logMmin": 14.6}).logpost)
    assert sum("extrapolating" in r.getMessage() for r in caplog.records) == 1


def test_theory_outputs_equal_emulator_predict(artifact, emulator, tmp_path):
    data = write_data(tmp_path, emulator, stats=("xi", "omega", "eta"))
    model = corr_model(artifact, data, params=fixed(INSIDE))
    model.logposterior({})
    theory = model.theory["iaemu_theory.IAEmu"]
    assert theory.emulator.dtype == torch.float64          # the Theory's default: smooth for minimizers
    ref = Emulator.load(artifact, device="cpu", dtype="float64").predict(INSIDE)
    for s in ("xi", "omega", "eta"):
        np.testing.assert_array_equal(theory.get_result(s), ref[s][0])
        np.testing.assert_array_equal(theory.get_result(f"{s}_aleatoric_var"), ref[f"{s}_aleatoric_var"][0])
        np.testing.assert_array_equal(np.diag(theory.get_result(f"{s}_cov")), ref[f"{s}_aleatoric_var"][0])
    np.testing.assert_array_equal(theory.get_omega(), ref["omega"][0])
    np.testing.assert_allclose(theory.r, emulator.r)


def test_interpolation_exact_at_emulator_centres(artifact, emulator, tmp_path):
    data = write_data(tmp_path, emulator, stats=("xi", "omega", "eta"))
    model = corr_model(artifact, data, params=fixed(INSIDE))
    like = model.likelihood["ia"]
    ref = emulator.predict(INSIDE)
    np.testing.assert_allclose(like.model_vector({s: ref[s][0] for s in ref}),
                               np.concatenate([ref[s][0] for s in ("xi", "omega", "eta")]), rtol=1e-13, atol=0)
    w = interpolation_matrix(emulator.r, emulator.r)
    np.testing.assert_array_equal(w, np.eye(emulator.r.size))
    # between centres: linear in ln r
    mid = np.sqrt(emulator.r[3] * emulator.r[4])
    np.testing.assert_allclose(interpolation_matrix(emulator.r, [mid])[0, 3:5], [0.5, 0.5])
    # the data equal the model at INSIDE, so chi2 = 0
    assert model.logposterior({}).loglikes[0] == pytest.approx(0.0, abs=1e-8)


def test_interpolation_refuses_data_outside_range(artifact, emulator, tmp_path):
    data = tmp_path / "far.txt"
    data.write_text("omega 0.5 0.01 0.001\nomega 30.0 0.001 0.001\n")
    with pytest.raises(LoggedError, match="outside the emulator's range"):
        corr_model(artifact, str(data), params=fixed(INSIDE))
    # a scale cut makes it usable
    model = corr_model(artifact, str(data), params=fixed(INSIDE), like_opts={"r_max": 20.0})
    assert model.likelihood["ia"].data_vector.size == 1


def test_numpy_and_torch_loglike_agree_and_gradient(artifact, emulator, tmp_path):
    r = load_tng300(1, "omega")["r"][:12]
    data = write_data(tmp_path, emulator, stats=("xi", "omega"), r=r, err=0.05)
    for opts in ({}, {"emulator_aleatoric": 1.0}, {"covariance_correction": "sellentin-heavens", "n_subvolumes": 60},
                 {"covariance_correction": "hartlap", "n_subvolumes": 60}):
        model = corr_model(artifact, data, like_opts=opts)
        like = model.likelihood["ia"]
        point = {"mu_cen": 0.2, "mu_sat": -0.3}
        ll_np = model.loglikes(point)[0][0]
        x = torch.tensor([[point.get(n, INSIDE[n]) for n in PARAM_NAMES]], dtype=torch.float64, requires_grad=True)
        ll_t = like.loglike_torch(x)
        # the Cobaya path runs the emulator in float32, the torch path in float64
        assert float(ll_t.detach()) == pytest.approx(ll_np, rel=1e-4, abs=1e-3), opts
        ll_t.sum().backward()
        eps = 1e-5
        for j in (0, 1):
            xp, xm = x.detach().clone(), x.detach().clone()
            xp[0, j] += eps
            xm[0, j] -= eps
            fd = (float(like.loglike_torch(xp)) - float(like.loglike_torch(xm))) / (2 * eps)
            assert float(x.grad[0, j]) == pytest.approx(fd, rel=1e-4, abs=1e-6), (opts, j)


def test_covariance_corrections(artifact, emulator, tmp_path):
    r = load_tng300(1, "omega")["r"][:12]
    data = write_data(tmp_path, emulator, r=r, err=0.05)
    point = {"mu_cen": -0.4, "mu_sat": 0.6}
    base = corr_model(artifact, data).loglikes(point)[0][0]
    chi2 = -2 * base
    assert chi2 > 0
    hart = corr_model(artifact, data, like_opts={"covariance_correction": "hartlap", "n_subvolumes": 27})
    assert hart.loglikes(point)[0][0] == pytest.approx(-0.5 * chi2 * (27 - 12 - 2) / 26)
    sh = corr_model(artifact, data, like_opts={"covariance_correction": "sellentin-heavens", "n_subvolumes": 27})
    assert sh.loglikes(point)[0][0] == pytest.approx(-0.5 * 27 * np.log1p(chi2 / 26))
    with pytest.raises(LoggedError, match="n_subvolumes"):
        corr_model(artifact, data, like_opts={"covariance_correction": "hartlap"})
    with pytest.raises(LoggedError, match="n_subvolumes > n_data"):
        corr_model(artifact, data, like_opts={"covariance_correction": "hartlap", "n_subvolumes": 10})


def test_emulator_variances_enter_covariance(artifact, emulator, tmp_path):
    data = write_data(tmp_path, emulator, err=0.05)
    point = {"mu_cen": -0.4, "mu_sat": 0.6}
    base = corr_model(artifact, data).loglikes(point)[0][0]
    alea = corr_model(artifact, data, like_opts={"emulator_aleatoric": 1.0}).loglikes(point)[0][0]
    assert alea != base
    with pytest.raises(LoggedError, match="mc_passes"):
        corr_model(artifact, data, like_opts={"emulator_epistemic": True})
    model = corr_model(artifact, data, theory_opts={"mc_passes": 4}, like_opts={"emulator_epistemic": True})
    assert np.isfinite(model.loglikes(point)[0][0])
    theory = model.theory["iaemu_theory.IAEmu"]
    np.testing.assert_allclose(np.diag(theory.get_result("omega_cov")),
                               theory.get_result("omega_aleatoric_var") + theory.get_result("omega_epistemic_var"))


def test_tng_sample3_full_covariance_with_hartlap(artifact):
    like = tng_model(artifact, sample=3).likelihood["tng"]
    assert like.covariance_correction == "hartlap"
    assert like._hartlap == pytest.approx((27 - 12 - 2) / 26)
    assert np.count_nonzero(like.cov_data - np.diag(np.diag(like.cov_data))) > 0
    like1 = tng_model(artifact, sample=1).likelihood["tng"]
    assert like1.covariance_correction == "none"
    assert np.count_nonzero(like1.cov_data - np.diag(np.diag(like1.cov_data))) == 0


def test_torch_logposterior_matches_cobaya(artifact):
    model = tng_model(artifact, sample=2, theory_opts={"dtype": "float64"})
    names, logpost = torch_logposterior(model)
    assert names == ["mu_cen", "mu_sat"]
    point = {"mu_cen": 0.1, "mu_sat": 0.4}
    ref = model.logpost(point)
    assert float(logpost(torch.tensor([0.1, 0.4]))) == pytest.approx(ref, rel=1e-10)
    assert float(logpost(torch.tensor([1.5, 0.4]))) == -np.inf



def test_gradients_at_fixed_hod_reuse_the_decoders_only_when_the_hod_is_constant(tmp_path):
    """NUTS over mu_cen and mu_sat reuses the decoders at the fixed HOD with the same log-posterior and gradient;
    a HOD parameter that carries a gradient is never served from the reuse, even at the previous call's HOD."""
    art = str(make_random_artifact(tmp_path / "align.pt", tiny=True, input_encoding="alignment_p2",
                                   output_form="alignment"))
    model = tng_model(art, sample=2, theory_opts={"dtype": "float64"})
    theory = model.theory["iaemu_theory.IAEmu"]
    names, logpost = torch_logposterior(model)

    def value_and_grad(theta):
        t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
        v = logpost(t)
        v.backward()
        return float(v.detach()), t.grad.numpy()

    points = [(0.1, 0.4), (0.5, -0.2), (0.11, 0.41)]
    reused = [value_and_grad(p) for p in points]
    assert theory.emulator._hod_cache
    theory.emulator._reuse_hod = False
    full = [value_and_grad(p) for p in points]
    theory.emulator._reuse_hod = True
    for (v, g), (v_ref, g_ref) in zip(reused, full):
        assert v == v_ref
        np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=0)

    like = model.likelihood["tng"]
    hod = {n: torch.tensor(v, dtype=torch.float64, requires_grad=(n == "logMmin")) for n, v in TNG300_HOD[2].items()}
    like.loglike_torch({"mu_cen": 0.1, "mu_sat": 0.4, **{n: t.detach() for n, t in hod.items()}})  # same HOD
    ll = like.loglike_torch({"mu_cen": 0.1, "mu_sat": 0.4, **hod})
    ll.sum().backward()
    eps = 1e-5
    fd = [float(like.loglike_torch({"mu_cen": 0.1, "mu_sat": 0.4, **{n: t.detach() + (s * eps if n == "logMmin" else 0)
                                                                       for n, t in hod.items()}})) for s in (1, -1)]
    assert float(hod["logMmin"].grad) == pytest.approx((fd[0] - fd[1]) / (2 * eps), rel=1e-4, abs=1e-6)
    assert float(hod["logMmin"].grad) != 0.0


# ---------------------------------------------------------------- several instances, other theories

class DummyCosmology(Theory):
    """A second theory with a parameter of its own, standing in for camb."""

    params = {"H0": None}

    def get_can_provide(self):
        return ["growth"]

    def calculate(self, state, want_derived=True, **params):
        state["growth"] = params["H0"] / 100.0


class DummyLike(Likelihood):
    def get_requirements(self):
        return {"growth": None}

    def logp(self, **params):
        return -0.5 * (self.provider.get_result("growth") - 0.7) ** 2


def test_beside_another_theory(artifact):
    info = {"theory": {"iaemu_theory.IAEmu": {"artifact": artifact}, "cosmo": {"external": DummyCosmology}},
            "likelihood": {"tng": {"class": "iaemu_theory.TNG300Likelihood", "sample": 1},
                           "cosmo_like": {"external": DummyLike}},
            "params": {"H0": {"prior": {"min": 60, "max": 80}}}}
    model = get_model(info)
    theory = model.theory["iaemu_theory.IAEmu"]
    assert sorted(theory.input_params) == sorted(PARAM_NAMES)
    assert list(model.theory["cosmo"].input_params) == ["H0"]
    lp = model.logposterior({"mu_cen": 0.5, "mu_sat": 0.0, "H0": 70.0})
    assert np.isfinite(lp.logpost) and lp.loglikes[1] == pytest.approx(0.0)


def test_two_instances_with_suffixes(artifact):
    info = {"theory": {"a": {"class": "iaemu_theory.IAEmu", "artifact": artifact, "suffix": "_1"},
                       "b": {"class": "iaemu_theory.IAEmu", "artifact": artifact, "suffix": "_3"}},
            "likelihood": {"t1": {"class": "iaemu_theory.TNG300Likelihood", "sample": 1, "suffix": "_1"},
                           "t3": {"class": "iaemu_theory.TNG300Likelihood", "sample": 3, "suffix": "_3"}}}
    model = get_model(info)
    assert sorted(model.parameterization.sampled_params()) == ["mu_cen_1", "mu_cen_3", "mu_sat_1", "mu_sat_3"]
    assert model.parameterization.constant_params()["logMmin_3"] == TNG300_HOD[3]["logMmin"]
    point = {"mu_cen_1": 0.5, "mu_sat_1": 0.0, "mu_cen_3": 0.2, "mu_sat_3": 0.1}
    joint = model.loglikes(point)[0]
    single = tng_model(artifact, sample=3).loglikes({"mu_cen": 0.2, "mu_sat": 0.1})[0]
    assert joint[1] == pytest.approx(single[0])


# ---------------------------------------------------------------- errors at initialisation

def test_error_unknown_option(artifact):
    with pytest.raises(LoggedError, match="does not recognize some options"):
        tng_model(artifact, theory_opts={"mc_pases": 3})
    with pytest.raises(LoggedError, match="does not recognize some options"):
        tng_model(artifact, like_opts={"smaple": 2})


def test_error_missing_artifact(tmp_path):
    with pytest.raises(LoggedError, match="does not exist"):
        tng_model(str(tmp_path / "nope.pt"))


def test_error_data_length_and_covariance(artifact, emulator, tmp_path):
    data = write_data(tmp_path, emulator)
    n = emulator.r.size
    cov = tmp_path / "cov.txt"
    np.savetxt(cov, np.eye(n - 1) * 1e-4)
    with pytest.raises(LoggedError, match="lengths must match"):
        corr_model(artifact, data, like_opts={"cov_file": str(cov)})
    bad = np.eye(n) * 1e-4
    bad[0, 1] = bad[1, 0] = 1.0
    np.savetxt(cov, bad)
    with pytest.raises(LoggedError, match="not positive definite"):
        corr_model(artifact, data, like_opts={"cov_file": str(cov)})
    np.savetxt(cov, np.eye(n) * 1e-4)
    assert np.isfinite(corr_model(artifact, data, like_opts={"cov_file": str(cov)}).logpost({"mu_cen": 0,
                                                                                              "mu_sat": 0}))


def test_error_fixed_params_outside_domain(artifact, emulator, tmp_path):
    data = write_data(tmp_path, emulator)
    params = {**fixed(INSIDE), "logMmin": 14.2, "mu_cen": {"prior": {"min": -1, "max": 1}}}
    with pytest.raises(LoggedError, match="logMmin=14.2"):
        corr_model(artifact, data, params=params)
    params = {**fixed(INSIDE), "logM1": 9.0, "mu_cen": {"prior": {"min": -1, "max": 1}}}
    with pytest.raises(LoggedError, match="logM1"):
        corr_model(artifact, data, params=params)


def test_error_missing_parameter(artifact, emulator, tmp_path):
    data = write_data(tmp_path, emulator)
    params = {k: v for k, v in fixed(INSIDE).items() if k != "alpha"}
    with pytest.raises(LoggedError, match="alpha"):
        corr_model(artifact, data, params=params)


# ---------------------------------------------------------------- the yaml files

@pytest.mark.parametrize("yaml_path", YAMLS, ids=[p.stem for p in YAMLS])
def test_yaml_initialises(yaml_path, artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IAEMU_ARTIFACT", artifact)
    info = yaml_load_file(str(yaml_path))
    info["output"] = str(tmp_path / "chains" / yaml_path.stem)
    updated, sampler = run(info, test=True)
    assert sampler is not None


def test_cobaya_run_test_cli(artifact, tmp_path):
    exe = shutil.which("cobaya-run")
    if exe is None:
        pytest.skip("cobaya-run is not on PATH")
    env = {**os.environ, "IAEMU_ARTIFACT": artifact}
    proc = subprocess.run([exe, "--test", "--no-mpi", "-o", str(tmp_path / "tng"), str(REPO / "yaml" / "iaemu_tng.yaml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Test initialization successful" in proc.stdout + proc.stderr


def _mpi_works() -> str | None:
    """None if a 2-rank mpiexec with mpi4py works here, else the reason."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed"
    exe = shutil.which("mpiexec") or shutil.which("mpirun")
    if exe is None:
        return "no mpiexec/mpirun on PATH"
    try:
        proc = subprocess.run([exe, "-n", "2", sys.executable, "-c",
                               "from mpi4py import MPI; print(f'size={MPI.COMM_WORLD.Get_size()};', flush=True)"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as excpt:
        return f"mpiexec failed: {excpt}"
    if proc.returncode != 0 or proc.stdout.count("size=2;") != 2:
        return f"mpiexec -n 2 does not give 2 ranks: {proc.stdout[-300:]} {proc.stderr[-300:]}"
    return None


def test_mpi_two_ranks_short_chain(artifact, tmp_path):
    reason = _mpi_works()
    if reason:
        pytest.skip(f"MPI run skipped: {reason}")
    exe = shutil.which("mpiexec") or shutil.which("mpirun")
    info = yaml_load_file(str(REPO / "yaml" / "iaemu_tng.yaml"))
    info["theory"]["iaemu_theory.IAEmu"]["artifact"] = artifact
    info["sampler"] = {"mcmc": {"max_samples": 40, "Rminus1_stop": 0.5, "burn_in": 0, "learn_proposal": False}}
    info["output"] = str(tmp_path / "chains" / "mpi")
    from cobaya.yaml import yaml_dump_file
    yaml_dump_file(str(tmp_path / "mpi.yaml"), info, error_if_exists=False)
    proc = subprocess.run([exe, "-n", "2", sys.executable, "-m", "cobaya", "run", "-f", str(tmp_path / "mpi.yaml")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    chains = sorted((tmp_path / "chains").glob("mpi.[12].txt"))
    assert len(chains) == 2, list((tmp_path / "chains").iterdir())
    for chain in chains:
        assert np.loadtxt(chain).shape[0] >= 5


# ---------------------------------------------------------------- iaemu-plot

def test_iaemu_plot_triangle_and_ppd(artifact, tmp_path, monkeypatch):
    from iaemu_theory import plotting

    monkeypatch.setenv("IAEMU_ARTIFACT", artifact)
    info = yaml_load_file(str(REPO / "yaml" / "iaemu_tng.yaml"))
    info["sampler"] = {"mcmc": {"max_samples": 80, "Rminus1_stop": 0.5, "learn_proposal": False}}
    prefix = str(tmp_path / "chains" / "tng")
    info["output"] = prefix
    run(info)
    out = tmp_path / "figs" / "tng.png"
    assert plotting.main([prefix, "--markers", "mu_cen=0.5,mu_sat=0.1", "--out", str(out), "--draws", "30"]) == 0
    for name in ("tng.png", "tng.pdf", "tng_ppd.png", "tng_ppd.pdf"):
        assert (tmp_path / "figs" / name).stat().st_size > 1000, name
    assert plotting.parse_markers(["mu_cen=0.5,mu_sat=-0.1", "logMmin=12"]) == {"mu_cen": 0.5, "mu_sat": -0.1,
                                                                               "logMmin": 12.0}
    with pytest.raises(SystemExit):
        plotting.main([str(tmp_path / "missing")])


# ---------------------------------------------------------------- options validated, domain guards

@pytest.mark.parametrize("theory_opts,like_opts,message", [
    ({"mc_passes": 0.5}, {}, "mc_passes=0.5"),
    ({"mc_passes": 2.7}, {}, "mc_passes=2.7"),
    ({"threads": 0}, {}, "threads=0"),
    ({"device": "meta"}, {}, "device='meta'"),
    ({"dtype": "float16"}, {}, "dtype='float16'"),
    ({"outside_domain": "clamp"}, {}, "outside_domain='clamp'"),
    ({}, {"statistics": ["omegaa"]}, "statistics=\\['omegaa'\\]: 'omegaa' .*\\['xi', 'omega', 'eta'\\]"),
    ({}, {"statistics": []}, "statistics=\\[\\]: expected a non-empty"),
    ({}, {"r_min": {"omegaa": 1.0}}, "r_min=.*key 'omegaa' is not one of"),
    ({}, {"r_max": -3}, "r_max=-3"),
    ({}, {"emulator_aleatoric": float("inf")}, "emulator_aleatoric=inf"),
    ({}, {"emulator_aleatoric": float("nan")}, "emulator_aleatoric=nan"),
    ({}, {"emulator_epistemic": "yes"}, "emulator_epistemic='yes'"),
    ({}, {"sample": True}, "sample=True"),
    ({}, {"sample": 4}, "sample=4: expected one of \\[1, 2, 3\\]"),
    ({}, {"n_subvolumes": 2.7}, "n_subvolumes=2.7"),
], ids=lambda v: str(v)[:40])
def test_bad_options_are_clear_errors(artifact, theory_opts, like_opts, message):
    with pytest.raises(LoggedError, match=message):
        tng_model(artifact, theory_opts=theory_opts, like_opts=like_opts)


def test_bad_data_files_are_refused(artifact, emulator, tmp_path):
    data = write_data(tmp_path, emulator)
    rows = (tmp_path / "data.txt").read_text().splitlines()
    stat, r, value, err = rows[1].split()
    (tmp_path / "neg.txt").write_text("\n".join([rows[0], f"{stat} {r} {value} -{err}"] + rows[2:]) + "\n")
    with pytest.raises(LoggedError, match="neg.txt:2: ERR must be a finite standard deviation > 0"):
        corr_model(artifact, str(tmp_path / "neg.txt"))
    n = emulator.r.size
    cov = np.eye(n) * 1e-4
    cov[0, 1] = cov[1, 0] = 1e-4 * (1 - 1e-13)          # two bins correlated to 1 - 1e-13
    np.savetxt(tmp_path / "cov.txt", cov)
    with pytest.raises(LoggedError, match="numerically singular.*condition number"):
        corr_model(artifact, data, like_opts={"cov_file": str(tmp_path / "cov.txt")})
    (tmp_path / "ragged.txt").write_text("1 0\n0\n")
    with pytest.raises(LoggedError, match="ragged.txt"):
        corr_model(artifact, data, like_opts={"cov_file": str(tmp_path / "ragged.txt")})


def test_priors_and_refs_outside_the_domain(artifact, caplog):
    info = {"theory": {"iaemu_theory.IAEmu": {"artifact": artifact}},
            "likelihood": {"tng": {"class": "iaemu_theory.TNG300Likelihood", "sample": 1}},
            "params": {"mu_cen": {"prior": {"min": -2.0, "max": 1.0}, "ref": 0.5}}}
    with caplog.at_level(logging.WARNING):
        get_model(info)
    warned = [r.getMessage() for r in caplog.records if "reaches outside" in r.getMessage()]
    assert len(warned) == 1 and "mu_cen, [-2, 1]" in warned[0] and "[-1, 1]" in warned[0]
    info["params"]["mu_cen"] = {"prior": {"min": 1.5, "max": 3.0}}
    with pytest.raises(LoggedError, match="prior of mu_cen, \\[1.5, 3\\], lies wholly outside"):
        get_model(info)
    info["params"]["mu_cen"] = {"prior": {"min": -1.0, "max": 1.0}, "ref": {"dist": "norm", "loc": 1.5, "scale": 0.1}}
    with pytest.raises(LoggedError, match="reference .* of mu_cen, 1.5, lies outside"):
        get_model(info)


def test_extrapolate_follows_the_hod_but_not_mu_beyond_one(artifact, emulator, tmp_path):
    """extrapolate: the likelihood keeps varying with an HOD parameter outside the domain (no plateau), while
    |mu| > 1, where halotools-IA's alignment model is undefined, always gets zero likelihood."""
    data = write_data(tmp_path, emulator)
    params = {**fixed(INSIDE), "logMmin": {"prior": {"min": 10.0, "max": 15.0}},
              "mu_cen": {"prior": {"min": -3.0, "max": 3.0}}}
    model = corr_model(artifact, data, theory_opts={"outside_domain": "extrapolate"}, params=params)
    lp = [model.logposterior({"logMmin": m, "mu_cen": 0.5}).logpost for m in (14.0, 14.5, 15.0)]
    assert np.all(np.isfinite(lp)) and len(set(lp)) == 3
    for mu in (1.5, 2.0, -1.5):
        assert model.logposterior({"logMmin": INSIDE["logMmin"], "mu_cen": mu}).logpost == -np.inf
