"""Catalog sets: several independent boxes whose mocks a truth's realisations cycle through."""
from __future__ import annotations

import numpy as np
import pytest

from iaemu_theory.conventions import PARAM_NAMES

PARAMS = dict(logMmin=12.0, sigma_logM=0.3, logM0=12.0, logM1=13.3, alpha=1.0, mu_cen=0.6, mu_sat=0.3)


@pytest.fixture(scope="module")
def two_boxes(tmp_path_factory):
    """Two toy boxes of one side with different halos, as npz files."""
    from training.catalogs.sources import make_toy_catalog, write_catalog_npz

    folder = tmp_path_factory.mktemp("boxes")
    paths = []
    for seed in (1, 2):
        path = folder / f"box{seed}.npz"
        write_catalog_npz(make_toy_catalog(n_hosts=1500, Lbox=60.0, seed=seed), path)
        paths.append(str(path))
    return paths


def test_a_set_loads_its_boxes_in_order_with_a_hash_of_theirs(two_boxes):
    from training.catalogs.sources import CatalogSet, load_catalog

    joined = "+".join(two_boxes)
    cset = load_catalog(joined)
    assert isinstance(cset, CatalogSet) and len(cset) == 2
    single = [load_catalog(p) for p in two_boxes]
    assert [c.catalog_hash for c in cset] == [c.catalog_hash for c in single]
    swapped = load_catalog("+".join(two_boxes[::-1]))
    assert swapped.catalog_hash != cset.catalog_hash
    assert cset.catalog_id == "+".join(c.catalog_id for c in single)


def test_boxes_of_different_sides_are_refused(tmp_path, two_boxes):
    from training.catalogs.sources import CatalogError, load_catalog, make_toy_catalog, write_catalog_npz

    other = tmp_path / "big.npz"
    write_catalog_npz(make_toy_catalog(n_hosts=500, Lbox=70.0, seed=3), other)
    with pytest.raises(CatalogError, match="mixes box sides"):
        load_catalog(f"{two_boxes[0]}+{other}")


def test_a_named_set_with_a_missing_box_names_it(monkeypatch):
    from training.catalogs import sources

    monkeypatch.setitem(sources.CATALOG_SETS, "gone", ("/nonexistent/a.npz", "/nonexistent/b.npz"))
    with pytest.raises(sources.CatalogError, match="/nonexistent/a.npz is missing"):
        sources.load_catalog("gone")
    assert sources.expand_catalog_names(["gone", "toy"]) == ["/nonexistent/a.npz", "/nonexistent/b.npz", "toy"]


def test_realisations_cycle_through_the_boxes_from_a_seeded_start():
    from training.mocks.model import box_of_realisation

    assert [box_of_realisation(7, r, 3) for r in range(10)] == [1, 2, 0, 1, 2, 0, 1, 2, 0, 1]
    counts = np.bincount([box_of_realisation(s, r, 3) for s in range(300) for r in range(10)], minlength=3)
    assert counts.tolist() == [1000, 1000, 1000]


@pytest.mark.parametrize("populate", ["fast", "halotools"])
def test_each_realisation_is_that_boxs_own_mock(two_boxes, populate):
    """Realisation r of the set equals the single-box model's mock with the same realisation seed."""
    from training.catalogs.sources import load_catalog
    from training.mocks.fastpop import mock_model
    from training.mocks.model import BoxSetModel, box_of_realisation, realisation_seed

    cset = load_catalog("+".join(two_boxes))
    model = mock_model(cset, populate=populate)
    assert isinstance(model, BoxSetModel)
    seed, n = 11, 3
    res = model.measure(PARAMS, seed, n_realisations=n, orientation_draws=1)
    singles = [mock_model(load_catalog(p), populate=populate) for p in two_boxes]
    boxes = [box_of_realisation(seed, r, 2) for r in range(n)]
    assert sorted(set(boxes)) == [0, 1]
    for r, b in enumerate(boxes):
        single = singles[b]
        galaxies = single.populate(PARAMS, realisation_seed(seed, r))
        np.testing.assert_allclose(res.stats[r], single.statistics(galaxies), equal_nan=True)
        assert res.n_galaxies[r] == len(galaxies)
    assert res.orientation_stats.shape == (1, 3, res.stats.shape[-1])


def test_generation_on_a_set_records_it(two_boxes, tmp_path):
    from training.dataset import generate as gen
    from training.dataset.schema import read_dataset

    out = tmp_path / "set.h5"
    joined = "+".join(two_boxes)
    assert gen.main(["--points", "2", "--seed", "3", "--out", str(out), "--catalog", joined, "--realisations", "2",
                     "--logMmin-range", "11.8", "12.2"]) == 0
    ds = read_dataset(out)
    assert ds.attrs["catalog_id"].count("+") == 1
    assert ds.params.shape == (2, len(PARAM_NAMES))


def test_the_repository_boxes_are_recorded_and_checked_by_their_relative_path(tmp_path, monkeypatch):
    """Every box of the default set is in training/data/MANIFEST.json as boxes/NAME and is checked when loaded."""
    import shutil

    from training.catalogs.sources import CATALOG_SETS, DEFAULT_CATALOG
    from training.common import datafiles

    recorded = datafiles.recorded_files()
    for spec in CATALOG_SETS[DEFAULT_CATALOG]:
        name = f"boxes/{spec.rsplit('/', 1)[1]}"
        assert name in recorded
    first = CATALOG_SETS[DEFAULT_CATALOG][0]
    assert datafiles.check_file(first) == recorded[f"boxes/{first.rsplit('/', 1)[1]}"]
    fake_dir = tmp_path / "data"
    (fake_dir / "boxes").mkdir(parents=True)
    shutil.copy(datafiles.MANIFEST, fake_dir / "MANIFEST.json")
    damaged = fake_dir / "boxes" / first.rsplit("/", 1)[1]
    damaged.write_bytes(b"not the box")
    monkeypatch.setattr(datafiles, "DATA_DIR", fake_dir)
    monkeypatch.setattr(datafiles, "MANIFEST", fake_dir / "MANIFEST.json")
    with pytest.raises(datafiles.DataFileError, match="differs from the recorded"):
        datafiles.check_file(damaged)
