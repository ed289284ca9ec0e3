"""Training and evaluation on small synthetic datasets in the real schema (the real dataset is built elsewhere)."""
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from iaemu_theory import Emulator
from iaemu_theory.artifact import ArtifactError, load_artifact
from iaemu_theory.conventions import BIN_CENTRES, PARAM_NAMES, STATISTICS
from iaemu_theory.domain import Domain
from training.emulator import train as T
from training.dataset.schema import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VALIDATION, STATUS_DONE, Dataset, write_dataset


def toy_truth(params: np.ndarray) -> np.ndarray:
    """A smooth toy function of the 7 parameters: (n, 3, 20) xi > 0, omega, eta."""
    p = dict(zip(PARAM_NAMES, params.T))
    r = BIN_CENTRES[None, :]
    x = (p["logMmin"] - 12.5)[:, None]
    amp = np.exp(1.0 + 0.8 * x + 0.3 * (p["logM1"] - 13.5)[:, None] - 0.5 * (p["alpha"] - 1.0)[:, None])
    xi = amp * r ** (-1.6 - 0.2 * p["sigma_logM"][:, None])
    omega = (0.12 * p["mu_cen"][:, None] * r ** -0.3 + 0.05 * p["mu_sat"][:, None] * np.exp(-r)) * (1 + 0.2 * x)
    eta = 0.04 * p["mu_cen"][:, None] ** 2 * r ** -0.4 + 0.02 * p["mu_sat"][:, None] ** 2 * np.exp(-r / 2)
    return np.stack([xi, omega, eta], axis=1)


def make_toy_dataset(path, n_points=240, n_real=10, seed=0, bad_points=0):
    """Toy function + Gaussian realisation noise, split 70/10/20; `bad_points` get a negative xi bin."""
    rng = np.random.default_rng(seed)
    domain = Domain()
    params = domain.from_unit(rng.random((n_points, 7)))
    truth = toy_truth(params)
    sigma = np.stack([0.05 * truth[:, 0], np.full_like(truth[:, 1], 0.01) * (1 + BIN_CENTRES ** -0.5),
                      np.full_like(truth[:, 2], 0.004)], axis=1)
    stats = truth[:, None] + sigma[:, None] * rng.standard_normal((n_points, n_real, 3, 20))
    stats[:bad_points, 0, 0, -1] = -1.0
    split = np.full(n_points, SPLIT_TRAIN, np.int8)
    split[int(0.7 * n_points):int(0.8 * n_points)] = SPLIT_VALIDATION
    split[int(0.8 * n_points):] = SPLIT_TEST
    ds = Dataset(params, stats, np.full((n_points, n_real), 1000), np.arange(n_points * n_real, dtype=np.uint64)
                 .reshape(n_points, n_real), np.full(n_points, STATUS_DONE, np.int8), split=split,
                 attrs={"domain": domain.to_dict(), "catalog_hash": "toy"})
    write_dataset(path, ds)
    return path


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "toy.h5", bad_points=3)


def fast_config(**kw):
    d = dict(epochs=6, batch_size=32, lr=3e-3, warmup_epochs=3, val_every=2, patience=100, network="tiny")
    d.update(kw)
    return T.TrainConfig(**d)


# ---------------------------------------------------------------------------------------------- losses
def test_sufficient_statistics_loss_equals_per_realisation_nll():
    """Same value up to the ln(2 pi) constant and the same gradients, with and without beta weighting."""
    rng = np.random.default_rng(1)
    n, R, bins = 5, 10, 20
    y = torch.tensor(rng.normal(size=(n, R, bins)), dtype=torch.float64)
    mu = torch.tensor(rng.normal(size=(n, bins)), dtype=torch.float64, requires_grad=True)
    var = torch.tensor(rng.uniform(0.3, 2.0, size=(n, bins)), dtype=torch.float64, requires_grad=True)
    ybar = y.mean(dim=1)
    s2 = ((y - ybar[:, None]) ** 2).mean(dim=1)
    nr = torch.full((n,), float(R), dtype=torch.float64)
    for beta in (0.0, 0.5, 1.0):
        per_row = torch.nn.functional.gaussian_nll_loss(mu[:, None].expand(n, R, bins), y,
                                                        var[:, None].expand(n, R, bins), full=True, reduction="none")
        per_row = (per_row * var.detach()[:, None] ** beta).sum()
        suff = (T.sufficient_nll(mu, var, ybar, s2, nr) * var.detach() ** beta).sum()
        const = 0.5 * math.log(2 * math.pi) * (var.detach() ** beta).sum() * R
        torch.testing.assert_close(per_row, suff + const, rtol=1e-12, atol=1e-10)
        g_row = torch.autograd.grad(per_row, (mu, var))
        g_suff = torch.autograd.grad(suff, (mu, var))
        for a, b in zip(g_row, g_suff):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # beta_nll is the per-realisation-row mean of the same thing
    mean_rows = T.beta_nll(mu, var, ybar, s2, nr, 0.5)
    torch.testing.assert_close(mean_rows, (T.sufficient_nll(mu, var, ybar, s2, nr) * var.detach() ** 0.5).sum() / (n * R * bins))


def test_targets_and_scalers(toy):
    ds, rows, report = T.load_splits(toy, log=lambda *a: None)
    assert report["non_positive_xi"] == 3 and report["dropped_train"] == 3
    tg = T.targets(ds, rows["train"])
    lnxi = np.log(ds.stats[rows["train"], :, 0, :])
    np.testing.assert_allclose(tg.ybar[:, 0], lnxi.mean(axis=1))
    np.testing.assert_allclose(tg.s2[:, 0], lnxi.var(axis=1))
    sc = T.Scalers.fit(ds, rows["train"])
    x, ybar, s2 = sc.standardise(tg)
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(x.std(axis=0), 1, rtol=1e-12)
    for k in range(3):     # one mean and one scale per statistic over all realisations and bins
        t = T.transform(ds.stats[rows["train"]])[:, :, k]
        np.testing.assert_allclose(((t - sc.output_mean[k]) / sc.output_scale[k]).std(), 1, rtol=1e-12)


def test_dataset_without_split_is_refused(tmp_path):
    path = make_toy_dataset(tmp_path / "nosplit.h5", n_points=20)
    from training.dataset.schema import read_dataset
    ds = read_dataset(path)
    ds.split = None
    write_dataset(path, ds)
    with pytest.raises(ValueError, match="no train/validation/test split"):
        T.load_splits(path)


# ---------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "emu.pt"
    summary = T.train(toy, out, fast_config(epochs=30, val_every=5, lr=1e-2), device="cpu", progress=False,
                      log=lambda *a: None)
    return out, summary


def test_tiny_training_lowers_loss_and_writes_artifact(toy, trained):
    out, summary = trained
    tmp_path = out.parent
    h = summary["history"]
    assert h["train"][-1] < h["train"][0] - 0.5
    assert min(h["val_combined"]) < h["val_combined"][0] - 0.5
    assert summary["complete"] and summary["stop_reason"] == "max_epochs"
    assert summary["data"]["non_positive_xi"] == 3
    assert (tmp_path / "emu_loss.png").stat().st_size > 1000
    art = load_artifact(out)
    assert art.training["best_epoch"] == h["best_epoch"]
    assert art.training["history"] == json.loads(json.dumps(h))       # the loss curves travel with the artifact
    assert art.dataset_hash == T.dataset_sha256(toy)
    assert art.metrics["validation_before_batchnorm_recalibration"]["combined"] == pytest.approx(min(h["val_combined"]))
    assert art.training["batchnorm_recalibrated"]
    emu = Emulator.load(out, device="cpu")
    pred = emu.predict(emu.domain.from_unit(np.random.default_rng(3).random((4, 7))), mc_passes=5, seed=0)
    assert all(np.all(np.isfinite(v)) for v in pred.values())
    # it learned something: on validation points its error is well below that of a constant
    # (the statistic's mean), which is 1 in standardised units
    ds, rows, _ = T.load_splits(toy, log=lambda *a: None)
    val = T.targets(ds, rows["validation"])
    pred = emu.predict(val.params)
    for k, s in enumerate(STATISTICS):
        model = np.log(pred[s]) if s == "xi" else pred[s]
        standardised_mse = np.mean((model - val.ybar[:, k]) ** 2) / art.output_scale[k] ** 2
        assert standardised_mse < (0.6 if s == "eta" else 0.3), s       # the toy eta is the noisiest


def test_resume_is_bit_for_bit(toy, tmp_path):
    straight = tmp_path / "straight.pt"
    T.train(toy, straight, fast_config(), device="cpu", progress=False, log=lambda *a: None)
    split = tmp_path / "split.pt"
    T.train(toy, split, fast_config(epochs=2), device="cpu", progress=False, log=lambda *a: None)
    s2 = T.train(toy, split, fast_config(), device="cpu", resume=True, progress=False, log=lambda *a: None)
    assert s2["epochs_run"] == 6
    a, b = load_artifact(straight), load_artifact(split)
    for k in a.state_dict:
        torch.testing.assert_close(a.state_dict[k], b.state_dict[k], rtol=0, atol=0)
    with pytest.raises(ValueError, match="same settings"):
        T.train(toy, split, fast_config(lr=1e-2), device="cpu", resume=True, progress=False, log=lambda *a: None)


def test_bad_checkpoint_is_a_clear_error(toy, tmp_path, capsys):
    """A truncated, empty, random or incomplete checkpoint stops --resume with `error:` naming the file and what to
    do, not a traceback."""
    out = tmp_path / "emu.pt"
    T.train(toy, out, fast_config(epochs=2), device="cpu", progress=False, log=lambda *a: None)
    ckpt = out.with_name(out.name + ".ckpt")
    good = ckpt.read_bytes()
    incomplete = {k: v for k, v in torch.load(ckpt, weights_only=True).items() if k != "optimizer"}
    cases = {"truncated": good[: len(good) // 2], "empty": b"", "random": bytes(range(256)) * 8}
    for name, content in cases.items():
        ckpt.write_bytes(content)
        code = T.main(["--data", str(toy), "--out", str(out), "--network", "tiny", "--epochs", "4", "--resume",
                       "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and "error:" in err and str(ckpt) in err and "drop --resume" in err, (name, err)
        assert "Traceback" not in err
    torch.save(incomplete, ckpt)
    with pytest.raises(ValueError, match="lacks \\['optimizer'\\]"):
        T.train(toy, out, fast_config(epochs=4), device="cpu", resume=True, progress=False, log=lambda *a: None)


def test_time_limit_stops_cleanly_then_resumes(toy, tmp_path):
    out = tmp_path / "limited.pt"
    code = T.main(["--data", str(toy), "--out", str(out), "--network", "tiny", "--epochs", "4", "--batch-size", "32",
                   "--val-every", "2", "--max-minutes", "0.0001", "--no-progress",
                   "--summary", str(tmp_path / "s.json")])
    assert code == T.EXIT_TIME_LIMIT
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["stop_reason"] == "time_limit" and s["epochs_run"] == 1 and not s["complete"]
    assert load_artifact(out).training["complete"] is False          # a usable artifact even so
    code = T.main(["--data", str(toy), "--out", str(out), "--network", "tiny", "--epochs", "4", "--batch-size", "32",
                   "--val-every", "2", "--resume", "--no-progress", "--summary", str(tmp_path / "s.json")])
    assert code == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["epochs_run"] == 4 and s["complete"]


def test_batchnorm_recalibration_gives_exact_training_set_statistics():
    """One pass in a single batch: each BatchNorm's running mean/var become the exact mean and (unbiased)
    variance of its input over the data, whatever the noisy moving averages were before."""
    from dataclasses import replace
    from iaemu_theory.network import IAEmuNetwork, NetworkConfig

    torch.manual_seed(0)
    net = IAEmuNetwork(replace(NetworkConfig.named("tiny"), dropout=0.0))
    x = torch.randn(50, 7)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 7) * 3 + 1)                  # moving averages of other data
    T.recalibrate_batchnorm(net, x, batch_size=64, passes=1)
    assert not net.training
    block = net.embedding.layer1                            # Linear -> LeakyReLU -> BatchNorm -> Dropout
    with torch.no_grad():
        act = block[1](block[0](x))
    torch.testing.assert_close(block[2].running_mean, act.mean(0))
    torch.testing.assert_close(block[2].running_var, act.var(0, unbiased=True))
    assert block[2].momentum == 0.1                         # the layer's own setting is restored


def _xi_calibration_dex(path, toy_path) -> float:
    """Median log10(predicted xi sigma / RMS of the realisations about the prediction) over the toy test split: the
    predictive calibration the NLL aims at (a poor mean widens both)."""
    from training.dataset.schema import read_dataset

    ds = read_dataset(toy_path)
    test = ds.split == SPLIT_TEST
    pred = Emulator.load(path, device="cpu").predict(ds.params[test], outside="ignore")
    rms = np.sqrt(np.mean((ds.stats[test][:, :, 0] - pred["xi"][:, None]) ** 2, axis=1))
    return float(np.median(np.log10(np.sqrt(pred["xi_aleatoric_var"]) / rms)))


def test_variance_refit_mends_a_wrong_variance_and_keeps_the_means(toy, trained, tmp_path):
    """An artifact whose xi variance is made e^2 too large is refitted back within 0.15 dex on the test split (the
    toy network's poor mean generalises worse than it fits, so the refit lands near +0.1 dex there); only
    the variance rows change, the means agree to rounding and the record says what was done. Another dataset is
    refused."""
    from dataclasses import replace

    from iaemu_theory.artifact import save_artifact

    art = load_artifact(trained[0])
    state = {k: v.clone() for k, v in art.state_dict.items()}
    state["decoders.xi.out.bias"][1:] += 2.0
    spoiled = save_artifact(tmp_path / "spoiled.pt", replace(art, members=[state], weights_sha256=None, path=None))
    out = tmp_path / "refit.pt"
    report = T.refit_artifact_variances(spoiled, toy, out, 60, log=lambda *a: None)
    assert report["xi"]["validation_nll_after"] < report["xi"]["validation_nll_before"]
    assert _xi_calibration_dex(spoiled, toy) > 0.3
    assert abs(_xi_calibration_dex(out, toy)) < 0.15
    refit = load_artifact(out).state_dict
    for name, tensor in state.items():   # only the variance rows of the output layers move
        if name.endswith(("out.weight", "out.bias")):
            tensor, name_rows = tensor[:1], refit[name][:1]
        else:
            name_rows = refit[name]
        assert torch.equal(tensor, name_rows)
    x = Domain().from_unit(np.random.default_rng(1).random((16, 7)))
    a = Emulator.load(spoiled, device="cpu", dtype="float64").predict(x)
    b = Emulator.load(out, device="cpu", dtype="float64").predict(x)
    assert all(np.allclose(a[s], b[s], rtol=1e-12, atol=0) for s in STATISTICS)
    rec = load_artifact(out).training
    assert rec["config"]["variance_refit_steps"] == 60 and set(rec["variance_refit"]) == set(STATISTICS)
    other = make_toy_dataset(tmp_path / "other.h5", seed=5)
    with pytest.raises(ValueError, match="refit it on its own dataset"):
        T.refit_artifact_variances(spoiled, other, tmp_path / "x.pt", 10)


def test_cosine_schedule_ends_at_lr_min_and_bad_schedule_is_named():
    cfg = T.TrainConfig(epochs=10, lr=1e-3, lr_schedule="cosine", lr_min=1e-5)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = cfg.scheduler(opt)
    lrs = []
    for _ in range(cfg.epochs):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs[-1] == pytest.approx(1e-5) and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert "epochs" in cfg.identity()                      # the cosine length is part of the run's identity
    with pytest.raises(ValueError, match="'linear'"):
        T.TrainConfig(lr_schedule="linear").scheduler(opt)


def test_init_from_fine_tunes_a_trained_artifact_and_continues_on_other_data(toy, trained, tmp_path):
    base, _ = trained
    out = tmp_path / "tuned.pt"
    # a different dropout rate is allowed (same weights), as the shipped artifact's last stage does
    s = T.train(toy, out, fast_config(epochs=10, val_every=5, lr=1e-3, lr_schedule="cosine", warmup_epochs=0,
                                      dropout=0.01),
                device="cpu", progress=False, log=lambda *a: None, init_from=base)
    assert s["initialised_from"]["weights_sha256"] == load_artifact(base).weights_sha256
    assert s["initialised_from"]["training"]["epochs_run"] == 30
    assert load_artifact(out).config.dropout == 0.01
    # it starts where the trained artifact ended, far below a fresh network's first validation
    assert s["history"]["val_combined"][0] < load_artifact(base).metrics["validation"]["combined"] + 0.3
    # on another dataset (an extended design) it keeps the artifact's standardisation, and says so
    other = make_toy_dataset(tmp_path / "other.h5", n_points=60, seed=1)
    ds, rows, _ = T.load_splits(other, log=lambda *a: None)
    own = T.Scalers.fit(ds, rows["train"])
    assert not np.allclose(own.output_mean, load_artifact(base).output_mean)
    said = []
    s = T.train(other, tmp_path / "x.pt", fast_config(epochs=2, warmup_epochs=0), device="cpu", progress=False,
                log=said.append, init_from=base)
    assert any("another dataset" in line and "keeping its standardisation" in line for line in said)
    assert s["initialised_from"]["dataset_sha256"] == load_artifact(base).dataset_hash
    tuned, first = load_artifact(tmp_path / "x.pt"), load_artifact(base)
    for key in ("input_mean", "input_std", "output_mean", "output_scale"):
        np.testing.assert_array_equal(getattr(tuned, key), getattr(first, key))


def test_distillation_targets_are_the_teachers_average_and_the_student_learns_it(toy, tmp_path):
    from training.common.datafiles import file_sha256

    quiet = lambda *a: None  # noqa: E731
    first, second = tmp_path / "seed0.pt", tmp_path / "seed1.pt"
    for path, seed in ((first, 0), (second, 1)):     # without dropout: a toy this small is otherwise all noise
        T.train(toy, path, fast_config(epochs=60, val_every=5, lr=1e-2, lr_schedule="cosine", seed=seed, dropout=0.0),
                device="cpu", progress=False, log=quiet)
    teachers = [Emulator.load(p, device="cpu", dtype="float64") for p in (first, second)]
    ds, rows, _ = T.load_splits(toy, log=quiet)
    sc = T.Scalers.of_artifact(load_artifact(first))
    params = ds.params[rows["train"]].astype(np.float64)
    (x, ybar, s2, n_real), record = T.teacher_targets([first, second], file_sha256(toy), sc, params, 10, log=quiet)
    assert [r["seed"] for r in record] == [0, 1] and torch.all(n_real == 10)
    # in physical units: the targets are the mean of the teachers' ln xi and omega, and of their variances
    preds = [t.predict_array(params) for t in teachers]
    i_xi, i_om = STATISTICS.index("xi"), STATISTICS.index("omega")
    ln_xi = np.mean([np.log(p["xi"]) for p in preds], axis=0)
    np.testing.assert_allclose(ybar[:, i_xi].numpy() * sc.output_scale[i_xi] + sc.output_mean[i_xi], ln_xi, atol=1e-4)
    omega = np.mean([p["omega"] for p in preds], axis=0)
    np.testing.assert_allclose(ybar[:, i_om].numpy() * sc.output_scale[i_om] + sc.output_mean[i_om], omega,
                               atol=1e-5 * np.abs(omega).max())
    var = np.mean([p["omega_aleatoric_var"] for p in preds], axis=0)
    np.testing.assert_allclose(s2[:, i_om].numpy() * sc.output_scale[i_om] ** 2, var, rtol=1e-4)
    # a student fine-tuned from the first teacher moves towards the average at points it was not trained on
    out = tmp_path / "student.pt"
    cfg = fast_config(epochs=30, val_every=5, lr=3e-3, lr_schedule="cosine", warmup_epochs=0, dropout=0.0,
                      teachers=[str(first), str(second)], teacher_points=400, variance_refit_steps=20)
    s = T.train(toy, out, cfg, device="cpu", progress=False, log=quiet, init_from=first)
    assert [t["weights_sha256"] for t in s["teachers"]] == [load_artifact(p).weights_sha256 for p in (first, second)]
    assert load_artifact(out).training["config"]["teacher_points"] == 400
    held_out = Domain().from_unit(np.random.default_rng(5).random((300, 7)))
    avg = np.mean([np.log(t.predict_array(held_out)["xi"]) for t in teachers], axis=0)
    before = np.abs(np.log(teachers[0].predict_array(held_out)["xi"]) - avg).mean()
    after = np.abs(np.log(Emulator.load(out, device="cpu", dtype="float64").predict_array(held_out)["xi"]) - avg).mean()
    assert after < 0.85 * before, (after, before)   # measured 0.71
    # teachers of another dataset are refused, naming them; the command line takes the teachers
    other = make_toy_dataset(tmp_path / "other.h5", n_points=60, seed=1)
    with pytest.raises(ValueError, match="teacher .*seed1.pt was trained on a dataset"):
        T.train(other, tmp_path / "x.pt", fast_config(epochs=1, teachers=[str(second)]), device="cpu",
                progress=False, log=quiet)
    _, cli = T.parse_args(["--data", "d", "--out", "o", "--teachers", "a.pt", "b.pt", "--teacher-points", "7"])
    assert cli.teachers == ["a.pt", "b.pt"] and cli.teacher_points == 7


def test_alignment_p2_encoding_is_recorded_and_applied_by_the_emulator(toy, trained, tmp_path):
    """--input-encoding alignment_p2: the network sees mean_p2(mu) for mu_cen and mu_sat; the artifact records
    it and the emulator applies it (folded, unfolded and MC-dropout paths agree with the plain network on the
    encoded inputs); fine-tuning across encodings is refused."""
    from iaemu_theory.alignment import mean_p2

    ds, rows, _ = T.load_splits(toy, log=lambda *a: None)
    sc = T.Scalers.fit(ds, rows["train"], "alignment_p2")
    x, _, _ = sc.standardise(T.targets(ds, rows["train"]))
    p2 = mean_p2(ds.params[rows["train"], :2])
    np.testing.assert_allclose(x[:, :2], (p2 - p2.mean(axis=0)) / p2.std(axis=0), atol=1e-9)
    np.testing.assert_allclose(x[:, 2:], (ds.params[rows["train"], 2:] - sc.input_mean[2:]) / sc.input_std[2:])

    out = tmp_path / "enc.pt"
    T.train(toy, out, fast_config(input_encoding="alignment_p2"), device="cpu", progress=False, log=lambda *a: None)
    art = load_artifact(out)
    assert art.input_encoding == "alignment_p2" and art.metadata()["input_encoding"] == "alignment_p2"
    emu = Emulator.load(out, device="cpu", dtype="float64")
    pts = emu.domain.from_unit(np.random.default_rng(5).random((6, 7)))
    net = art.build_network().double()
    enc = np.column_stack([mean_p2(pts[:, :2]), pts[:, 2:]])
    with torch.no_grad():
        ref = net(torch.as_tensor((enc - art.input_mean) / art.input_std), ["omega"])["omega"][0].numpy()
    pred = emu.predict(pts, statistics=["omega"])["omega"]
    np.testing.assert_allclose(pred, ref * art.output_scale[1] + art.output_mean[1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(emu.predict_unfolded(pts, statistics=["omega"])["omega"], pred, rtol=1e-9, atol=1e-12)
    assert np.all(emu.predict(pts, mc_passes=3, seed=0)["omega_epistemic_var"] >= 0)
    with pytest.raises(ValueError, match="input encoding"):
        T.train(toy, tmp_path / "x.pt", fast_config(), device="cpu", progress=False, log=lambda *a: None,
                init_from=out)
    assert load_artifact(trained[0]).input_encoding == "identity"


def test_alignment_output_form_trains_and_the_emulator_serves_it(toy, tmp_path):
    """--output-form alignment: trains, is recorded in the artifact's network config, and the emulator's folded,
    unfolded and MC-dropout paths serve it, with xi independent of mu; it refuses the identity encoding."""
    out = tmp_path / "form.pt"
    T.train(toy, out, fast_config(input_encoding="alignment_p2", output_form="alignment"), device="cpu",
            progress=False, log=lambda *a: None)
    art = load_artifact(out)
    assert art.config.output_form == "alignment" and art.metadata()["network_config"]["output_form"] == "alignment"
    emu = Emulator.load(out, device="cpu", dtype="float64")
    pts = np.repeat(emu.domain.from_unit(np.random.default_rng(2).random((1, 7))), 4, axis=0)
    pts[:, :2] = [[-0.9, 0.3], [0.0, 0.0], [0.5, -0.5], [1.0, 1.0]]
    pred = emu.predict(pts)
    np.testing.assert_allclose(pred["xi"], np.repeat(pred["xi"][:1], 4, axis=0), rtol=1e-12)
    np.testing.assert_allclose(pred["xi_aleatoric_var"], np.repeat(pred["xi_aleatoric_var"][:1], 4, axis=0), rtol=1e-12)
    unfolded = emu.predict_unfolded(pts)
    for key in ("xi", "omega", "eta", "omega_aleatoric_var"):
        np.testing.assert_allclose(unfolded[key], pred[key], rtol=1e-9, atol=1e-12)
    assert np.all(emu.predict(pts, mc_passes=3, seed=0)["eta_epistemic_var"] >= 0)
    with pytest.raises(ValueError, match="needs input_encoding 'alignment_p2'"):
        T.train(toy, tmp_path / "x.pt", fast_config(output_form="alignment"), device="cpu", progress=False,
                log=lambda *a: None)


def test_cli_errors(tmp_path, capsys):
    assert T.main(["--data", str(tmp_path / "none.h5"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert T.main(["--data", "x", "--out", "y", "--beta", "gamma=1"]) == 2  # a usage error: argparse's status
    assert "--beta" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- evaluation
def test_measures_on_perfect_and_biased_predictions():
    from training.emulator.evaluate import measures
    rng = np.random.default_rng(0)
    true = toy_truth(Domain().from_unit(rng.random((50, 7))))
    sigma = np.abs(true) * 0.1 + 1e-3
    pred = {s: true[:, k].copy() for k, s in enumerate(STATISTICS)}
    pred.update({f"{s}_aleatoric_var": sigma[:, k] ** 2 for k, s in enumerate(STATISTICS)})
    m = measures(pred, true, sigma, 10)
    for s in STATISTICS:
        assert m["summary"][s]["max_abs_median_residual_sigma"] == 0
        assert m["summary"][s]["calibration_dex_median"] == pytest.approx(0, abs=1e-12)
        assert m["summary"][s]["mean_spearman"] == pytest.approx(1)
    assert m["summary"]["xi"]["mean_fractional_error_none"] == 0
    assert all(t["met"] for t in m["targets"].values())
    # 2% high everywhere, variance 4x too large (0.30 dex)
    biased = {k: (v * 1.02 if not k.endswith("_var") else 4 * v) for k, v in pred.items()}
    m = measures(biased, true, sigma, 10)
    assert m["summary"]["xi"]["mean_fractional_error_none"] == pytest.approx(0.02)
    assert m["summary"]["omega"]["calibration_dex_median"] == pytest.approx(np.log10(2))
    assert m["targets"]["xi_mean_fractional_error"]["met"]
    assert not m["targets"]["omega_calibration_dex"]["met"]


def test_evaluate_cli_writes_metrics_table_and_figures(toy, trained, tmp_path):
    from training.emulator import evaluate as E
    out, _ = trained
    art = tmp_path / "emu.pt"
    art.write_bytes(out.read_bytes())
    code = E.main(["--artifact", str(art), "--data", str(toy), "--out", str(tmp_path / "docs"), "--mc-passes", "8",
                   "--artifact-metrics"])
    assert code == 0
    m = json.loads((tmp_path / "docs" / "emulator_metrics.json").read_text())
    assert m["n_points"] == 48 and m["trained_on_this_dataset"]
    for s in STATISTICS:
        assert len(m["per_bin"][s]["spearman"]) == 20
        assert m["summary"][s]["epistemic_over_aleatoric_median"] > 0
    assert set(m["targets"]) >= {"xi_mean_fractional_error", "omega_mean_fractional_error", "xi_calibration_dex"}
    assert all(isinstance(t["met"], bool) and t["target"] > 0 for t in m["targets"].values())
    assert not (tmp_path / "docs" / "emulator_metrics.md").exists()   # rendered by scripts/render_docs.py
    for name in ("examples", "accuracy", "uncertainty", "appendix_d"):
        assert (tmp_path / "docs" / "figures" / f"emulator_{name}.png").stat().st_size > 5000
    # the summary goes beside the artifact; the artifact's bytes are untouched
    assert art.read_bytes() == out.read_bytes()
    beside = json.loads((tmp_path / "emu.metrics.json").read_text())
    assert beside["artifact_weights_sha256"] == load_artifact(art).weights_sha256
    stored = beside["splits"]["test"]
    assert stored["summary"]["xi"]["mean_spearman"] == pytest.approx(m["summary"]["xi"]["mean_spearman"])
    assert stored["n_points"] == 48 and stored["dataset_sha256"] == T.dataset_sha256(toy)
    assert E.main(["--artifact", str(tmp_path / "none.pt"), "--data", str(toy), "--out", str(tmp_path)]) == 2
    assert E.main(["--artifact", str(art), "--data", str(toy), "--update-artifact"]) == 2


def test_evaluate_writes_nothing_beside_the_artifact_unless_asked(toy, trained, tmp_path):
    from training.emulator import evaluate as E
    art = tmp_path / "plain.pt"
    art.write_bytes(trained[0].read_bytes())
    assert E.main(["--artifact", str(art), "--data", str(toy), "--out", str(tmp_path / "o"), "--mc-passes", "0",
                   "--no-figures", "--split", "validation"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "plain.pt"]
    assert E.artifact_metrics_path(art) == tmp_path / "plain.metrics.json"


# ---------------------------------------------------------------------------------------------- config files
SHIPPED_CONFIG = T.CONFIG_DIR / "shipped.yaml"


def test_ensemble_of_trained_networks_and_what_it_refuses(toy, trained, tmp_path, capsys):
    from training.emulator.ensemble import build_ensemble, main

    first, _ = trained
    second = tmp_path / "seed1.pt"
    T.train(toy, second, fast_config(seed=1), device="cpu", progress=False, log=lambda *a: None)
    out = build_ensemble([first, second], tmp_path / "ens.pt")
    art = load_artifact(out)
    assert art.n_members == 2 and art.dataset_hash == load_artifact(first).dataset_hash
    assert [m["config"]["seed"] for m in art.training["members"]] == [0, 1]
    assert art.training["dataset_sha256"] == load_artifact(first).training["dataset_sha256"]
    assert "config" not in art.training                         # the seeds differ: kept per member only
    for member, path in zip(art.members, (first, second)):
        one = load_artifact(path).state_dict
        assert all(torch.equal(member[k], one[k]) for k in one)
    # members of another dataset, a single member, the same network twice, a member that is an ensemble
    other = make_toy_dataset(tmp_path / "other.h5", n_points=60, seed=1)
    stranger = tmp_path / "other.pt"
    T.train(other, stranger, fast_config(epochs=2), device="cpu", progress=False, log=lambda *a: None)
    with pytest.raises(ValueError, match="differs from .* one dataset alike"):
        build_ensemble([first, stranger], tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="two or more"):
        build_ensemble([first], tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="listed twice"):
        build_ensemble([first, first], tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()
    assert main(["--members", str(first), str(stranger), "--out", str(tmp_path / "bad.pt")]) == 2
    assert "iaemu-ensemble: error:" in capsys.readouterr().err
    assert main(["--members", str(second), str(first), "--out", str(tmp_path / "cli.pt")]) == 0
    # as a distillation teacher the ensemble counts as its two networks
    from training.common.datafiles import file_sha256
    ds, rows, _ = T.load_splits(toy, log=lambda *a: None)
    sc, params = T.Scalers.of_artifact(art), ds.params[rows["train"]].astype(np.float64)
    (_, ybar, s2, _), rec = T.teacher_targets([out], file_sha256(toy), sc, params, 10, log=lambda *a: None)
    (_, ybar_pair, s2_pair, _), _ = T.teacher_targets([first, second], file_sha256(toy), sc, params, 10,
                                                      log=lambda *a: None)
    torch.testing.assert_close(ybar, ybar_pair, rtol=0, atol=0)
    torch.testing.assert_close(s2, s2_pair, rtol=0, atol=0)
    assert rec[0]["networks"] == 2
    with pytest.raises(ArtifactError, match="ensemble of 2 networks"):       # fine-tuning takes one network
        T.train(toy, tmp_path / "x.pt", fast_config(epochs=2), device="cpu", progress=False, log=lambda *a: None,
                init_from=out)


def test_shipped_config_is_the_shipped_artifacts_recipe():
    """training/configs/shipped.yaml parses into exactly the TrainConfig recorded in the shipped artifact, and the
    artifact was trained on the dataset the config names."""
    from training.common.datafiles import SHIPPED_DATASET, recorded_files

    _, cfg = T.parse_args(["--config", str(SHIPPED_CONFIG), "--data", "d.h5", "--out", "o.pt"])
    record = Emulator.load().metadata["training"]
    # an ensemble of the recipe trained with seeds 0 and 1 (iaemu-ensemble)
    assert [m["config"]["seed"] for m in record["members"]] == [0, 1]
    for member in record["members"]:
        assert T.TrainConfig(**member["config"]) == replace(cfg, seed=member["config"]["seed"])
    assert record["dataset_file"] == SHIPPED_DATASET
    assert record["dataset_sha256"] == recorded_files()[SHIPPED_DATASET]
    assert SHIPPED_DATASET in SHIPPED_CONFIG.read_text() and "iaemu_default.pt" in SHIPPED_CONFIG.read_text()
    # every field is written out, so the recipe does not follow a changed default
    import yaml
    assert set(yaml.safe_load(SHIPPED_CONFIG.read_text())) == set(T.config_fields())
    # the name alone finds the same file; the plain defaults are not the shipped recipe
    assert T.parse_args(["--config", "shipped", "--data", "d", "--out", "o"])[1] == cfg
    assert T.parse_args(["--data", "d", "--out", "o"])[1] == T.TrainConfig() != cfg


def test_config_file_values_and_command_line_overrides(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("lr: 1e-2\nepochs: 7\nnetwork: tiny\nbeta: {xi: 0.7}\n")
    _, cfg = T.parse_args(["--config", str(cfg_file), "--data", "d", "--out", "o"])
    assert (cfg.lr, cfg.epochs, cfg.network) == (1e-2, 7, "tiny")
    assert cfg.beta == {"xi": 0.7, "omega": 0.5, "eta": 0.5}
    assert cfg.dropout == T.TrainConfig().dropout                       # not in the file: the default
    # an option given explicitly wins, even when it equals the default
    _, cfg = T.parse_args(["--config", str(cfg_file), "--data", "d", "--out", "o", "--epochs", "500",
                           "--lr", "0.5", "--beta", "xi=0.2"])
    assert (cfg.epochs, cfg.lr, cfg.network, cfg.beta["xi"]) == (500, 0.5, "tiny", 0.2)


@pytest.mark.parametrize("text,needle", [
    ("lr: 1e-3\nlearning_rate: 0.1\n", r"unknown key\(s\) \['learning_rate'\]; valid keys .*'lr_schedule'"),
    ("epochs: ten\n", "epochs: 'ten' is not an integer"),
    ("lr_schedule: linear\n", r"lr_schedule: 'linear' is not one of \['step', 'cosine'\]"),
    ("beta: {zeta: 1}\n", "beta: .* is not a mapping from statistics"),
    ("- lr\n", "expected a mapping of TrainConfig fields"),
])
def test_bad_config_files_are_named(tmp_path, capsys, text, needle):
    import re
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text(text)
    assert T.main(["--config", str(cfg_file), "--data", "d", "--out", str(tmp_path / "o.pt")]) == 2
    err = capsys.readouterr().err
    assert str(cfg_file) in err and re.search(needle, err), err
    assert T.main(["--config", str(tmp_path / "none.yaml"), "--data", "d", "--out", "o"]) == 2
    assert "none.yaml does not exist" in capsys.readouterr().err and "shipped" in T.resolve_config_path("shipped").name


def test_tiny_training_from_a_config_file(toy, tmp_path):
    """The shipped recipe's form (alignment encoding and output, cosine schedule) trained tiny from a file, with
    the command line shortening it; the artifact records the merged config."""
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(SHIPPED_CONFIG.read_text().replace("network: paper", "network: tiny"))
    out = tmp_path / "from_config.pt"
    code = T.main(["--config", str(cfg_file), "--data", str(toy), "--out", str(out), "--epochs", "4",
                   "--batch-size", "32", "--val-every", "2", "--no-progress"])
    assert code == 0
    rec = load_artifact(out).training
    assert rec["config"]["network"] == "tiny" and rec["epochs_run"] == 4
    assert {k: rec["config"][k] for k in ("input_encoding", "output_form", "lr_schedule", "dropout",
                                          "warmup_epochs", "lr_min")} == \
        {"input_encoding": "alignment_p2", "output_form": "alignment", "lr_schedule": "cosine", "dropout": 0.01,
         "warmup_epochs": 15, "lr_min": 1e-6}
    assert Emulator.load(out, device="cpu").artifact.input_encoding == "alignment_p2"


# ---------------------------------------------------------------------------------------------- output paths
def test_out_path_is_checked_before_training(toy, tmp_path, capsys):
    said = []
    with pytest.raises(ValueError, match="is a directory; give a file name in it"):
        T.train(toy, tmp_path, fast_config(), device="cpu", progress=False, log=said.append)
    assert not any("training IAEmu" in line for line in said)           # refused before any epoch
    assert T.main(["--data", str(toy), "--out", str(tmp_path), "--network", "tiny", "--no-progress"]) == 2
    assert f"--out {tmp_path} is a directory" in capsys.readouterr().err
    # a file where a directory is needed is refused, with the path
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="cannot create its directory"):
        T.train(toy, tmp_path / "afile" / "emu.pt", fast_config(), device="cpu", progress=False, log=said.append)
    assert not any("training IAEmu" in line for line in said)
    # a missing parent directory is created, and said
    out = tmp_path / "new" / "deeper" / "emu.pt"
    T.train(toy, out, fast_config(epochs=2), device="cpu", progress=False, log=said.append)
    assert out.exists() and any("created directory" in line for line in said)


# ---------------------------------------------------------------------------------------------- data files
@pytest.fixture
def recorded_toy(toy, tmp_path, monkeypatch):
    """The toy dataset as if it were a recorded repository file (a temporary training/data with its manifest)."""
    from training.common import datafiles

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = data_dir / "toy.h5"
    path.write_bytes(toy.read_bytes())
    (data_dir / "MANIFEST.json").write_text(json.dumps({"files": {"toy.h5": T.dataset_sha256(toy)}, "retired": {}}))
    monkeypatch.setattr(datafiles, "DATA_DIR", data_dir.resolve())
    monkeypatch.setattr(datafiles, "MANIFEST", data_dir / "MANIFEST.json")
    monkeypatch.setattr(datafiles, "_digests", {})
    return path


def test_recorded_dataset_is_checked_against_its_sha256(recorded_toy, toy, tmp_path):
    from training.common.datafiles import DataFileError, check_file

    assert check_file(recorded_toy) == T.dataset_sha256(toy)
    T.load_splits(recorded_toy, log=lambda *a: None)
    data = bytearray(recorded_toy.read_bytes())
    data[-100] ^= 0xFF
    recorded_toy.write_bytes(bytes(data))
    with pytest.raises(DataFileError) as err:
        T.load_splits(recorded_toy, log=lambda *a: None)
    msg = str(err.value)
    assert str(recorded_toy) in msg and T.dataset_sha256(toy) in msg and T.dataset_sha256(recorded_toy) in msg
    # the same bytes under another path are the user's own file: not checked
    other = tmp_path / "mine.h5"
    other.write_bytes(toy.read_bytes())
    assert check_file(other) is None


def test_repository_dataset_matches_its_record():
    """The committed shipped dataset has the sha256 recorded in training/data/MANIFEST.json."""
    from training.common.datafiles import DATA_DIR, SHIPPED_DATASET, check_file, recorded_files

    path = DATA_DIR / SHIPPED_DATASET
    if not path.exists():
        pytest.skip("not a source checkout: training/data is absent")
    assert check_file(path) == recorded_files()[SHIPPED_DATASET]


def test_absent_repository_dataset_says_where_it_lives(tmp_path, monkeypatch, capsys):
    """As in an installed package: the manifest is there, the dataset is not."""
    from training.common import datafiles

    monkeypatch.setattr(datafiles, "DATA_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="kept in the source repository at training/data/dataset_hires320x3.h5"):
        datafiles.shipped_dataset()
    assert T.main(["--config", "shipped", "--data", str(tmp_path / "dataset_hires320x3.h5"), "--out", "o.pt"]) == 2
    assert "source repository" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="git show 1a5ef1d7201b043a3583d4c2b5bdf717d98f6108:training/data/"
                                                "dataset_v3.h5 > training/data/dataset_v3.h5"):
        T.load_splits(tmp_path / "dataset_v3.h5")
