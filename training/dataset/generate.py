"""Generate the training dataset: one task per design point, resumable, on a process pool or MPI.

`iaemu-generate --points P --seed S --out FILE` measures xi, omega, eta (R realisations each) at
the P points of the realistic design (`training.dataset.design`) and writes FILE (the HDF5 format of
`training.dataset.schema`). How it stays correct when interrupted:

* Every finished point is written at once to `FILE.parts/point_<index>.npz` (written under a
  unique temporary name, fsynced, then renamed: a file with the final name is always complete),
  and its sha256 is appended to `FILE.parts/SHA256SUMS`. A killed run loses only the points in
  flight. A part that fails its checksum or cannot be read (truncated, damaged, edited) is
  reported by path, moved aside to `*.bad` and measured again; it is never merged.
* One process at a time works on FILE: generation and merging hold an exclusive lock
  (`FILE.lock`, see `training.common.fileio`); a second one is refused at once, naming the holder.
* `FILE.parts/manifest.json` records the arguments that define the dataset (points, seed,
  realisations, orientation draws, design method, domain, catalog hash, engine). Re-running the
  same command skips finished points; a re-run with different arguments is refused, naming the
  differences. Workers, shard and time limit may change between runs.
* Each point's seed comes from `SeedSequence(master_seed, spawn_key=(index,))`: results do not
  depend on the number of workers, their order, the shard or how often the run was restarted.
* At the end of every run (finished, time limit reached, interrupted) the parts are merged into
  FILE, all P rows in design order, unfinished ones with status STATUS_PENDING. An existing FILE
  with the same arguments also counts as finished work, so a single file can carry a run's state
  between machines (see docs/dataset.md). An unreadable FILE is moved aside to `FILE.bad` and
  rebuilt from the parts; an unreadable manifest is rebuilt when FILE vouches for the arguments,
  else the error says what to delete.
* Ctrl-C exits with status 130 and SIGTERM with 143, after merging what finished. Pool workers
  exit when the master dies (even by kill -9): they watch their parent process.

Execution is the task farm of `training.common.tasks`: in-process for --workers 1; a `spawn`
process pool for --workers N (spawn, not fork: the parent may hold threads (tqdm's monitor,
numba/OpenMP pools, BLAS) and forking a threaded process can deadlock the child; the cost, a fresh
import per worker, is paid once per worker). Each worker builds the mock model once. Under
`mpiexec -n K` (K > 1) rank 0 is the master and ranks 1..K-1 serve points through
`mpi4py.futures.MPICommExecutor`; only the master writes files.
"""
from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iaemu_theory.conventions import DEFAULT_REALISATIONS, N_BINS, PARAM_NAMES, STATISTICS, array_to_params
from iaemu_theory.domain import Domain
from training.common.cli import (add_debug_argument, finite_float, interrupt_exit_code, nonnegative_float, nonnegative_int,
                          positive_float, positive_int, run_command, seed_type)
from training.dataset.design import DESIGN_METHODS, design_summary, realistic_design
from training.common import tasks
from training.common.fileio import atomic_write_bytes, atomic_write_text, exclusive_lock, sha256_bytes, stale_temporaries
from training.catalogs.sources import DEFAULT_CATALOG
from training.mocks.occupation import expected_galaxy_counts, host_masses
from training.dataset.schema import (SCHEMA_VERSION, STATUS_DONE, STATUS_ERROR, STATUS_NAN, STATUS_PENDING, Dataset,
                             DatasetFileError, read_dataset, write_dataset)

#: The halotools-IA engine: "module:callable", called as f(catalog_spec) -> (model, catalog).
DEFAULT_ENGINE = "training.dataset.generate:mock_engine"
#: Earlier spellings of engines, as recorded in existing datasets' generation_config: the same engine.
ENGINE_ALIASES = {"training.generate:mock_engine": DEFAULT_ENGINE}
#: The engine of each --populate choice (unless --engine names another): the fast populate of
#: training.mocks.fastpop (the same galaxies in law) or halotools-IA's own populate (the reference).
POPULATE_ENGINES = {"fast": "training.dataset.generate:fast_mock_engine", "halotools": DEFAULT_ENGINE}
#: --populate when not given.
DEFAULT_POPULATE = "fast"
#: Environment variables that set per-process thread pools; pool and MPI workers default them to 1.
THREAD_ENV = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: Environment variables by which MPI launchers announce the world size.
MPI_SIZE_ENV = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")
PART_PREFIX = "point_"
#: The parts folder's checksum file: one "<sha256>  <part name>" line per part written (the last line of a name counts).
SUMS_NAME = "SHA256SUMS"
#: Suffix of a damaged file moved aside (never read again, kept for inspection).
BAD_SUFFIX = ".bad"
#: Seconds between a pool worker's checks that its master is still alive.
_SUM_LINE = re.compile(r"^([0-9a-f]{64})  (\S+)$")
_PART_NAME = re.compile(rf"^{PART_PREFIX}(\d+)\.npz$")


# ----------------------------------------------------------------------------------------------
# engine and per-point task


def mock_engine(catalog_spec: str):
    """The real engine: a halotools-IA mock model on a catalog or catalog set (load_catalog's names and paths)."""
    from training.catalogs.sources import load_catalog
    from training.mocks.fastpop import mock_model

    catalog = load_catalog(catalog_spec)
    return mock_model(catalog, populate="halotools"), catalog


def fast_mock_engine(catalog_spec: str):
    """The paper's model with the fast populate (training.mocks.fastpop) on a catalog or catalog set."""
    from training.catalogs.sources import load_catalog
    from training.mocks.fastpop import mock_model

    catalog = load_catalog(catalog_spec)
    return mock_model(catalog, populate="fast"), catalog


def populate_of(engine: str) -> str:
    """The --populate choice an engine stands for ("fast", "halotools"), or "custom" for another engine."""
    engine = ENGINE_ALIASES.get(engine, engine)
    return next((name for name, spec in POPULATE_ENGINES.items() if spec == engine), "custom")


def load_engine(spec: str):
    """Import the engine factory named "module:callable"."""
    module, sep, name = ENGINE_ALIASES.get(spec, spec).partition(":")
    if not sep or not module or not name:
        raise ValueError(f"engine {spec!r} must look like 'module:callable'")
    return getattr(importlib.import_module(module), name)


def point_seed(master_seed: int, index: int) -> int:
    """The seed of design point `index`: a function of (master seed, index) only, < 2**63."""
    state = np.random.SeedSequence(int(master_seed), spawn_key=(int(index),)).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


@dataclass(frozen=True)
class Task:
    index: int
    params: np.ndarray
    seed: int
    n_realisations: int
    n_orientation_draws: int


def measure_point(model, task: Task) -> dict:
    """Run the engine on one point; never raises (a failure becomes status STATUS_ERROR)."""
    r, k = task.n_realisations, task.n_orientation_draws
    t0 = time.perf_counter()
    part = dict(index=task.index, params=np.asarray(task.params, dtype=np.float64), seed=task.seed, error="")
    try:
        res = model.measure(array_to_params(task.params), task.seed, n_realisations=r, orientation_draws=k)
        stats = np.asarray(res.stats, dtype=np.float64)
        if stats.shape != (r, len(STATISTICS), N_BINS):
            raise ValueError(f"engine returned stats of shape {stats.shape}, expected {(r, len(STATISTICS), N_BINS)}")
        ori = getattr(res, "orientation_stats", None)
        ori = np.full((k, len(STATISTICS), N_BINS), np.nan) if ori is None else np.asarray(ori, dtype=np.float64)
        if ori.shape != (k, len(STATISTICS), N_BINS):
            raise ValueError(f"engine returned orientation_stats of shape {ori.shape}, expected {(k, 3, N_BINS)}")
        nan = bool(getattr(res, "nan_flag", False)) or not np.all(np.isfinite(stats))
        part.update(stats=stats, n_galaxies=np.asarray(res.n_galaxies, dtype=np.int64).reshape(r),
                    seeds=np.asarray(res.seeds, dtype=np.uint64).reshape(r), orientation_stats=ori,
                    status=STATUS_NAN if nan else STATUS_DONE)
    except Exception as exc:  # a bad point must not stop the run; it is recorded and reported
        part.update(stats=np.full((r, len(STATISTICS), N_BINS), np.nan), n_galaxies=np.full(r, -1, np.int64),
                    seeds=np.zeros(r, np.uint64), orientation_stats=np.full((k, len(STATISTICS), N_BINS), np.nan),
                    status=STATUS_ERROR, error=f"{type(exc).__name__}: {exc}")
    part["seconds"] = time.perf_counter() - t0
    return part


# ----------------------------------------------------------------------------------------------
# the parts folder


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class PartsStore:
    """FILE.parts/: manifest.json, SHA256SUMS and one point_<index>.npz per finished point (atomic writes)."""

    def __init__(self, out: Path, parts_dir: Path | None = None):
        self.out = Path(out)
        self.dir = Path(parts_dir) if parts_dir is not None else self.out.with_name(self.out.name + ".parts")
        self.manifest = self.dir / "manifest.json"
        self.sums_path = self.dir / SUMS_NAME
        self._sums_end_checked = False
        self._missing_noted = False

    @classmethod
    def at(cls, parts_dir) -> "PartsStore":
        """The store of an existing parts folder (FILE.parts or a copy of it under another name)."""
        parts_dir = Path(parts_dir)
        name = parts_dir.name[:-len(".parts")] if parts_dir.name.endswith(".parts") else parts_dir.name
        return cls(parts_dir.with_name(name), parts_dir)

    def part_path(self, index: int) -> Path:
        return self.dir / f"{PART_PREFIX}{index:07d}.npz"

    def part_files(self) -> list[Path]:
        return sorted(p for p in self.dir.glob(f"{PART_PREFIX}*.npz") if _PART_NAME.match(p.name))

    def read_manifest(self) -> dict | None:
        """The manifest (None if there is none); ValueError naming it if it cannot be read."""
        if not self.manifest.exists():
            return None
        try:
            meta = json.loads(self.manifest.read_text())
            if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
                raise ValueError("no 'config' mapping")
        except (OSError, ValueError) as exc:
            raise ValueError(f"the manifest {self.manifest} cannot be read ({type(exc).__name__}: {exc})") from None
        return meta

    def open(self, config: dict, command: str, vouched: bool = False) -> None:
        """Create the folder and manifest, or check that an existing one has the same config.

        `vouched`: FILE exists and was made with `config`, so an unreadable manifest can be rebuilt
        from it. Otherwise an unreadable manifest beside parts is an error saying what to delete.
        Call with the output's lock held (debris of killed writes is removed here).
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob("*.tmp*"):  # debris of a killed write: never read, removed
            stale.unlink(missing_ok=True)
        try:
            old = self.read_manifest()
        except ValueError as exc:
            n_parts = len(self.part_files())
            if n_parts and not vouched:
                raise ValueError(f"{exc}, so the arguments that made the {n_parts} part(s) in {self.dir} are "
                                 f"unknown. If this same command made them, delete {self.manifest} and re-run "
                                 f"(every part is checked against the design and its seed); otherwise delete "
                                 f"{self.dir} to start again") from None
            bad = self.manifest.with_name(self.manifest.name + BAD_SUFFIX)
            os.replace(self.manifest, bad)
            _warn(f"warning: {exc}; moved it to {bad} and wrote a new one from this command"
                  + (f" ({self.out} was made with the same arguments)" if n_parts else " (no parts yet)"))
            old = None
        if old is None:
            self._adopt_unchecked_parts()
            meta = {"config": config, "command": command, "checksums": SUMS_NAME}
            atomic_write_text(self.manifest, json.dumps(meta, indent=1))
            return
        check_same_config(old["config"], config, str(self.manifest), extend=True)
        changed = False
        if old["config"]["n_points"] != config["n_points"]:
            print(f"extending the design from {old['config']['n_points']} to {config['n_points']} points")
            old["config"] = config
            old.setdefault("extended_by", []).append(command)
            changed = True
        if "checksums" not in old:  # a folder written before parts were checksummed
            self._adopt_unchecked_parts()
            old["checksums"] = SUMS_NAME
            changed = True
        if changed:
            atomic_write_text(self.manifest, json.dumps(old, indent=1))

    def _adopt_unchecked_parts(self) -> None:
        """Record the checksum of every readable part that has none (parts of a folder without SHA256SUMS)."""
        if self.sums_path.exists():
            return
        for path in self.part_files():
            data = path.read_bytes()
            try:
                part_from_bytes(data)
            except ValueError:
                continue  # left unrecorded: finished() reports it and moves it aside
            self._append_sum(path.name, sha256_bytes(data))

    def command(self) -> str | None:
        """The command that started this dataset (and those that extended it)."""
        try:
            meta = self.read_manifest()
        except ValueError:
            return None
        if meta is None:
            return None
        return "; ".join([meta.get("command", "")] + [f"extended by: {c}" for c in meta.get("extended_by", [])])

    def checksums(self) -> dict[str, str]:
        """part name -> sha256 recorded when it was written (the last line of a name; torn lines ignored)."""
        sums = {}
        if self.sums_path.exists():
            for line in self.sums_path.read_text(errors="replace").splitlines():
                match = _SUM_LINE.match(line)
                if match:
                    sums[match.group(2)] = match.group(1)
        return sums

    def _checked(self) -> bool:
        """Whether parts must match a recorded checksum (the folder was written with checksums)."""
        if self.sums_path.exists():
            return True
        try:
            meta = self.read_manifest()
        except ValueError:
            return True
        return bool(meta and meta.get("checksums"))

    def finished(self, quarantine: bool = True) -> dict[int, dict]:
        """index -> part, for every part that passes its checksum and reads back whole.

        A part that does not is reported by path and left out; with `quarantine` (the generator,
        holding the lock) it is also moved aside to `*.bad`, so its point is measured again.
        """
        out = {}
        if not self.dir.is_dir():
            return out
        sums, checked = self.checksums(), self._checked()
        for path in self.part_files():
            index = int(_PART_NAME.match(path.name).group(1))
            try:
                data = path.read_bytes()
                if checked:
                    want = sums.get(path.name)
                    if want is None:
                        raise ValueError(f"no checksum in {SUMS_NAME} (the run was killed while writing it?)")
                    if sha256_bytes(data) != want:
                        raise ValueError(f"its sha256 differs from the one recorded in {SUMS_NAME} when it was "
                                         "written (damaged or edited)")
                part = part_from_bytes(data)
                if part["index"] != index:
                    raise ValueError(f"it holds point {part['index']}, not {index}")
            except (OSError, ValueError) as exc:
                self._reject(path, index, exc, quarantine)
                continue
            part["path"] = str(path)
            out[index] = part
        missing = [n for n in sums if not (self.dir / n).exists() and not (self.dir / (n + BAD_SUFFIX)).exists()]
        if missing and not self._missing_noted:
            self._missing_noted = True
            _warn(f"note: {len(missing)} part(s) recorded in {self.sums_path} are missing (e.g. {missing[0]}); "
                  "their points are measured again unless FILE holds them")
        return out

    def _reject(self, path: Path, index: int, exc: Exception, quarantine: bool) -> None:
        if not quarantine:
            _warn(f"warning: part {path} is damaged ({exc}); skipped, point {index} not merged")
            return
        bad = path.with_name(path.name + BAD_SUFFIX)
        os.replace(path, bad)
        _warn(f"warning: part {path} is damaged ({exc}); moved to {bad}, point {index} will be measured again")

    def write(self, part: dict) -> None:
        """Write one part atomically, then record its sha256 (a part without its line is measured again)."""
        path = self.part_path(part["index"])
        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.asarray(v) for k, v in part.items() if k != "path"})
        data = buffer.getvalue()
        atomic_write_bytes(path, data)
        self._append_sum(path.name, sha256_bytes(data))

    def _append_sum(self, name: str, digest: str) -> None:
        with open(self.sums_path, "a+b") as fh:
            if not self._sums_end_checked:  # a line torn by a kill must not swallow the next one
                fh.seek(0, os.SEEK_END)
                if fh.tell():
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        fh.write(b"\n")
                self._sums_end_checked = True
            fh.write(f"{digest}  {name}\n".encode())
            fh.flush()
            os.fsync(fh.fileno())


#: Keys of a part file, and the ones converted back to Python scalars when read.
PART_ARRAYS = ("params", "stats", "n_galaxies", "seeds", "orientation_stats")
PART_SCALARS = dict(index=int, status=int, seed=int, seconds=float, error=str)


def part_from_bytes(data: bytes) -> dict:
    """A part from the bytes of its npz; ValueError (saying what is wrong) if they are not a whole part."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            part = {k: z[k] for k in z.files}
    except Exception as exc:  # BadZipFile, EOFError, zlib and CRC errors: all mean a damaged file
        raise ValueError(f"not a readable npz: {type(exc).__name__}: {exc}") from None
    missing = [k for k in (*PART_ARRAYS, *PART_SCALARS) if k not in part]
    if missing:
        raise ValueError(f"lacks {missing}")
    try:
        for key, kind in PART_SCALARS.items():
            part[key] = kind(part[key])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad scalar field: {exc}") from None
    r = part["stats"].shape[0] if part["stats"].ndim == 3 else -1
    shapes = dict(params=(len(PARAM_NAMES),), stats=(r, len(STATISTICS), N_BINS), n_galaxies=(r,), seeds=(r,))
    for key, shape in shapes.items():
        if part[key].shape != shape:
            raise ValueError(f"{key} has shape {part[key].shape}, expected {shape}")
    if part["orientation_stats"].ndim != 3 or part["orientation_stats"].shape[1:] != (len(STATISTICS), N_BINS):
        raise ValueError(f"orientation_stats has shape {part['orientation_stats'].shape}")
    return part


def read_part(path) -> dict:
    """One part file, without checksum verification (`PartsStore.finished` verifies); ValueError naming it."""
    try:
        return part_from_bytes(Path(path).read_bytes())
    except ValueError as exc:
        raise ValueError(f"part {path}: {exc}") from None


def check_parts(parts: dict[int, dict], args, design: np.ndarray) -> None:
    """Refuse parts made with other arguments: each must hold its design point, seed and shapes."""
    r, k = args.realisations, args.orientation_draws
    for i, part in parts.items():
        where = part.get("path", f"point {i}")
        if i >= len(design):
            raise ValueError(f"part {where} is point {i}, beyond the design's {len(design)} points")
        problems = []
        if not np.array_equal(part["params"], design[i]):
            problems.append(f"parameters {part['params'].tolist()}, the design has {design[i].tolist()}")
        if part["seed"] != point_seed(args.seed, i):
            problems.append(f"seed {part['seed']}, expected {point_seed(args.seed, i)} for --seed {args.seed}")
        if part["stats"].shape[0] != r:
            problems.append(f"{part['stats'].shape[0]} realisations, --realisations is {r}")
        if part["orientation_stats"].shape[0] != k:
            problems.append(f"{part['orientation_stats'].shape[0]} orientation draws, --orientation-draws is {k}")
        if problems:
            raise ValueError(f"part {where} was made with other arguments: " + "; ".join(problems)
                             + ". Use another --out, or repeat the original arguments")


def _canonical_config(config: dict) -> dict:
    """The config with an engine's earlier spelling replaced by its current one (ENGINE_ALIASES), and the
    populate of configs written before it was recorded (their engine's: halotools-IA for the real engine)."""
    engine = config.get("engine")
    config = {**config, "engine": ENGINE_ALIASES.get(engine, engine)} if engine in ENGINE_ALIASES else config
    return config if "populate" in config or engine is None else {**config, "populate": populate_of(engine)}


def can_extend(old: dict, new: dict) -> bool:
    """True when `new` only asks for more points of the same Sobol' design.

    A prefix of a scrambled Sobol' sequence is the shorter design and point seeds depend on
    (master seed, index) only, so the finished points of the smaller run are points of the larger.
    """
    old, new = _canonical_config(old), _canonical_config(new)
    rest = [k for k in set(old) | set(new) if k != "n_points" and old.get(k) != new.get(k)]
    return not rest and new.get("design_method") == "sobol" and new["n_points"] >= old["n_points"]


def check_same_config(old: dict, new: dict, where: str, extend: bool = False) -> None:
    """Refuse to mix datasets: name every argument that differs (with extend=True, more Sobol' points are fine)."""
    if extend and can_extend(old, new):
        return
    old, new = _canonical_config(old), _canonical_config(new)
    keys = sorted(set(old) | set(new))
    diff = [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k)]
    if diff:
        raise ValueError(f"{where} was made with different arguments; refusing to mix datasets.\n  "
                         + "\n  ".join(diff)
                         + "\nUse another --out, or repeat the original arguments to resume.")


# ----------------------------------------------------------------------------------------------
# assembling the dataset


def assemble(config: dict, design: np.ndarray, parts: dict[int, dict], attrs: dict) -> Dataset:
    """All design rows in order; rows without a part are STATUS_PENDING with NaN statistics."""
    p, r, k = len(design), config["n_realisations"], config["n_orientation_draws"]
    stats = np.full((p, r, len(STATISTICS), N_BINS), np.nan)
    ori = np.full((p, k, len(STATISTICS), N_BINS), np.nan) if k else None
    n_gal = np.full((p, r), -1, np.int64)
    seeds = np.zeros((p, r), np.uint64)
    status = np.full(p, STATUS_PENDING, np.int8)
    seconds = []
    for i, part in parts.items():
        if not np.array_equal(part["params"], design[i]):
            raise ValueError(f"part {part.get('path', i)} has parameters {part['params']} but point {i} of the "
                             f"design has {design[i]}")
        stats[i], n_gal[i], seeds[i], status[i] = part["stats"], part["n_galaxies"], part["seeds"], part["status"]
        if k:
            ori[i] = part["orientation_stats"]
        if np.isfinite(part.get("seconds", np.nan)):
            seconds.append(part["seconds"])
    attrs = dict(attrs)
    if seconds:
        attrs.update(seconds_per_point_mean=float(np.mean(seconds)), seconds_per_point_median=float(np.median(seconds)),
                     cpu_seconds_total=float(np.sum(seconds)))
    counts = {name: int(np.sum(status == code)) for name, code in
              (("done", STATUS_DONE), ("nan", STATUS_NAN), ("error", STATUS_ERROR), ("pending", STATUS_PENDING))}
    attrs["status_counts"] = json.dumps(counts)
    attrs["complete"] = bool(counts["pending"] == 0)
    return Dataset(design.copy(), stats, n_gal, seeds, status, orientation_stats=ori, attrs=attrs)


def parts_from_dataset(ds: Dataset) -> dict[int, dict]:
    """The finished rows of a dataset file as parts (so an earlier FILE counts as finished work)."""
    out = {}
    for i in np.flatnonzero(ds.status != STATUS_PENDING):
        out[int(i)] = dict(index=int(i), params=ds.params[i], stats=ds.stats[i], n_galaxies=ds.n_galaxies[i],
                           seeds=ds.seeds[i], status=int(ds.status[i]), seconds=np.nan, error="",
                           orientation_stats=(ds.orientation_stats[i] if ds.orientation_stats is not None
                                              else np.zeros((0, len(STATISTICS), N_BINS))))
    return out


def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    from iaemu_theory import __version__

    try:
        here = Path(__file__).resolve().parent
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10)
        if rev.returncode == 0 and rev.stdout.strip():
            return f"{__version__}+g{rev.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__


# ----------------------------------------------------------------------------------------------
# the task farm (training.common.tasks): each worker builds the engine's model once


def engine_model(engine: str, catalog: str):
    """A worker's state: the model of `engine` on `catalog` (the farm's setup)."""
    return load_engine(engine)(catalog)[0]


def make_farm(args, model=None):
    """In process (--workers 1, with the `model` already built) or a spawn pool of --workers processes."""
    return tasks.make_farm(measure_point, engine_model, (args.engine, args.catalog), workers=args.workers,
                           state=model)


def mpi_world():
    """The MPI communicator when launched by mpiexec with more than one rank, else None."""
    sizes = [os.environ.get(name) for name in MPI_SIZE_ENV]
    if not any(s and s.isdigit() and int(s) > 1 for s in sizes):
        return None
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise OSError(
            f"launched under MPI but mpi4py cannot load its MPI library ({exc}).\n"
            "Install an MPI implementation and mpi4py built for it; on Debian with the pip wheel of mpi4py, "
            "MPICH's library is named libmpich.so.12 while the wheel needs libmpi.so.12: "
            "`ln -s libmpich.so.12 /usr/lib/x86_64-linux-gnu/libmpi.so.12`.") from None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


# ----------------------------------------------------------------------------------------------
# the master loop


def parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r} must look like i/n with integers, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text!r}: need n >= 1 and 0 <= i < n")
    return i, n


def run_config(args, catalog) -> dict:
    """The arguments that define a dataset; a resume must repeat them exactly."""
    domain = Domain(logMmin_range=tuple(args.logMmin_range))
    return dict(n_points=args.points, master_seed=args.seed, n_realisations=args.realisations,
                n_orientation_draws=args.orientation_draws, design_method=args.method, domain=domain.to_dict(),
                catalog_id=str(getattr(catalog, "catalog_id", args.catalog)),
                catalog_hash=str(getattr(catalog, "catalog_hash", "")), engine=args.engine,
                populate=populate_of(args.engine), schema_version=SCHEMA_VERSION)


def dataset_attrs(config: dict, command: str) -> dict:
    return dict(domain=config["domain"], catalog_id=config["catalog_id"], catalog_hash=config["catalog_hash"],
                code_version=code_version(), creation_command=command, master_seed=config["master_seed"],
                n_realisations=config["n_realisations"], n_orientation_draws=config["n_orientation_draws"],
                design_method=config["design_method"], n_points_design=config["n_points"],
                populate=_canonical_config(config).get("populate", "custom"), generation_config=json.dumps(config, sort_keys=True))


def existing_dataset(out: Path, config: dict, store: PartsStore | None = None, move_damaged: bool = True):
    """An existing FILE made with the same arguments, or None (refuses a different one).

    A FILE that cannot be read is moved aside to FILE.bad (with `move_damaged`) when a parts folder
    can rebuild it; without one the error says what to do.
    """
    if not out.exists():
        return None
    try:
        ds = read_dataset(out)
    except DatasetFileError as exc:
        if store is None or not store.dir.is_dir() or not (store.manifest.exists() or store.part_files()):
            raise ValueError(f"{exc}. There is no {store.dir if store else 'parts folder'} to rebuild it from: "
                             f"restore {out} from a copy, or delete it to start again") from None
        if not move_damaged:
            _warn(f"warning: {exc}; it would be moved aside and rebuilt from {store.dir}")
            return None
        bad = out.with_name(out.name + BAD_SUFFIX)
        os.replace(out, bad)
        _warn(f"warning: {exc}; moved it to {bad}, {out} is rebuilt from {store.dir} (rows only it held are "
              "pending and measured again)")
        return None
    old = ds.attrs.get("generation_config")
    if old is None:
        raise ValueError(f"{out} exists and was not written by iaemu-generate; choose another --out")
    check_same_config(json.loads(old), config, str(out), extend=True)
    return ds


def settled_design(design: np.ndarray, stored: np.ndarray | None) -> np.ndarray:
    """The design of a dataset is fixed when it is started: stored `params` win over a recomputation.

    They equal `design` (or its prefix, for an extended Sobol' design) unless the file was started
    with another SciPy/NumPy whose Sobol' draws differ; then the stored points are kept (so every row
    is what was measured) and a note is printed.
    """
    if stored is None:
        return design
    n = len(stored)
    if not np.array_equal(stored, design[:n]):
        print("note: the design recomputed here differs from the one stored in the dataset (another SciPy or "
              "NumPy version?); continuing with the stored design")
    out = design.copy()
    out[:n] = stored
    return out


def merge_outputs(out: Path, config: dict, design: np.ndarray, command: str,
                  store: PartsStore | None = None) -> Dataset:
    """Merge FILE (if any) and FILE.parts/ into FILE; returns the dataset written (call with the lock held)."""
    store = PartsStore(out) if store is None else store
    existing = existing_dataset(out, config, store)
    parts = {} if existing is None else parts_from_dataset(existing)
    parts.update(store.finished())
    ds = assemble(config, design, parts, dataset_attrs(config, store.command() or command))
    write_dataset(out, ds)
    return ds


def _status_line(ds: Dataset) -> str:
    counts = json.loads(ds.attrs["status_counts"])
    return (f"{counts['done']} done, {counts['nan']} with NaN statistics, {counts['error']} failed, "
            f"{counts['pending']} pending of {ds.n_points}")


def dry_run(args, design, todo, model, catalog) -> None:
    print(design_summary(design))
    print(f"domain: {json.dumps(Domain(logMmin_range=tuple(args.logMmin_range)).to_dict())}")
    print(f"catalog: {getattr(catalog, 'catalog_id', args.catalog)} (hash {getattr(catalog, 'catalog_hash', '?')})")
    print(f"this run: {len(todo)} points to measure x {args.realisations} realisations"
          + (f" + {args.orientation_draws} orientation draws" if args.orientation_draws else ""))
    masses = host_masses(catalog)
    counts = None
    if masses is not None:
        counts = expected_galaxy_counts(design, masses)
        q = np.percentile(counts, [0, 5, 50, 95, 100])
        print(f"expected galaxies per realisation ({masses.size} hosts): min {q[0]:.0f}, 5% {q[1]:.0f}, "
              f"median {q[2]:.0f}, 95% {q[3]:.0f}, max {q[4]:.0f}; points below 100: {np.sum(counts < 100)}, "
              f"below 1000: {np.sum(counts < 1000)}")
    else:
        print("expected galaxies: the catalog does not expose host masses")
    if not todo:
        return
    pick = todo[int(np.argsort(counts[todo])[len(todo) // 2])] if counts is not None else todo[0]
    task = make_task(args, design, pick)
    measure_point(model, Task(task.index, task.params, task.seed, 1, min(1, task.n_orientation_draws)))  # compile
    t0 = time.perf_counter()
    part = measure_point(model, task)
    seconds = time.perf_counter() - t0
    n_workers = max(1, args.workers)
    print(f"one point (index {pick}, {int(np.nanmean(part['n_galaxies']))} galaxies, status {part['status']}"
          + (f", {part['error']}" if part["error"] else "") + f") took {seconds:.2f} s")
    total = seconds * len(todo) / n_workers
    print(f"estimated time for {len(todo)} points on {n_workers} worker(s): {total:.0f} s ({total / 3600:.2f} h)")


def make_task(args, design, index) -> Task:
    return Task(int(index), design[index], point_seed(args.seed, index), args.realisations, args.orientation_draws)


def run(args, mpi_farm=None) -> int:
    """The master: plan, skip finished points, hand out tasks, write parts, merge.

    Returns 0, 1 if a worker process died, 130 / 143 if interrupted by SIGINT / SIGTERM.
    """
    out = Path(args.out)
    command = shlex.join(["iaemu-generate"] + list(args.argv))
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; expected a file name such as {out / 'data.h5'}")
    if args.dry_run:  # reads, never writes (so takes no lock)
        return _run_locked(args, mpi_farm, out, command)
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out, command):
        for stale in stale_temporaries(out):  # a merge killed while writing FILE
            stale.unlink(missing_ok=True)
        return _run_locked(args, mpi_farm, out, command)


@dataclass
class Plan:
    """What a generation run will do: the design, this shard's points, the engine, the parts store and the points
    still to measure (`plan`)."""

    design: np.ndarray
    shard: tuple[int, int]
    mine: np.ndarray
    model: object
    catalog: object
    config: dict
    store: PartsStore
    todo: list[int]


@dataclass
class Outcome:
    """How `drive` ended: the measured points' seconds, why it stopped early (None: it did not) and the exit code."""

    durations: list = field(default_factory=list)
    stopped: str | None = None
    code: int = 0


def plan(args, out: Path, command: str) -> Plan:
    """Step 1: the design (settled against an existing dataset), this shard's points, the engine, the parts
    store (opened, except for a dry run) and the points still to measure (unfinished, or errors with
    --retry-errors)."""
    design = realistic_design(args.points, args.seed, Domain(logMmin_range=tuple(args.logMmin_range)), args.method)
    shard_i, shard_n = parse_shard(args.shard)
    mine = np.arange(shard_i, args.points, shard_n)

    model, catalog = load_engine(args.engine)(args.catalog)
    config = run_config(args, catalog)
    store = PartsStore(out)
    existing = existing_dataset(out, config, store, move_damaged=not args.dry_run)
    design = settled_design(design, None if existing is None else existing.params)
    finished = {} if existing is None else parts_from_dataset(existing)
    vouched = existing is not None
    del existing
    if args.dry_run:
        try:
            manifest = store.read_manifest()
        except ValueError as exc:
            _warn(f"warning: {exc}")
            manifest = None
        if manifest is not None:
            check_same_config(manifest["config"], config, str(store.manifest), extend=True)
    else:
        store.open(config, command, vouched=vouched)
    from_parts = store.finished(quarantine=not args.dry_run)
    check_parts(from_parts, args, design)
    finished.update(from_parts)
    del from_parts
    retry = {i for i, p in finished.items() if p["status"] == STATUS_ERROR} if args.retry_errors else set()
    todo = [int(i) for i in mine if i not in finished or i in retry]
    return Plan(design=design, shard=(shard_i, shard_n), mine=mine, model=model, catalog=catalog, config=config,
                store=store, todo=todo)


def drive(args, work: Plan, backend, out: Path) -> Outcome:
    """Step 2: keep the backend's capacity busy with the plan's points, write each finished part as it arrives,
    and stop at --max-points, at --max-seconds (abandoning what is in flight after --grace), on an interrupt or
    when a worker process dies; what finished is kept in every case."""
    from tqdm import tqdm

    start = time.monotonic()
    hard_limit = None if args.max_seconds is None or not backend.can_abort else args.max_seconds + args.grace
    result = Outcome()
    queue, in_flight, submitted, aborted = list(work.todo), 0, 0, False
    shard_i, shard_n = work.shard
    bar = tqdm(total=len(work.mine), initial=len(work.mine) - len(work.todo), unit="pt", dynamic_ncols=True,
               smoothing=0.05, desc=out.name + (f" shard {shard_i}/{shard_n}" if shard_n > 1 else ""))
    try:
        while queue or in_flight:
            while queue and in_flight < backend.capacity and result.stopped is None:
                typical = float(np.median(result.durations)) if result.durations else 0.0
                if args.max_seconds is not None and time.monotonic() - start + typical > args.max_seconds:
                    result.stopped = f"--max-seconds {args.max_seconds:g} reached"
                    break
                if args.max_points is not None and submitted >= args.max_points:
                    result.stopped = f"--max-points {args.max_points} reached"
                    break
                backend.submit(make_task(args, work.design, queue.pop(0)))
                in_flight += 1
                submitted += 1
            if not in_flight:
                break
            timeout = None if hard_limit is None else max(0.0, hard_limit - (time.monotonic() - start))
            part = backend.wait_one(timeout)
            if part is None:
                result.stopped = (f"--max-seconds {args.max_seconds:g} + --grace {args.grace:g} s passed; "
                                  f"{in_flight} point(s) in flight were abandoned")
                backend.shutdown(abort=True)
                aborted = True
                break
            in_flight -= 1
            work.store.write(part)
            result.durations.append(part["seconds"])
            if part["status"] == STATUS_ERROR:
                tqdm.write(f"point {part['index']} failed: {part['error']}")
            bar.update(1)
        if not aborted:
            backend.shutdown()
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (turned into `Interrupted` by run_command)
        result.stopped = f"interrupted ({exc or 'Ctrl-C'}); {in_flight} point(s) in flight were lost"
        result.code = interrupt_exit_code(exc)
        backend.shutdown(abort=True)
    except BrokenExecutor as exc:  # a worker process died (killed, out of memory): keep what finished
        result.stopped = f"a worker process died ({exc}); {in_flight} point(s) in flight were lost"
        result.code = 1
        backend.shutdown(abort=True)
    finally:
        bar.close()
    return result


def _run_locked(args, mpi_farm, out: Path, command: str) -> int:
    """The body of `run`, with the output's lock held (or a dry run): `plan`, then `drive`, then merge."""
    work = plan(args, out, command)
    if args.dry_run:
        dry_run(args, work.design, work.todo, work.model, work.catalog)
        return 0
    if args.merge_only:
        ds = merge_outputs(out, work.config, work.design, command, work.store)
        print(f"merged {work.store.dir} into {out}: {_status_line(ds)}")
        return 0

    if mpi_farm is not None:
        backend = mpi_farm
    elif args.workers > 1:
        work.model = None  # the master does not measure; free the memory before the workers start
        backend = make_farm(args)
    else:
        backend = make_farm(args, work.model)
    start = time.monotonic()
    result = drive(args, work, backend, out)
    ds = merge_outputs(out, work.config, work.design, command, work.store)
    left = int(np.sum(ds.status[work.mine] == STATUS_PENDING))
    durations = result.durations
    print(f"{out}: {_status_line(ds)}"
          + (f"; this run measured {len(durations)} points in {time.monotonic() - start:.0f} s, "
             f"median {np.median(durations):.2f} s per point per worker" if durations else ""))
    if result.stopped:
        print(f"stopped: {result.stopped}.")
    if left:
        print(f"{left} point(s) of this shard left: re-run the same command to continue.")
    return result.code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="iaemu-generate",
        description="Measure xi, omega, eta at the points of the realistic design and write an HDF5 dataset. "
                    "Resumable: re-run the same command to continue. Under `mpiexec -n K` rank 0 hands out points "
                    "to K-1 workers. Exit status: 0 done, 1 a worker died, 2 bad input, 130/143 interrupted.")
    p.add_argument("--points", type=positive_int, required=True, help="number of design points P")
    p.add_argument("--seed", type=seed_type, required=True,
                   help="master seed, an integer in [0, 2**63) (design and every realisation)")
    p.add_argument("--out", required=True, help="output HDF5 file; finished points go to OUT.parts/")
    p.add_argument("--catalog", default=DEFAULT_CATALOG,
                   help="catalog or catalog set: a preset ('default', 'test'), a path, a set name or paths joined by "
                        f"'+', whose boxes the realisations cycle through (default: {DEFAULT_CATALOG})")
    p.add_argument("--realisations", type=positive_int, default=DEFAULT_REALISATIONS,
                   help=f"realisations per point (default {DEFAULT_REALISATIONS})")
    p.add_argument("--orientation-draws", type=nonnegative_int, default=0,
                   help="extra orientation-only draws per point")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="local worker processes (default 1; ignored under MPI)")
    p.add_argument("--logMmin-range", type=finite_float, nargs=2, default=list(Domain().logMmin_range),
                   metavar=("LO", "HI"), help="logMmin range of the design (default %(default)s)")
    p.add_argument("--method", choices=DESIGN_METHODS, default="sobol", help="space-filling design (default sobol)")
    p.add_argument("--shard", default=None, metavar="i/n", help="measure only points with index %% n == i")
    p.add_argument("--max-seconds", type=positive_float, default=None,
                   help="stop starting new points when the next would end after this many seconds; "
                        "finished points are kept and merged")
    p.add_argument("--grace", type=nonnegative_float, default=60.0,
                   help="with --max-seconds and --workers > 1: points still running this many seconds after the "
                        "limit are abandoned (measured again by the next run; default 60)")
    p.add_argument("--max-points", type=positive_int, default=None,
                   help="measure at most this many points in this run (keeps a run's new output small)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the design, expected galaxy counts and a time estimate (times one point)")
    p.add_argument("--merge-only", action="store_true", help="merge OUT.parts/ into OUT and exit")
    p.add_argument("--retry-errors", action="store_true", help="measure again the points that failed")
    p.add_argument("--populate", choices=sorted(POPULATE_ENGINES), default=None,
                   help=f"galaxy populate: 'fast' (training.mocks.fastpop, the same galaxies in law) or 'halotools' "
                        f"(halotools-IA's own, the reference); recorded in the dataset, which never mixes the two "
                        f"(default {DEFAULT_POPULATE})")
    p.add_argument("--engine", default=None, help=argparse.SUPPRESS)
    add_debug_argument(p)
    return p


def main(argv=None) -> int:
    """Entry point of `iaemu-generate`; returns the exit status (see `training.common.cli.run_command`)."""
    return run_command("iaemu-generate", _main, argv)


def _main(argv: list) -> int:
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.engine is None:
        args.engine = POPULATE_ENGINES[args.populate or DEFAULT_POPULATE]
    elif args.populate is not None:
        raise ValueError(f"--populate {args.populate} and --engine {args.engine} both given: an engine does its own "
                         "populate; give one of them")
    lo, hi = args.logMmin_range
    if not lo < hi:
        raise ValueError(f"--logMmin-range {lo:g} {hi:g}: need LO < HI")
    parse_shard(args.shard)
    comm = mpi_world()
    saved_env = {name: os.environ.get(name) for name in THREAD_ENV}
    if comm is not None or args.workers > 1:
        for name in THREAD_ENV:  # one thread per worker process; inherited by spawned workers
            os.environ.setdefault(name, "1")
    try:
        return _run(args, comm)
    finally:  # leave the caller's environment as it was (numba refuses a changed thread count later)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run(args, comm) -> int:
    """The body of `main` once the arguments are checked."""
    if comm is None:
        return run(args)
    with tasks.mpi_farm(comm, measure_point, engine_model, (args.engine, args.catalog)) as farm:
        if farm is None:  # a worker rank: it served points until rank 0 was done
            return 0
        return run(args, farm)


if __name__ == "__main__":
    sys.exit(main())
