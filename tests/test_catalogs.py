"""Halo catalog loading and validation (training.catalogs.sources)."""
import sys
import types

import h5py
import numpy as np
import pytest

from training.catalogs.sources import (REQUIRED_COLUMNS, CatalogError, catalog_columns, catalog_from_columns, load_catalog,
                                       make_toy_catalog, read_catalog_file, write_catalog_npz)


def _columns(catalog):
    return {k: v.copy() for k, v in catalog_columns(catalog).items()}


def _meta(catalog):
    return dict(Lbox=float(catalog.Lbox[0]), particle_mass=catalog.particle_mass, redshift=catalog.redshift)


def test_toy_catalog_has_the_columns_and_host_structure(toy_catalog):
    t = toy_catalog.halo_table
    assert all(c in t.colnames for c in REQUIRED_COLUMNS)
    host = np.asarray(t["halo_upid"]) == -1
    assert host.sum() == 3000 and (~host).sum() > 1000
    hosts = dict(zip(np.asarray(t["halo_id"])[host], np.flatnonzero(host)))
    owner = np.array([hosts[h] for h in np.asarray(t["halo_hostid"])[~host]])
    assert np.array_equal(np.asarray(t["halo_upid"])[~host], np.asarray(t["halo_id"])[owner])
    assert np.allclose(np.asarray(t["halo_mvir_host_halo"])[~host], np.asarray(t["halo_mvir"])[owner])
    mass = np.asarray(t["halo_mvir"])[host]
    assert 1e11 <= mass.min() and mass.max() <= 10**14.5
    assert np.mean(mass < 1e12) > 0.7  # a steep mass function
    assert toy_catalog.catalog_id == "toy-n3000-L60-s0"


def test_toy_subhalos_trace_the_host_major_axis(toy_catalog):
    """Subhalos sit inside R_vir and along the host's major axis (mean |cos| above the isotropic 1/2)."""
    t = toy_catalog.halo_table
    host = np.asarray(t["halo_upid"]) == -1
    index = {h: i for i, h in enumerate(np.asarray(t["halo_id"]))}
    owner = np.array([index[h] for h in np.asarray(t["halo_hostid"])[~host]])
    pos = np.column_stack([np.asarray(t[f"halo_{c}"]) for c in "xyz"])
    d = pos[~host] - pos[owner]
    d -= 60.0 * np.round(d / 60.0)
    r = np.linalg.norm(d, axis=1)
    assert np.all(r <= np.asarray(t["halo_rvir"])[owner] * (1 + 1e-9))
    axis = np.column_stack([np.asarray(t[f"halo_axisA_{c}"]) for c in "xyz"])[owner]
    cos = np.abs(np.sum(d * axis, axis=1)) / np.where(r > 0, r, 1)
    assert cos.mean() > 0.6  # about 0.65 for axis ratios (0.6, 0.45)


def test_hash_is_stable_and_tracks_the_data(toy_catalog):
    again = make_toy_catalog(n_hosts=3000, Lbox=60.0, seed=0)
    other = make_toy_catalog(n_hosts=3000, Lbox=60.0, seed=1)
    assert again.catalog_hash == toy_catalog.catalog_hash
    assert other.catalog_hash != toy_catalog.catalog_hash
    assert len(toy_catalog.catalog_hash) == 64


def test_npz_round_trip_keeps_columns_and_hash(toy_catalog, toy_catalog_file):
    loaded = load_catalog(str(toy_catalog_file))
    assert loaded.catalog_id == toy_catalog.catalog_id
    assert loaded.catalog_hash == toy_catalog.catalog_hash
    for c in REQUIRED_COLUMNS:
        assert np.array_equal(np.asarray(loaded.halo_table[c]), np.asarray(toy_catalog.halo_table[c]))


def test_plain_and_halotools_hdf5_files(toy_catalog, tmp_path):
    cols, meta = _columns(toy_catalog), _meta(toy_catalog)
    plain = tmp_path / "plain.hdf5"
    with h5py.File(plain, "w") as f:
        for k, v in cols.items():
            f[k] = v.astype(np.float32) if k == "halo_vx" else v
        for k, v in meta.items():
            f.attrs[k] = v
    loaded = read_catalog_file(plain)
    assert loaded.catalog_id == "plain.hdf5"
    assert np.allclose(np.asarray(loaded.halo_table["halo_vx"]), cols["halo_vx"], rtol=1e-6)

    # halotools' cache format: an astropy table under 'data' with the metadata as file attributes,
    # plus columns the model does not need
    from astropy.table import Table

    table = Table(cols)
    table["halo_vmax"] = 1.0
    ht = tmp_path / "halotools_format.hdf5"
    table.write(ht, path="data")
    with h5py.File(ht, "a") as f:
        f.attrs["Lbox"] = meta["Lbox"]
        f.attrs["particle_mass"] = meta["particle_mass"]
        f.attrs["redshift"] = meta["redshift"]
        f.attrs["simname"] = "toy"
    loaded = load_catalog(str(ht))
    assert loaded.catalog_hash == toy_catalog.catalog_hash
    assert "halo_vmax" not in loaded.halo_table.colnames


def test_zero_major_axes_are_dropped(toy_catalog):
    cols = _columns(toy_catalog)
    for c in "xyz":
        cols[f"halo_axisA_{c}"][:5] = 0.0
    cat = catalog_from_columns(cols, catalog_id="zeroed", **_meta(toy_catalog))
    assert cat.n_dropped_zero_axis == 5
    assert len(cat.halo_table) == len(toy_catalog.halo_table) - 5


def _broken(toy_catalog, how):
    cols, meta = _columns(toy_catalog), _meta(toy_catalog)
    how(cols, meta)
    return cols, meta


@pytest.mark.parametrize("how,needle", [
    (lambda c, m: c.pop("halo_nfw_conc"), "missing column.*halo_nfw_conc"),
    (lambda c, m: c.__setitem__("halo_rvir", c["halo_rvir"][:-1]), "halo_rvir has .* rows"),
    (lambda c, m: c.__setitem__("halo_vx", c["halo_vx"].reshape(-1, 1)), "halo_vx must be one-dimensional"),
    (lambda c, m: c["halo_mpeak"].__setitem__(3, np.nan), "halo_mpeak has 1 non-finite"),
    (lambda c, m: c["halo_y"].__setitem__(0, m["Lbox"]), r"halo_y spans .* outside \[0, Lbox"),
    (lambda c, m: c["halo_x"].__setitem__(0, -0.1), "halo_x spans"),
    (lambda c, m: c["halo_upid"].__setitem__(slice(None), 7), "no host halos"),
    (lambda c, m: c["halo_id"].__setitem__(1, c["halo_id"][0]), "halo_id values are not unique"),
    (lambda c, m: c.__setitem__("halo_id", c["halo_id"] + 0.5), "halo_id must hold integers"),
    (lambda c, m: m.__setitem__("Lbox", -1.0), "Lbox=-1.0 must be a positive"),
    (lambda c, m: c["halo_mvir_host_halo"].__setitem__(np.flatnonzero(c["halo_upid"] != -1)[0], 1.0),
     "halo_mvir_host_halo must equal"),
])
def test_bad_catalogs_are_rejected_with_a_clear_message(toy_catalog, how, needle):
    cols, meta = _broken(toy_catalog, how)
    with pytest.raises(CatalogError, match=needle):
        catalog_from_columns(cols, catalog_id="bad", **meta)


def test_bad_files(toy_catalog, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_catalog(str(tmp_path / "nope.npz"))
    cols = _columns(toy_catalog)
    np.savez(tmp_path / "nometa.npz", **cols)
    with pytest.raises(CatalogError, match=r"lacks metadata \['Lbox', 'particle_mass', 'redshift'\]"):
        load_catalog(str(tmp_path / "nometa.npz"))
    (tmp_path / "cat.txt").write_text("x")
    with pytest.raises(CatalogError, match="unknown halo catalog file type"):
        read_catalog_file(tmp_path / "cat.txt")


def test_bolplanck_not_cached_says_how_to_download(monkeypatch):
    import halotools.sim_manager
    from halotools.custom_exceptions import HalotoolsError

    def not_cached(**kwargs):
        raise HalotoolsError("The Halotools cache log is empty.")

    monkeypatch.setattr(halotools.sim_manager, "CachedHaloCatalog", not_cached)
    with pytest.raises(FileNotFoundError, match="download_processed_halo_table\\('bolplanck', 'rockstar', 0.0"):
        load_catalog("bolplanck")


def test_presets_come_from_the_nbody_pipeline(toy_catalog, monkeypatch):
    calls = []

    def load_catalog_columns(preset, seed=None):
        calls.append((preset, seed))
        return _columns(toy_catalog), dict(_meta(toy_catalog), catalog_id=f"nbody-{preset}-{seed}", min_host_mass=1e12)

    fake = types.ModuleType("training.catalogs.nbody")
    fake.load_catalog_columns = load_catalog_columns
    monkeypatch.setitem(sys.modules, "training.catalogs.nbody", fake)
    cat = load_catalog("test", seed=3)
    assert calls == [("test", 3)]
    assert cat.catalog_id == "nbody-test-3" and cat.min_host_mass == 1e12
    assert cat.catalog_hash != toy_catalog.catalog_hash  # the mass cut is part of what the hash covers

    monkeypatch.setitem(sys.modules, "training.catalogs.nbody", None)
    with pytest.raises(CatalogError, match="needs the N-body pipeline training.catalogs.nbody"):
        load_catalog("default")


def test_write_then_read_npz_keeps_min_host_mass(toy_catalog, tmp_path):
    cat = catalog_from_columns(_columns(toy_catalog), catalog_id="cut", min_host_mass=5e11, **_meta(toy_catalog))
    write_catalog_npz(cat, tmp_path / "cut.npz")
    again = load_catalog(str(tmp_path / "cut.npz"))
    assert again.min_host_mass == 5e11 and again.catalog_hash == cat.catalog_hash
    with pytest.raises(CatalogError, match="no host halo is more massive than min_host_mass"):
        catalog_from_columns(_columns(toy_catalog), catalog_id="cut", min_host_mass=1e16, **_meta(toy_catalog))


def test_nbody_catalog_file_by_path(nbody_test_catalog):
    """An N-body pipeline file passed as a path loads to the same catalog as its preset name."""
    path = nbody_test_catalog.source.rsplit("(", 1)[-1].rstrip(")")
    assert path.endswith(".npz")
    again = load_catalog(path)
    assert again.catalog_id == nbody_test_catalog.catalog_id
    assert again.catalog_hash == nbody_test_catalog.catalog_hash


def test_repository_catalog_is_checked_against_its_recorded_sha256(nbody_test_catalog, tmp_path, monkeypatch):
    """A catalog recorded in training/data/MANIFEST.json, read by its repository path, must have its recorded sha256;
    the same bytes elsewhere are read unchecked."""
    import json

    from training.common import datafiles
    from training.common.fileio import sha256_file

    source = nbody_test_catalog.source.rsplit("(", 1)[-1].rstrip(")")
    data_dir = (tmp_path / "data").resolve()
    data_dir.mkdir()
    path = data_dir / "default_catalog_v9.npz"
    path.write_bytes(open(source, "rb").read())
    digest = sha256_file(path)
    (data_dir / "MANIFEST.json").write_text(json.dumps({"files": {path.name: digest}}))
    monkeypatch.setattr(datafiles, "DATA_DIR", data_dir)
    monkeypatch.setattr(datafiles, "MANIFEST", data_dir / "MANIFEST.json")
    monkeypatch.setattr(datafiles, "_digests", {})
    assert load_catalog(str(path)).catalog_hash == nbody_test_catalog.catalog_hash
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(datafiles.DataFileError, match=f"{path}: sha256 {sha256_file(path)} differs from the "
                                                      f"recorded {digest}"):
        load_catalog(str(path))
    elsewhere = tmp_path / "copy.npz"
    elsewhere.write_bytes(open(source, "rb").read())
    assert load_catalog(str(elsewhere)).catalog_hash == nbody_test_catalog.catalog_hash


def test_the_repository_catalog_matches_its_record():
    """The committed default catalog has the sha256 recorded in training/data/MANIFEST.json."""
    from training.common import datafiles
    from training.catalogs.nbody.catalog import PACKAGED
    from training.catalogs.nbody.halos import DEFAULT_MODEL

    path = PACKAGED[DEFAULT_MODEL]
    if not path.exists():
        pytest.skip("not a source checkout: training/data is absent")
    assert datafiles.check_file(path) == datafiles.recorded_files()[path.name]
