"""training: everything that makes the emulator, as a pipeline of layers that import only downward.

    common    atomic writes, locks, checksums, the data manifest, the command runner, the task farm
    catalogs  halo catalogs: the project's N-body pipeline and the catalog sources
    mocks     the halotools-IA mock model, the correlation engine, catalog-vs-mock realism checks
    dataset   design, generation, the dataset format, merge / clean / split
    emulator  training, evaluation, posterior validation, benchmarks

Heavy dependencies (halotools, numba, h5py) are imported by the submodules that need them.
"""
