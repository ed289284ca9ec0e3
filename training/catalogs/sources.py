"""Halo catalogs for the halotools-IA mock model.

Every source gives the same thing: a `halotools.sim_manager.UserSuppliedHaloCatalog` holding the
columns in REQUIRED_COLUMNS (float64 / int64), with metadata attributes

    Lbox (Mpc/h, cubic box), particle_mass (Msun/h), redshift,
    catalog_id (str), catalog_hash (sha256 hex of the columns and metadata, see `catalog_hash`),
    min_host_mass (Msun/h: host halos at or below it are ignored by the mock),
    host_mass_bins (None, or the SubhaloPhaseSpace host-mass bin edges to use).

Sources (`load_catalog`):
  - "bolplanck": halotools' cached Bolshoi-Planck Rockstar catalog (the paper's catalog).
  - "toy": `make_toy_catalog`, a small synthetic catalog for tests and demos (not physical).
  - a path: an .npz or .hdf5/.h5 file with the columns (see `read_catalog_file`), or a
    halotools-format hdf5 (a cached-catalog file with a 'data' table).
  - any other name ("default", "test", ...): a preset of the project's own N-body pipeline,
    `training.catalogs.nbody.load_catalog_columns(preset, seed=...)`.
  - a catalog set: a name in CATALOG_SETS (DEFAULT_CATALOG, the boxes the shipped emulator's truths mix) or
    specs joined by "+" ("a.npz+b.npz"), loaded as a `CatalogSet` of independent boxes of one side.

Halos whose major axis (halo_axisA_x/y/z) is all zero are dropped: their central orientations
would be undefined (NaN) in CentralAlignment.
"""
from __future__ import annotations

import hashlib
import math
import os
from typing import Mapping

import numpy as np

#: The halo columns the mock model (Zheng07 + SubhaloPhaseSpace + IA components) needs.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "halo_id", "halo_upid", "halo_hostid",
    "halo_x", "halo_y", "halo_z",
    "halo_vx", "halo_vy", "halo_vz",
    "halo_mvir", "halo_mpeak", "halo_mvir_host_halo", "halo_rvir", "halo_nfw_conc",
    "halo_axisA_x", "halo_axisA_y", "halo_axisA_z",
)
#: Columns holding integer ids (stored as int64); all others are float64.
INTEGER_COLUMNS: tuple[str, ...] = ("halo_id", "halo_upid", "halo_hostid")
#: Scalar metadata every catalog file must carry.
REQUIRED_METADATA: tuple[str, ...] = ("Lbox", "particle_mass", "redshift")

#: halotools' cache keys for the paper's catalog.
BOLPLANCK_CACHE = dict(simname="bolplanck", halo_finder="rockstar", redshift=0.0, version_name="halotools_v0p4")
#: The paper's SubhaloPhaseSpace host-mass bins on Bolshoi-Planck.
BOLPLANCK_HOST_MASS_BINS = np.logspace(10.5, 15.2, 15)
#: halotools' default completeness cut (host halos need more than this many particles), used for bolplanck.
HALOTOOLS_NUM_PTCL_REQUIREMENT = 300

#: The repository's independent N-body boxes (training/data/boxes, README there; not in an installed package).
BOXES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "boxes")
#: Named catalog sets: several independent boxes whose mocks a dataset's truths mix (`CatalogSet`).
CATALOG_SETS: dict[str, tuple[str, ...]] = {
    "hires320x3": tuple(os.path.join(BOXES_DIR, f"iaemu-pm-hires320-s{s}-v4.npz") for s in (1, 2, 3)),
}
#: The catalog set of the shipped emulator's dataset: three 320^3 boxes of 128 Mpc/h (docs/catalog_set.md).
DEFAULT_CATALOG = "hires320x3"
#: Joins the members of an ad hoc catalog set ("a.npz+b.npz").
SET_SEPARATOR = "+"

BOLPLANCK_DOWNLOAD_HELP = (
    "The Bolshoi-Planck halo catalog is not in the halotools cache. Download it once (needs internet) with\n"
    "    python -c \"from halotools.sim_manager import DownloadManager; "
    "DownloadManager().download_processed_halo_table('bolplanck', 'rockstar', 0.0, version_name='halotools_v0p4')\"\n"
    "(it is stored under ~/.astropy/cache/halotools/halo_catalogs/bolplanck/rockstar/). Note that halotools' "
    "download_initial_halocat.py script downloads Bolshoi, not Bolshoi-Planck. Alternatively pass the path of an "
    "existing halotools-format hdf5 file of that catalog as the catalog name."
)


class CatalogError(ValueError):
    """A halo catalog that cannot be used by the mock model (the message names what is wrong)."""


def _canonical(name: str, values) -> np.ndarray:
    arr = np.asarray(values)
    if name in INTEGER_COLUMNS:
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise CatalogError(f"column {name} must hold integers, found non-integer values")
        elif arr.dtype.kind not in "iu":
            raise CatalogError(f"column {name} must hold integers, found dtype {arr.dtype}")
        return np.ascontiguousarray(arr, dtype=np.int64)
    if arr.dtype.kind not in "fiu":
        raise CatalogError(f"column {name} must be numeric, found dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _scalar(name: str, value) -> float:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 3 and np.all(arr == arr[0]):
        arr = arr[:1]
    if arr.size != 1:
        raise CatalogError(f"{name} must be a scalar (a cubic box for Lbox), got {value!r}")
    return float(arr[0])


def validate_columns(columns: Mapping[str, np.ndarray], Lbox: float, particle_mass: float,
                     redshift: float) -> dict[str, np.ndarray]:
    """Check a halo catalog and return its REQUIRED_COLUMNS as canonical (int64/float64) arrays.

    Raises CatalogError naming the first problem: a missing column, wrong shapes, non-finite
    values, positions outside [0, Lbox), duplicate ids, no host halos, inconsistent host masses.
    """
    if not (math.isfinite(Lbox) and Lbox > 0):
        raise CatalogError(f"Lbox={Lbox!r} must be a positive box size in Mpc/h")
    if not (math.isfinite(particle_mass) and particle_mass > 0):
        raise CatalogError(f"particle_mass={particle_mass!r} must be positive (Msun/h)")
    if not math.isfinite(redshift) or redshift < 0:
        raise CatalogError(f"redshift={redshift!r} must be finite and >= 0")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise CatalogError(f"halo catalog is missing column(s) {missing}; required columns: {list(REQUIRED_COLUMNS)}")
    out: dict[str, np.ndarray] = {}
    n = None
    for name in REQUIRED_COLUMNS:
        arr = np.asarray(columns[name])
        if arr.ndim != 1:
            raise CatalogError(f"column {name} must be one-dimensional, got shape {arr.shape}")
        if n is None:
            n = arr.shape[0]
        elif arr.shape[0] != n:
            raise CatalogError(f"column {name} has {arr.shape[0]} rows but halo_id has {n}")
        out[name] = _canonical(name, arr)
        if not np.all(np.isfinite(out[name])):
            bad = int(np.sum(~np.isfinite(out[name])))
            raise CatalogError(f"column {name} has {bad} non-finite value(s)")
    if n == 0:
        raise CatalogError("halo catalog is empty")
    for axis in "xyz":
        pos = out["halo_" + axis]
        if pos.min() < 0 or pos.max() >= Lbox:
            raise CatalogError(f"halo_{axis} spans [{pos.min():g}, {pos.max():g}], outside [0, Lbox={Lbox:g}); "
                               "positions must be wrapped into the periodic box")
    if np.unique(out["halo_id"]).size != n:
        raise CatalogError("halo_id values are not unique")
    host = out["halo_upid"] == -1
    if not np.any(host):
        raise CatalogError("no host halos (rows with halo_upid == -1) in the catalog")
    for name in ("halo_mvir", "halo_rvir", "halo_mvir_host_halo"):
        if np.any(out[name][host] <= 0):
            raise CatalogError(f"column {name} must be positive for host halos")
    if not np.array_equal(out["halo_hostid"][host], out["halo_id"][host]):
        raise CatalogError("host halos (halo_upid == -1) must have halo_hostid == halo_id")
    if not np.allclose(out["halo_mvir_host_halo"][host], out["halo_mvir"][host], rtol=1e-5, atol=0):
        raise CatalogError("host halos must have halo_mvir_host_halo == halo_mvir")
    sub = ~host
    if np.any(sub):
        order = np.argsort(out["halo_id"][host])
        host_ids = out["halo_id"][host][order]
        host_mass = out["halo_mvir"][host][order]
        idx = np.searchsorted(host_ids, out["halo_hostid"][sub])
        idx = np.minimum(idx, host_ids.size - 1)
        matched = host_ids[idx] == out["halo_hostid"][sub]
        if np.any(matched) and not np.allclose(out["halo_mvir_host_halo"][sub][matched], host_mass[idx[matched]],
                                               rtol=1e-5, atol=0):
            raise CatalogError("subhalos' halo_mvir_host_halo must equal the halo_mvir of the host named by halo_hostid")
    return out


def catalog_hash(columns: Mapping[str, np.ndarray], Lbox: float, particle_mass: float, redshift: float,
                 min_host_mass: float) -> str:
    """sha256 (hex) of the canonical columns (in REQUIRED_COLUMNS order) and the metadata that shape the mocks.

    Stable across file formats and dtypes of the same values (columns are hashed as int64/float64).
    """
    h = hashlib.sha256()
    for name in REQUIRED_COLUMNS:
        arr = _canonical(name, columns[name])
        h.update(f"{name}:{arr.dtype.str}:{arr.shape[0]};".encode())
        h.update(arr.tobytes())
    h.update(np.array([Lbox, particle_mass, redshift, min_host_mass], dtype=np.float64).tobytes())
    return h.hexdigest()


def catalog_from_columns(columns: Mapping[str, np.ndarray], *, Lbox, particle_mass, redshift, catalog_id: str,
                         min_host_mass: float = 0.0, host_mass_bins=None, source: str = ""):
    """Validate halo columns and build the halotools catalog the mock model populates.

    Halos whose major axis is all zero are dropped first (reported in `n_dropped_zero_axis`).
    """
    from halotools.sim_manager import UserSuppliedHaloCatalog

    Lbox, particle_mass, redshift = (_scalar("Lbox", Lbox), _scalar("particle_mass", particle_mass),
                                     _scalar("redshift", redshift))
    cols = validate_columns(columns, Lbox, particle_mass, redshift)
    keep = np.any(np.stack([cols[f"halo_axisA_{a}"] for a in "xyz"], axis=-1) != 0, axis=1)
    n_dropped = int(np.sum(~keep))
    if n_dropped:
        cols = {name: values[keep] for name, values in cols.items()}
        if not np.any(cols["halo_upid"] == -1):
            raise CatalogError("no host halo with a non-zero major axis (halo_axisA_x/y/z) in the catalog")
    min_host_mass = float(min_host_mass)
    if not (math.isfinite(min_host_mass) and min_host_mass >= 0):
        raise CatalogError(f"min_host_mass={min_host_mass!r} must be finite and >= 0")
    host = cols["halo_upid"] == -1
    if not np.any(cols["halo_mvir"][host] > min_host_mass):
        raise CatalogError(f"no host halo is more massive than min_host_mass={min_host_mass:.3g} Msun/h")
    return UserSuppliedHaloCatalog(
        Lbox=Lbox, particle_mass=particle_mass, redshift=redshift,
        catalog_id=str(catalog_id),
        catalog_hash=catalog_hash(cols, Lbox, particle_mass, redshift, min_host_mass),
        min_host_mass=min_host_mass,
        host_mass_bins=None if host_mass_bins is None else np.asarray(host_mass_bins, dtype=np.float64),
        n_dropped_zero_axis=n_dropped,
        source=source,
        **cols,
    )


def catalog_columns(catalog) -> dict[str, np.ndarray]:
    """The REQUIRED_COLUMNS of a loaded catalog as plain arrays."""
    return {name: np.asarray(catalog.halo_table[name]) for name in REQUIRED_COLUMNS}


def write_catalog_npz(catalog, path) -> None:
    """Save a loaded catalog in the documented npz format (columns + Lbox, particle_mass, redshift, ...)."""
    np.savez(path, Lbox=_scalar("Lbox", catalog.Lbox), particle_mass=float(catalog.particle_mass),
             redshift=float(catalog.redshift), catalog_id=str(catalog.catalog_id),
             min_host_mass=float(getattr(catalog, "min_host_mass", 0.0)), **catalog_columns(catalog))


def read_catalog_file(path, *, min_host_mass=None):
    """Load a halo catalog file.

    Formats:
      - .npz: one 1-D array per column of REQUIRED_COLUMNS, scalars Lbox, particle_mass, redshift;
        optional catalog_id (str) and min_host_mass (Msun/h). An npz written by the N-body pipeline
        (with a meta_json record) is read by `training.catalogs.nbody.load_catalog_file`.
      - .hdf5/.h5, plain: one dataset per column at the root, the scalars as root attributes (same names).
      - .hdf5/.h5, halotools format (as written by halotools' cache: a table dataset 'data' and attributes
        Lbox, particle_mass, redshift): the table columns are used.
    `min_host_mass` (Msun/h) overrides the file's value (default 0: every host halo is used).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"halo catalog file {path!r} does not exist")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as f:
            if "meta_json" in f.files:
                return _nbody_catalog_file(path, min_host_mass)
            data = {k: f[k] for k in f.files}
        meta = {k: data.pop(k) for k in list(data) if not k.startswith("halo_")}
    elif ext in (".hdf5", ".h5", ".hdf"):
        import h5py

        with h5py.File(path, "r") as f:
            meta = {k: f.attrs[k] for k in f.attrs}
            if "data" in f and isinstance(f["data"], h5py.Dataset) and f["data"].dtype.names:
                table = f["data"][...]
                data = {k: table[k] for k in table.dtype.names if k in REQUIRED_COLUMNS}
            else:
                data = {k: f[k][...] for k in f if k.startswith("halo_") and isinstance(f[k], h5py.Dataset)}
    else:
        raise CatalogError(f"unknown halo catalog file type {ext!r} for {path!r}: expected .npz, .hdf5 or .h5")
    missing_meta = [k for k in REQUIRED_METADATA if k not in meta]
    if missing_meta:
        raise CatalogError(f"catalog file {path!r} lacks metadata {missing_meta}; required: {list(REQUIRED_METADATA)}")

    def text(v):
        v = v.item() if isinstance(v, np.ndarray) else v
        return v.decode() if isinstance(v, bytes) else str(v)

    catalog_id = text(meta["catalog_id"]) if "catalog_id" in meta else os.path.basename(path)
    if min_host_mass is None:
        min_host_mass = float(np.asarray(meta.get("min_host_mass", 0.0)))
    return catalog_from_columns(data, Lbox=meta["Lbox"], particle_mass=meta["particle_mass"],
                                redshift=meta["redshift"], catalog_id=catalog_id,
                                min_host_mass=min_host_mass, source=os.path.abspath(path))


def _from_nbody(columns, meta, source, min_host_mass=None):
    if min_host_mass is None:
        min_host_mass = float(meta.get("min_host_mass", 0.0))
    return catalog_from_columns(columns, Lbox=meta["Lbox"], particle_mass=meta["particle_mass"],
                                redshift=meta["redshift"], catalog_id=str(meta["catalog_id"]),
                                min_host_mass=min_host_mass, host_mass_bins=meta.get("host_mass_bins"), source=source)


def _nbody_catalog_file(path: str, min_host_mass=None):
    """A catalog file written by the project's N-body pipeline (an npz with a meta_json record)."""
    from training.catalogs.nbody import load_catalog_file

    columns, meta = load_catalog_file(path)
    return _from_nbody(columns, meta, os.path.abspath(path), min_host_mass)


def load_bolplanck():
    """The paper's catalog: halotools' cached Bolshoi-Planck Rockstar z=0 catalog (halotools_v0p4).

    Uses halotools' default completeness cut (300 particles) and the paper's host-mass bins.
    Raises FileNotFoundError with download instructions when it is not cached.
    """
    from halotools.custom_exceptions import HalotoolsError
    from halotools.sim_manager import CachedHaloCatalog

    try:
        halocat = CachedHaloCatalog(**BOLPLANCK_CACHE)
        table = halocat.halo_table
    except (HalotoolsError, OSError, KeyError) as err:
        raise FileNotFoundError(f"{BOLPLANCK_DOWNLOAD_HELP}\n(halotools said: {str(err).strip()[:300]})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.colnames]
    if missing:
        raise CatalogError(f"the cached bolplanck catalog lacks column(s) {missing}")
    particle_mass = float(halocat.particle_mass)
    return catalog_from_columns({c: table[c] for c in REQUIRED_COLUMNS}, Lbox=halocat.Lbox,
                                particle_mass=particle_mass, redshift=halocat.redshift, catalog_id="bolplanck",
                                min_host_mass=HALOTOOLS_NUM_PTCL_REQUIREMENT * particle_mass,
                                host_mass_bins=BOLPLANCK_HOST_MASS_BINS, source=halocat.fname)


def load_preset(preset: str, seed=None, **kwargs):
    """A catalog of the project's N-body pipeline (`training.catalogs.nbody.load_catalog_columns`; kwargs such as
    cache_dir or build_if_missing go to it)."""
    try:
        from training.catalogs.nbody import load_catalog_columns
    except ImportError as err:
        raise CatalogError(f"catalog preset {preset!r} needs the N-body pipeline training.catalogs.nbody, which is not "
                           f"available ({err}); use --catalog bolplanck, toy, or a catalog file path") from None
    columns, meta = load_catalog_columns(preset, seed=seed, **kwargs)
    return _from_nbody(columns, dict(meta, catalog_id=meta.get("catalog_id", preset)),
                       f"training.catalogs.nbody preset {preset} ({meta.get('path', 'built')})")


def _looks_like_path(name: str) -> bool:
    return os.sep in name or os.path.splitext(name)[1].lower() in (".npz", ".hdf5", ".h5", ".hdf") or os.path.exists(name)


def load_catalog(name_or_path="default", **kwargs):
    """Load a halo catalog by name ("bolplanck", "toy", an N-body preset such as "default" or "test") or path.

    kwargs go to the source: `seed` (and `cache_dir`, `build_if_missing`) for N-body presets, `min_host_mass` for files,
    `make_toy_catalog`'s arguments for "toy". Returns a UserSuppliedHaloCatalog with
    catalog_id and catalog_hash attributes (see the module docstring).
    """
    name = os.fspath(name_or_path)
    if set_members(name) is not None:
        if kwargs:
            raise TypeError(f"catalog set {name!r} takes no options, got {sorted(kwargs)}")
        return load_catalog_set(name)
    if name == "bolplanck":
        if kwargs:
            raise TypeError(f"bolplanck takes no options, got {sorted(kwargs)}")
        return load_bolplanck()
    if name == "toy":
        return make_toy_catalog(**kwargs)
    if _looks_like_path(name):
        return read_catalog_file(name, **kwargs)
    return load_preset(name, **kwargs)


def set_hash(hashes) -> str:
    """The catalog_hash of a set of boxes: sha256 of the members' hashes in order, space-separated."""
    return hashlib.sha256(" ".join(hashes).encode()).hexdigest()


class CatalogSet:
    """Independent boxes of one side whose mocks are mixed (a truth's realisations spread over the boxes, so its
    variance includes one box's sample variance). catalog_id names the set; catalog_hash is the sha256 of the
    members' hashes in order."""

    def __init__(self, members, catalog_id: str):
        members = list(members)
        if len(members) < 2:
            raise CatalogError(f"catalog set {catalog_id!r} needs at least 2 boxes, got {len(members)}")
        sides = sorted({float(c.Lbox[0]) if np.ndim(c.Lbox) else float(c.Lbox) for c in members})
        if len(sides) != 1:
            raise CatalogError(f"catalog set {catalog_id!r} mixes box sides {sides} Mpc/h; its boxes must share one")
        self.members = members
        self.catalog_id = str(catalog_id)
        self.catalog_hash = set_hash([c.catalog_hash for c in members])
        self.Lbox = members[0].Lbox

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self):
        return iter(self.members)


def set_members(name: str) -> tuple[str, ...] | None:
    """The member specs of a catalog set name (CATALOG_SETS or "a+b"), or None for a single catalog."""
    if name in CATALOG_SETS:
        return CATALOG_SETS[name]
    if SET_SEPARATOR in name and not os.path.exists(name):
        return tuple(part for part in name.split(SET_SEPARATOR) if part)
    return None


def expand_catalog_names(names) -> list[str]:
    """Catalog names with every set replaced by its member specs, in order."""
    return [member for name in names for member in (set_members(os.fspath(name)) or (os.fspath(name),))]


def load_catalog_set(name: str) -> CatalogSet:
    """A CatalogSet by name (CATALOG_SETS) or by member specs joined with "+"."""
    specs = set_members(name) or ()
    members = []
    for spec in specs:
        if name in CATALOG_SETS and not os.path.exists(spec):
            raise CatalogError(f"catalog set {name!r}: box {spec} is missing; the boxes live in the source "
                               f"repository's training/data/boxes (see its README.md for how each was built)")
        members.append(load_catalog(spec))
    return CatalogSet(members, name if name in CATALOG_SETS else SET_SEPARATOR.join(c.catalog_id for c in members))


def virial_radius(mass, delta_vir: float = 333.0, omega_m: float = 0.307) -> np.ndarray:
    """R_vir in Mpc/h of mass M (Msun/h) enclosing delta_vir times the mean matter density at z=0."""
    rho_m = 2.775e11 * omega_m
    return np.cbrt(3.0 * np.asarray(mass, dtype=np.float64) / (4.0 * np.pi * delta_vir * rho_m))


def _toy_concentration(mass) -> np.ndarray:
    return 9.0 * (np.asarray(mass) / 1e12) ** -0.13


def _nfw_radius_fraction(u, conc) -> np.ndarray:
    """r/R_vir enclosing a fraction u of an NFW halo's mass (vectorised bisection)."""
    def m(x):
        return np.log1p(x) - x / (1.0 + x)

    target = u * m(conc)
    lo, hi = np.zeros_like(u), np.ones_like(u)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        below = m(conc * mid) < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def make_toy_catalog(n_hosts: int = 3000, Lbox: float = 60.0, seed: int = 0, *,
                     log_mass_range: tuple[float, float] = (11.0, 14.5), mass_slope: float = -1.9,
                     subhalos_at_1e13: float = 15.0, axis_ratios: tuple[float, float] = (0.6, 0.45),
                     particle_mass: float = 1e8):
    """A small synthetic halo catalog for TESTS and demos only. It is not a physical catalog.

    Host halos sit at uniform random positions (no large-scale clustering), with masses from a
    power law dn/dM ~ M^mass_slope over log_mass_range, concentration c = 9 (M/1e12)^-0.13,
    R_vir for Delta_vir = 333 (Omega_m = 0.307), and random major axes. Each host gets
    Poisson(subhalos_at_1e13 (M/1e13)^0.9) subhalos, NFW-distributed in radius and squashed onto
    a triaxial ellipsoid (axis_ratios b/a, c/a) aligned with the host's major axis, so satellites
    trace the host's elongation. Deterministic in (n_hosts, Lbox, seed, options).
    """
    if n_hosts < 1 or not (Lbox > 0):
        raise ValueError(f"make_toy_catalog needs n_hosts >= 1 and Lbox > 0, got n_hosts={n_hosts}, Lbox={Lbox}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7459]))
    lo, hi = 10.0 ** np.asarray(log_mass_range, dtype=np.float64)
    g = 1.0 + mass_slope
    mass = (lo ** g + rng.random(n_hosts) * (hi ** g - lo ** g)) ** (1.0 / g)
    pos = rng.random((n_hosts, 3)) * Lbox
    vel = rng.normal(0.0, 300.0, (n_hosts, 3))
    a_hat = rng.normal(size=(n_hosts, 3))
    a_hat /= np.linalg.norm(a_hat, axis=1, keepdims=True)
    helper = rng.normal(size=(n_hosts, 3))
    b_hat = helper - np.sum(helper * a_hat, axis=1, keepdims=True) * a_hat
    b_hat /= np.linalg.norm(b_hat, axis=1, keepdims=True)
    c_hat = np.cross(a_hat, b_hat)
    conc = _toy_concentration(mass)
    rvir = virial_radius(mass)

    n_sub = rng.poisson(subhalos_at_1e13 * (mass / 1e13) ** 0.9)
    owner = np.repeat(np.arange(n_hosts), n_sub)
    n_subs = owner.size
    direction = rng.normal(size=(n_subs, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    frac = _nfw_radius_fraction(rng.random(n_subs), conc[owner])
    q, s = axis_ratios
    local = direction * np.array([1.0, q, s]) * (frac * rvir[owner])[:, None]
    offset = (local[:, :1] * a_hat[owner] + local[:, 1:2] * b_hat[owner] + local[:, 2:] * c_hat[owner])
    sub_pos = np.mod(pos[owner] + offset, Lbox)
    sub_pos[sub_pos >= Lbox] = 0.0
    sigma_v = 200.0 * (mass[owner] / 1e12) ** (1.0 / 3.0)
    sub_vel = vel[owner] + rng.normal(size=(n_subs, 3)) * sigma_v[:, None]
    sub_mpeak = mass[owner] * 10.0 ** rng.uniform(-3.0, -1.0, n_subs)
    sub_mvir = 0.7 * sub_mpeak
    sub_axes = rng.normal(size=(n_subs, 3))
    sub_axes /= np.linalg.norm(sub_axes, axis=1, keepdims=True)

    host_id = np.arange(1, n_hosts + 1, dtype=np.int64)
    sub_id = np.arange(n_hosts + 1, n_hosts + 1 + n_subs, dtype=np.int64)
    cols = {
        "halo_id": np.concatenate([host_id, sub_id]),
        "halo_upid": np.concatenate([np.full(n_hosts, -1, dtype=np.int64), host_id[owner]]),
        "halo_hostid": np.concatenate([host_id, host_id[owner]]),
        "halo_mvir": np.concatenate([mass, sub_mvir]),
        "halo_mpeak": np.concatenate([mass, sub_mpeak]),
        "halo_mvir_host_halo": np.concatenate([mass, mass[owner]]),
        "halo_rvir": np.concatenate([rvir, virial_radius(sub_mvir)]),
        "halo_nfw_conc": np.concatenate([conc, _toy_concentration(sub_mvir)]),
    }
    for i, axis in enumerate("xyz"):
        cols[f"halo_{axis}"] = np.concatenate([pos[:, i], sub_pos[:, i]])
        cols[f"halo_v{axis}"] = np.concatenate([vel[:, i], sub_vel[:, i]])
        cols[f"halo_axisA_{axis}"] = np.concatenate([a_hat[:, i], sub_axes[:, i]])
    return catalog_from_columns(cols, Lbox=Lbox, particle_mass=particle_mass, redshift=0.0,
                                catalog_id=f"toy-n{n_hosts}-L{Lbox:g}-s{seed}", source="make_toy_catalog (synthetic)")
