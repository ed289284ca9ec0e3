"""Generate the training dataset: one task per design point, resumable, on a process pool or MPI.

`iaemu-generate --points P --seed S --out FILE` measures xi, omega, eta (R realisations each) at
the P points of the realistic design (`training.design`) and writes FILE (the HDF5 format of
`training.schema`). How it stays correct when interrupted:

* Every finished point is written at once to `FILE.parts/point_<index>.npz` (written under a
  temporary name, flushed, then renamed: a file with the final name is always complete). A
  killed run loses only the points in flight.
* `FILE.parts/manifest.json` records the arguments that define the dataset (points, seed,
  realisations, orientation draws, design method, domain, catalog hash, engine). Re-running the
  same command skips finished points; a re-run with different arguments is refused, naming the
  differences. Workers, shard and time limit may change between runs.
* Each point's seed comes from `SeedSequence(master_seed, spawn_key=(index,))`: results do not
  depend on the number of workers, their order, the shard or how often the run was restarted.
* At the end of every run (finished, time limit reached, interrupted) the parts are merged into
  FILE, all P rows in design order, unfinished ones with status STATUS_PENDING. An existing FILE
  with the same arguments also counts as finished work, so a single file can carry a run's state
  between machines (see docs/dataset.md).

Execution: in-process for --workers 1; a `spawn` process pool for --workers N (spawn, not fork:
the parent may hold threads (tqdm's monitor, numba/OpenMP pools, BLAS) and forking a threaded
process can deadlock the child; spawn also behaves the same on Linux and macOS; the cost, a fresh
import per worker, is paid once per worker). Each worker builds the mock model once. Under
`mpiexec -n K` (K > 1) rank 0 is the master and ranks 1..K-1 are workers (a plain master/worker
loop over mpi4py); only the master writes files.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iaemu_theory.conventions import DEFAULT_REALISATIONS, N_BINS, PARAM_NAMES, STATISTICS, array_to_params
from iaemu_theory.domain import Domain
from training.design import DESIGN_METHODS, design_summary, realistic_design
from training.schema import (SCHEMA_VERSION, STATUS_DONE, STATUS_ERROR, STATUS_NAN, STATUS_PENDING, Dataset,
                             read_dataset, write_dataset)

#: The engine used unless --engine names another: "module:callable", called as f(catalog_spec) -> (model, catalog).
DEFAULT_ENGINE = "training.generate:mock_engine"
#: Environment variables that set per-process thread pools; pool and MPI workers default them to 1.
THREAD_ENV = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: Environment variables by which MPI launchers announce the world size.
MPI_SIZE_ENV = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")
PART_PREFIX = "point_"


# ----------------------------------------------------------------------------------------------
# engine and per-point task


def mock_engine(catalog_spec: str):
    """The real engine: a halotools-IA mock model on a catalog ("default", "test" or a path)."""
    from training.catalogs import load_catalog
    from training.mocks import IAMockModel

    catalog = load_catalog(catalog_spec)
    return IAMockModel(catalog), catalog


def load_engine(spec: str):
    """Import the engine factory named "module:callable"."""
    module, sep, name = spec.partition(":")
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


class PartsStore:
    """FILE.parts/: manifest.json plus one point_<index>.npz per finished point (atomic writes)."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.dir = self.out.with_name(self.out.name + ".parts")
        self.manifest = self.dir / "manifest.json"

    def part_path(self, index: int) -> Path:
        return self.dir / f"{PART_PREFIX}{index:07d}.npz"

    def open(self, config: dict, command: str) -> None:
        """Create the folder and manifest, or check that an existing one has the same config."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.manifest.exists():
            old = json.loads(self.manifest.read_text())
            check_same_config(old["config"], config, str(self.manifest), extend=True)
            if old["config"]["n_points"] != config["n_points"]:
                print(f"extending the design from {old['config']['n_points']} to {config['n_points']} points")
                old["config"] = config
                old.setdefault("extended_by", []).append(command)
                _atomic_write_text(self.manifest, json.dumps(old, indent=1))
        else:
            _atomic_write_text(self.manifest, json.dumps({"config": config, "command": command}, indent=1))
        for stale in self.dir.glob("*.tmp*"):  # debris of a killed write: never read, removed
            stale.unlink(missing_ok=True)

    def command(self) -> str | None:
        """The command that started this dataset (and those that extended it)."""
        if not self.manifest.exists():
            return None
        meta = json.loads(self.manifest.read_text())
        return "; ".join([meta.get("command", "")] + [f"extended by: {c}" for c in meta.get("extended_by", [])])

    def finished(self) -> dict[int, dict]:
        """index -> part, for every complete part file."""
        out = {}
        if not self.dir.is_dir():
            return out
        for path in sorted(self.dir.glob(f"{PART_PREFIX}*.npz")):
            part = read_part(path)
            out[part["index"]] = part
        return out

    def write(self, part: dict) -> None:
        path = self.part_path(part["index"])
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in part.items()})
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def read_part(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        part = {k: z[k] for k in z.files}
    for key in ("index", "status", "seed"):
        part[key] = int(part[key])
    part["seconds"] = float(part["seconds"])
    part["error"] = str(part["error"])
    return part


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def can_extend(old: dict, new: dict) -> bool:
    """True when `new` only asks for more points of the same Sobol' design.

    A prefix of a scrambled Sobol' sequence is the shorter design and point seeds depend on
    (master seed, index) only, so the finished points of the smaller run are points of the larger.
    """
    rest = [k for k in set(old) | set(new) if k != "n_points" and old.get(k) != new.get(k)]
    return not rest and new.get("design_method") == "sobol" and new["n_points"] >= old["n_points"]


def check_same_config(old: dict, new: dict, where: str, extend: bool = False) -> None:
    """Refuse to mix datasets: name every argument that differs (with extend=True, more Sobol' points are fine)."""
    if extend and can_extend(old, new):
        return
    keys = sorted(set(old) | set(new))
    diff = [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k)]
    if diff:
        raise SystemExit(f"error: {where} was made with different arguments; refusing to mix datasets.\n  "
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
            raise ValueError(f"part for point {i} has parameters {part['params']} but the design has {design[i]}")
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
# expected galaxy counts (for --dry-run)


def expected_galaxy_counts(params: np.ndarray, host_mass: np.ndarray) -> np.ndarray:
    """Mean galaxy count per design point from the Zheng07 occupation functions on host masses.

    <Ncen> = (1 + erf((log M - logMmin) / sigma_logM)) / 2 and <Nsat> = ((M - M0) / M1)^alpha for
    M > M0 (halotools' Zheng07 defaults: satellites not modulated by the central occupation).
    """
    from scipy.special import erf

    params = np.atleast_2d(params)
    log_m = np.log10(np.asarray(host_mass, dtype=np.float64))
    m = 10.0 ** log_m
    j = {n: PARAM_NAMES.index(n) for n in PARAM_NAMES}
    out = np.empty(len(params))
    for i, p in enumerate(params):
        ncen = 0.5 * (1.0 + erf((log_m - p[j["logMmin"]]) / p[j["sigma_logM"]]))
        excess = np.clip(m - 10.0 ** p[j["logM0"]], 0.0, None)
        nsat = (excess / 10.0 ** p[j["logM1"]]) ** p[j["alpha"]]
        out[i] = ncen.sum() + nsat.sum()
    return out


def host_masses(catalog) -> np.ndarray | None:
    """Host-halo masses (Msun/h) of a catalog, or None if the catalog does not expose them."""
    for name in ("host_mass", "host_masses"):
        value = getattr(catalog, name, None)
        if value is not None:
            return np.asarray(value() if callable(value) else value, dtype=np.float64)
    table = getattr(catalog, "halo_table", None)
    if table is not None and "halo_mvir" in table.colnames:
        mass = np.asarray(table["halo_mvir"], dtype=np.float64)
        if "halo_upid" in table.colnames:
            mass = mass[np.asarray(table["halo_upid"]) == -1]
        return mass[mass > float(getattr(catalog, "min_host_mass", 0.0) or 0.0)]
    return None


# ----------------------------------------------------------------------------------------------
# execution backends: submit a task, wait for one result


class SerialBackend:
    """In-process (--workers 1)."""

    can_abort = False  # a point measured in this process cannot be cut short

    def __init__(self, model):
        self.model, self.capacity, self.queue = model, 1, []

    def submit(self, task: Task) -> None:
        self.queue.append(task)

    def wait_one(self, timeout: float | None = None) -> dict:
        return measure_point(self.model, self.queue.pop(0))

    def shutdown(self, abort: bool = False) -> None:
        self.queue.clear()


_WORKER_MODEL = None


def _init_worker(engine: str, catalog: str) -> None:
    global _WORKER_MODEL
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master handles Ctrl-C and shuts the pool down
    _WORKER_MODEL = load_engine(engine)(catalog)[0]


def _pool_task(task: Task) -> dict:
    return measure_point(_WORKER_MODEL, task)


class PoolBackend:
    """A `spawn` process pool; each worker builds the model once (see the module docstring)."""

    def __init__(self, n_workers: int, engine: str, catalog: str):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.capacity = n_workers
        self.can_abort = True
        self.pool = ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker, initargs=(engine, catalog))
        self.futures = set()

    def submit(self, task: Task) -> None:
        self.futures.add(self.pool.submit(_pool_task, task))

    def wait_one(self, timeout: float | None = None) -> dict | None:
        """The next finished point, or None if none finished within `timeout` seconds."""
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(self.futures, timeout=timeout, return_when=FIRST_COMPLETED)
        if not done:
            return None
        future = done.pop()
        self.futures.discard(future)
        return future.result()

    def shutdown(self, abort: bool = False) -> None:
        """Normal end: wait for the workers. Abort (Ctrl-C, SIGTERM): kill them; their points are lost."""
        if abort:
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.terminate()
        self.pool.shutdown(wait=not abort, cancel_futures=True)


TAG_TASK, TAG_RESULT, TAG_STOP = 1, 2, 3


class MPIBackend:
    """Master side of the master/worker loop: rank 0 hands one task at a time to idle ranks."""

    def __init__(self, comm):
        self.comm = comm
        self.idle = list(range(1, comm.Get_size()))
        self.capacity = len(self.idle)
        self.requests = {}
        self.stopped = False
        self.can_abort = False  # busy ranks cannot be interrupted; the launcher's walltime is the hard limit

    def submit(self, task: Task) -> None:
        rank = self.idle.pop()
        self.comm.send(task, dest=rank, tag=TAG_TASK)
        self.requests[rank] = self.comm.irecv(source=rank, tag=TAG_RESULT)

    def wait_one(self, timeout: float | None = None) -> dict:
        while True:  # poll with a short sleep: a blocking receive busy-waits a core in MPICH
            for rank, req in list(self.requests.items()):
                ok, part = req.test()
                if ok:
                    del self.requests[rank]
                    self.idle.append(rank)
                    return part
            time.sleep(0.005)

    def shutdown(self, abort: bool = False) -> None:
        """Collect (and drop) results still in flight, then tell every worker to stop. Idempotent."""
        for req in self.requests.values():
            req.wait()
        self.requests.clear()
        if not self.stopped:
            for rank in range(1, self.comm.Get_size()):
                self.comm.send(None, dest=rank, tag=TAG_STOP)
            self.stopped = True


def mpi_worker_loop(comm, engine: str, catalog: str) -> None:
    """Worker ranks: receive tasks until told to stop; build the model at the first task."""
    from mpi4py import MPI

    model = None
    status = MPI.Status()
    while True:
        task = comm.recv(source=0, tag=MPI.ANY_TAG, status=status)
        if status.Get_tag() == TAG_STOP:
            return
        if model is None:
            model = load_engine(engine)(catalog)[0]
        comm.send(measure_point(model, task), dest=0, tag=TAG_RESULT)


def mpi_world():
    """The MPI communicator when launched by mpiexec with more than one rank, else None."""
    sizes = [os.environ.get(name) for name in MPI_SIZE_ENV]
    if not any(s and s.isdigit() and int(s) > 1 for s in sizes):
        return None
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise SystemExit(
            f"error: launched under MPI but mpi4py cannot load its MPI library ({exc}).\n"
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
        raise SystemExit(f"error: --shard {text!r} must look like i/n with integers, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise SystemExit(f"error: --shard {text!r}: need n >= 1 and 0 <= i < n")
    return i, n


def run_config(args, catalog) -> dict:
    """The arguments that define a dataset; a resume must repeat them exactly."""
    domain = Domain(logMmin_range=tuple(args.logMmin_range))
    return dict(n_points=args.points, master_seed=args.seed, n_realisations=args.realisations,
                n_orientation_draws=args.orientation_draws, design_method=args.method, domain=domain.to_dict(),
                catalog_id=str(getattr(catalog, "catalog_id", args.catalog)),
                catalog_hash=str(getattr(catalog, "catalog_hash", "")), engine=args.engine,
                schema_version=SCHEMA_VERSION)


def dataset_attrs(config: dict, command: str) -> dict:
    return dict(domain=config["domain"], catalog_id=config["catalog_id"], catalog_hash=config["catalog_hash"],
                code_version=code_version(), creation_command=command, master_seed=config["master_seed"],
                n_realisations=config["n_realisations"], n_orientation_draws=config["n_orientation_draws"],
                design_method=config["design_method"], n_points_design=config["n_points"],
                generation_config=json.dumps(config, sort_keys=True))


def existing_dataset(out: Path, config: dict) -> Dataset | None:
    """An existing FILE made with the same arguments, or None (refuses a different one)."""
    if not out.exists():
        return None
    ds = read_dataset(out)
    old = ds.attrs.get("generation_config")
    if old is None:
        raise SystemExit(f"error: {out} exists and was not written by iaemu-generate; choose another --out")
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


def merge_outputs(out: Path, config: dict, design: np.ndarray, command: str) -> Dataset:
    """Merge FILE (if any) and FILE.parts/ into FILE; returns the dataset written."""
    store = PartsStore(out)
    existing = existing_dataset(out, config)
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


def run(args, mpi_backend: MPIBackend | None = None) -> int:
    """The master: plan, skip finished points, hand out tasks, write parts, merge."""
    from tqdm import tqdm

    out = Path(args.out)
    command = shlex.join(["iaemu-generate"] + list(args.argv))
    design = realistic_design(args.points, args.seed, Domain(logMmin_range=tuple(args.logMmin_range)), args.method)
    shard_i, shard_n = parse_shard(args.shard)
    mine = np.arange(shard_i, args.points, shard_n)

    model, catalog = load_engine(args.engine)(args.catalog)
    config = run_config(args, catalog)
    store = PartsStore(out)
    existing = existing_dataset(out, config)
    design = settled_design(design, None if existing is None else existing.params)
    finished = {} if existing is None else parts_from_dataset(existing)
    del existing
    if args.dry_run:  # reads, never writes
        if store.manifest.exists():
            check_same_config(json.loads(store.manifest.read_text())["config"], config, str(store.manifest),
                              extend=True)
    else:
        store.open(config, command)
    finished.update(store.finished())
    retry = {i for i, p in finished.items() if p["status"] == STATUS_ERROR} if args.retry_errors else set()
    todo = [int(i) for i in mine if i not in finished or i in retry]

    if args.dry_run:
        dry_run(args, design, todo, model, catalog)
        return 0
    if args.merge_only:
        ds = merge_outputs(out, config, design, command)
        print(f"merged {store.dir} into {out}: {_status_line(ds)}")
        return 0

    if mpi_backend is not None:
        backend = mpi_backend
    elif args.workers > 1:
        del model  # the master does not measure; free the memory before the workers start
        backend = PoolBackend(args.workers, args.engine, args.catalog)
    else:
        backend = SerialBackend(model)

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous_handler = signal.signal(signal.SIGTERM, on_sigterm)
    start = time.monotonic()
    hard_limit = None if args.max_seconds is None or not backend.can_abort else args.max_seconds + args.grace
    durations, queue, in_flight, stopped, submitted, failed = [], list(todo), 0, None, 0, False
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="pt", dynamic_ncols=True, smoothing=0.05,
               desc=out.name + (f" shard {shard_i}/{shard_n}" if shard_n > 1 else ""))
    try:
        while queue or in_flight:
            while queue and in_flight < backend.capacity and stopped is None:
                typical = float(np.median(durations)) if durations else 0.0
                if args.max_seconds is not None and time.monotonic() - start + typical > args.max_seconds:
                    stopped = f"--max-seconds {args.max_seconds:g} reached"
                    break
                if args.max_points is not None and submitted >= args.max_points:
                    stopped = f"--max-points {args.max_points} reached"
                    break
                backend.submit(make_task(args, design, queue.pop(0)))
                in_flight += 1
                submitted += 1
            if not in_flight:
                break
            timeout = None if hard_limit is None else max(0.0, hard_limit - (time.monotonic() - start))
            part = backend.wait_one(timeout)
            if part is None:
                raise KeyboardInterrupt(f"--max-seconds {args.max_seconds:g} + --grace {args.grace:g} s passed")
            in_flight -= 1
            store.write(part)
            durations.append(part["seconds"])
            if part["status"] == STATUS_ERROR:
                tqdm.write(f"point {part['index']} failed: {part['error']}")
            bar.update(1)
        backend.shutdown()
    except KeyboardInterrupt as exc:
        stopped = f"interrupted ({exc or 'Ctrl-C'}); {in_flight} point(s) in flight were lost"
        backend.shutdown(abort=True)
    except BrokenExecutor as exc:  # a worker process died (killed, out of memory): keep what finished
        stopped = f"a worker process died ({exc}); {in_flight} point(s) in flight were lost"
        failed = True
        backend.shutdown(abort=True)
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, previous_handler)
    ds = merge_outputs(out, config, design, command)
    left = int(np.sum(ds.status[mine] == STATUS_PENDING))
    print(f"{out}: {_status_line(ds)}"
          + (f"; this run measured {len(durations)} points in {time.monotonic() - start:.0f} s, "
             f"median {np.median(durations):.2f} s per point per worker" if durations else ""))
    if stopped:
        print(f"stopped: {stopped}.")
    if left:
        print(f"{left} point(s) of this shard left: re-run the same command to continue.")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="iaemu-generate",
        description="Measure xi, omega, eta at the points of the realistic design and write an HDF5 dataset. "
                    "Resumable: re-run the same command to continue. Under `mpiexec -n K` rank 0 hands out points "
                    "to K-1 workers.")
    p.add_argument("--points", type=int, required=True, help="number of design points P")
    p.add_argument("--seed", type=int, required=True, help="master seed (design and every realisation)")
    p.add_argument("--out", required=True, help="output HDF5 file; finished points go to OUT.parts/")
    p.add_argument("--catalog", default="default", help="catalog: 'default', 'test' or a path (default: default)")
    p.add_argument("--realisations", type=int, default=DEFAULT_REALISATIONS,
                   help=f"realisations per point (default {DEFAULT_REALISATIONS})")
    p.add_argument("--orientation-draws", type=int, default=0, help="extra orientation-only draws per point")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1; ignored under MPI)")
    p.add_argument("--logMmin-range", type=float, nargs=2, default=list(Domain().logMmin_range),
                   metavar=("LO", "HI"), help="logMmin range of the design (default %(default)s)")
    p.add_argument("--method", choices=DESIGN_METHODS, default="sobol", help="space-filling design (default sobol)")
    p.add_argument("--shard", default=None, metavar="i/n", help="measure only points with index %% n == i")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop starting new points when the next would end after this many seconds; "
                        "finished points are kept and merged")
    p.add_argument("--grace", type=float, default=60.0,
                   help="with --max-seconds and --workers > 1: points still running this many seconds after the "
                        "limit are abandoned (measured again by the next run; default 60)")
    p.add_argument("--max-points", type=int, default=None,
                   help="measure at most this many points in this run (keeps a run's new output small)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the design, expected galaxy counts and a time estimate (times one point)")
    p.add_argument("--merge-only", action="store_true", help="merge OUT.parts/ into OUT and exit")
    p.add_argument("--retry-errors", action="store_true", help="measure again the points that failed")
    p.add_argument("--engine", default=DEFAULT_ENGINE, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.points < 1:
        raise SystemExit(f"error: --points {args.points} must be >= 1")
    if args.realisations < 1:
        raise SystemExit(f"error: --realisations {args.realisations} must be >= 1")
    if args.orientation_draws < 0:
        raise SystemExit(f"error: --orientation-draws {args.orientation_draws} must be >= 0")
    if args.max_points is not None and args.max_points < 1:
        raise SystemExit(f"error: --max-points {args.max_points} must be >= 1")
    if args.workers < 1:
        raise SystemExit(f"error: --workers {args.workers} must be >= 1")
    lo, hi = args.logMmin_range
    if not lo < hi:
        raise SystemExit(f"error: --logMmin-range {lo} {hi}: need LO < HI")
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
    if comm is not None and comm.Get_rank() > 0:
        mpi_worker_loop(comm, args.engine, args.catalog)
        return 0
    backend = MPIBackend(comm) if comm is not None else None
    try:
        return run(args, backend)
    finally:
        if backend is not None:  # release the workers whatever happened (dry run, refusal, error)
            backend.shutdown()


if __name__ == "__main__":
    sys.exit(main())
