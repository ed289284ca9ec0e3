"""Layer 3: the training set. Where the points go (`design`), how they are measured (`generate`,
`iaemu-generate`), the file format (`schema`) and merge / clean / split (`manage`, `iaemu-dataset`;
also `python -m training.dataset`).

Imports from `training.mocks`, `training.catalogs` and `training.common`.
"""
