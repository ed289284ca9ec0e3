"""Layer 1: halo catalogs. The project's N-body pipeline (`nbody`) and the catalog sources the mock
model populates (`sources`: Bolshoi-Planck, the toy catalog, catalog files, N-body presets).

Knows nothing of the halotools-IA galaxy model; imports only from `training.common`.
"""
