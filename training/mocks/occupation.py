"""How many galaxies a parameter point asks for: halotools' own Zheng07 mean occupations on a catalog's hosts.

Used before any mock is made (iaemu-mock's memory guard, iaemu-generate --dry-run). The occupation
components are halotools' `Zheng07Cens` and `Zheng07Sats` (satellites not modulated by the central
occupation), the ones `IAMockModel` populates with; halotools is imported only when counting.
"""
from __future__ import annotations

import numpy as np

from iaemu_theory.conventions import HALOTOOLS_PARAM_NAMES, HOD_PARAMS, PARAM_NAMES


def expected_galaxy_counts(params: np.ndarray, host_mass: np.ndarray) -> np.ndarray:
    """Mean galaxies per realisation for each row of `params` (PARAM_NAMES order) on hosts of `host_mass`."""
    from halotools.empirical_models import Zheng07Cens, Zheng07Sats

    params = np.atleast_2d(np.asarray(params, dtype=np.float64))
    mass = np.asarray(host_mass, dtype=np.float64)
    components = (Zheng07Cens(), Zheng07Sats())
    out = np.empty(len(params))
    for i, row in enumerate(params):
        point = dict(zip(PARAM_NAMES, row))
        total = 0.0
        for component in components:
            for name in HOD_PARAMS:
                if HALOTOOLS_PARAM_NAMES[name] in component.param_dict:
                    component.param_dict[HALOTOOLS_PARAM_NAMES[name]] = point[name]
            total += float(np.sum(component.mean_occupation(prim_haloprop=mass)))
        out[i] = total
    return out


def host_masses(catalog) -> np.ndarray | None:
    """Host-halo masses (Msun/h) of a catalog, or None if the catalog does not expose them; of a catalog set, its
    first box's (the boxes share a mass function)."""
    members = getattr(catalog, "members", None)
    if members:
        return host_masses(members[0])
    for name in ("host_mass", "host_masses"):
        value = getattr(catalog, name, None)
        if value is not None:
            return np.asarray(value() if callable(value) else value, dtype=np.float64)
    table = getattr(catalog, "halo_table", None)
    if table is not None and "halo_mvir" in table.colnames:
        mass = np.asarray(table["halo_mvir"], dtype=np.float64)
        if "halo_upid" in table.colnames:
            mass = mass[np.asarray(table["halo_upid"]) == -1]
        return mass[mass > float(getattr(catalog, "min_host_mass", 0.0) or 0.0)]
    return None
