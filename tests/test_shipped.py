"""What users get: the shipped artifact and every shipped yaml, run to the end on the shipped emulator.

The regression values in tests/data/shipped_reference.json are written by scripts/write_shipped_reference.py; a new
artifact changes them, so it cannot be committed without that deliberate step.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cobaya")
from cobaya.bib import get_bib_info  # noqa: E402
from cobaya.input import get_used_components  # noqa: E402
from cobaya.run import run  # noqa: E402
from cobaya.yaml import yaml_load_file  # noqa: E402

from iaemu_theory import Emulator  # noqa: E402
from iaemu_theory.artifact import DEFAULT_ARTIFACT  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
YAMLS = sorted((REPO / "yaml").glob("*.yaml"))
REFERENCE = json.loads((REPO / "tests" / "data" / "shipped_reference.json").read_text())
#: Documented TNG300 sample-1 posterior of the shipped emulator: mean and standard deviation.
SAMPLE1_POSTERIOR = {"mu_cen": (0.756, 0.013), "mu_sat": (0.320, 0.028)}
#: The maximum posterior of sample 1 (chi2 and parameters), found by bobyqa and by float64 scipy.
SAMPLE1_BEST_FIT = {"chi2": 30.93, "mu_cen": 0.757, "mu_sat": 0.320}
pytestmark = pytest.mark.skipif(not DEFAULT_ARTIFACT.is_file(), reason="no shipped artifact")


@pytest.fixture(autouse=True)
def _shipped_artifact(monkeypatch):
    monkeypatch.delenv("IAEMU_ARTIFACT", raising=False)


def load(name: str, tmp_path: Path) -> dict:
    info = yaml_load_file(str(REPO / "yaml" / name))
    info["output"] = str(tmp_path / "chains" / Path(name).stem)
    return info


# ---------------------------------------------------------------- the shipped artifact

def test_shipped_artifact_predictions_equal_the_record():
    emu = Emulator.load(device="cpu", dtype="float64")
    assert emu.artifact.weights_sha256 == REFERENCE["artifact_weights_sha256"], (
        "the shipped artifact changed; after reviewing it, run scripts/write_shipped_reference.py")
    for name, ref in REFERENCE["points"].items():
        pred = emu.predict(ref["params"], outside="raise")
        for key in pred:
            if key == "inside":
                continue
            np.testing.assert_allclose(pred[key][0], ref[key], rtol=1e-8, atol=0, err_msg=f"{name}: {key}")


def test_shipped_artifact_is_finite_over_its_domain():
    """Means and aleatoric variances finite and positive where they should be, at random points of the whole
    training domain, sparse corners included (a softplus variance head can overflow there)."""
    emu = Emulator.load(device="cpu", dtype="float64")
    p = emu.domain.from_unit(np.random.default_rng(7).random((8192, 7)))
    pred = emu.predict(p, outside="raise")
    for key, v in pred.items():
        if key == "inside":
            continue
        assert np.isfinite(v).all(), f"{key}: {int((~np.isfinite(v)).any(axis=1).sum())} points not finite"
        if key == "xi" or key.endswith("_var"):
            assert (v > 0).all(), f"{key}: non-positive values"


def test_shipped_sample1_logposterior_equals_the_record():
    from cobaya.model import get_model

    rec = REFERENCE["sample1_logpost"]
    model = get_model({"theory": {"iaemu_theory.IAEmu": None},
                       "likelihood": {"iaemu_theory.TNG300Likelihood": {"sample": 1}}})
    assert model.logposterior(rec["point"]).logpost == pytest.approx(rec["logpost"], abs=1e-6)


# ---------------------------------------------------------------- every shipped yaml, to the end

def test_sample1_mcmc_lands_on_the_documented_posterior(tmp_path):
    _, sampler = run(load("iaemu_tng.yaml", tmp_path))
    chain = sampler.products()["sample"]
    for name, (mean, std) in SAMPLE1_POSTERIOR.items():
        assert abs(chain.mean(first=len(chain) // 3)[chain.sampled_params.index(name)] - mean) < 0.5 * std, name


@pytest.mark.parametrize("name", ["iaemu_tng_sample2.yaml", "iaemu_tng_sample3.yaml", "iaemu_tng_joint.yaml"])
def test_other_mcmc_yamls_run_to_the_end(name, tmp_path):
    info = load(name, tmp_path)
    info["sampler"]["mcmc"].update(max_samples=300, Rminus1_stop=0.5, learn_proposal=False)
    _, sampler = run(info)
    chain = sampler.products()["sample"]
    assert len(chain) >= 50 and np.all(np.isfinite(chain["minuslogpost"]))


@pytest.mark.parametrize("method", ["scipy", "bobyqa"])
def test_minimizer_finds_the_best_fit(method, tmp_path):
    info = load("iaemu_tng_minimize.yaml", tmp_path)
    assert info["sampler"]["minimize"]["method"] == "scipy"          # the shipped choice
    info["sampler"]["minimize"]["method"] = method
    _, sampler = run(info)
    best = sampler.products()["minimum"]
    assert best["chi2"] <= SAMPLE1_BEST_FIT["chi2"]
    for name in ("mu_cen", "mu_sat"):
        assert abs(best[name] - SAMPLE1_BEST_FIT[name]) < 0.005, (name, best[name])


def test_nuts_yaml_runs_to_the_end_quietly(tmp_path):
    pytest.importorskip("pyro")
    info = load("iaemu_tng_nuts.yaml", tmp_path)
    info["sampler"]["iaemu_theory.samplers.NUTS"].update(warmup=30, samples=40, chains=2, seed=3)
    _, sampler = run(info)
    assert sampler.progress is False            # progress: auto, and the test's stderr is not a terminal
    summary = yaml_load_file(str(tmp_path / "chains" / "iaemu_tng_nuts.nuts_summary.yaml"))
    assert set(summary["params"]) >= {"mu_cen", "mu_sat"}
    for i in (1, 2):
        assert np.loadtxt(tmp_path / "chains" / f"iaemu_tng_nuts.{i}.txt").shape[0] == 40


# ---------------------------------------------------------------- Cobaya conventions

@pytest.mark.parametrize("path", YAMLS, ids=[p.stem for p in YAMLS])
def test_cobaya_bib_lists_every_component(path, caplog):
    info = yaml_load_file(str(path))
    with caplog.at_level(logging.ERROR):
        _, bibs = get_bib_info(info)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    found = {name: text for kind in bibs.values() for name, text in kind.items()}
    used = [c for kind, comps in get_used_components(info).items() if kind for c in comps]
    for component in used:
        assert component in found, component
        if component.startswith("iaemu_theory"):
            assert "no bibliography" not in found[component], component
    text = "".join(found.values())
    for key in ("Pandya2025IAEmu", "VanAlfen2024", "Zheng2007", "Hearin2017halotools"):
        assert key in text, key
    if any("TNG300" in c for c in used):
        assert "Nelson2019TNG" in text and "Pillepich2018TNG" in text


def test_cobaya_bib_command():
    exe = shutil.which("cobaya-bib")
    if exe is None:
        pytest.skip("cobaya-bib is not on PATH")
    proc = subprocess.run([exe, str(REPO / "yaml" / "iaemu_tng.yaml")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ERROR" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    assert "Nelson2019TNG" in proc.stdout and "Pandya2025IAEmu" in proc.stdout


def test_interrupted_fit_resumes(tmp_path, sigint_delivered):
    """Interrupted (SIGINT) once its chain is on disk, the sample-1 fit resumes with -r and runs to convergence.
    The convergence criterion is tightened (R-1 < 0.003) so that the interruption lands mid-run."""
    exe = shutil.which("cobaya-run")
    if exe is None:
        pytest.skip("cobaya-run is not on PATH")
    info = load("iaemu_tng.yaml", tmp_path)
    assert info["sampler"]["mcmc"]["output_every"] == "1s"           # the shipped setting under test
    info["sampler"]["mcmc"]["Rminus1_stop"] = 0.003
    prefix = tmp_path / "chains" / "tng"
    info["output"] = str(prefix)
    from cobaya.yaml import yaml_dump_file

    yaml_dump_file(str(tmp_path / "tng.yaml"), info, error_if_exists=False)
    chain = Path(f"{prefix}.1.txt")
    cmd = [exe, "--no-mpi", str(tmp_path / "tng.yaml")]
    env = {k: v for k, v in os.environ.items() if k != "IAEMU_ARTIFACT"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not (chain.exists() and chain.stat().st_size > 2000):
        time.sleep(0.2)
    assert proc.poll() is None, "the fit ended before it could be interrupted:\n" + proc.stdout.read()[-2000:]
    proc.send_signal(signal.SIGINT)
    first = proc.communicate(timeout=60)[0]
    assert "converged" not in first, first[-2000:]
    rows = len(np.loadtxt(chain, ndmin=2))
    assert rows > 0
    done = subprocess.run(cmd[:2] + ["-r"] + cmd[2:], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "Resuming" in log and "The run has converged" in log, log[-3000:]
    assert len(np.loadtxt(chain, ndmin=2)) > rows
