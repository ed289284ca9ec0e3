"""iaemu-validate on the toy catalog with a tiny grid and a tiny untrained artifact: the pipeline runs,
writes its report and figures, checkpoints every node and resumes; the surrogate and the grid posterior
are exact where they should be. And the speed benchmark's forward part on the same catalog."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("halotools")

from iaemu_theory.artifact import make_random_artifact  # noqa: E402
from iaemu_theory.alignment import mean_p2  # noqa: E402
from training.emulator.validation import (SHIFT_TARGET_SIGMA, AlignmentSurface, PolynomialSurface, main,  # noqa: E402
                                          mock_likelihood, node_grid, posterior_moments)

ROOT = Path(__file__).resolve().parent.parent


def test_surface_reproduces_a_polynomial_and_measures_noise():
    nodes = node_grid(5).reshape(-1, 2)
    truth = lambda x: np.stack([1 + 2 * x[..., 0] - x[..., 1] ** 2 + 0.5 * x[..., 0] * x[..., 1],  # noqa: E731
                                x[..., 0] ** 2], axis=-1)
    s = PolynomialSurface(nodes, truth(nodes), degree=2)
    pts = np.random.default_rng(1).uniform(-1, 1, (50, 2))
    assert np.allclose(s(pts), truth(pts), atol=1e-12)
    noise = np.full((25, 2), 0.01)
    y = truth(nodes) + np.random.default_rng(2).normal(0, 0.01, (25, 2))
    assert 0.4 < PolynomialSurface(nodes, y, degree=2, sigma=noise).reduced_chi2 < 2.0
    y[3, 1] = np.nan                     # an empty bin at one node is left out of that bin's fit only
    assert np.all(np.isfinite(PolynomialSurface(nodes, y, degree=2)(pts)))
    with pytest.raises(ValueError, match="coefficients"):
        PolynomialSurface(node_grid(3).reshape(-1, 2), np.zeros((9, 1)), degree=3)


def test_alignment_surface_recovers_the_alignment_form_and_not_more():
    nodes = node_grid(5).reshape(-1, 2)
    a, b = np.array([0.04, 0.01, 0.0]), np.array([0.3, 0.2, 0.001])
    truth = lambda x: np.outer(mean_p2(x[..., 0]), a) + np.outer(mean_p2(x[..., 1]), b)  # noqa: E731
    s = AlignmentSurface(nodes, truth(nodes))
    pts = np.random.default_rng(1).uniform(-1, 1, (50, 2))
    assert np.allclose(s(pts), truth(pts), atol=1e-14) and np.allclose(s.coef, [a, b])
    noise = np.full((25, 3), 0.002)
    y = truth(nodes) + np.random.default_rng(2).normal(0, 0.002, (25, 3))
    assert 0.6 < AlignmentSurface(nodes, y, sigma=noise).reduced_chi2 < 1.5
    y_off = y + 0.01                     # a constant is not of the alignment form: the fit says so
    assert AlignmentSurface(nodes, y_off, sigma=noise).reduced_chi2 > 5


def test_grid_posterior_moments_of_a_gaussian():
    x = np.linspace(-1, 1, 401)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    lp = -0.5 * ((xx - 0.2) / 0.1) ** 2 - 0.5 * ((yy + 0.3) / 0.05) ** 2
    m = posterior_moments(x, lp)
    assert m["mu_cen"]["mean"] == pytest.approx(0.2, abs=1e-6) and m["mu_cen"]["std"] == pytest.approx(0.1, rel=1e-3)
    assert m["mu_sat"]["mean"] == pytest.approx(-0.3, abs=1e-6) and m["mu_sat"]["std"] == pytest.approx(0.05, rel=1e-3)
    assert m["mu_cen"]["lo68"] == pytest.approx(0.1, abs=2e-3)


def test_mock_likelihood_is_the_tng300_likelihood():
    like = mock_likelihood(1)
    assert like.stats == ["omega"] and like.data_vector.size == 12
    omega = np.full(20, 0.01)
    expected = -0.5 * np.sum(((like.data_vector - 0.01) / np.sqrt(np.diag(like.cov_data))) ** 2)
    assert like.loglike_from_predictions({"omega": omega}) == pytest.approx(expected)


def test_validate_on_the_toy_catalog_writes_report_and_resumes(tmp_path, capsys):
    artifact = make_random_artifact(tmp_path / "tiny.pt", tiny=True)
    work, out = tmp_path / "work", tmp_path / "docs"
    argv = ["--sample", "3", "--catalog", "toy", "--artifact", str(artifact), "--grid", "3", "--realisations", "2",
            "--bootstrap", "5", "--fine", "21", "--mcmc-max-samples", "60", "--workers", "2", "--work", str(work),
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    report = json.loads((out / "validation_sample3.json").read_text())
    assert sorted(p.name for p in work.glob("node_*.npz")) == sorted(
        [f"node_{i:02d}_{j:02d}.npz" for i in range(3) for j in range(3)] + ["node_at_mean.npz"])
    for name in ("mu_cen", "mu_sat"):
        d = report["direct"]["posterior"][name]
        assert -1 <= d["mean"] <= 1 and d["std"] > 0
        assert report["comparison"][name]["in_direct_sigma"] >= 0
        assert np.isfinite(report["emulator"]["mcmc"][name]["mean"])
    t = report["timing"]
    assert t["mock_node_s"] > 0 and t["emulator_mcmc_s"] > 0 and t["speedup_vs_mcmc_estimate"] > 0
    for fig in report["figures"].values():
        assert (out / f"{fig}.png").stat().st_size > 1000 and (out / f"{fig}.pdf").is_file()
    assert report["verdict"]["target"] == SHIFT_TARGET_SIGMA and report["verdict"]["value"] == pytest.approx(
        max(report["comparison"][n]["in_direct_sigma"] for n in ("mu_cen", "mu_sat")))
    assert not (out / "validation_sample3.md").exists()        # pages are rendered by scripts/render_docs.py
    assert report["direct"]["surrogate"] == "alignment" and report["direct"]["surrogate_reduced_chi2"] > 0
    assert report["direct"]["bootstrap_scatter_of_means"]["mu_cen"] > 0
    assert len(report["emulator_minus_direct_omega_at_direct_mean_in_data_err"]) == 12
    capsys.readouterr()

    before = {p.name: p.read_bytes() for p in work.glob("node_*.npz")}
    assert main(argv) == 0
    assert "resuming: 9 of 9" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in work.glob("node_*.npz")} == before
    again = json.loads((out / "validation_sample3.json").read_text())
    assert again["direct"]["posterior"] == report["direct"]["posterior"]

    legendre = argv + ["--surrogate", "legendre", "--degree", "1", "--bootstrap", "0"]
    assert main(legendre) == 0                          # the same nodes, another surrogate
    other = json.loads((out / "validation_sample3.json").read_text())
    assert other["direct"]["surrogate"] == "legendre" and other["direct"]["degree"] == 1
    assert other["direct"]["posterior"] != report["direct"]["posterior"]
    capsys.readouterr()
    assert main(argv + ["--degree", "1"]) == 2
    assert "iaemu-validate: error: --degree 1: applies to --surrogate legendre only" in capsys.readouterr().err

    assert main([*argv[:argv.index("--realisations") + 1], "3", *argv[argv.index("--realisations") + 2:]]) == 2
    assert "other settings" in capsys.readouterr().err


def test_benchmark_runs_on_the_toy_catalog(tmp_path):
    """benchmarks/bench_speedup.py (forward part) on the toy catalog with a tiny artifact writes its numbers."""
    artifact = make_random_artifact(tmp_path / "tiny.pt", tiny=True)
    out = tmp_path / "benchmark.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_speedup.py"), "--catalog", "toy",
                          "--artifact", str(artifact), "--mock-points", "1", "--realisations", "2", "--batch-sizes",
                          "1,10", "--no-inverse", "--no-gpu", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    res = json.loads(out.read_text())
    assert set(res["emulator_cpu"]) == {"1", "10"}
    assert res["mocks"]["per_point_fused_s"] > 0 and res["mocks"]["per_point_halotools_s"] > 0
    assert res["mocks"]["max_rel_difference_fused_vs_halotools"] < 1e-6     # same galaxies, same statistics
    assert res["untrained"] and "render_docs.py" in run.stdout
