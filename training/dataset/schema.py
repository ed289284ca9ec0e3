"""The dataset file format (HDF5, one file per dataset). One home for its names.

Layout (P parameter points, R realisations, 3 statistics in STATISTICS order, 20 bins):

  params        (P, 7)        float64   parameters in PARAM_NAMES order
  stats         (P, R, 3, 20) float64   per-realisation xi, omega, eta (NaN where not measured)
  n_galaxies    (P, R)        int64     galaxies in each realisation
  seeds         (P, R)        uint64    seed of each realisation
  status        (P,)          int8      STATUS_* codes below
  bin_edges     (21,)         float64   radial bin edges, Mpc/h
  split         (P,)          int8      optional: SPLIT_* codes (train/validation/test, -1 = dropped)
  orientation_stats (P, K, 3, 20) float64  optional: extra orientation-only draws

Attributes (JSON strings where structured): schema_version, param_names, statistics, domain,
catalog_id, catalog_hash, code_version, creation_command, master_seed, n_realisations.

Files are written atomically (a unique temporary file, fsynced, then renamed: `training.common.fileio`) and
their chunked arrays carry HDF5's Fletcher-32 checksum, so a damaged file is refused when read
(`DatasetFileError`, naming the file) instead of giving wrong numbers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iaemu_theory.conventions import BIN_EDGES, N_BINS, PARAM_NAMES, STATISTICS

SCHEMA_VERSION = 1

STATUS_PENDING = 0
STATUS_DONE = 1
STATUS_NAN = 2
STATUS_ERROR = 3

SPLIT_DROPPED = -1
SPLIT_TRAIN = 0
SPLIT_VALIDATION = 1
SPLIT_TEST = 2
SPLIT_NAMES = {SPLIT_TRAIN: "train", SPLIT_VALIDATION: "validation", SPLIT_TEST: "test"}

JSON_ATTRS = ("param_names", "statistics", "domain")
REQUIRED_ARRAYS = ("params", "stats", "n_galaxies", "seeds", "status", "bin_edges")


class DatasetFileError(ValueError):
    """A dataset file that cannot be read: not HDF5, truncated, damaged, or missing arrays."""


@dataclass
class Dataset:
    """An in-memory dataset; see the module docstring for the meaning of each field."""

    params: np.ndarray
    stats: np.ndarray
    n_galaxies: np.ndarray
    seeds: np.ndarray
    status: np.ndarray
    bin_edges: np.ndarray = field(default_factory=lambda: np.array(BIN_EDGES))
    split: np.ndarray | None = None
    orientation_stats: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        p = self.params.shape[0]
        if self.params.shape != (p, len(PARAM_NAMES)):
            raise ValueError(f"params must have shape (P, {len(PARAM_NAMES)}), got {self.params.shape}")
        if self.stats.ndim != 4 or self.stats.shape[0] != p or self.stats.shape[2:] != (len(STATISTICS), N_BINS):
            raise ValueError(f"stats must have shape ({p}, R, {len(STATISTICS)}, {N_BINS}), got {self.stats.shape}")
        r = self.stats.shape[1]
        for name in ("n_galaxies", "seeds"):
            if getattr(self, name).shape != (p, r):
                raise ValueError(f"{name} must have shape ({p}, {r}), got {getattr(self, name).shape}")
        if self.status.shape != (p,):
            raise ValueError(f"status must have shape ({p},), got {self.status.shape}")
        if self.split is not None and self.split.shape != (p,):
            raise ValueError(f"split must have shape ({p},), got {self.split.shape}")

    @property
    def n_points(self) -> int:
        return self.params.shape[0]

    @property
    def n_realisations(self) -> int:
        return self.stats.shape[1]

    def subset(self, mask) -> "Dataset":
        """Rows selected by a boolean mask or index array."""
        pick = lambda a: None if a is None else a[mask]  # noqa: E731
        return Dataset(self.params[mask], self.stats[mask], self.n_galaxies[mask], self.seeds[mask],
                       self.status[mask], self.bin_edges, pick(self.split), pick(self.orientation_stats),
                       dict(self.attrs))


def write_dataset(path, ds: Dataset, compression: str = "gzip") -> None:
    """Write atomically: a unique temporary file in the same folder, fsynced, then renamed over `path`."""
    import h5py

    from training.common.fileio import atomic_path

    kw = dict(compression=compression, shuffle=True, fletcher32=True) if compression else dict(fletcher32=True)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("params", data=ds.params.astype(np.float64), **kw)
        f.create_dataset("stats", data=ds.stats.astype(np.float64), **kw)
        f.create_dataset("n_galaxies", data=ds.n_galaxies.astype(np.int64), **kw)
        f.create_dataset("seeds", data=ds.seeds.astype(np.uint64), **kw)
        f.create_dataset("status", data=ds.status.astype(np.int8), **kw)
        f.create_dataset("bin_edges", data=np.asarray(ds.bin_edges, dtype=np.float64))
        if ds.split is not None:
            f.create_dataset("split", data=ds.split.astype(np.int8), **kw)
        if ds.orientation_stats is not None:
            f.create_dataset("orientation_stats", data=ds.orientation_stats.astype(np.float64), **kw)
        attrs = {"schema_version": SCHEMA_VERSION, "param_names": list(PARAM_NAMES), "statistics": list(STATISTICS)}
        attrs.update(ds.attrs)
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value) if key in JSON_ATTRS else value


def read_dataset(path) -> Dataset:
    """Read a dataset file, checking its schema version, parameter order and statistics.

    FileNotFoundError if it is missing; DatasetFileError (naming the file) if it cannot be read;
    ValueError if it is another schema version or orders its parameters or statistics differently.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            attrs = {}
            for key, value in f.attrs.items():
                if isinstance(value, bytes):
                    value = value.decode()
                if key in JSON_ATTRS:
                    value = json.loads(value)
                elif isinstance(value, np.generic):
                    value = value.item()
                attrs[key] = value
            missing = [k for k in REQUIRED_ARRAYS if k not in f]
            if missing:
                raise DatasetFileError(f"dataset file {path} lacks the array(s) {missing}: not a complete dataset "
                                       f"file (expected {list(REQUIRED_ARRAYS)})")
            arrays = {k: f[k][()] for k in (*REQUIRED_ARRAYS, "split", "orientation_stats") if k in f}
    except DatasetFileError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # truncated, not HDF5, a failed chunk checksum
        raise DatasetFileError(f"dataset file {path} cannot be read ({type(exc).__name__}: {exc}); it is damaged "
                               "or not an HDF5 dataset file") from None
    if attrs.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {attrs.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    for key in ("param_names", "statistics"):
        if key not in attrs:
            raise DatasetFileError(f"dataset file {path} lacks the attribute {key!r}")
    if tuple(attrs["param_names"]) != PARAM_NAMES:
        raise ValueError(f"{path}: parameter order {attrs['param_names']} differs from {list(PARAM_NAMES)}")
    if tuple(attrs["statistics"]) != STATISTICS:
        raise ValueError(f"{path}: statistics {attrs['statistics']} differ from {list(STATISTICS)}")
    try:
        return Dataset(arrays["params"], arrays["stats"], arrays["n_galaxies"], arrays["seeds"], arrays["status"],
                       arrays["bin_edges"], arrays.get("split"), arrays.get("orientation_stats"), attrs)
    except ValueError as exc:
        raise DatasetFileError(f"dataset file {path}: {exc}") from None
