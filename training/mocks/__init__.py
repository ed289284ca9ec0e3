"""Layer 2: galaxies on a catalog. The halotools-IA mock model (`model`), the fused correlation engine
(`correlations`), the realism checks of a catalog against mocks (`catalog_validation`) and the commands
that drive them (`iaemu-mock`: `mock_cli`, `iaemu-catalog`: `catalog_cli`).

Imports from `training.catalogs` and `training.common` only.
"""
