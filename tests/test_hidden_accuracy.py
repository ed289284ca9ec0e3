"""The hidden-set accuracy tool (`training.emulator.accuracy`): the noise-floor removal on synthetic numbers, and the
command on the toy catalog with a tiny random artifact (runs, resumes after an interruption to the same JSON)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iaemu_theory.conventions import N_BINS, STATISTICS
from training.emulator import accuracy
from training.emulator.accuracy import MAE_NOISE_FACTOR, hidden_measures, remove_noise_floor, truth_with_floor

ROOT = Path(__file__).resolve().parent.parent


def test_the_constant_is_the_mean_absolute_value_of_a_normal():
    z = np.random.default_rng(0).standard_normal(2_000_000)
    assert MAE_NOISE_FACTOR == pytest.approx(np.abs(z).mean(), rel=2e-3)
    assert remove_noise_floor(0.05, 0.03) == pytest.approx(np.sqrt(0.05**2 - (MAE_NOISE_FACTOR * 0.03) ** 2))
    assert remove_noise_floor(0.01, 0.03) == 0.0
    with pytest.raises(ValueError, match="must be >= 0"):
        remove_noise_floor(0.01, -0.03)


def _synthetic(n_points=400, realisations=16, n_boxes=1, emulator_error=0.02, shape_noise=0.08, box_noise=0.0,
               seed=1):
    """Truth T per point and bin; realisations T (1 + box offset + shape noise); an emulator T (1 + d),
    d ~ N(0, emulator_error^2), whose aleatoric sigma is the true single-realisation scatter."""
    rng = np.random.default_rng(seed)
    base = np.exp(rng.normal(0.0, 1.0, (n_points, 1, len(STATISTICS), N_BINS)))
    per = realisations // n_boxes
    box = np.repeat(rng.normal(0.0, box_noise, (n_points, n_boxes, 1, len(STATISTICS), N_BINS)), per, axis=2)
    box = box.reshape(n_points, realisations, len(STATISTICS), N_BINS)
    stats = base * (1.0 + box + rng.normal(0.0, shape_noise, (n_points, realisations, len(STATISTICS), N_BINS)))
    d = rng.normal(0.0, emulator_error, (n_points, len(STATISTICS), N_BINS))
    pred = {}
    for k, s in enumerate(STATISTICS):
        pred[s] = base[:, 0, k] * (1.0 + d[:, k])
        pred[f"{s}_aleatoric_var"] = (base[:, 0, k] ** 2) * (shape_noise**2 + box_noise**2)
    return pred, stats, base[:, 0]


def test_noise_floor_removal_recovers_the_emulators_own_error():
    """A 2% Gaussian emulator error measured against a truth of 2% noise: the measured error is ~2.3%, the floor
    ~2%, and the removal gives back E|d| = 0.798 x 2%."""
    pred, stats, base = _synthetic()
    rec = hidden_measures(pred, stats, resamples=20)
    sm = rec["summary"]["xi"]
    assert sm["noise_floor"] == pytest.approx(0.08 / 4, rel=0.03)
    assert sm["mean_fractional_error"] > 1.3 * MAE_NOISE_FACTOR * 0.02       # the noise inflates it
    assert sm["own_mean_fractional_error"] == pytest.approx(MAE_NOISE_FACTOR * 0.02, rel=0.04)
    assert sm["own_rms_fractional_error"] == pytest.approx(0.02, rel=0.04)
    assert 0.6 < sm["c_from_halves"] < 1.0
    # the omega median: a 2% error against a truth with 2% noise (48 realisations, so that the floor's per-bin
    # standard errors scatter by ~10% only; 2000 points, so that the median is sharp); median |N(0, 1)| = 0.674
    om = hidden_measures(*_synthetic(n_points=2000, realisations=48, shape_noise=0.08 * np.sqrt(3))[:2],
                         resamples=20)["summary"]["omega"]
    assert om["median_fractional_error_snr3_noise_floor"] == pytest.approx(0.674 * 0.02, rel=0.05)
    assert om["median_fractional_error_snr3"] > 1.3 * 0.674 * 0.02
    assert om["own_median_fractional_error_snr3"] == pytest.approx(0.674 * 0.02, rel=0.06)
    assert om["own_median_fractional_error_snr3_from_halves"] == pytest.approx(0.674 * 0.02, rel=0.1)
    lo, hi = om["own_median_fractional_error_snr3_bootstrap_68"]
    assert lo < om["own_median_fractional_error_snr3"] < hi
    # the aleatoric sigma is the true scatter: calibrated, and its 68% interval covers 68% of single realisations
    for s in ("omega", "eta"):
        assert abs(rec["summary"][s]["calibration_dex_median"]) < 0.02     # (s of 16 draws is ~1% low)
    exact = dict(pred, **{s: base[:, k] for k, s in enumerate(STATISTICS)})
    cover = hidden_measures(exact, stats, resamples=20)["summary"]
    for s in STATISTICS:
        assert cover[s]["coverage_68"] == pytest.approx(0.683, abs=0.01), s


def test_the_epistemic_error_bar_is_checked_against_the_emulators_own_error():
    """An emulator whose 2% error is described by its epistemic sigma: coverage 0.683 and scale 1 against a noisy
    truth; an epistemic sigma half the error: scale 2; residuals the truth's noise alone: a scale near 0."""
    pred, stats, base = _synthetic(n_points=1000)
    for k, s in enumerate(STATISTICS):
        pred[f"{s}_epistemic_var"] = (0.02 * base[:, k]) ** 2
    sm = hidden_measures(pred, stats, resamples=5)["summary"]
    for s in STATISTICS:
        assert sm[s]["epistemic_coverage_68"] == pytest.approx(0.683, abs=0.015), s
        assert sm[s]["epistemic_scale"] == pytest.approx(1.0, rel=0.05), s
    half = dict(pred, **{f"{s}_epistemic_var": pred[f"{s}_epistemic_var"] / 4 for s in STATISTICS})
    sm = hidden_measures(half, stats, resamples=5)["summary"]
    assert sm["omega"]["epistemic_scale"] == pytest.approx(2.0, rel=0.06)
    assert sm["omega"]["epistemic_coverage_68"] < 0.6
    exact = dict(pred, **{s: base[:, k] for k, s in enumerate(STATISTICS)})
    # (the truth's s.e. from 16 realisations is itself noisy, so a small k remains)
    assert hidden_measures(exact, stats, resamples=5)["summary"]["xi"]["epistemic_scale"] < 0.35
    assert "epistemic_scale" not in hidden_measures(_synthetic()[0], stats[:400], resamples=5)["summary"]["xi"]


def test_the_floor_of_several_boxes_includes_their_sample_variance():
    """se of a mean over 4 boxes x 10 realisations: sqrt(tau^2 / 4 + sigma^2 / 40) per bin, on average."""
    _, stats, base = _synthetic(n_points=300, realisations=40, n_boxes=4, box_noise=0.05)
    t = truth_with_floor(stats, n_boxes=4)
    expect = np.sqrt(0.05**2 / 4 + 0.08**2 / 40)
    assert np.mean(t["se"] / base) == pytest.approx(expect, rel=0.03)
    assert np.mean(t["se_within"] / base) == pytest.approx(0.08 / np.sqrt(40), rel=0.02)
    with pytest.raises(ValueError, match="spread evenly over 3 boxes"):
        truth_with_floor(stats, n_boxes=3)


def test_on_the_emulators_own_boxes_the_floor_is_the_shape_noise():
    """floor='within': against an emulator that knows the boxes' means exactly, the truth is off by its shape noise
    only, so that floor, not the boxes' one, is what the truth adds to the measured error."""
    rng = np.random.default_rng(3)
    n_points, n_boxes, per = 300, 4, 10
    shape = (n_points, n_boxes, 1, len(STATISTICS), N_BINS)
    box_means = 1.0 + rng.normal(0.0, 0.05, shape)
    stats = (box_means + rng.normal(0.0, 0.08, (n_points, n_boxes, per, len(STATISTICS), N_BINS)))
    stats = stats.reshape(n_points, n_boxes * per, len(STATISTICS), N_BINS)
    knows_boxes = box_means[:, :, 0].mean(axis=1)
    within = truth_with_floor(stats, n_boxes=n_boxes, floor="within")
    boxes = truth_with_floor(stats, n_boxes=n_boxes)
    np.testing.assert_allclose(within["se"], within["se_within"])
    err = np.mean(np.abs(knows_boxes - within["mean"]))
    assert err / np.mean(within["se"]) == pytest.approx(MAE_NOISE_FACTOR, rel=0.05)
    assert err / np.mean(boxes["se"]) < 0.7 * MAE_NOISE_FACTOR
    with pytest.raises(ValueError, match="floor 'none'"):
        truth_with_floor(stats, n_boxes=n_boxes, floor="none")


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    """An untrained tiny artifact whose domain gives the toy catalog enough galaxies."""
    from iaemu_theory.artifact import make_random_artifact
    from iaemu_theory.domain import Domain

    return make_random_artifact(tmp_path_factory.mktemp("artifact") / "tiny.pt", tiny=True,
                                domain=Domain(logMmin_range=(11.5, 12.0)))


def _args(artifact, out, *extra):
    return ["--artifact", str(artifact), "--catalogs", "toy", "--points", "3", "--realisations", "4", "--seed", "5",
            "--rules", "nan", "--mc-passes", "2", "--out", str(out), *extra]


def test_the_command_runs_and_resumes_to_the_same_json(tiny_artifact, tmp_path, monkeypatch, torch_one_thread):
    out = tmp_path / "hidden_accuracy.json"
    assert accuracy.main(_args(tiny_artifact, out)) == 0
    whole = out.read_bytes()
    rec = json.loads(whole)
    assert rec["n_points"] == 3 and rec["n_realisations"] == 4 and rec["n_boxes"] == 1
    assert rec["candidates"] == 3 + rec["rejected"] and len(rec["points"]) == 3
    assert set(rec["targets"]) >= {"xi_own_mean_fractional_error", "omega_own_median_fractional_error",
                                   "eta_coverage_68", "xi_calibration_dex"}
    assert not accuracy.parts_dir(out).exists()
    out.unlink()

    real = accuracy.measure_candidate
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(accuracy, "measure_candidate", interrupted)
    assert accuracy.main(_args(tiny_artifact, out)) != 0
    assert not out.exists() and len(list(accuracy.parts_dir(out).glob("candidate_*.npz"))) == 2
    calls.clear()
    monkeypatch.setattr(accuracy, "measure_candidate", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    assert accuracy.main(_args(tiny_artifact, out)) == 0
    assert out.read_bytes() == whole
    assert len(calls) == rec["candidates"] - 2          # the two saved candidates were not measured again


    pages = tmp_path / "pages"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_docs.py"), "--results", str(tmp_path),
                          "--out", str(pages)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    text = (pages / "hidden_accuracy.md").read_text()
    assert rec["command"] in text and f"{100 * rec['summary']['xi']['noise_floor']:.2f}%" in text


def test_settings_changed_under_saved_candidates_are_refused(tiny_artifact, tmp_path, capsys, torch_one_thread):
    out = tmp_path / "hidden.json"
    assert accuracy.main(_args(tiny_artifact, out, "--keep-parts")) == 0
    assert accuracy.parts_dir(out).is_dir()
    args = _args(tiny_artifact, out)
    args[args.index("--seed") + 1] = "6"
    assert accuracy.main(args) == 2
    assert "other settings (seed" in capsys.readouterr().err


def test_realisations_spread_over_two_catalogs(tiny_artifact, tmp_path, toy_catalog_file, capsys, torch_one_thread):
    out = tmp_path / "two.json"
    args = _args(tiny_artifact, out)
    args[args.index("--catalogs") + 1: args.index("--catalogs") + 2] = ["toy", str(toy_catalog_file)]
    assert accuracy.main(args) == 0
    rec = json.loads(out.read_text())
    assert rec["n_boxes"] == 2 and len(rec["catalogs"]) == 2
    assert rec["floor"] == "boxes" and not rec["catalogs_are_training_set"]      # not this artifact's catalogs
    args[args.index("--realisations") + 1] = "5"
    assert accuracy.main(args) == 2
    assert "--realisations 5 must be a multiple of the 2 catalogs" in capsys.readouterr().err


def test_on_its_own_training_set_the_floor_is_the_shape_noise(tmp_path, toy_catalog_file, torch_one_thread):
    """--floor auto: an artifact trained on the set "toy+FILE" is measured against the shape-noise floor there."""
    from iaemu_theory.artifact import load_artifact, make_random_artifact, save_artifact
    from iaemu_theory.domain import Domain
    from training.catalogs.sources import load_catalog, set_hash

    path = make_random_artifact(tmp_path / "own.pt", tiny=True, domain=Domain(logMmin_range=(11.5, 12.0)))
    art = load_artifact(path)
    art.training = {"catalog_hash": set_hash([load_catalog("toy").catalog_hash,
                                              load_catalog(str(toy_catalog_file)).catalog_hash])}
    save_artifact(path, art)
    out = tmp_path / "own.json"
    args = _args(path, out)
    args[args.index("--catalogs") + 1: args.index("--catalogs") + 2] = ["toy", str(toy_catalog_file)]
    assert accuracy.main(args) == 0
    rec = json.loads(out.read_text())
    assert rec["catalogs_are_training_set"] and rec["floor"] == "within"
    assert accuracy.main([*args[:-1], str(tmp_path / "forced.json"), "--floor", "boxes"]) == 0
    forced = json.loads((tmp_path / "forced.json").read_text())
    assert forced["floor"] == "boxes"
    assert rec["summary"]["xi"]["noise_floor"] == pytest.approx(rec["summary"]["xi"]["noise_floor_within_box"])
    assert forced["summary"]["xi"]["noise_floor"] != pytest.approx(forced["summary"]["xi"]["noise_floor_within_box"])


def test_pooled_within_box_floor_with_unequal_boxes():
    """Realisations labelled 4, 3, 3 over three boxes with their own offsets: the pooled within-box se is the shape
    noise / sqrt(R), blind to the offsets that the plain scatter counts."""
    from training.emulator.accuracy import pooled_within_se
    from training.mocks.model import box_of_realisation

    rng = np.random.default_rng(5)
    n_points, r = 400, 10
    boxes = np.array([[box_of_realisation(s, k, 3) for k in range(r)] for s in range(n_points)])
    offsets = rng.normal(0.0, 0.3, (n_points, 3, len(STATISTICS), N_BINS))
    stats = np.take_along_axis(offsets, boxes[:, :, None, None].repeat(len(STATISTICS), 2).repeat(N_BINS, 3), axis=1)
    stats = stats + rng.normal(0.0, 0.1, stats.shape)
    se = pooled_within_se(stats, boxes)
    assert np.mean(se**2) == pytest.approx(0.1**2 / r, rel=0.03)      # the pooled variance is unbiased
    t = truth_with_floor(stats, floor="within", boxes=boxes)
    np.testing.assert_allclose(t["se"], se)
    assert np.mean(truth_with_floor(stats, boxes=boxes)["se"]) > 2 * np.mean(se)
    with pytest.raises(ValueError, match="box labels of shape"):
        pooled_within_se(stats, boxes[:, :5])


def test_the_shipped_datasets_realisations_are_labelled_by_box():
    """dataset_boxes recovers the generator's box of every realisation from the design point's seed."""
    from training.common.datafiles import DATA_DIR, SHIPPED_DATASET
    from training.dataset.generate import point_seed
    from training.dataset.schema import read_dataset
    from training.emulator.accuracy import dataset_boxes
    from training.mocks.model import realisation_seed

    path = DATA_DIR / SHIPPED_DATASET
    if not path.exists():
        pytest.skip("not a source checkout: training/data is absent")
    ds = read_dataset(path)
    rows = [0, 7, 4321]
    boxes = dataset_boxes(ds, rows)
    assert boxes.shape == (3, ds.stats.shape[1]) and set(np.unique(boxes)) == {0, 1, 2}
    for i, row in zip(rows, boxes):
        seed = point_seed(int(ds.attrs["master_seed"]), i)
        assert [realisation_seed(seed, k) for k in range(3)] == ds.seeds[i, :3].tolist()
        assert sorted(np.bincount(row, minlength=3).tolist()) == [3, 3, 4]


def test_the_lognormal_mean_mends_a_median_against_arithmetic_truths():
    """Log-normal realisations (sigma 0.4 in ln xi, 400 per point) and an exact median exp(mu): 8% below their
    arithmetic mean, which the log-normal mean exp(mu + s^2 / 2) recovers."""
    rng = np.random.default_rng(5)
    n, r, sig = 200, 400, 0.4
    mu = rng.normal(0.0, 1.0, (n, 1, len(STATISTICS), N_BINS))
    stats = np.exp(mu + rng.normal(0.0, sig, (n, r, len(STATISTICS), N_BINS)))
    pred = {}
    for k, s in enumerate(STATISTICS):
        pred[s] = np.exp(mu[:, 0, k])
        pred[f"{s}_aleatoric_var"] = pred[s] ** 2 * sig**2
    sm = hidden_measures(pred, stats, resamples=5)["summary"]["xi"]
    assert sm["own_mean_fractional_error"] == pytest.approx(np.expm1(sig**2 / 2) / np.exp(sig**2 / 2), rel=0.15)
    assert sm["own_mean_fractional_error_lognormal_mean"] < 0.3 * sm["own_mean_fractional_error"]
