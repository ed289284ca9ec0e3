"""Generation machinery: determinism across workers, resume after a kill, MPI == pool, merge/split.

Process-level tests use FAKE_ENGINE, a cheap deterministic stand-in for the mock model (a
function of the parameters and the seed only, with NaN points at high logMmin), so that they
test the bookkeeping in seconds; one test runs the real engine on the toy catalog.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from iaemu_theory.conventions import BIN_CENTRES, N_BINS, STATISTICS
from training.dataset import manage as dsmod
from training.dataset import generate as gen
from training.dataset.schema import (STATUS_DONE, STATUS_ERROR, STATUS_NAN, STATUS_PENDING, SPLIT_DROPPED, Dataset,
                                     read_dataset, write_dataset)

TESTS = Path(__file__).resolve().parent
FAKE_ENGINE = "test_generate:fake_engine"
SLEEP_ENV = "IAEMU_FAKE_SLEEP"
DIE_ENV = "IAEMU_FAKE_DIE"


class FakeCatalog:
    catalog_id = "fake"
    catalog_hash = "f" * 16
    host_mass = 10.0 ** np.linspace(11.0, 15.0, 400)


class FakeModel:
    """Statistics that depend on the parameters and the seed only (like the real engine)."""

    def measure(self, params, seed, n_realisations=10, orientation_draws=0):
        time.sleep(float(os.environ.get(SLEEP_ENV, "0")))
        if os.environ.get(DIE_ENV) and params["mu_cen"] > 0.5:
            os._exit(3)  # a worker killed mid-point (out of memory, say)
        rng = np.random.default_rng(seed)
        r = BIN_CENTRES
        amp = 10.0 ** (params["logMmin"] - 12.0)
        noise = 1.0 + 0.05 * rng.standard_normal((n_realisations, 3, N_BINS))
        shape = np.stack([amp * r ** -1.8, 0.1 * params["mu_cen"] / r, 0.01 * params["mu_sat"] ** 2 / r])
        stats = shape * noise
        nan = params["logMmin"] > 13.3
        if nan:
            stats[:, :, 0] = np.nan
        ori = shape * (1.0 + 0.05 * rng.standard_normal((orientation_draws, 3, N_BINS)))
        return SimpleNamespace(stats=stats, n_galaxies=rng.poisson(5000 / amp, n_realisations),
                               seeds=rng.integers(0, 2**63, n_realisations, dtype=np.uint64),
                               orientation_stats=ori if orientation_draws else None, nan_flag=nan)


def fake_engine(catalog_spec):
    return FakeModel(), FakeCatalog()


def _args(out, *extra, points=12):
    return ["--points", str(points), "--seed", "7", "--out", str(out), "--realisations", "3",
            "--catalog", "fake", "--engine", FAKE_ENGINE, *extra]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env[SLEEP_ENV] = "0"
    return env


def assert_same_data(a: Dataset, b: Dataset):
    for name in ("params", "stats", "n_galaxies", "seeds", "status"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    if a.orientation_stats is not None or b.orientation_stats is not None:
        np.testing.assert_array_equal(a.orientation_stats, b.orientation_stats)
    assert json.loads(a.attrs["generation_config"]) == json.loads(b.attrs["generation_config"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted serial run of the 12-point fake dataset."""
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    assert gen.main(_args(out)) == 0
    return read_dataset(out)


def test_point_seed_depends_on_master_seed_and_index_only():
    seeds = [gen.point_seed(7, i) for i in range(100)]
    assert len(set(seeds)) == 100 and all(0 <= s < 2**63 for s in seeds)
    assert gen.point_seed(7, 5) == seeds[5] and gen.point_seed(8, 5) != seeds[5]


def test_reference_run_is_complete_and_consistent(reference):
    assert reference.n_points == 12 and reference.n_realisations == 3
    assert reference.attrs["complete"]
    nan = reference.params[:, 2] > 13.3
    assert nan.any() and (~nan).any()
    np.testing.assert_array_equal(reference.status, np.where(nan, STATUS_NAN, STATUS_DONE))
    assert np.all(np.isfinite(reference.stats[~nan]))
    assert reference.attrs["catalog_hash"] == FakeCatalog.catalog_hash
    assert reference.attrs["domain"]["logMmin_range"] == [11.5, 13.5]
    assert "--points 12" in reference.attrs["creation_command"]


def test_one_and_two_workers_give_identical_files(tmp_path, reference):
    out = tmp_path / "two.h5"
    assert gen.main(_args(out, "--workers", "2")) == 0
    assert_same_data(read_dataset(out), reference)


def test_rerun_skips_finished_points_and_refuses_other_arguments(tmp_path, reference, capsys):
    out = tmp_path / "d.h5"
    gen.main(_args(out))
    part = gen.PartsStore(out).part_path(0)
    stamp = part.stat().st_mtime_ns
    gen.main(_args(out))
    assert part.stat().st_mtime_ns == stamp  # nothing measured again
    assert_same_data(read_dataset(out), reference)
    capsys.readouterr()
    assert gen.main([a if a != "7" else "8" for a in _args(out)]) == 2
    assert "master_seed: 7 there, 8 now" in capsys.readouterr().err
    assert gen.main(_args(out) + ["--realisations", "4"]) == 2
    assert "n_realisations" in capsys.readouterr().err


def test_max_seconds_stops_cleanly_and_resume_completes(tmp_path, reference, monkeypatch, capsys):
    out = tmp_path / "slices.h5"
    monkeypatch.setenv(SLEEP_ENV, "0.15")
    gen.main(_args(out, "--max-seconds", "0.5"))
    first = read_dataset(out)
    n_done = int(np.sum(first.status != STATUS_PENDING))
    assert 1 <= n_done < 12 and not first.attrs["complete"]
    assert "re-run the same command" in capsys.readouterr().out
    monkeypatch.setenv(SLEEP_ENV, "0")
    shutil.rmtree(gen.PartsStore(out).dir)  # the file alone carries the finished work
    gen.main(_args(out))
    assert_same_data(read_dataset(out), reference)


def test_kill_and_resume_equals_uninterrupted_run(tmp_path, reference):
    out = tmp_path / "killed.h5"
    env = _env()
    env[SLEEP_ENV] = "0.3"
    cmd = [sys.executable, "-m", "training.dataset.generate", *_args(out, "--workers", "2")]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    parts = gen.PartsStore(out)
    deadline = time.monotonic() + 60
    while len(list(parts.dir.glob("point_*.npz"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole session: master and pool workers, no clean-up
    proc.wait()
    n_before = len(list(parts.dir.glob("point_*.npz")))
    assert 3 <= n_before < 12 and not out.exists()
    (parts.dir / "point_0000011.npz.tmp999").write_bytes(b"torn write")  # debris must be ignored
    env[SLEEP_ENV] = "0"
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    assert_same_data(read_dataset(out), reference)
    assert not list(parts.dir.glob("*.tmp*"))


def _mpi_env():
    """Environment in which mpi4py loads MPICH; on Debian the pip wheel needs a libmpi.so.12 alias."""
    env = _env()
    probe = [sys.executable, "-c", "from mpi4py import MPI"]
    if subprocess.run(probe, env=env, capture_output=True).returncode == 0:
        return env
    for libdir in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"):
        lib = Path(libdir) / "libmpich.so.12"
        if lib.exists():
            shim = Path(os.environ.get("TMPDIR", "/tmp")) / f"iaemu-mpishim-{os.getpid()}"
            shim.mkdir(exist_ok=True)
            link = shim / "libmpi.so.12"
            if not link.exists():
                link.symlink_to(lib)
            env["LD_LIBRARY_PATH"] = os.pathsep.join([str(shim), env.get("LD_LIBRARY_PATH", "")])
            break
    result = subprocess.run(probe, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"mpiexec is installed but mpi4py cannot load MPI: {result.stderr}"
    return env


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="mpiexec not found (apt-get install -y mpich)")
def test_mpi_two_ranks_equal_pool(tmp_path, reference):
    out = tmp_path / "mpi.h5"
    cmd = ["mpiexec", "-n", "2", sys.executable, "-m", "training.dataset.generate", *_args(out)]
    result = subprocess.run(cmd, env=_mpi_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_same_data(read_dataset(out), reference)


def test_shards_merge_to_the_full_dataset(tmp_path, reference):
    a, b = tmp_path / "s0.h5", tmp_path / "s1.h5"
    gen.main(_args(a, "--shard", "0/2"))
    gen.main(_args(b, "--shard", "1/2"))
    sa = read_dataset(a)
    assert np.all(sa.status[1::2] == STATUS_PENDING) and np.all(sa.status[0::2] != STATUS_PENDING)
    merged = tmp_path / "merged.h5"
    dsmod.merge([a, gen.PartsStore(b).dir], merged)  # files and parts folders both count
    assert_same_data(read_dataset(merged), reference)
    with pytest.raises(ValueError, match="different arguments|master_seed"):
        other = tmp_path / "other.h5"
        gen.main([x if x != "7" else "9" for x in _args(other, "--shard", "0/2")])
        dsmod.merge([a, other], tmp_path / "bad.h5")


def test_dry_run_reports_counts_and_time_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "dry.h5"
    assert gen.main(_args(out, "--dry-run")) == 0
    text = capsys.readouterr().out
    assert "expected galaxies per realisation (400 hosts)" in text
    assert "estimated time for 12 points" in text
    assert not out.exists() and not gen.PartsStore(out).dir.exists()


def test_failing_point_is_recorded_not_fatal():
    class Broken:
        def measure(self, *a, **k):
            raise RuntimeError("populate failed")

    task = gen.Task(3, np.zeros(7), 11, 2, 0)
    part = gen.measure_point(Broken(), task)
    assert part["status"] == STATUS_ERROR and "populate failed" in part["error"]
    assert part["stats"].shape == (2, 3, N_BINS) and np.all(np.isnan(part["stats"]))


def test_expected_counts_fall_with_logMmin():
    from training.dataset.design import realistic_design

    p = realistic_design(64, 0)
    p[:, 3:] = [0.3, 12.0, 13.3, 1.0]
    counts = gen.expected_galaxy_counts(p, FakeCatalog.host_mass)
    order = np.argsort(p[:, 2])
    assert np.all(np.diff(counts[order]) < 0)
    one = gen.expected_galaxy_counts(np.array([[0, 0, 12.0, 0.3, 12.0, 13.0, 1.0]]), np.array([1e13]))
    assert one[0] == pytest.approx(0.5 * (1 + __import__("math").erf(1 / 0.3)) + (1e13 - 1e12) / 1e13)


def test_schema_round_trip(tmp_path, reference):
    ds = reference.subset(np.arange(reference.n_points))
    ds.split = np.arange(ds.n_points, dtype=np.int8) % 3
    ds.orientation_stats = np.random.default_rng(0).normal(size=(ds.n_points, 2, 3, N_BINS))
    write_dataset(tmp_path / "rt.h5", ds)
    back = read_dataset(tmp_path / "rt.h5")
    assert_same_data(back, ds)
    np.testing.assert_array_equal(back.split, ds.split)
    np.testing.assert_array_equal(back.orientation_stats, ds.orientation_stats)
    assert back.attrs["domain"] == ds.attrs["domain"]


def _cleaning_dataset():
    """Eight points, each built to fail exactly one rule (or none)."""
    from iaemu_theory.conventions import BIN_CENTRES as r

    p, reals = 8, 2
    base = np.stack([5.0 * r ** -1.8, 0.05 / r, 0.01 / r])
    stats = np.broadcast_to(base, (p, reals, 3, N_BINS)).copy()
    status = np.full(p, STATUS_DONE, np.int8)
    status[0] = STATUS_PENDING
    stats[0] = np.nan
    status[1] = STATUS_NAN
    stats[1, 0, 0, 0] = np.nan
    stats[2, 1, 1, 5] = 150.0                    # |omega| > 100: impossible for a normalised statistic
    stats[3, 0, 0, np.argmax(r >= 5.0)] = 120.0  # xi > 100 at r >= 2 Mpc/h: shot noise, not clustering
    stats[4, 0, 0, 0] = 5000.0                   # xi > 100 at 0.1 Mpc/h: physical, kept
    stats[5, 1, 0, -1] = -0.01                   # a non-positive xi bin in one realisation
    return Dataset(np.zeros((p, 7)), stats, np.ones((p, reals), np.int64), np.zeros((p, reals), np.uint64), status)


def test_cleaning_rules_and_their_counts():
    ds = _cleaning_dataset()
    keep, report = dsmod.clean(ds)
    np.testing.assert_array_equal(keep, [False, False, False, False, True, False, True, True])
    assert report["removed"] == {"not_measured": 1, "nan": 1, "unphysical": 2, "non_positive_xi": 1}
    assert report["kept"] == 3
    keep_mean, report_mean = dsmod.clean(ds, xi_positive="mean")  # the mean of the two realisations is > 0
    assert report_mean["removed"]["non_positive_xi"] == 0 and keep_mean[5]
    with pytest.raises(ValueError, match="xi_positive='log'"):
        dsmod.clean(ds, xi_positive="log")


def test_split_by_point_is_seeded_and_proportional():
    ds = _cleaning_dataset()
    big = ds.subset(np.concatenate([np.arange(8)] + [np.full(99, 7)]))  # 3 + 99 clean points
    a = dsmod.split(big, seed=4)
    kept = a.split != SPLIT_DROPPED
    assert kept.sum() == 102 and np.sum(a.split == 0) == 71 and np.sum(a.split == 1) == 10 and np.sum(a.split == 2) == 21
    np.testing.assert_array_equal(a.split, dsmod.split(big, seed=4).split)
    assert not np.array_equal(a.split, dsmod.split(big, seed=5).split)
    assert json.loads(a.attrs["cleaning"])["removed"]["unphysical"] == 2
    with pytest.raises(ValueError, match="summing to 1"):
        dsmod.split(big, 0, (0.5, 0.1, 0.1))


def test_split_of_an_extended_design_keeps_the_earlier_labels():
    ds = _cleaning_dataset()
    big = ds.subset(np.concatenate([np.arange(8)] + [np.full(99, 7)]))
    big.params = np.random.default_rng(0).random(big.params.shape)
    first = dsmod.split(big.subset(np.arange(60)), seed=4)
    ext = dsmod.split(big, seed=9, keep_from=first)
    np.testing.assert_array_equal(ext.split[:60], first.split)
    new = ext.split[60:]
    assert np.sum(new == 0) == 33 and np.sum(new == 1) == 5 and np.sum(new == 2) == 9   # 47 new clean points
    unmeasured = first.subset(np.arange(60))          # a point pending then and measured now joins the new ones
    unmeasured.split[10] = SPLIT_DROPPED
    again = dsmod.split(big, seed=9, keep_from=unmeasured)
    np.testing.assert_array_equal(np.delete(again.split[:60], 10), np.delete(first.split[:60], 10))
    assert again.split[10] != SPLIT_DROPPED and np.sum(again.split != SPLIT_DROPPED) == np.sum(ext.split != SPLIT_DROPPED)
    removed_here = big.subset(np.arange(big.n_points))   # point 3 of `first` is clean there, NaN here
    removed_here.attrs.update(catalog_hash="same")
    labelled = np.flatnonzero(first.split != SPLIT_DROPPED)
    removed_here.stats[labelled[0], :, STATISTICS.index("omega"), 0] = np.nan
    same = first.subset(np.arange(60))
    same.attrs.update(catalog_hash="same")
    with pytest.raises(ValueError, match="cleaned differently"):
        dsmod.split(removed_here, seed=9, keep_from=same)
    removed_here.attrs.update(catalog_hash="another")
    moved = dsmod.split(removed_here, seed=9, keep_from=same)    # the same design on another catalog
    assert moved.split[labelled[0]] == SPLIT_DROPPED
    np.testing.assert_array_equal(moved.split[labelled[1:]], first.split[labelled[1:]])
    assert json.loads(moved.attrs["cleaning"])["keep_from_removed"] == 1
    other = big.subset(np.arange(60))
    other.params = other.params + 1.0
    with pytest.raises(ValueError, match="not an extension"):
        dsmod.split(big, seed=9, keep_from=dsmod.split(other, seed=4))


def test_split_command_line(tmp_path, reference, capsys):
    path = tmp_path / "ref.h5"
    write_dataset(path, reference)
    assert dsmod.main(["split", str(path), "--seed", "1", "--xi-positive", "mean"]) == 0
    ds = read_dataset(path)
    n_nan = int(np.sum(reference.status == STATUS_NAN))
    assert np.sum(ds.split == SPLIT_DROPPED) == n_nan and ds.attrs["split_seed"] == 1
    assert "nan              removed" in capsys.readouterr().out


def test_real_engine_on_toy_catalog(tmp_path):
    """The halotools-IA engine end to end: 1 point x 2 realisations of the real mock on the toy catalog."""
    from training.catalogs.sources import load_catalog
    from training.mocks.model import IAMockModel, realisation_seed

    out = tmp_path / "toy.h5"
    gen.main(["--points", "1", "--seed", "3", "--out", str(out), "--catalog", "toy", "--realisations", "2",
              "--orientation-draws", "1", "--populate", "halotools"])
    ds = read_dataset(out)
    assert ds.attrs["complete"] and np.all(ds.n_galaxies > 0) and ds.orientation_stats.shape == (1, 1, 3, N_BINS)
    seed = gen.point_seed(3, 0)
    np.testing.assert_array_equal(ds.seeds[0], [realisation_seed(seed, r) for r in range(2)])
    direct = IAMockModel(load_catalog("toy")).measure(dict(zip(gen.PARAM_NAMES, ds.params[0])), seed, 2, 1)
    np.testing.assert_array_equal(ds.stats[0], direct.stats)
    np.testing.assert_array_equal(ds.orientation_stats[0], direct.orientation_stats)


def test_max_points_and_grace_bound_a_run(tmp_path, reference, monkeypatch, capsys):
    out = tmp_path / "capped.h5"
    gen.main(_args(out, "--max-points", "5"))
    assert np.sum(read_dataset(out).status != STATUS_PENDING) == 5
    monkeypatch.setenv(SLEEP_ENV, "30")  # points that would overrun the limit are abandoned after the grace
    t0 = time.monotonic()
    gen.main(_args(out, "--workers", "2", "--max-seconds", "0.1", "--grace", "1"))
    assert time.monotonic() - t0 < 20
    assert np.sum(read_dataset(out).status != STATUS_PENDING) == 5
    assert "--grace 1 s passed" in capsys.readouterr().out
    monkeypatch.setenv(SLEEP_ENV, "0")
    gen.main(_args(out))
    assert_same_data(read_dataset(out), reference)


def test_dead_worker_keeps_finished_points(tmp_path, reference, monkeypatch, capsys):
    out = tmp_path / "dead.h5"
    monkeypatch.setenv(DIE_ENV, "1")
    assert gen.main(_args(out, "--workers", "2")) == 1
    assert "a worker process died" in capsys.readouterr().out
    assert np.sum(read_dataset(out).status == STATUS_PENDING) >= 1
    monkeypatch.delenv(DIE_ENV)
    assert gen.main(_args(out, "--workers", "2")) == 0
    assert_same_data(read_dataset(out), reference)


def test_stored_design_wins_over_recomputed_one(tmp_path, capsys):
    """A dataset started elsewhere (another SciPy, say) keeps its own points when resumed here."""
    out = tmp_path / "moved.h5"
    gen.main(_args(out, "--max-points", "4"))
    ds = read_dataset(out)
    pending = int(np.flatnonzero(ds.status == STATUS_PENDING)[0])
    ds.params[pending, 0] = 0.123456
    write_dataset(out, ds)
    shutil.rmtree(gen.PartsStore(out).dir)
    gen.main(_args(out))
    final = read_dataset(out)
    assert "continuing with the stored design" in capsys.readouterr().out
    assert final.attrs["complete"] and final.params[pending, 0] == 0.123456
    np.testing.assert_array_equal(final.params, ds.params)
    # the parts of that run alone (what a device slice brings back) keep the stored points too
    delta = dsmod.merge([gen.PartsStore(out).dir], tmp_path / "delta.h5")
    assert delta.params[pending, 0] == 0.123456 and np.sum(delta.status != STATUS_PENDING) == 8
    dsmod.merge([tmp_path / "delta.h5", out], tmp_path / "joined.h5")


def test_more_sobol_points_extend_a_dataset(tmp_path, reference, capsys):
    """--points may grow (a Sobol' prefix is the smaller design): finished points are kept."""
    out = tmp_path / "grow.h5"
    gen.main(_args(out, points=8))
    small = tmp_path / "small.h5"
    shutil.copy(out, small)
    stamp = gen.PartsStore(out).part_path(0).stat().st_mtime_ns
    gen.main(_args(out))
    assert "extending the design from 8 to 12 points" in capsys.readouterr().out
    assert gen.PartsStore(out).part_path(0).stat().st_mtime_ns == stamp
    assert_same_data(read_dataset(out), reference)
    capsys.readouterr()
    assert gen.main(_args(out, points=8)) == 2
    assert "n_points: 12 there, 8 now" in capsys.readouterr().err
    dsmod.merge([small, out], tmp_path / "both.h5")
    assert_same_data(read_dataset(tmp_path / "both.h5"), reference)
    lhs = tmp_path / "lhs.h5"
    gen.main(_args(lhs, "--method", "lhs", points=4))
    assert gen.main(_args(lhs, "--method", "lhs", points=5)) == 2
    assert "n_points" in capsys.readouterr().err
