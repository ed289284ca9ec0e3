"""Shared pytest fixtures: a small synthetic halo catalog, its mock model and its npz file.

The toy catalog (`training.catalogs.sources.make_toy_catalog`) is for tests only; it is not physical.
"""
import pytest

#: A valid parameter point on the toy catalog (about 800 galaxies).
TOY_PARAMS = dict(mu_cen=0.8, mu_sat=0.5, logMmin=11.8, sigma_logM=0.26, logM0=12.0, logM1=13.0, alpha=1.0)


@pytest.fixture(scope="session")
def toy_catalog():
    """3000 host halos in a 60 Mpc/h box with subhalos along the hosts' major axes (seconds to build)."""
    from training.catalogs.sources import make_toy_catalog

    return make_toy_catalog(n_hosts=3000, Lbox=60.0, seed=0)


@pytest.fixture(scope="session")
def toy_model(toy_catalog):
    """The paper's halotools-IA model bound to the toy catalog."""
    from training.mocks.model import IAMockModel

    return IAMockModel(toy_catalog)


@pytest.fixture(scope="session")
def toy_catalog_file(toy_catalog, tmp_path_factory):
    """The toy catalog written as an npz catalog file (for --catalog PATH)."""
    from training.catalogs.sources import write_catalog_npz

    path = tmp_path_factory.mktemp("catalogs") / "toy_catalog.npz"
    write_catalog_npz(toy_catalog, path)
    return path


@pytest.fixture
def toy_params():
    """A fresh copy of TOY_PARAMS."""
    return dict(TOY_PARAMS)


@pytest.fixture(scope="session")
def nbody_test_catalog(tmp_path_factory):
    """The N-body pipeline's `test` preset (seed 3), built into a temporary cache (about 20 s) and loaded."""
    pytest.importorskip("jaxpm")
    from training.catalogs.sources import load_catalog

    cache = tmp_path_factory.mktemp("iaemu_cache")
    return load_catalog("test", seed=3, cache_dir=cache)


@pytest.fixture(scope="module")
def torch_one_thread():
    """Small torch models run fastest on one thread (and the test machine's cores are shared)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def sigint_delivered():
    """Skip a test that interrupts a child with SIGINT when this process ignores SIGINT: a suite started as a
    background job of a non-interactive shell (`pytest &`) inherits SIGINT ignored, and so do its children, whose
    Python then never installs a Ctrl-C handler."""
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        pytest.skip("SIGINT is ignored in this process (inherited, as by a background job); its children would ignore it")
