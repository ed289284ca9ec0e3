"""The emulator core: artifact safety, input handling, back-transforms, MC dropout, gradients."""
import json
import os
import warnings

import numpy as np
import pytest
import torch

import iaemu_theory.emulator as emulator_mod
from iaemu_theory import Emulator
from iaemu_theory.artifact import (FORMAT_VERSION, ArtifactError, load_artifact, make_random_artifact,
                                   save_artifact, weights_digest)
from iaemu_theory.conventions import BIN_CENTRES, BIN_EDGES, PARAM_NAMES, STATISTICS
from iaemu_theory.domain import Domain


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return make_random_artifact(tmp_path_factory.mktemp("art") / "tiny.pt", tiny=True, seed=3)


@pytest.fixture(scope="module")
def emu(tiny_path):
    return Emulator.load(tiny_path, device="cpu")


@pytest.fixture(scope="module")
def points(emu):
    return emu.domain.from_unit(np.random.default_rng(0).random((6, 7)))


def _blob(path):
    return torch.load(path, weights_only=True)


# ------------------------------------------------------------------ artifact
def test_round_trip(tiny_path, tmp_path):
    art = load_artifact(tiny_path)
    assert art.weights_sha256 == weights_digest(art.state_dict)
    assert art.training["untrained"] is True
    assert art.domain == Domain().to_dict()
    assert art.versions["torch"] == torch.__version__
    np.testing.assert_array_equal(art.bin_edges, BIN_EDGES)
    art.metrics = {"test": {"omega_mean_fractional_error": 0.04}}
    copy = save_artifact(tmp_path / "copy.pt", art)
    again = load_artifact(copy)
    assert again.metrics == art.metrics
    assert again.weights_sha256 == art.weights_sha256
    for k, v in art.state_dict.items():
        torch.testing.assert_close(again.state_dict[k], v, rtol=0, atol=0)
    for key in ("input_mean", "input_std", "output_mean", "output_scale"):
        np.testing.assert_array_equal(getattr(again, key), getattr(art, key))
    meta = json.loads(_blob(copy)["metadata_json"])
    assert meta["param_names"] == list(PARAM_NAMES)
    assert meta["transforms"] == {"xi": "ln", "omega": "identity", "eta": "identity"}
    assert _blob(copy)["format_version"] == FORMAT_VERSION


class _Evil:
    def __reduce__(self):
        return (open, ("/tmp/iaemu_tampered_marker", "w"))


def test_tampered_file_refused(tiny_path, tmp_path):
    blob = _blob(tiny_path)
    marker = "/tmp/iaemu_tampered_marker"
    import os
    if os.path.exists(marker):
        os.remove(marker)
    blob["metadata_json"] = _Evil()
    bad = tmp_path / "evil.pt"
    torch.save(blob, bad)
    with pytest.raises(ArtifactError, match="refusing artifact"):
        load_artifact(bad)
    assert not os.path.exists(marker)


def test_truncated_and_missing(tiny_path, tmp_path):
    data = tiny_path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="truncated or damaged archive"):
        load_artifact(cut)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Emulator.load(tmp_path / "nothing.pt")
    text = tmp_path / "text.pt"
    text.write_text("mu_cen 0.5\n")
    binary = tmp_path / "binary.pt"
    binary.write_bytes(bytes(range(256)) * 4)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path, message in ((text, "is a text file, not an IAEmu emulator artifact"),
                          (binary, "binary file of an unknown format"), (empty, "is empty")):
        with pytest.raises(ArtifactError, match=message) as info:
            load_artifact(path)
        assert "weights_only" not in str(info.value)


def test_pickled_code_is_refused_without_unsafe_advice(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo unsafe > " + str(tmp_path / "ran"),))

    path = tmp_path / "evil.pt"
    torch.save({"format": "iaemu-emulator-artifact", "x": Payload()}, path)
    with pytest.raises(ArtifactError, match="pickled objects other than tensors") as info:
        load_artifact(path)
    assert "weights_only" not in str(info.value)
    assert not (tmp_path / "ran").exists()


def test_default_artifact_missing_is_clear(monkeypatch, tmp_path):
    monkeypatch.setattr(emulator_mod, "DEFAULT_ARTIFACT", tmp_path / "absent.pt")
    with pytest.raises(FileNotFoundError, match="shipped emulator artifact .*iaemu-train"):
        Emulator.load()


def _with_meta(key, value):
    def edit(blob):
        meta = json.loads(blob["metadata_json"])
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
        blob["metadata_json"] = json.dumps(meta)
    return edit


def _nan_weights(blob):
    key = "embedding.layer1.0.weight"
    blob["members"][0][key] = torch.full_like(blob["members"][0][key], float("nan"))
    blob["weights_sha256"] = weights_digest(blob["members"][0])


@pytest.mark.parametrize("edit,message", [
    (lambda b: b.update(format_version=FORMAT_VERSION + 1), "format_version"),
    (lambda b: b.update(format="something-else"), "not an IAEmu emulator artifact"),
    (lambda b: b.update(metadata_json=json.dumps({**json.loads(b["metadata_json"]),
                                                  "param_names": list(reversed(PARAM_NAMES))})), "trained on parameters"),
    (lambda b: b.update(input_mean=torch.zeros(5, dtype=torch.float64)), "input_mean has shape"),
    (lambda b: b["members"][0].update({k: v[:, :-1] for k, v in b["members"][0].items()
                                       if k == "embedding.layer1.0.weight"}), "sha256"),
    (lambda b: b.update(members=[]), "non-empty list"),
    (_with_meta("domain", None), "no training domain"),
    (_with_meta("domain", {"n_rmse": 4}), "invalid training domain"),
    (lambda b: b.update(metadata_json="[1, 2]"), "expected a JSON object"),
    (_nan_weights, "non-finite weights"),
    (lambda b: b.update(bin_edges=-torch.as_tensor(b["bin_edges"])), "bin_edges must be positive"),
])
def test_incompatible_files(tiny_path, tmp_path, edit, message):
    """Every defect of an artifact file is one clear ArtifactError, the artifact validated fully."""
    blob = _blob(tiny_path)
    edit(blob)
    bad = tmp_path / "bad.pt"
    torch.save(blob, bad)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(bad)


def test_shape_mismatch_with_valid_digest(tiny_path, tmp_path):
    blob = _blob(tiny_path)
    key = "embedding.layer1.0.weight"
    blob["members"][0][key] = blob["members"][0][key][:, :-1].clone()
    blob["weights_sha256"] = weights_digest(blob["members"][0])
    bad = tmp_path / "shape.pt"
    torch.save(blob, bad)
    with pytest.raises(ArtifactError, match="do not fit the stored network config"):
        load_artifact(bad)


def test_format_version_1_file_is_read(tiny_path, tmp_path, points):
    """A file of the first format (one `state_dict`) loads and predicts as the same network written today."""
    blob = _blob(tiny_path)
    blob["state_dict"] = blob.pop("members")[0]
    blob["format_version"] = 1
    old = tmp_path / "v1.pt"
    torch.save(blob, old)
    assert load_artifact(old).weights_sha256 == load_artifact(tiny_path).weights_sha256
    a, b = (Emulator.load(p, device="cpu").predict(points) for p in (old, tiny_path))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


# ------------------------------------------------------------------ ensembles
@pytest.fixture(scope="module")
def ensemble_paths(tmp_path_factory):
    """An ensemble of two tiny alignment-form networks, and each of its members alone."""
    folder = tmp_path_factory.mktemp("ens")
    kw = dict(tiny=True, input_encoding="alignment_p2", output_form="alignment")
    both = make_random_artifact(folder / "both.pt", seed=3, members=2, **kw)
    alone = [make_random_artifact(folder / f"m{s}.pt", seed=s, **kw) for s in (3, 4)]
    return both, alone


def test_ensemble_averages_its_members_in_network_units(ensemble_paths, points):
    both, alone = ensemble_paths
    ens = Emulator.load(both, device="cpu", dtype="float64")
    members = [Emulator.load(p, device="cpu", dtype="float64") for p in alone]
    assert ens.n_members == 2 and "members=2" in repr(ens) and ens.metadata["members"] == 2
    assert load_artifact(both).weights_sha256 not in {load_artifact(p).weights_sha256 for p in alone}
    got, parts = ens.predict(points), [m.predict(points) for m in members]
    # xi: ln xi averaged (the geometric mean of the members' medians); omega, eta: plain averages
    np.testing.assert_allclose(got["xi"], np.sqrt(parts[0]["xi"] * parts[1]["xi"]), rtol=1e-12)
    for s in ("omega", "eta"):
        np.testing.assert_allclose(got[s], 0.5 * (parts[0][s] + parts[1][s]), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(got[f"{s}_aleatoric_var"],
                                   0.5 * (parts[0][f"{s}_aleatoric_var"] + parts[1][f"{s}_aleatoric_var"]), rtol=1e-12)
    assert not np.allclose(parts[0]["omega"], parts[1]["omega"])      # the members differ
    plain = ens.predict_unfolded(points)
    for k in plain:
        np.testing.assert_allclose(got[k], plain[k], rtol=1e-10)
    with pytest.raises(ArtifactError, match="ensemble of 2 networks"):
        load_artifact(both).state_dict


def test_ensemble_epistemic_variance_pools_every_members_passes(ensemble_paths, points):
    """The epistemic variance is the variance over all members' dropout passes, so it holds the spread between
    members: with the members far apart it exceeds the average of their own MC variances."""
    both, _ = ensemble_paths
    ens = Emulator.load(both, device="cpu", dtype="float64")
    got = ens.predict(points[:2], mc_passes=6, seed=2, statistics="omega")
    gen = torch.Generator().manual_seed(2)
    ens._mc_source.generator = gen
    with torch.no_grad():
        x = (emulator_mod.encode_params(torch.as_tensor(points[:2]), ens.artifact.input_encoding) - ens._in_mean) / ens._in_std
        mus = torch.cat([net(x.repeat(6, 1), ("omega",))["omega"][0].view(6, 2, -1) for net in ens.mc_networks])
    ens._mc_source.generator = None
    np.testing.assert_allclose(got["omega_epistemic_var"], mus.var(dim=0).numpy() * ens._out_scale["omega"] ** 2,
                               rtol=1e-10)
    within = np.mean([mus[:6].var(dim=0).numpy(), mus[6:].var(dim=0).numpy()], axis=0)
    assert np.median(mus.var(dim=0).numpy() / within) > 1


def test_fixed_hod_calls_reuse_the_decoders_and_agree(ensemble_paths, points, monkeypatch):
    """At fixed HOD (a fit of mu_cen and mu_sat) the decoders run once; the numbers are those of a fresh emulator,
    and a new HOD point runs them again."""
    both, _ = ensemble_paths
    ens = Emulator.load(both, device="cpu", dtype="float64")
    calls = []
    for net in ens.folded:
        monkeypatch.setattr(net, "decode", lambda *a, _d=net.decode: calls.append(1) or _d(*a))
    hod = points[0].copy()
    rows = []
    for mu_cen, mu_sat in ((0.1, 0.2), (-0.7, 0.9), (0.95, -0.3)):
        row = hod.copy()
        row[[PARAM_NAMES.index("mu_cen"), PARAM_NAMES.index("mu_sat")]] = mu_cen, mu_sat
        rows.append(row)
        got = ens.predict_array(row[None, :], ["omega", "eta"])
        want = Emulator.load(both, device="cpu", dtype="float64").predict(row, statistics=["omega", "eta"],
                                                                          outside="ignore")
        for k in got:
            np.testing.assert_array_equal(got[k], want[k])
    assert len(calls) == 2                    # once per member
    ens.predict_array(points[1][None, :], ["omega", "eta"])
    assert len(calls) == 4
    ens.predict_array(points[1][None, :], ["omega"])             # other statistics: run again
    assert len(calls) == 6
    batch = ens.predict_array(np.array(rows), ["omega", "eta"])    # batches never reuse
    assert len(calls) == 8
    np.testing.assert_allclose(batch["omega"][2], ens.predict_array(rows[2][None, :], ["omega"])["omega"][0],
                               rtol=1e-12)


def test_fixed_hod_torch_calls_reuse_the_decoders_and_keep_the_mu_gradients(ensemble_paths, points, monkeypatch):
    """predict_torch(fixed_hod=True) at one HOD: decoders once, values and d/d(mu_cen, mu_sat) those of a full
    evaluation; an inference call at the same HOD in between does not poison the autograd path."""
    both, _ = ensemble_paths
    ens = Emulator.load(both, device="cpu", dtype="float64")
    fresh = Emulator.load(both, device="cpu", dtype="float64")
    calls = []
    for net in ens.folded:
        monkeypatch.setattr(net, "decode", lambda *a, _d=net.decode: calls.append(1) or _d(*a))
    align = [PARAM_NAMES.index("mu_cen"), PARAM_NAMES.index("mu_sat")]
    for mu in ((0.1, 0.2), (-0.7, 0.9), (0.95, -0.3)):
        row = points[0].copy()
        row[align] = mu
        ens.predict_array(row[None, :], ["omega", "eta"])              # Cobaya's path, inference mode
        grads = []
        for e, kw in ((ens, {"fixed_hod": True}), (fresh, {})):
            x = torch.tensor(row, dtype=torch.float64, requires_grad=True)
            out = e.predict_torch(x, ["omega", "eta"], **kw)
            (out["omega"].sum() + out["eta_aleatoric_var"].sum()).backward()
            grads.append((x.grad.clone(), {k: v.detach() for k, v in out.items()}))
        (g, got), (g_ref, want) = grads
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
        torch.testing.assert_close(g[align], g_ref[align], rtol=1e-12, atol=1e-12)
        assert g_ref[[i for i in range(7) if i not in align]].abs().sum() > 0    # which fixed_hod gives up
    assert len(calls) == 4          # once per member and mode: predict_array's and predict_torch's


# ------------------------------------------------------------------ attributes and inputs
def test_attributes(emu):
    assert emu.param_names == PARAM_NAMES
    np.testing.assert_allclose(emu.r, BIN_CENTRES)
    np.testing.assert_allclose(emu.bin_edges, BIN_EDGES)
    assert emu.statistics == STATISTICS
    assert isinstance(emu.domain, Domain)
    assert emu.metadata["network_config"]["hidden"] == 16


def test_input_forms_agree(emu, points):
    p = points[0]
    as_dict = dict(zip(PARAM_NAMES, p))
    a = emu.predict(as_dict)
    b = emu.predict(p)
    c = emu.predict(p[None, :])
    d = emu.predict({k: np.array([v]) for k, v in as_dict.items()})
    for k in a:
        assert a[k].shape == ((1,) if k == "inside" else (1, 20))
        for other in (b, c, d):
            np.testing.assert_array_equal(a[k], other[k])
    many = emu.predict({n: points[:, j] for j, n in enumerate(PARAM_NAMES)})
    np.testing.assert_array_equal(many["omega"], emu.predict(points)["omega"])
    assert many["xi"].shape == (6, 20)
    assert set(many) == {f"{s}{suffix}" for s in STATISTICS for suffix in ("", "_aleatoric_var")} | {"inside"}


def test_bad_inputs(emu, points):
    good = dict(zip(PARAM_NAMES, points[0]))
    with pytest.raises(ValueError, match="missing \\['alpha'\\]"):
        emu.predict({k: v for k, v in good.items() if k != "alpha"})
    with pytest.raises(ValueError, match="unknown \\['A_cen'\\]"):
        emu.predict({**good, "A_cen": 1.0})
    with pytest.raises(ValueError, match="shape \\(n, 7\\)"):
        emu.predict(np.zeros((2, 6)))
    with pytest.raises(ValueError, match="logMmin=nan"):
        emu.predict({**good, "logMmin": float("nan")})
    with pytest.raises(ValueError, match="common length"):
        emu.predict({**good, "mu_cen": [0.1, 0.2], "mu_sat": [0.1, 0.2, 0.3]})
    with pytest.raises(ValueError, match="subset of"):
        emu.predict(good, statistics=("gamma",))
    with pytest.raises(ValueError, match="mc_passes"):
        emu.predict(good, mc_passes=1)
    with pytest.raises(ValueError, match="dtype"):
        Emulator(load_artifact(emu.artifact.path), dtype="float16")


def test_requested_statistics_only(emu, points):
    out = emu.predict(points, statistics="omega", mc_passes=4, seed=0)
    assert set(out) == {"omega", "omega_aleatoric_var", "omega_epistemic_var", "inside"}
    np.testing.assert_array_equal(out["omega"], emu.predict(points)["omega"])


def test_in_domain(emu, points):
    assert emu.in_domain(points).all()
    outside = points.copy()
    outside[:, PARAM_NAMES.index("logMmin")] = 20.0
    assert not emu.in_domain(outside).any()


# ------------------------------------------------------------------ numerics
@pytest.mark.parametrize("tiny", [True, False], ids=["tiny", "paper"])
def test_fast_path_equals_plain_network(tmp_path, tiny):
    from tests.test_network import randomise_batchnorm
    art = load_artifact(make_random_artifact(tmp_path / "a.pt", tiny=tiny, seed=5))
    net = randomise_batchnorm(art.build_network(), seed=6)
    art.members = [net.state_dict()]
    path = save_artifact(tmp_path / "b.pt", art)
    pts = Domain().from_unit(np.random.default_rng(1).random((9, 7)))
    for dtype, rtol in (("float32", 1e-5), ("float64", 1e-10)):
        e = Emulator.load(path, device="cpu", dtype=dtype)
        fast, plain = e.predict(pts), e.predict_unfolded(pts)
        for k in plain:
            scale = np.max(np.abs(plain[k]))
            assert np.max(np.abs(fast[k] - plain[k])) <= 10 * rtol * scale, k


def test_back_transform_against_monte_carlo(emu):
    """Sample the network's Gaussian in standardised units, transform each draw, compare moments."""
    rng = np.random.default_rng(7)
    n = 400_000
    mu = torch.tensor([[-0.3, 0.2, 1.1]], dtype=torch.float64)
    var = torch.tensor([[0.0004, 0.001, 0.002]], dtype=torch.float64)
    for stat in STATISTICS:
        value, variance = (t.numpy()[0] for t in emu._back_transform(stat, mu, var))
        scale, mean = emu._out_scale[stat], emu._out_mean[stat]
        draws = rng.normal(mu.numpy()[0], np.sqrt(var.numpy()[0]), size=(n, 3)) * scale + mean
        if stat == "xi":
            draws = np.exp(draws)
            np.testing.assert_allclose(value, np.median(draws, axis=0), rtol=3e-3)   # exp(E ln xi) = median
        else:
            np.testing.assert_allclose(value, draws.mean(axis=0), rtol=0, atol=5 * np.sqrt(variance / n).max())
        # first-order (delta-method) variance for xi: exact to O(scale^2 var) = 1% here
        np.testing.assert_allclose(variance, draws.var(axis=0), rtol=0.02 if stat == "xi" else 0.01)


def test_xi_variance_is_xi_squared_times_ln_variance(emu, points):
    out = emu.predict(points, statistics="xi")
    with torch.no_grad():
        x = (torch.as_tensor(points, dtype=torch.float32) - emu._in_mean) / emu._in_std
        mu, var = emu.networks[0](x, ("xi",))["xi"]
    scale = emu._out_scale["xi"]
    np.testing.assert_allclose(out["xi_aleatoric_var"], out["xi"] ** 2 * scale**2 * var.numpy(), rtol=1e-5)


def test_mc_dropout_epistemic(emu, points):
    a = emu.predict(points, mc_passes=20, seed=11)
    b = emu.predict(points, mc_passes=20, seed=11)
    c = emu.predict(points, mc_passes=20, seed=12)
    for s in STATISTICS:
        key = f"{s}_epistemic_var"
        assert a[key].shape == (6, 20) and np.all(a[key] > 0)
        np.testing.assert_array_equal(a[key], b[key])
        assert not np.array_equal(a[key], c[key])
        np.testing.assert_array_equal(a[s], emu.predict(points)[s])     # means do not depend on MC
    assert not emu.networks[0].training and not any(m.training for m in emu.networks[0].modules())


def test_mc_dropout_is_variance_of_passes(emu, points):
    """The batched MC estimate equals the variance over separate dropout forwards with the same masks."""
    passes, seed = 8, 4
    got = emu.predict(points[:2], mc_passes=passes, seed=seed, statistics="omega")["omega_epistemic_var"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        emu.networks[0].mc_dropout_mode()
        x = (torch.as_tensor(points[:2], dtype=torch.float32) - emu._in_mean) / emu._in_std
        with torch.no_grad():
            mu = emu.networks[0](x.repeat(passes, 1), ("omega",))["omega"][0].view(passes, 2, -1)
        emu.networks[0].eval()
    expect = mu.double().var(dim=0).numpy() * emu._out_scale["omega"] ** 2
    np.testing.assert_allclose(got, expect, rtol=1e-5)


def test_chunking_gives_same_answer(tiny_path, points):
    e = Emulator.load(tiny_path, device="cpu")
    ref = e.predict(points, mc_passes=4, seed=1)
    e.max_rows = 4
    out = e.predict(points)
    for k in out:
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-6)


def test_predict_torch_float64_gradient(tiny_path, points):
    e = Emulator.load(tiny_path, device="cpu", dtype="float64")
    x = torch.tensor(points[:2], dtype=torch.float64, requires_grad=True)
    out = e.predict_torch(x)
    np.testing.assert_allclose(out["omega"].detach().numpy(), e.predict(points[:2])["omega"], rtol=1e-12)
    assert set(out) | {"inside"} == set(e.predict(points[:2]))

    def f(p):
        o = e.predict_torch(p, statistics=("xi", "omega"))
        return torch.cat([o["xi"], o["omega"], o["omega_aleatoric_var"]], dim=1)

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)
    loss = e.predict_torch(x)["eta"].sum()
    loss.backward()
    assert torch.all(torch.isfinite(x.grad)) and torch.any(x.grad != 0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        e.predict_torch(points)


def test_random_artifact_options(tmp_path):
    dom = Domain(logMmin_range=(12.0, 13.0))
    path = make_random_artifact(tmp_path / "omega_only.pt", tiny=True, domain=dom, statistics=("omega",))
    e = Emulator.load(path, device="cpu")
    assert e.domain.logMmin_range == (12.0, 13.0)
    assert e.statistics == ("omega",)
    out = e.predict(dom.from_unit(np.full((2, 7), 0.5)), mc_passes=3, seed=0)
    assert set(out) == {"omega", "omega_aleatoric_var", "omega_epistemic_var", "inside"}
    with pytest.raises(ValueError, match="subset of \\['omega'\\]"):
        e.predict(dom.from_unit(np.full((1, 7), 0.5)), statistics="xi")
    t = e.predict_torch(torch.tensor(dom.from_unit(np.full((2, 7), 0.5))), mc_passes=3, seed=0)
    np.testing.assert_allclose(t["omega_epistemic_var"].numpy(), out["omega_epistemic_var"], rtol=1e-5)


# ------------------------------------------------------------------ threads, domain flag, large batches
def test_predictions_from_eight_threads_equal_the_serial_ones(tiny_path):
    """Plain and MC-dropout predictions made concurrently from 8 threads equal their serial answers exactly:
    MC passes never switch the shared network's mode and draw from a generator private to each call."""
    from concurrent.futures import ThreadPoolExecutor

    e = Emulator.load(tiny_path, device="cpu")
    pts = e.domain.from_unit(np.random.default_rng(3).random((16, 7)))
    calls = [(i % 16, 0 if i % 2 else 6, i % 5) for i in range(160)]

    def one(call):
        row, passes, seed = call
        return e.predict(pts[row], mc_passes=passes, seed=seed if passes else None)

    serial = [one(c) for c in calls]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(one, calls))
    for call, a, b in zip(calls, serial, parallel):
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{call}: {k}")
        if call[1]:
            assert np.all(b["omega_epistemic_var"] > 0)


def test_predict_flags_points_outside_the_domain(emu, points):
    outside = points[:3].copy()
    outside[1, PARAM_NAMES.index("logMmin")] = 14.5
    with pytest.warns(emulator_mod.DomainWarning, match="1 of 3 point.*row 1: logMmin=14.5") as record:
        out = emu.predict(outside)
    assert len(record) == 1
    np.testing.assert_array_equal(out["inside"], [True, False, True])
    with pytest.raises(ValueError, match="outside the emulator's training domain"):
        emu.predict(outside, outside="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emu.predict(outside, outside="ignore")
        emu.predict(points)
    with pytest.raises(ValueError, match="outside="):
        emu.predict(points, outside="clamp")


@pytest.mark.parametrize("name,value,message", [
    ("mu_cen", 1.5, "mu_cen=1.5 .*physical range \\[-1, 1\\]"),
    ("sigma_logM", 0.0, "sigma_logM=0.0 .*physical range \\(0, inf\\)"),
    ("alpha", -0.1, "alpha=-0.1"),
])
def test_physically_invalid_points_are_refused(emu, points, name, value, message):
    bad = points[:2].copy()
    bad[1, PARAM_NAMES.index(name)] = value
    with pytest.raises(ValueError, match=message):
        emu.predict(bad)


def test_non_real_and_fractional_inputs_are_refused(emu, points):
    with pytest.raises(TypeError, match="complex"):
        emu.predict(points[:2] + 0j)
    with pytest.raises(TypeError, match="complex"):
        emu.predict_torch(torch.tensor(points[:2] + 1j))
    with pytest.raises(ValueError, match="not finite"):
        emu.predict_torch(torch.tensor([[np.nan] * 7]))
    for passes in (0.5, 2.7, True, "3"):
        with pytest.raises(ValueError, match="mc_passes"):
            emu.predict(points[:1], mc_passes=passes)
    assert "omega_epistemic_var" in emu.predict(points[:1], mc_passes=3.0, seed=0)


def test_blocked_prediction_equals_one_block(tiny_path, points):
    """Large batches run in blocks of max_rows points; the answer, MC passes included, does not depend on it."""
    e = Emulator.load(tiny_path, device="cpu")
    many = e.domain.from_unit(np.random.default_rng(4).random((300, 7)))
    e.max_rows = 4096
    ref = e.predict(many, mc_passes=20, seed=2)
    e.max_rows = 7
    out = e.predict(many, mc_passes=20, seed=2)
    for k in ref:
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-6, err_msg=k)
