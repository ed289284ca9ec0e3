"""Build, store and load the project's N-body halo catalogs.

File format (``FORMAT_VERSION``): one npz with quantised host and satellite-site columns plus the build's
diagnostics (power spectra, matter correlation function) and a JSON metadata record. Hosts keep float32
positions (0.01 kpc/h precision) and masses; axes are int16 unit vectors (1e-4 rad); axis ratios uint16;
velocities int16 km/s; satellite sites store their offset from the host centre in units of R_vir as
int16 (1e-4 R_vir) and a velocity offset in int16 km/s. Nothing the mocks use loses precision that matters.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np

from training.common import datafiles
from training.common.fileio import atomic_savez

from . import cosmology
from .halos import DEFAULT_MODEL, find_halos, get_model
from .mesh import binned_power, cic_window2, correlation_from_mesh, density_contrast_k
from .simulation import Preset, get_preset, ic_power_check, initial_conditions, run_pm

FORMAT_VERSION = 1
#: Fraction of the host mass given to a satellite site of rank j as its nominal (sub)halo mass: 0.05 / (1 + j).
#: Only the order matters (SubhaloPhaseSpace fills satellites in decreasing halo_mpeak).
SITE_MASS_FRACTION = 0.05
_PACKAGED_NAME = re.compile(r"default_catalog_v(\d+)\.npz")


def _packaged() -> dict[int, Path]:
    """The repository's catalogs (training/data/default_catalog_v<N>.npz recorded in its MANIFEST.json) by halo
    model version."""
    try:
        names = datafiles.recorded_files()
    except (OSError, ValueError):
        return {}
    found = (_PACKAGED_NAME.fullmatch(n) for n in names)
    return {int(m.group(1)): datafiles.DATA_DIR / m.group(0) for m in found if m}


#: Catalog files kept in the source repository, by halo model version (preset `default`, its default seed); an
#: installed package records them but does not carry them.
PACKAGED = _packaged()

COLUMNS = (
    "halo_axisA_x", "halo_axisA_y", "halo_axisA_z", "halo_upid", "halo_hostid", "halo_id", "halo_mpeak",
    "halo_mvir", "halo_mvir_host_halo", "halo_rvir", "halo_nfw_conc", "halo_x", "halo_y", "halo_z",
    "halo_vx", "halo_vy", "halo_vz",
)


def split_name(name: str, model: int | None = None) -> tuple[str, int]:
    """(preset, halo model version) of a catalog name: "default-v2" -> ("default", 2); without a suffix the version
    is DEFAULT_MODEL ("default" -> ("default", DEFAULT_MODEL)). An explicit `model` overrides the suffix."""
    base, sep, suffix = str(name).rpartition("-v")
    if sep and suffix.isdigit():
        name, version = base, int(suffix)
    else:
        version = DEFAULT_MODEL
    if model is not None:
        version = int(model)
    get_model(version)
    return name, version


def catalog_id(preset: str, seed: int, model: int = DEFAULT_MODEL) -> str:
    """Catalog name: preset, seed and halo model version (v1 = the original shapes and satellite profile)."""
    return f"iaemu-pm-{preset}-s{int(seed)}-v{int(model)}"


def cache_root(cache_dir=None) -> Path:
    """$IAEMU_CACHE, else ~/.cache/iaemu (or the given directory)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("IAEMU_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "iaemu"


def _log(progress: bool):
    def log(msg):
        if progress:
            print(f"[iaemu-catalog {time.strftime('%H:%M:%S')}] {msg}", flush=True)
    return log


def simulate(preset: Preset, seed: int, workdir: Path, progress: bool = True):
    """ICs + PM to z = 0 with checkpoints in `workdir`; returns (pos, mom, diagnostics). Resumes if possible."""
    log = _log(progress)
    workdir.mkdir(parents=True, exist_ok=True)
    final = workdir / "final.npz"
    diag_file = workdir / "ic_diagnostics.npz"
    if final.exists() and diag_file.exists():
        log(f"resuming from the saved z=0 particles {final}")
        with np.load(final) as f:
            pos, mom = f["pos"], f["mom"]
        with np.load(diag_file) as f:
            diag = {k: f[k] for k in f.files}
        return pos, mom, diag
    state = workdir / "state.npz"
    if state.exists() and diag_file.exists():
        with np.load(state) as f:
            pos, mom, start = f["pos"].copy(), f["mom"].copy(), int(f["step"])
        with np.load(diag_file) as f:
            diag = {k: f[k] for k in f.files}
        log(f"resuming the PM run at step {start}/{preset.n_steps}")
    else:
        t0 = time.time()
        pos, mom, delta_lin = initial_conditions(preset, seed)
        log(f"2LPT initial conditions at z={1 / preset.a_init - 1:.0f}: {len(pos)} particles ({time.time() - t0:.0f} s)")
        ic = ic_power_check(preset, pos, delta_lin)
        del delta_lin
        diag = {f"ic_{k}": np.asarray(v) for k, v in ic.items()}
        atomic_savez(diag_file, **diag)
        start = 0
    t0 = time.time()
    run_pm(preset, pos, mom, workdir=workdir, start_step=start, progress=progress, log=log)
    log(f"PM run to z=0 done ({time.time() - t0:.0f} s)")
    atomic_savez(final, pos=pos, mom=mom)
    if state.exists():
        state.unlink()
    return pos, mom, diag


def matter_diagnostics(preset: Preset, pos: np.ndarray) -> dict:
    """z = 0 matter power spectrum (CIC on the PM mesh, deconvolved, shot noise removed) and xi_mm(r)."""
    L, n = preset.boxsize, preset.n_mesh
    kbins = np.geomspace(2 * np.pi / L, np.pi * n / L, 40)
    dk = density_contrast_k(pos, n, L)
    k, p, nmodes = binned_power(dk, n, L, kbins, window2=cic_window2(n))
    p = p - L ** 3 / len(pos)
    del dk
    nx = min(n, 256)
    dk = density_contrast_k(pos, nx, L)
    rbins = np.geomspace(1.0, 40.0, 25)
    r, xi = correlation_from_mesh(dk, nx, L, rbins, window2=cic_window2(nx))
    return {"pk_k": k, "pk_p": p, "pk_nmodes": nmodes, "pk_kbins": kbins, "xi_mm_r": r, "xi_mm": xi, "xi_mm_mesh": np.int64(nx)}


def _quantise_unit(v: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(v) * 32767).astype(np.int16)


def encode(hosts: dict, sites: dict, meta: dict, diagnostics: dict) -> dict:
    """Arrays for the npz file."""
    nsite = np.bincount(sites["host"], minlength=len(hosts["mvir"]))
    out = {
        "meta_json": np.array(json.dumps(meta)),
        "host_pos": np.stack([hosts["x"], hosts["y"], hosts["z"]], axis=1).astype(np.float32),
        "host_vel": np.round(np.stack([hosts["vx"], hosts["vy"], hosts["vz"]], axis=1)).astype(np.int16),
        "host_mvir": hosts["mvir"].astype(np.float32),
        "host_n_fof": hosts["n_fof"].astype(np.int32),
        "host_n_inside_rvir": np.minimum(hosts["n_inside_rvir"], 2 ** 31 - 1).astype(np.int32),
        "host_axisA": _quantise_unit(hosts["axisA"]),
        "host_ratios": np.round(np.stack([hosts["b_to_a"], hosts["c_to_a"]], axis=1) * 65535).astype(np.uint16),
        "site_count": nsite.astype(np.int32),
        "site_offset": np.round(sites["offset_rvir"] * 1e4).astype(np.int16),
        "site_dv": np.round(np.clip(sites["dv"], -32767, 32767)).astype(np.int16),
    }
    for k, v in diagnostics.items():
        out[f"diag_{k}"] = np.asarray(v)
    return out


def decode(arrays) -> tuple[dict, dict]:
    """(columns, meta) from the stored arrays."""
    meta = json.loads(str(arrays["meta_json"]))
    L = float(meta["Lbox"])
    pos = arrays["host_pos"].astype(np.float64)
    vel = arrays["host_vel"].astype(np.float64)
    mvir = arrays["host_mvir"].astype(np.float64)
    rvir = cosmology.virial_radius(mvir)
    conc = cosmology.concentration(mvir)
    axis = arrays["host_axisA"].astype(np.float64)
    axis /= np.linalg.norm(axis, axis=1)[:, None]
    ratios = arrays["host_ratios"].astype(np.float64) / 65535
    nh = len(mvir)
    count = arrays["site_count"].astype(np.int64)
    host = np.repeat(np.arange(nh), count)
    rank = np.arange(len(host)) - np.repeat(np.cumsum(count) - count, count)
    offset = arrays["site_offset"].astype(np.float64) * 1e-4 * rvir[host][:, None]
    spos = np.mod(pos[host] + offset, L)
    svel = vel[host] + arrays["site_dv"].astype(np.float64)
    smass = mvir[host] * SITE_MASS_FRACTION / (1.0 + rank)
    norm = np.linalg.norm(offset, axis=1)
    radial = np.where(norm[:, None] > 0, offset / np.where(norm > 0, norm, 1.0)[:, None], axis[host])
    ns = len(host)
    ids = np.arange(nh + ns, dtype=np.int64)
    cols = {
        "halo_id": ids,
        "halo_upid": np.concatenate([np.full(nh, -1, dtype=np.int64), host.astype(np.int64)]),
        "halo_hostid": np.concatenate([ids[:nh], host.astype(np.int64)]),
        "halo_mvir": np.concatenate([mvir, smass]),
        "halo_mpeak": np.concatenate([mvir, smass]),
        "halo_mvir_host_halo": np.concatenate([mvir, mvir[host]]),
        "halo_rvir": np.concatenate([rvir, cosmology.virial_radius(smass)]),
        "halo_nfw_conc": np.concatenate([conc, cosmology.concentration(smass)]),
        "halo_b_to_a": np.concatenate([ratios[:, 0], np.ones(ns)]),
        "halo_c_to_a": np.concatenate([ratios[:, 1], np.ones(ns)]),
        "halo_n_fof": np.concatenate([arrays["host_n_fof"].astype(np.int64), np.zeros(ns, dtype=np.int64)]),
    }
    allpos = np.concatenate([pos, spos])
    allpos = np.where(allpos >= L, allpos - L, allpos)
    allvel = np.concatenate([vel, svel])
    allaxis = np.concatenate([axis, radial])
    for d, c in enumerate("xyz"):
        cols[f"halo_{c}"] = allpos[:, d]
        cols[f"halo_v{c}"] = allvel[:, d]
        cols[f"halo_axisA_{c}"] = allaxis[:, d]
    meta = dict(meta)
    meta["n_hosts"] = nh
    meta["n_subhalos"] = ns
    return cols, meta


def read_diagnostics(path) -> dict:
    with np.load(path) as f:
        return {k[5:]: f[k] for k in f.files if k.startswith("diag_")}


def build_catalog(preset: str = "default", seed: int | None = None, out=None, progress: bool = True, cache_dir=None,
                  model: int | None = None) -> Path:
    """Run the whole pipeline (ICs, PM, FoF, halo properties, satellite sites) and write the catalog file.

    `preset` may carry the halo model version ("default-v2"; else `model`, default DEFAULT_MODEL). Checkpoints live in
    <cache>/build-<catalog_id of model 1>/ (PM state every few steps, the z = 0 particles), shared by all
    halo models; a rerun of the same command resumes there. Returns the path of the written catalog.
    """
    preset, model = split_name(preset, model)
    spec = get_model(model)
    pr = get_preset(preset)
    seed = pr.default_seed if seed is None else int(seed)
    cid = catalog_id(preset, seed, model)
    root = cache_root(cache_dir)
    out = Path(out) if out is not None else root / f"{cid}.npz"
    workdir = root / f"build-{catalog_id(preset, seed, 1)}"
    log = _log(progress)
    t_start = time.time()
    log(f"building {cid}: {pr.n_particles}^3 particles in {pr.boxsize} Mpc/h, mesh {pr.n_mesh}^3, {pr.n_steps} steps; work dir {workdir}")
    pos, mom, diag = simulate(pr, seed, workdir, progress=progress)
    diag.update(matter_diagnostics(pr, pos))
    t0 = time.time()
    hosts, sites = find_halos(pos, mom, pr, seed, progress=progress, model=model)
    log(f"{len(hosts['mvir'])} FoF halos with >= {pr.min_particles} particles ({time.time() - t0:.0f} s)")
    del pos, mom
    meta = {
        "catalog_id": cid, "preset": preset, "seed": seed, "version": FORMAT_VERSION, "Lbox": pr.boxsize,
        "particle_mass": pr.particle_mass, "redshift": 0.0, "cosmology": dict(cosmology.COSMOLOGY),
        "simulation": pr.to_dict(), "mass_definition": cosmology.MDEF,
        "mass_assignment": "Tinker08 abundance rank-matched to FoF particle number",
        "concentration_model": "diemer19 (colossus)", "build_seconds": None,
        "halo_model": model, "halo_model_spec": spec.to_dict(),
    }
    meta["build_seconds"] = round(time.time() - t_start, 1)
    arrays = encode(hosts, sites, meta, diag)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_savez(out, compressed=True, **arrays)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {len(hosts['mvir'])} hosts, {len(sites['host'])} satellite sites; "
        f"total {time.time() - t_start:.0f} s")
    return out


def catalog_path(preset: str = "default", seed: int | None = None, cache_dir=None, model: int | None = None) -> Path | None:
    """Where the catalog is available: the packaged file first (default preset and seed), then the cache."""
    preset, model = split_name(preset, model)
    pr = get_preset(preset)
    seed = pr.default_seed if seed is None else int(seed)
    cid = catalog_id(preset, seed, model)
    if preset == "default" and seed == pr.default_seed and model in PACKAGED and PACKAGED[model].exists():
        return PACKAGED[model]
    p = cache_root(cache_dir) / f"{cid}.npz"
    return p if p.exists() else None


def load_catalog_file(path) -> tuple[dict, dict]:
    """(columns, meta) of a catalog file; the repository's catalogs are checked against their recorded sha256."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"catalog file {path} does not exist{datafiles.missing_hint(path)}")
    datafiles.check_file(path)
    with np.load(path) as f:
        if "meta_json" not in f.files:
            raise ValueError(f"{path} is not an iaemu N-body catalog (no meta_json record)")
        meta = json.loads(str(f["meta_json"]))
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path} has catalog format version {meta.get('version')}, expected {FORMAT_VERSION}")
        arrays = {k: f[k] for k in f.files if not k.startswith("diag_")}
    cols, meta = decode(arrays)
    meta["path"] = str(path)
    return cols, meta


def load_catalog_columns(preset: str = "default", seed: int | None = None, cache_dir=None, build_if_missing: bool = True,
                         model: int | None = None):
    """(columns, meta) of a catalog: packaged file, else cached file, else built (if allowed).
    `preset` may name the halo model version ("default-v1", "default-v2"); "default" is DEFAULT_MODEL's, the catalog
    of the shipped emulator's dataset."""
    preset, model = split_name(preset, model)
    path = catalog_path(preset, seed, cache_dir, model)
    if path is None:
        pr = get_preset(preset)
        seed_ = pr.default_seed if seed is None else int(seed)
        cid = catalog_id(preset, seed_, model)
        cached = cache_root(cache_dir) / f"{cid}.npz"
        name = preset if model == DEFAULT_MODEL else f"{preset}-v{model}"
        build = f"`iaemu-catalog build --preset {name}" + (f" --seed {seed}`" if seed is not None else "`")
        repository = preset == "default" and seed_ == pr.default_seed
        if repository and model in PACKAGED:
            raise FileNotFoundError(
                f"catalog {cid} lives in the source repository ({PACKAGED[model].name} in training/data), which this "
                f"installation lacks, and is not in the cache {cache_root(cache_dir)}: copy it from a clone of the "
                f"repository to {cached}, or build it there with {build}")
        if not build_if_missing:
            retired = f"default_catalog_v{model}.npz"
            restore = ""
            if repository and retired in datafiles.retired_files():
                restore = (f", or restore it from the repository's history (in a clone) with "
                           f"`{datafiles.restore_command(retired, cached)}`")
            raise FileNotFoundError(f"catalog {cid} is not in {cache_root(cache_dir)}; build it with {build}{restore}")
        path = build_catalog(preset, seed, progress=True, cache_dir=cache_dir, model=model)
    return load_catalog_file(path)
