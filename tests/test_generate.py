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

from iaemu_theory.conventions import BIN_CENTRES, N_BINS
from training import dataset as dsmod
from training import generate as gen
from training.schema import (STATUS_DONE, STATUS_ERROR, STATUS_NAN, STATUS_PENDING, SPLIT_DROPPED, Dataset,
                             read_dataset, write_dataset)

TESTS = Path(__file__).resolve().parent
FAKE_ENGINE = "test_generate:fake_engine"
SLEEP_ENV = "IAEMU_FAKE_SLEEP"


class FakeCatalog:
    catalog_id = "fake"
    catalog_hash = "f" * 16
    host_mass = 10.0 ** np.linspace(11.0, 15.0, 400)


class FakeModel:
    """Statistics that depend on the parameters and the seed only (like the real engine)."""

    def measure(self, params, seed, n_realisations=10, orientation_draws=0):
        time.sleep(float(os.environ.get(SLEEP_ENV, "0")))
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
    with pytest.raises(SystemExit, match="master_seed: 7 there, 8 now"):
        gen.main([a if a != "7" else "8" for a in _args(out)])
    with pytest.raises(SystemExit, match="n_realisations"):
        gen.main(_args(out) + ["--realisations", "4"])


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
    cmd = [sys.executable, "-m", "training.generate", *_args(out, "--workers", "2")]
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
    cmd = ["mpiexec", "-n", "2", sys.executable, "-m", "training.generate", *_args(out)]
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
    from training.design import realistic_design

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
