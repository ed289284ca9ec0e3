"""training: halo catalogs, halotools-IA mocks, the dataset, and the IAEmu network's training.

Heavy dependencies (halotools, numba, h5py) are imported by the submodules that need them.
"""


def measure_correlations(*args, **kwargs):
    """xi, omega, eta of a galaxy catalogue; see `training.correlations.measure_correlations`."""
    from .correlations import measure_correlations as _measure

    return _measure(*args, **kwargs)
