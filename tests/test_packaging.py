"""The wheel a user installs: small, with the code, the shipped artifact and the Cobaya components' data, without the
datasets and catalogs; installed (not editable) it finds its artifact from any directory."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_shipped import SAMPLE1_BEST_FIT, SAMPLE1_POSTERIOR

ROOT = Path(__file__).resolve().parent.parent
MAX_WHEEL_BYTES = 10 * 1024 * 1024
#: What a source copy leaves out: version control, build outputs (a stale build/lib would leak into the wheel),
#: run outputs.
IGNORED = (".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".benchmarks", "chains", "runs",
           "scratch", ".whl", ".device_out")


def _copy_or_link(src, dst):
    """Large files are linked, not copied: the wheel either leaves them out (as it must) or reads them through."""
    if os.path.getsize(src) > 1 << 20:
        os.symlink(os.path.abspath(src), dst)
    else:
        shutil.copy2(src, dst)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A clean copy of the source tree."""
    src = tmp_path_factory.mktemp("source") / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*IGNORED), copy_function=_copy_or_link)
    return src


@pytest.fixture(scope="module")
def wheel(source, tmp_path_factory):
    """`pip wheel --no-deps --no-build-isolation` of the clean copy (a few seconds)."""
    src, tmp = source, tmp_path_factory.mktemp("wheel")
    out = tmp / "dist"
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src),
                          "-w", str(out)], capture_output=True, text=True, cwd=tmp, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    (path,) = out.glob("iaemu-*.whl")
    return path


@pytest.fixture(scope="module")
def names(wheel):
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def test_wheel_is_small(wheel):
    assert wheel.stat().st_size <= MAX_WHEEL_BYTES, f"{wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB"


def test_wheel_holds_the_code_artifact_and_component_data(names):
    expected = ["iaemu_theory/__init__.py", "iaemu_theory/emulator.py", "iaemu_theory/samplers/nuts.py",
                "training/__init__.py", "training/emulator/train.py", "training/catalogs/nbody/catalog.py",
                "iaemu_theory/artifacts/iaemu_default.pt", "iaemu_theory/data/tng300_sample1.txt",
                "training/configs/shipped.yaml", "training/data/MANIFEST.json"]
    for component in ("IAEmu", "IACorrelationLikelihood", "TNG300Likelihood", "samplers/NUTS"):
        expected += [f"iaemu_theory/{component}.yaml", f"iaemu_theory/{component}.bibtex"]
    missing = sorted(set(expected) - names)
    assert not missing, f"the wheel lacks {missing}"
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)


def test_wheel_has_no_datasets_or_catalogs(names):
    data = sorted(n for n in names if n.endswith((".h5", ".hdf5", ".npz")))
    assert not data, f"the wheel carries data files {data}"
    assert not any(n.startswith(("tests/", "docs/", "yaml/", "scripts/")) for n in names)


def test_sdist_has_no_datasets_or_catalogs(source, tmp_path):
    """The source distribution: code, tests, the shipped yamls, the artifact and the data manifest; not the data."""
    import tarfile

    code = f"import setuptools.build_meta as b; print(b.build_sdist({str(tmp_path)!r}))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=source, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    (sdist,) = tmp_path.glob("iaemu-*.tar.gz")
    assert sdist.stat().st_size <= MAX_WHEEL_BYTES
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[-1] for m in tar.getmembers()}
    assert not sorted(n for n in members if n.endswith((".h5", ".hdf5", ".npz")))
    for name in ("LICENSE", "training/data/MANIFEST.json", "training/configs/shipped.yaml",
                 "iaemu_theory/artifacts/iaemu_default.pt", "yaml/iaemu_tng.yaml", "tests/test_packaging.py"):
        assert name in members, name


def test_installed_wheel_finds_its_artifact_from_another_directory(wheel, tmp_path):
    """`pip install --no-deps --target`: imported from there (not the source tree), the emulator loads the shipped
    artifact and predicts; the repository's data are recorded but absent, and asking for them says so."""
    target = tmp_path / "site"
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                          str(wheel)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = """
import json, numpy as np, iaemu_theory, training
from iaemu_theory import Emulator
from training.common import datafiles
emu = Emulator.load(device="cpu")
point = emu.domain.from_unit(np.full((1, 7), 0.5))
pred = emu.predict(point)
try:
    datafiles.shipped_dataset()
    absent = None
except FileNotFoundError as err:
    absent = str(err)
print(json.dumps({"theory": iaemu_theory.__file__, "training": training.__file__,
                  "xi_finite": bool(np.all(np.isfinite(pred["xi"]))), "absent": absent,
                  "recorded": sorted(datafiles.recorded_files())}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=elsewhere, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    res = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(res["theory"]).is_relative_to(target) and Path(res["training"]).is_relative_to(target)
    assert res["xi_finite"]
    assert res["recorded"] == sorted(["dataset_hires320x3.h5", "default_catalog_v4.npz",
                                      *(f"boxes/{p.name}" for p in (ROOT / "training" / "data" / "boxes").glob("*.npz"))])
    assert res["absent"] and "source repository" in res["absent"]


def test_retired_files_are_documented_with_their_commit_and_sha256():
    """training/data/README.md gives, for every retired file, the commit and sha256 the manifest records and the
    `git show` command that restores it; the kept files are there with their digests."""
    from training.common import datafiles

    readme = (ROOT / "training" / "data" / "README.md").read_text()
    for name, rec in datafiles.retired_files().items():
        assert not (datafiles.DATA_DIR / name).exists(), f"{name} is retired but still in training/data"
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}` |"))
        assert rec["commit"] in row and rec["sha256"] in row and f"`{datafiles.restore_command(name)}`" in row
    for name, digest in datafiles.recorded_files().items():
        assert digest in readme and name in readme


def test_installed_wheel_runs_the_shipped_fits_from_another_directory(wheel, tmp_path):
    """Installed from the wheel (not editable), with the shipped yamls copied to a folder outside the repository:
    the sample-1 fit lands on the documented posterior, and the minimizer finds the sample-1 best fit (test_shipped's values) and writes its output."""
    target, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                          str(wheel)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    for name in ("iaemu_tng.yaml", "iaemu_tng_minimize.yaml"):
        shutil.copy(ROOT / "yaml" / name, work)
    script = """
import sys, iaemu_theory
from pathlib import Path
from cobaya.run import run
from cobaya.yaml import yaml_load_file
assert Path(iaemu_theory.__file__).is_relative_to(sys.argv[1]), iaemu_theory.__file__
_, mcmc = run(yaml_load_file("iaemu_tng.yaml"))
chain = mcmc.products()["sample"]
print("MEAN", *chain.mean(first=len(chain) // 3)[:2])
_, sampler = run(yaml_load_file("iaemu_tng_minimize.yaml"))
best = sampler.products()["minimum"]
print("BEST", best["chi2"], best["mu_cen"], best["mu_sat"])
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "IAEMU_ARTIFACT")}
    env["PYTHONPATH"] = str(target)
    run = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True, cwd=work,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in run.stdout.splitlines()
             if line.startswith(("MEAN ", "BEST "))}
    for name, value in zip(("mu_cen", "mu_sat"), lines["MEAN"]):
        mean, std = SAMPLE1_POSTERIOR[name]
        assert abs(value - mean) < 0.5 * std, (name, value)
    chi2, *best = lines["BEST"]
    assert chi2 <= SAMPLE1_BEST_FIT["chi2"]
    for name, value in zip(("mu_cen", "mu_sat"), best):
        assert abs(value - SAMPLE1_BEST_FIT[name]) < 0.005, (name, value)
    assert (work / "chains" / "iaemu_tng_minimize.minimum.txt").is_file()
