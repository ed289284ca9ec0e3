"""The paper's halotools-IA mock model, populated reproducibly, and its xi / omega / eta.

Model (van Alfen et al., IAEmu; halotools 0.9.4 components):
  centrals:   Zheng07Cens + TrivialPhaseSpace + CentralAlignment (galaxy major axis ~ halo major axis)
  satellites: Zheng07Sats + SubhaloPhaseSpace + RadialSatelliteAlignment (major axis ~ host-centre direction)
  feature calling sequence: centrals occupation, centrals profile, satellites occupation,
  satellites profile, centrals orientation, satellites orientation.
Alignment strengths mu_cen, mu_sat in [-1, 1] become halotools' Dimroth-Watson shape k = -tan(pi mu / 2).

Reproducibility. halotools' alignment components call `axes_correlated_with_input_vector` and
`random_perpendicular_directions` with seed=None, which run inside astropy's NumpyRNGContext(None):
that reseeds numpy's global RNG from OS entropy, so `populate(seed=...)` fixes positions but not
orientations. `SeededCentralAlignment` and `SeededRadialSatelliteAlignment` (subclasses, no edits to
halotools) redo the same draws with halotools' own functions, passing seeds derived from the seed
that the mock factory hands to every feature. The global RNG state is left as it was found.

Seeds. Realisation r of `IAMockModel.measure(params, seed)` populates with `realisation_seed(seed, r)`
(numpy SeedSequence([seed, r]), 31 bits); orientation-only draw k uses `orientation_seed(seed, k)`
(SeedSequence([seed, 2**32 + k])).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from astropy.table import Table
from astropy.utils.misc import NumpyRNGContext
from halotools.empirical_models import (HodModelFactory, SubhaloPhaseSpace, TrivialPhaseSpace, Zheng07Cens,
                                        Zheng07Sats)
from halotools.empirical_models.factories.hod_mock_factory import HodMockFactory
from halotools.empirical_models.ia_models.ia_model_components import (CentralAlignment, RadialSatelliteAlignment,
                                                                      axes_correlated_with_input_vector)
from halotools.utils.mcrotations import random_perpendicular_directions, random_unit_vectors_3d
from halotools.utils.vector_utilities import vectors_normal_to_planes

from iaemu_theory.conventions import (BIN_EDGES, DEFAULT_REALISATIONS, HALOTOOLS_PARAM_NAMES, N_BINS, STATISTICS,
                                      validate_params)

__all__ = ["IAMockModel", "BoxSetModel", "PointResult", "SeededCentralAlignment", "SeededRadialSatelliteAlignment",
           "host_mass_bins", "realisation_seed", "orientation_seed", "galaxy_arrays"]

#: Largest seed halotools accepts is 2**32 - 1 and the mock factory adds about 10 to it.
_SEED_BITS = 31
#: Galaxy-table columns put first (halotools' own column order varies with set ordering); the rest sorted.
_LEADING_COLUMNS = ("gal_type", "x", "y", "z", "vx", "vy", "vz",
                    *(f"galaxy_axis{a}_{c}" for a in "ABC" for c in "xyz"))
_FEATURE_SEQUENCE = ("centrals_occupation", "centrals_profile", "satellites_occupation", "satellites_profile",
                     "centrals_orientation", "satellites_orientation")


def realisation_seed(seed: int, r: int) -> int:
    """The populate seed of realisation r of a point with master `seed` (SeedSequence([seed, r]), < 2**31)."""
    return int(np.random.SeedSequence([int(seed), int(r)]).generate_state(1, np.uint32)[0] >> (32 - _SEED_BITS))


def orientation_seed(seed: int, k: int) -> int:
    """The seed of orientation-only draw k of a point with master `seed` (SeedSequence([seed, 2**32 + k]))."""
    return int(np.random.SeedSequence([int(seed), 2**32 + int(k)]).generate_state(1, np.uint32)[0]
               >> (32 - _SEED_BITS))


def _check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    return int(seed)


def _correlated_axes(input_vectors: np.ndarray, strength: float, seed, major_only: bool = False):
    """Galaxy (major, intermediate, minor) axes, major drawn around `input_vectors` with strength mu.

    The same draws as halotools' alignment components (Dimroth-Watson about each input vector, then a
    uniformly random perpendicular intermediate axis), but every draw seeded from `seed`.
    With major_only the intermediate and minor axes are not drawn (returned as None).
    """
    n = input_vectors.shape[0]
    if n == 0:
        empty = np.zeros((0, 3))
        return empty, empty.copy(), empty.copy()
    s_major, s_perp, s_fix = (int(s) >> 1 for s in np.random.SeedSequence(seed).generate_state(3, np.uint32))
    input_vectors = np.array(input_vectors, dtype=np.float64)
    norm = np.sqrt(np.sum(input_vectors**2, axis=1))
    bad_input = ~np.isfinite(norm) | (norm <= 0)
    if np.any(bad_input):
        with NumpyRNGContext(s_fix):
            input_vectors[bad_input] = random_unit_vectors_3d(int(bad_input.sum()))
    major = axes_correlated_with_input_vector(input_vectors, p=np.full(n, float(strength)), seed=s_major)
    bad = ~np.all(np.isfinite(major), axis=1)
    if np.any(bad):
        with NumpyRNGContext(s_fix + 1):
            major[bad] = random_unit_vectors_3d(int(bad.sum()))
    if major_only:
        return major, None, None
    inter = random_perpendicular_directions(major, seed=s_perp)
    minor = vectors_normal_to_planes(major, inter)
    return major, inter, minor


def _write_axes(table, gal_type: str, axes) -> None:
    mask = np.asarray(table["gal_type"] == gal_type)
    for letter, vectors in zip("ABC", axes):
        for i, c in enumerate("xyz"):
            table[f"galaxy_axis{letter}_{c}"][mask] = vectors[mask, i]


class SeededCentralAlignment(CentralAlignment):
    """halotools' CentralAlignment (major axis, constant strength) with seeded orientation draws."""

    def __init__(self, central_alignment_strength: float = 1.0):
        super().__init__(central_alignment_strength=central_alignment_strength, prim_gal_axis="major")

    def assign_central_orientation(self, table, seed=None, **kwargs):
        axes = np.column_stack([np.asarray(table[k], dtype=np.float64) for k in self.list_of_haloprops_needed])
        _write_axes(table, self.gal_type,
                    _correlated_axes(axes, self.param_dict["central_alignment_strength"], seed))
        return table


class SeededRadialSatelliteAlignment(RadialSatelliteAlignment):
    """halotools' RadialSatelliteAlignment (major axis toward the host centre) with seeded draws.

    Takes the box size `Lbox` for the periodic host-satellite vector (a halocat argument would be ignored).
    """

    def __init__(self, Lbox, satellite_alignment_strength: float = 1.0):
        Lbox = np.broadcast_to(np.asarray(Lbox, dtype=np.float64), (3,)).copy()
        super().__init__(prim_gal_axis="major", Lbox=Lbox, satellite_alignment_strength=satellite_alignment_strength)

    def assign_satellite_orientation(self, table, seed=None, **kwargs):
        Lbox = kwargs.get("Lbox", self._Lbox)
        radial, _ = self.get_radial_vector(Lbox=np.broadcast_to(np.asarray(Lbox, dtype=np.float64), (3,)),
                                           table=table)
        _write_axes(table, self.gal_type,
                    _correlated_axes(radial, self.param_dict["satellite_alignment_strength"], seed))
        return table


def host_mass_bins(host_mass: np.ndarray, subhalo_host_mass: np.ndarray, dex: float = 0.25,
                   min_subhalos: int = 2) -> np.ndarray:
    """SubhaloPhaseSpace host-mass bin edges for a catalog.

    The edges bracket the surviving host masses strictly (halotools raises otherwise), start about
    `dex` wide, and neighbouring bins are merged until each holds >= `min_subhalos` subhalos
    (halotools needs at least 2: satellites beyond a host's own subhalos are drawn from its bin).
    """
    host_mass = np.asarray(host_mass, dtype=np.float64)
    subhalo_host_mass = np.asarray(subhalo_host_mass, dtype=np.float64)
    if subhalo_host_mass.size < min_subhalos:
        raise ValueError(f"the catalog has {subhalo_host_mass.size} subhalo(s) in surviving host halos; "
                         f"SubhaloPhaseSpace needs at least {min_subhalos}")
    lo, hi = np.log10(host_mass.min()) - 0.01, np.log10(host_mass.max()) + 0.01
    n = max(1, int(np.ceil((hi - lo) / dex)))
    edges = list(np.linspace(lo, hi, n + 1))
    while True:
        counts = np.histogram(np.log10(subhalo_host_mass), bins=edges)[0]
        low = np.flatnonzero(counts < min_subhalos)
        if low.size == 0 or len(edges) == 2:
            break
        i = int(low[0])
        del edges[i + 1 if i + 1 < len(edges) - 1 else i]
    return 10.0 ** np.asarray(edges)


def _bins_fit(bins, host_mass, subhalo_host_mass) -> bool:
    if bins is None or host_mass.min() <= bins[0] or host_mass.max() >= bins[-1]:
        return False
    counts = np.histogram(subhalo_host_mass, bins=bins)[0]
    return bool(np.all(counts >= 2))


def galaxy_arrays(table):
    """(positions (N,3), major axes (N,3)) as float64 arrays from a galaxy table."""
    pos = np.column_stack([np.asarray(table[c], dtype=np.float64) for c in "xyz"])
    ori = np.column_stack([np.asarray(table[f"galaxy_axisA_{c}"], dtype=np.float64) for c in "xyz"])
    return pos, ori


@dataclass
class PointResult:
    """The statistics of one parameter point.

    stats: (R, 3, N_BINS) per realisation in STATISTICS order; n_galaxies, seeds: (R,) per realisation;
    orientation_stats: (K, 3, N_BINS) orientation-only draws on the last realisation's positions, or None;
    nan_flag: True when any bin of any realisation is NaN (too few galaxies, empty bins).
    """

    stats: np.ndarray
    n_galaxies: np.ndarray
    seeds: np.ndarray
    orientation_stats: np.ndarray | None
    nan_flag: bool

    def mean(self) -> np.ndarray:
        """(3, N_BINS) mean over realisations, ignoring NaN realisations (NaN where all are NaN)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(self.stats, axis=0)

    def std(self) -> np.ndarray:
        """(3, N_BINS) standard deviation over realisations (ddof=1), ignoring NaN realisations."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanstd(self.stats, axis=0, ddof=1)


class IAMockModel:
    """The paper's halotools-IA model bound to one halo catalog (built once, populated many times).

    `populate(params, seed)` gives a bit-identical galaxy table for the same (catalog, params, seed);
    `measure(params, seed, ...)` gives xi, omega, eta over realisations (see the module docstring).
    """

    def __init__(self, catalog, *, host_bins=None):
        self.catalog = catalog
        Lbox = np.broadcast_to(np.asarray(catalog.Lbox, dtype=np.float64), (3,))
        if not np.all(Lbox == Lbox[0]):
            raise ValueError(f"the mock model needs a cubic box, got Lbox={Lbox}")
        self.Lbox = float(Lbox[0])
        if BIN_EDGES[-1] >= self.Lbox / 3.0:
            raise ValueError(f"box side Lbox={self.Lbox:g} Mpc/h is too small for the radial bins: the largest "
                             f"edge {BIN_EDGES[-1]:.4g} Mpc/h must be below Lbox/3")
        table = catalog.halo_table
        self.min_host_mass = float(getattr(catalog, "min_host_mass", 0.0))
        host = np.asarray(table["halo_upid"]) == -1
        host &= np.asarray(table["halo_mvir"]) > self.min_host_mass
        host_ids = np.asarray(table["halo_id"])[host]
        sub = (np.asarray(table["halo_upid"]) != -1) & np.isin(np.asarray(table["halo_hostid"]), host_ids)
        host_mass = np.asarray(table["halo_mvir_host_halo"])[host]
        sub_host_mass = np.asarray(table["halo_mvir_host_halo"])[sub]
        if host_bins is None:
            host_bins = getattr(catalog, "host_mass_bins", None)
            if not _bins_fit(host_bins, host_mass, sub_host_mass):
                host_bins = host_mass_bins(host_mass, sub_host_mass)
        self.host_bins = np.asarray(host_bins, dtype=np.float64)
        self.n_hosts = int(host.sum())
        self.n_subhalos = int(sub.sum())

        z = float(catalog.redshift)
        self._central_orientation = SeededCentralAlignment()
        self._satellite_orientation = SeededRadialSatelliteAlignment(Lbox=Lbox)
        self.model = HodModelFactory(
            centrals_occupation=Zheng07Cens(redshift=z),
            centrals_profile=TrivialPhaseSpace(redshift=z),
            satellites_occupation=Zheng07Sats(redshift=z),
            satellites_profile=SubhaloPhaseSpace("satellites", self.host_bins),
            centrals_orientation=self._central_orientation,
            satellites_orientation=self._satellite_orientation,
            model_feature_calling_sequence=_FEATURE_SEQUENCE,
        )
        particle_mass = float(catalog.particle_mass)
        self.model.mock = HodMockFactory(halocat=catalog, model=self.model,
                                         Num_ptcl_requirement=self.min_host_mass / particle_mass)
        self._params: dict[str, float] | None = None

    def set_params(self, params: Mapping[str, float]) -> dict[str, float]:
        """Validate the 7 parameters (ValueError naming a bad one) and load them into the halotools model."""
        p = validate_params(params)
        for name, value in p.items():
            self.model.param_dict[HALOTOOLS_PARAM_NAMES[name]] = value
        self._params = p
        return p

    def populate(self, params: Mapping[str, float], seed: int):
        """One mock realisation: an astropy Table of galaxies (x, y, z, galaxy_axisA_x/y/z, gal_type, ...).

        Bit-identical (columns in a fixed order, every value) for the same (catalog, params, seed);
        seed must be an integer in [0, 2**31).
        """
        self.set_params(params)
        seed = _check_seed(seed)
        if seed >= 2**_SEED_BITS:
            raise ValueError(f"seed={seed} must be below 2**{_SEED_BITS} (halotools adds to it and numpy "
                             "seeds must fit in 32 bits); use realisation_seed() to derive one")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.model.mock.populate(seed=seed)
        table = self.model.mock.galaxy_table
        first = [c for c in _LEADING_COLUMNS if c in table.colnames]
        order = first + sorted(c for c in table.colnames if c not in first)
        return Table([table[c] for c in order], copy=False)

    def redraw_orientations(self, table, seed: int) -> np.ndarray:
        """New galaxy major axes (N, 3) for the galaxies of `table` (positions kept), from `seed`.

        The same draws as the seeded components in `populate` (at the current parameters), without
        the intermediate/minor axes; rounded to float32 as the galaxy table stores them. `table` is not modified.
        """
        if self._params is None:
            raise RuntimeError("set the parameters (populate, measure or set_params) before redrawing orientations")
        s_cen, s_sat = (int(s) >> 1 for s in np.random.SeedSequence(_check_seed(seed)).generate_state(2, np.uint32))
        gal_type = np.asarray(table["gal_type"])
        major = np.zeros((len(table), 3))
        cen = gal_type == "centrals"
        halo_axes = np.column_stack([np.asarray(table[f"halo_axisA_{c}"], dtype=np.float64)[cen] for c in "xyz"])
        major[cen] = _correlated_axes(halo_axes, self._params["mu_cen"], s_cen, major_only=True)[0]
        sat = gal_type == "satellites"
        columns = {k: np.asarray(table[k], dtype=np.float64)[sat] for k in ("x", "y", "z", "halo_x", "halo_y", "halo_z")}
        radial, _ = self._satellite_orientation.get_radial_vector(Lbox=np.full(3, self.Lbox), table=columns)
        major[sat] = _correlated_axes(radial, self._params["mu_sat"], s_sat, major_only=True)[0]
        return major.astype(np.float32).astype(np.float64)

    def statistics(self, table) -> np.ndarray:
        """(3, N_BINS) xi, omega, eta of a galaxy table (NaN in empty bins, all NaN below 2 galaxies)."""
        from training.mocks.correlations import measure_correlations

        pos, ori = galaxy_arrays(table)
        return measure_correlations(pos, ori, self.Lbox, rbins=BIN_EDGES).as_array()

    def measure(self, params: Mapping[str, float], seed: int, n_realisations: int = DEFAULT_REALISATIONS,
                orientation_draws: int = 0, progress: bool = False) -> PointResult:
        """xi, omega, eta of `n_realisations` independent realisations (positions and orientations
        re-populated each time, as in the paper), plus `orientation_draws` orientation-only redraws on
        the last realisation's positions (sharing one pair geometry)."""
        return measure_point(self, params, seed, n_realisations, orientation_draws, progress, populate=self.populate)

    def positions(self, table) -> np.ndarray:
        """(n, 3) galaxy positions of a galaxy table."""
        return galaxy_arrays(table)[0]


def measure_point(model, params: Mapping[str, float], seed: int, n_realisations: int = DEFAULT_REALISATIONS,
                  orientation_draws: int = 0, progress: bool = False, *, populate) -> PointResult:
    """The measurement of one design point, shared by the mock models: `n_realisations` re-populated realisations
    and `orientation_draws` orientation-only redraws on the last one's positions (one pair geometry).

    `populate(params, seed)` returns the model's galaxies; the model provides `set_params`, `statistics(galaxies)`,
    `positions(galaxies)` (their (n, 3) positions), `redraw_orientations(galaxies, seed)` and `Lbox`.
    """
    from training.mocks.correlations import PairGeometry

    model.set_params(params)
    seed = _check_seed(seed)
    if int(n_realisations) < 1 or int(orientation_draws) < 0:
        raise ValueError(f"n_realisations={n_realisations} must be >= 1 and orientation_draws="
                         f"{orientation_draws} >= 0")
    n_realisations, orientation_draws = int(n_realisations), int(orientation_draws)
    seeds = np.array([realisation_seed(seed, r) for r in range(n_realisations)], dtype=np.uint64)
    stats = np.full((n_realisations, len(STATISTICS), N_BINS), np.nan)
    n_gal = np.zeros(n_realisations, dtype=np.int64)
    iterator = range(n_realisations)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="realisations", unit="mock")
    galaxies = None
    for r in iterator:
        galaxies = populate(params, int(seeds[r]))
        n_gal[r] = len(galaxies)
        stats[r] = model.statistics(galaxies)
    orientation_stats = None
    if orientation_draws:
        orientation_stats = np.full((orientation_draws, len(STATISTICS), N_BINS), np.nan)
        geometry = PairGeometry(model.positions(galaxies), model.Lbox, BIN_EDGES)
        for k in range(orientation_draws):
            orientation_stats[k] = geometry.measure(model.redraw_orientations(galaxies, orientation_seed(seed, k))
                                                    ).as_array()
    nan_flag = bool(np.isnan(stats).any() or (orientation_stats is not None and np.isnan(orientation_stats).any()))
    return PointResult(stats=stats, n_galaxies=n_gal, seeds=seeds, orientation_stats=orientation_stats,
                       nan_flag=nan_flag)


def box_of_realisation(seed: int, r: int, n_boxes: int) -> int:
    """The box of realisation r of a point with `seed` in a BoxSetModel: (seed + r) mod n_boxes, so a point's
    realisations cycle through the boxes (10 on 3 boxes: 4, 3, 3) from a start that the seed moves round."""
    return (int(seed) + int(r)) % int(n_boxes)


@dataclass
class BoxGalaxies:
    """One realisation of a BoxSetModel: the galaxies and the index of the box they live in."""

    box: int
    galaxies: object

    def __len__(self) -> int:
        return len(self.galaxies)


class BoxSetModel:
    """The mock model on a set of independent boxes (training.catalogs.sources.CatalogSet): realisation r of
    `measure(params, seed)` populates box `box_of_realisation(seed, r, K)` with `realisation_seed(seed, r)`, so a
    point's mean averages over the boxes and its scatter includes one box's sample variance."""

    def __init__(self, models):
        self.models = list(models)
        if len(self.models) < 2:
            raise ValueError(f"a box set needs at least 2 box models, got {len(self.models)}")
        self.Lbox = self.models[0].Lbox
        self.n_hosts = [getattr(m, "n_hosts", None) for m in self.models]
        self._params: dict[str, float] | None = None

    def set_params(self, params: Mapping[str, float]) -> dict[str, float]:
        """Validate the 7 parameters and set them on every box's model."""
        for m in self.models:
            self._params = m.set_params(params)
        return self._params

    def populate_box(self, box: int, params: Mapping[str, float], seed: int) -> BoxGalaxies:
        """One realisation on box `box` (identical for the same box, params and seed)."""
        return BoxGalaxies(int(box), self.models[int(box)].populate(params, seed))

    def statistics(self, realisation: BoxGalaxies) -> np.ndarray:
        """(3, N_BINS) xi, omega, eta of one realisation, measured in its own box."""
        return self.models[realisation.box].statistics(realisation.galaxies)

    def redraw_orientations(self, realisation: BoxGalaxies, seed: int) -> np.ndarray:
        """New major axes for one realisation's galaxies, by its box's model."""
        return self.models[realisation.box].redraw_orientations(realisation.galaxies, seed)

    def positions(self, realisation: BoxGalaxies) -> np.ndarray:
        """(n, 3) positions of one realisation's galaxies, by its box's model."""
        return self.models[realisation.box].positions(realisation.galaxies)

    def measure(self, params: Mapping[str, float], seed: int, n_realisations: int = DEFAULT_REALISATIONS,
                orientation_draws: int = 0, progress: bool = False) -> PointResult:
        """As IAMockModel.measure, with realisation r on box `box_of_realisation(seed, r, K)`."""
        seed = _check_seed(seed)
        box_of_seed = {realisation_seed(seed, r): box_of_realisation(seed, r, len(self.models))
                       for r in range(max(int(n_realisations), 0))}
        return measure_point(self, params, seed, n_realisations, orientation_draws, progress,
                             populate=lambda p, s: self.populate_box(box_of_seed[s], p, s))
