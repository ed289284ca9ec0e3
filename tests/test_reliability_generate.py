"""Reliability of dataset generation and merging: locking, checksummed parts, damaged files, signals,
worker clean-up and `error:` lines instead of tracebacks.

Uses the fake engine of test_generate (a deterministic stand-in for the mock model), so every test
runs in seconds; the process tests are bounded by explicit deadlines.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from test_generate import SLEEP_ENV, _args, _env, assert_same_data
from training.dataset import manage as dsmod
from training.dataset import generate as gen
from training.common.cli import run_command
from training.common.fileio import LockHeld, atomic_write_text, exclusive_lock, lock_path
from training.dataset.schema import STATUS_PENDING, DatasetFileError, read_dataset, write_dataset

GENERATE = [sys.executable, "-m", "training.dataset.generate"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted serial run of the 12-point fake dataset."""
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    assert gen.main(_args(out)) == 0
    return read_dataset(out)


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)


def _n_parts(out) -> int:
    return len(list(gen.PartsStore(out).dir.glob("point_*.npz")))


HOLD = """
import sys, time
from training.common.fileio import exclusive_lock
with exclusive_lock(sys.argv[1], "test holder"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_second_process_on_one_output_is_refused_naming_the_holder(tmp_path, reference):
    out = tmp_path / "data.h5"
    assert gen.main(_args(out)) == 0
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for cmd in (GENERATE + _args(out, "--merge-only"), GENERATE + _args(out)):
            res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=60)
            assert res.returncode == 2, res.stderr
            assert f"is in use: {lock_path(out)} is held by pid {holder.pid}" in res.stderr
            assert "test holder" in res.stderr and "Traceback" not in res.stderr
        with pytest.raises(LockHeld, match=f"pid {holder.pid}"):
            dsmod.merge([gen.PartsStore(out).dir], out)
    finally:
        holder.kill()  # SIGKILL: the holder runs no clean-up, its lock file stays behind
        holder.wait()
    assert lock_path(out).exists()
    assert_same_data(read_dataset(out), reference)
    assert gen.main(_args(out, "--merge-only")) == 0  # a dead holder's lock never blocks
    assert not lock_path(out).exists()


def test_concurrent_merges_never_damage_the_dataset(tmp_path, reference):
    out = tmp_path / "data.h5"
    assert gen.main(_args(out)) == 0
    cmd = GENERATE + _args(out, "--merge-only")
    for _ in range(3):
        out.unlink()
        procs = [subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
        for code, err in results:
            assert code == 0 or (code == 2 and "is in use" in err), err
        assert any(code == 0 for code, _ in results)
        assert_same_data(read_dataset(out), reference)
        assert not list(tmp_path.glob("*.tmp"))


def test_lock_is_exclusive_within_a_process_and_released(tmp_path):
    target = tmp_path / "x.h5"
    with exclusive_lock(target, "first"):
        with pytest.raises(LockHeld, match="running: first"):
            with exclusive_lock(target, "second"):
                pass
    with exclusive_lock(target, "third"):
        pass
    assert not lock_path(target).exists()


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_parts_are_reported_moved_aside_and_measured_again(tmp_path, reference, capsys):
    out = tmp_path / "d.h5"
    assert gen.main(_args(out)) == 0
    out.unlink()  # the parts are the only record
    store = gen.PartsStore(out)
    truncated, empty, flipped, edited, missing = (store.part_path(i) for i in (1, 2, 3, 4, 5))
    truncated.write_bytes(truncated.read_bytes()[:200])
    empty.write_bytes(b"")
    _flip_byte(flipped, len(flipped.read_bytes()) // 2)
    with np.load(edited) as z:
        values = {k: z[k] for k in z.files}
    values["stats"] = values["stats"] * 1.01  # a valid npz with other numbers
    np.savez(edited, **values)
    missing.unlink()
    capsys.readouterr()

    merged = dsmod.merge([store.dir], tmp_path / "merged.h5")  # a merge reads, reports and leaves them out
    err = capsys.readouterr().err
    for path in (truncated, empty, flipped, edited):
        assert f"part {path} is damaged" in err and path.exists()
    assert np.all(merged.status[[1, 2, 3, 4, 5]] == STATUS_PENDING)
    np.testing.assert_array_equal(merged.stats[0], reference.stats[0])

    assert gen.main(_args(out)) == 0  # the run moves them aside and measures their points again
    err = capsys.readouterr().err
    for path in (truncated, empty, flipped, edited):
        assert f"part {path} is damaged" in err and "will be measured again" in err
        assert path.with_name(path.name + ".bad").exists()
    assert "sha256 differs" in err
    assert_same_data(read_dataset(out), reference)
    assert gen.main(_args(out)) == 0 and "damaged" not in capsys.readouterr().err


def test_part_without_its_checksum_line_is_measured_again(tmp_path, reference, capsys):
    """A kill between a part's rename and its SHA256SUMS line: the part is not trusted."""
    out = tmp_path / "d.h5"
    assert gen.main(_args(out)) == 0
    out.unlink()
    store = gen.PartsStore(out)
    lines = store.sums_path.read_text().splitlines()
    name = store.part_path(6).name
    store.sums_path.write_text("\n".join(x for x in lines if not x.endswith(name)) + "\n" + lines[0][:30])
    assert gen.main(_args(out)) == 0
    assert f"no checksum in {gen.SUMS_NAME}" in capsys.readouterr().err
    assert_same_data(read_dataset(out), reference)
    assert gen.main(_args(out)) == 0 and "damaged" not in capsys.readouterr().err  # the torn line did no harm


def test_damaged_manifest_and_dataset_file_name_the_file_and_resume(tmp_path, reference, capsys):
    out = tmp_path / "d.h5"
    assert gen.main(_args(out)) == 0
    store = gen.PartsStore(out)
    text = store.manifest.read_text()
    store.manifest.write_text(text[: len(text) // 2])
    capsys.readouterr()
    assert gen.main(_args(out)) == 0  # FILE vouches for the arguments: the manifest is rebuilt
    assert f"the manifest {store.manifest} cannot be read" in capsys.readouterr().err
    assert store.read_manifest()["checksums"] == gen.SUMS_NAME
    assert store.manifest.with_name("manifest.json.bad").exists()

    out.write_bytes(out.read_bytes()[:1000])  # a truncated FILE: moved aside, rebuilt from the parts
    with pytest.raises(DatasetFileError, match=str(out)):
        read_dataset(out)
    assert gen.main(_args(out)) == 0
    assert f"moved it to {out}.bad" in capsys.readouterr().err
    assert_same_data(read_dataset(out), reference)

    out.unlink()
    store.manifest.write_text("{")  # no FILE to vouch: refuse, saying what to delete
    assert gen.main(_args(out)) == 2
    err = capsys.readouterr().err
    assert "iaemu-generate: error:" in err and f"delete {store.manifest}" in err and "Traceback" not in err
    store.manifest.unlink()
    assert gen.main(_args(out)) == 0
    assert_same_data(read_dataset(out), reference)

    store_less = tmp_path / "alone.h5"  # a damaged FILE with no parts folder: an error, nothing moved
    store_less.write_bytes(b"not hdf5 at all")
    assert gen.main(_args(store_less)) == 2
    assert f"dataset file {store_less} cannot be read" in capsys.readouterr().err and store_less.exists()


def test_parts_of_other_arguments_are_refused_by_path(tmp_path, capsys):
    out = tmp_path / "d.h5"
    assert gen.main(_args(out, "--max-points", "3")) == 0
    out.unlink()
    gen.PartsStore(out).manifest.unlink()  # nothing says which arguments made the parts but the parts
    capsys.readouterr()
    assert gen.main([a if a != "7" else "8" for a in _args(out)]) == 2
    err = capsys.readouterr().err
    assert f"part {gen.PartsStore(out).part_path(0)} was made with other arguments" in err and "seed" in err


def test_bit_flip_inside_the_dataset_file_is_detected(tmp_path, reference):
    path = tmp_path / "rt.h5"
    write_dataset(path, reference)
    with h5py.File(path, "r") as f:
        info = f["stats"].id.get_chunk_info(0)
    _flip_byte(path, info.byte_offset + info.size // 2)
    with pytest.raises(DatasetFileError, match=f"dataset file {path} cannot be read"):
        read_dataset(path)


def _start(out, *extra, sleep="0.3", workers="2"):
    env = _env()
    env[SLEEP_ENV] = sleep
    return subprocess.Popen(GENERATE + _args(out, "--workers", workers, *extra), env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("signum, code, workers", [(signal.SIGINT, 130, "2"), (signal.SIGTERM, 143, "2"),
                                                   (signal.SIGTERM, 143, "1")])
def test_interrupted_generation_exits_128_plus_signal_and_keeps_its_points(tmp_path, signum, code, workers, request):
    if signum == signal.SIGINT:
        request.getfixturevalue("sigint_delivered")
    out = tmp_path / "sig.h5"
    proc = _start(out, sleep="2.0", workers=workers)     # 12 points of 2 s: the signal lands mid-run even under load
    try:
        _wait_for(lambda: _n_parts(out) >= 2, 30, "two finished points")
        proc.send_signal(signum)
        text = proc.communicate(timeout=30)[0]
    finally:
        proc.kill()
    assert proc.returncode == code, text
    assert "stopped: interrupted" in text and "Traceback" not in text
    ds = read_dataset(out)
    assert 2 <= np.sum(ds.status != STATUS_PENDING) < 12


def _live_processes_in_group(pgid: int) -> list[str]:
    """Processes (not zombies) of process group `pgid`, as 'pid cmdline' lines."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append(f"{entry.name} {cmdline}")
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_kill_9_of_the_master_leaves_no_worker_behind(tmp_path):
    out = tmp_path / "orphans.h5"
    proc = _start(out, sleep="0.5")
    try:
        _wait_for(lambda: _n_parts(out) >= 2, 30, "two finished points")
        assert len(_live_processes_in_group(proc.pid)) >= 3  # master, two workers (and the resource tracker)
        os.kill(proc.pid, signal.SIGKILL)  # the master alone: no clean-up runs
        proc.wait(timeout=10)
        _wait_for(lambda: not _live_processes_in_group(proc.pid), 10, "the workers and resource tracker to exit")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert 2 <= _n_parts(out) < 12


def _run_cli(cmd, debug=False):
    env = _env()
    env.pop("IAEMU_DEBUG", None)
    if debug:
        env["IAEMU_DEBUG"] = "1"
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_commands_print_error_lines_not_tracebacks(tmp_path):
    out = str(tmp_path / "e.h5")
    toy = "mu_cen=0.8,mu_sat=0.5,logMmin=11.8,sigma_logM=0.26"
    cases = [
        (GENERATE + _args(out, "--seed", "-3"), "argument --seed: -3 is outside [0, 2**63)"),
        (GENERATE + _args(out, "--realisations", "2.7"), "argument --realisations: '2.7' is not an integer"),
        (GENERATE + _args(out, "--logMmin-range", "13", "12"), "--logMmin-range 13 12: need LO < HI"),
        (GENERATE + _args(out, "--max-seconds", "nan"), "argument --max-seconds: nan must be a finite number"),
        (GENERATE + _args(out, "--shard", "3/2"), "--shard '3/2': need n >= 1 and 0 <= i < n"),
        ([sys.executable, "-m", "training.mocks.mock_cli", "--catalog", "toy", "--params",
          toy + ",logM0=12,logM1=13,alpha=1", "--seed", "99999999999999999999999", "--out", str(tmp_path / "m")],
         "argument --seed: 99999999999999999999999 is outside [0, 2**63)"),
        ([sys.executable, "-m", "training.mocks.mock_cli", "--catalog", "toy", "--params", toy + ",logM0=8,logM1=8,alpha=3",
          "--out", str(tmp_path / "m.npz")], "logM0=8, logM1=8, alpha=3 ask for about"),
        ([sys.executable, "-m", "training.mocks.mock_cli", "--catalog", "toy", "--params", toy + ",logM0=12,logM1=13,alpha=1",
          "--out", str(tmp_path / "no" / "m.npz")], "folder " + str(tmp_path / "no") + " does not exist"),
        ([sys.executable, "-m", "training.dataset", "summary", str(tmp_path / "absent.h5")],
         f"dataset file {tmp_path / 'absent.h5'} does not exist"),
        ([sys.executable, "-m", "training.dataset", "merge", str(tmp_path), "--out", str(tmp_path / "m.h5")],
         "is not a parts folder of iaemu-generate"),
    ]
    for cmd, message in cases:
        res = _run_cli(cmd)
        assert res.returncode == 2, (cmd, res.stdout, res.stderr)
        assert "error: " in res.stderr and message in res.stderr, (cmd, res.stderr)
        assert "Traceback" not in res.stderr, (cmd, res.stderr)
    res = _run_cli(GENERATE + _args(out, "--logMmin-range", "13", "12"), debug=True)  # asked for: a traceback
    assert res.returncode == 2 and "Traceback" in res.stderr and "need LO < HI" in res.stderr
    res = _run_cli(GENERATE + _args(out, "--logMmin-range", "13", "12", "--debug"))
    assert res.returncode == 2 and "Traceback" in res.stderr


def test_run_command_exit_codes(capsys):
    def body(error):
        def run(argv):
            raise error
        return run

    assert run_command("t", body(ValueError("--x 3: expected 1 or 2")), []) == 2
    assert capsys.readouterr().err.strip() == "t: error: --x 3: expected 1 or 2"
    assert run_command("t", body(KeyboardInterrupt()), []) == 130
    from training.common.cli import Interrupted

    assert run_command("t", body(Interrupted(signal.SIGTERM)), []) == 143
    assert run_command("t", body(ZeroDivisionError("boom")), []) == 1
    assert "unexpected ZeroDivisionError: boom (re-run with --debug" in capsys.readouterr().err
    assert run_command("t", lambda argv: argv.count("--debug"), ["a", "--debug"]) == 0


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path):
    from training.common.fileio import _umask, atomic_path

    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's private 0600
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "f.txt", "x")
