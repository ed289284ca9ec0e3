"""The project's own N-body halo catalogs: 2LPT + FastPM particle-mesh simulation, FoF halos with
density-peak centres, rank-matched virial masses, shapes inside R_vir, and satellite sites that follow
each halo's measured shape. See docs/catalog.md."""
from .catalog import (COLUMNS, FORMAT_VERSION, build_catalog, cache_root, catalog_id, catalog_path,
                      load_catalog_columns, load_catalog_file, read_diagnostics, split_name)
from .cosmology import COSMOLOGY
from .simulation import PRESETS, Preset, get_preset

__all__ = [
    "COLUMNS", "COSMOLOGY", "FORMAT_VERSION", "PRESETS", "Preset", "build_catalog", "cache_root", "catalog_id",
    "catalog_path", "get_preset", "load_catalog_columns", "load_catalog_file", "read_diagnostics", "split_name",
]
