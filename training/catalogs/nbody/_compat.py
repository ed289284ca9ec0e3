"""Import shims for the N-body stack.

jax_cosmo 0.1.0 (a dependency of jaxpm) imports ``pkg_resources`` only to read its own version;
setuptools >= 81 no longer ships that module. When it is missing we register a minimal stand-in
built on importlib.metadata so that jax_cosmo and jaxpm import unchanged.
"""
from __future__ import annotations

import importlib.metadata
import sys
import types


def _ensure_pkg_resources() -> None:
    try:
        import pkg_resources  # noqa: F401
        return
    except ImportError:
        pass
    shim = types.ModuleType("pkg_resources")

    class DistributionNotFound(Exception):
        pass

    class _Distribution:
        def __init__(self, version: str):
            self.version = version

    def get_distribution(name: str) -> _Distribution:
        try:
            return _Distribution(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError as exc:
            raise DistributionNotFound(name) from exc

    shim.DistributionNotFound = DistributionNotFound
    shim.get_distribution = get_distribution
    sys.modules["pkg_resources"] = shim


def _patch_jaxpm_gather(jnp) -> None:
    """jaxpm 0.1.6's CIC readout splits more than 2^24 particles into chunks and crashes on the remainder
    chunk (it calls .astype on the default integer offset). Pass the offset as an array instead."""
    import jaxpm.painting

    original = jaxpm.painting.gather
    if getattr(original, "_iaemu_patched", False):
        return

    def gather(pmid, disp, mesh, chunk_size=2 ** 24, val=0, offset=0, cell_size=1.0):
        return original(pmid, disp, mesh, chunk_size, val, jnp.asarray(offset), cell_size)

    gather._iaemu_patched = True
    jaxpm.painting.gather = gather


def import_jax_stack():
    """Return (jax, jax.numpy, jax_cosmo, jaxpm.pm, jaxpm.growth), importing them safely."""
    _ensure_pkg_resources()
    import jax
    import jax.numpy as jnp
    import jax_cosmo
    import jaxpm.growth
    import jaxpm.pm

    _patch_jaxpm_gather(jnp)

    return jax, jnp, jax_cosmo, jaxpm.pm, jaxpm.growth
