"""A fast populate of the paper's halotools-IA model: the same galaxies in law, drawn from arrays.

`FastPopulator` draws, from numpy arrays prepared once per catalog, galaxies distributed exactly as
those of `training.mocks.model.IAMockModel` (halotools 0.9.4 components), with its own random numbers:

  centrals    one per host with probability <Ncen> = (1 + erf((log10 M - logMmin) / sigma_logM)) / 2
              (Zheng07Cens, M = halo_mvir), at the host's position (TrivialPhaseSpace);
  satellites  Poisson(<Nsat>), <Nsat> = ((M - M0) / M1)^alpha for M > M0, else 0 (Zheng07Sats, not
              modulated by the central occupation). SubhaloPhaseSpace's rule: a host with N satellites
              and m subhalos (subhalos whose halo_hostid is the host) gives its min(N, m) subhalos of
              largest halo_mpeak their position; each of the N - m others copies the offset from its own
              host of a subhalo drawn uniformly, with replacement, among all subhalos of the hosts in the
              same host-mass bin (np.digitize of halo_mvir_host_halo on the model's bins), placed about
              this host and wrapped into the box (`x % Lbox`);
  orientation the major axis has |cos theta| to a reference axis distributed as Dimroth-Watson,
              p(cos theta) ~ exp(-k cos^2 theta), k = -tan(pi mu / 2), with a uniform azimuth (and a
              random sign) about it: the host's major axis (halo_axisA) for centrals (CentralAlignment),
              the minimum-image vector from the host centre to the satellite for satellites
              (RadialSatelliteAlignment; a satellite at its host's centre gets a uniformly random axis).
              As in halotools, |k| so large that exp(k) is 0 or inf gives |cos theta| = 1 (k < 0) or 0.
              Major axes are rounded to float32, the precision of halotools' galaxy table.

Host halos are those with halo_upid == -1 and halo_mvir above the catalog's min_host_mass; subhalos are
kept when their host is. Within a host, subhalos of equal halo_mpeak are taken in catalog row order
(halotools takes them in the order of its table sort; the shipped catalogs have no such ties).

Reproducibility: `populate(params, seed)` gives identical galaxies for the same (catalog, params, seed),
from numpy's PCG64 seeded by SeedSequence(seed) (independent streams for occupations, placement and
orientations, so positions do not depend on mu_cen, mu_sat). It does not reproduce halotools' own draws.

`FastIAMockModel` has the interface of IAMockModel (populate, statistics, redraw_orientations, measure,
the same realisation and orientation seeds) with this populate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy.special import erf

from iaemu_theory.conventions import BIN_EDGES, DEFAULT_REALISATIONS, validate_params

__all__ = ["FastIAMockModel", "FastPopulator", "Galaxies", "POPULATE_METHODS", "dimroth_watson_cos", "mock_model",
           "watson_abs_cos_cdf", "watson_shape"]

#: The populate implementations a mock model can use: halotools-IA itself (the reference) and this module.
POPULATE_METHODS: tuple[str, ...] = ("fast", "halotools")


def watson_shape(mu) -> np.ndarray:
    """Dimroth-Watson shape k = -tan(pi mu / 2) of alignment strength mu in [-1, 1] (halotools' alignment_strength).

    mu = +-1 gives k = -+1.6e16 (tan of a float near pi/2), which the samplers treat as perfect (anti-)alignment.
    """
    return -np.tan(np.asarray(mu, dtype=np.float64) * (np.pi / 2.0))


def _watson_abs_cos(k: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """n draws of t = |cos theta| in [0, 1] with density proportional to exp(-k t^2), by exact rejection.

    k < 0: proposal truncated exponential exp(a t), a = -k (exp(a t^2) <= exp(a t)), acceptance >= 1/2;
    0 < k <= 1: uniform proposal, acceptance >= exp(-1); k > 1: half-normal of variance 1/(2k), kept on [0, 1].
    """
    k = float(k)
    if n == 0:
        return np.zeros(0)
    with np.errstate(over="ignore"):
        edge = bool(np.isinf(np.exp(k)) or np.exp(k) == 0.0)  # halotools' DimrothWatson test
    if k == 0.0:
        return rng.random(n)
    if edge:
        return np.full(n, 1.0 if k < 0 else 0.0)
    out = np.empty(n)
    todo = np.arange(n)
    a = -k
    em1 = math.expm1(-a) if k < 0 else 0.0
    while todo.size:
        m = todo.size
        if k < 0:
            t = 1.0 + np.log1p((1.0 - rng.random(m)) * em1) / a
            keep = rng.random(m) < np.exp(-a * t * (1.0 - t))
        elif k <= 1.0:
            t = rng.random(m)
            keep = rng.random(m) < np.exp(-k * t * t)
        else:
            t = np.abs(rng.standard_normal(m)) / math.sqrt(2.0 * k)
            keep = t <= 1.0
        out[todo[keep]] = t[keep]
        todo = todo[~keep]
    return np.minimum(out, 1.0)


def watson_abs_cos_cdf(t, k: float) -> np.ndarray:
    """CDF of |cos theta| in [0, 1] under the Dimroth-Watson density proportional to exp(-k cos^2 theta).

    erfi(sqrt(-k) t) / erfi(sqrt(-k)) for k < 0 (written with Dawson's function, no overflow),
    erf(sqrt(k) t) / erf(sqrt(k)) for k > 0, t for k = 0.
    """
    from scipy.special import dawsn

    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    k = float(k)
    if k == 0.0:
        return t
    if k < 0:
        a = math.sqrt(-k)
        return np.exp(-k * (t * t - 1.0)) * dawsn(a * t) / dawsn(a)
    return erf(math.sqrt(k) * t) / erf(math.sqrt(k))


def dimroth_watson_cos(k: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """n draws of cos theta in [-1, 1] from the Dimroth-Watson density proportional to exp(-k cos^2 theta)."""
    t = _watson_abs_cos(k, n, rng)
    return np.where(rng.random(n) < 0.5, -t, t)


def _unit(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit vectors, bad) where bad marks zero-length or non-finite rows (their unit vector is garbage)."""
    norm = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
    bad = ~np.isfinite(norm) | (norm <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return vectors / norm[:, None], bad


def _random_unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    z = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    s = np.sqrt(1.0 - z * z)
    return np.column_stack([s * np.cos(phi), s * np.sin(phi), z])


def _axes_about(reference: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    """Unit axes with Dimroth-Watson(k) |cos| to each reference vector and a uniform azimuth about it.

    A zero-length or non-finite reference is replaced by a uniformly random direction first.
    """
    n = reference.shape[0]
    unit, bad = _unit(np.asarray(reference, dtype=np.float64))
    if np.any(bad):
        unit[bad] = _random_unit_vectors(int(bad.sum()), rng)
    cos_t = dimroth_watson_cos(k, n, rng)
    sin_t = np.sqrt(np.maximum(0.0, 1.0 - cos_t * cos_t))
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    nx, ny, nz = unit[:, 0], unit[:, 1], unit[:, 2]
    # an orthonormal basis (e1, e2, n) without branches (Duff et al. 2017, J. Comput. Graph. Tech. 6, 1)
    sign = np.where(nz >= 0.0, 1.0, -1.0)
    a = -1.0 / (sign + nz)
    b = nx * ny * a
    c1, c2 = sin_t * np.cos(phi), sin_t * np.sin(phi)
    out = np.empty((n, 3))
    out[:, 0] = c1 * (1.0 + sign * nx * nx * a) + c2 * b + cos_t * nx
    out[:, 1] = c1 * (sign * b) + c2 * (sign + ny * ny * a) + cos_t * ny
    out[:, 2] = -c1 * (sign * nx) - c2 * ny + cos_t * nz
    return out


@dataclass
class Galaxies:
    """One realisation of the fast populate (centrals first, then satellites).

    positions (N, 3) float64 in [0, Lbox); major (N, 3) unit major axes (float32-rounded, as float64);
    is_central (N,); host: catalog row of each galaxy's host halo; subhalo: catalog row of the subhalo whose
    position a satellite took (-1 for centrals); real_subhalo: the satellite sits in a subhalo of its own host;
    reference (N, 3): the axis each major axis is drawn about (host major axis, or host-to-satellite vector).
    """

    positions: np.ndarray
    major: np.ndarray
    is_central: np.ndarray
    host: np.ndarray
    subhalo: np.ndarray
    real_subhalo: np.ndarray
    reference: np.ndarray

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_centrals(self) -> int:
        return int(np.count_nonzero(self.is_central))


def _generator(seed_sequence: np.random.SeedSequence) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed_sequence))


def _check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    return int(seed)


class FastPopulator:
    """The paper's model on one catalog as arrays (prepared once); `populate(params, seed)` draws galaxies.

    host_bins: SubhaloPhaseSpace host-mass bin edges; by default those IAMockModel uses for the catalog.
    """

    def __init__(self, catalog, *, host_bins=None):
        from training.mocks.model import _bins_fit, host_mass_bins

        Lbox = np.broadcast_to(np.asarray(catalog.Lbox, dtype=np.float64), (3,))
        if not np.all(Lbox == Lbox[0]):
            raise ValueError(f"the fast populate needs a cubic box, got Lbox={Lbox}")
        self.Lbox = float(Lbox[0])
        table = catalog.halo_table
        col = {name: np.asarray(table[name]) for name in
               ("halo_id", "halo_upid", "halo_hostid", "halo_mvir", "halo_mvir_host_halo", "halo_mpeak",
                "halo_x", "halo_y", "halo_z", "halo_axisA_x", "halo_axisA_y", "halo_axisA_z")}
        self.min_host_mass = float(getattr(catalog, "min_host_mass", 0.0))
        host_rows = np.flatnonzero((col["halo_upid"] == -1) & (col["halo_mvir"] > self.min_host_mass))
        if host_rows.size == 0:
            raise ValueError(f"no host halo above min_host_mass={self.min_host_mass:.3g} Msun/h")
        host_rows = host_rows[np.argsort(col["halo_mvir"][host_rows], kind="stable")]  # ascending mass
        host_ids = col["halo_id"][host_rows]
        id_order = np.argsort(host_ids)
        sub_rows = np.flatnonzero(col["halo_upid"] != -1)
        where = np.searchsorted(host_ids, col["halo_hostid"][sub_rows], sorter=id_order)
        where = np.minimum(where, host_ids.size - 1)
        matched = host_ids[id_order[where]] == col["halo_hostid"][sub_rows]
        sub_rows, sub_host = sub_rows[matched], id_order[where[matched]]  # sub_host: index into host arrays

        host_mass_key = col["halo_mvir_host_halo"][host_rows]
        if host_bins is None:
            host_bins = getattr(catalog, "host_mass_bins", None)
            if not _bins_fit(host_bins, host_mass_key, col["halo_mvir_host_halo"][sub_rows]):
                host_bins = host_mass_bins(host_mass_key, col["halo_mvir_host_halo"][sub_rows])
        self.host_bins = np.asarray(host_bins, dtype=np.float64)
        host_bin = np.digitize(host_mass_key, self.host_bins)

        # subhalos grouped by host bin, then host, then descending halo_mpeak (row order breaks ties)
        order = np.lexsort((sub_rows, -col["halo_mpeak"][sub_rows], sub_host, host_bin[sub_host]))
        sub_rows, sub_host = sub_rows[order], sub_host[order]
        n_hosts = host_rows.size
        self.n_hosts, self.n_subhalos = int(n_hosts), int(sub_rows.size)
        self.host_rows, self.sub_rows = host_rows, sub_rows
        self.host_mass = col["halo_mvir"][host_rows].astype(np.float64)
        self.log_host_mass = np.log10(self.host_mass)
        self.host_pos = np.column_stack([col[f"halo_{c}"][host_rows] for c in "xyz"]).astype(np.float64)
        self.host_axis = np.column_stack([col[f"halo_axisA_{c}"][host_rows] for c in "xyz"]).astype(np.float64)
        self.host_bin = host_bin
        self.sub_count = np.bincount(sub_host, minlength=n_hosts)
        self.sub_start = np.zeros(n_hosts, dtype=np.int64)
        first = np.flatnonzero(np.r_[True, sub_host[1:] != sub_host[:-1]]) if sub_host.size else np.zeros(0, int)
        self.sub_start[sub_host[first]] = first
        n_bins = self.host_bins.size + 1
        self.bin_count = np.bincount(host_bin[sub_host], minlength=n_bins)
        self.bin_start = np.r_[0, np.cumsum(self.bin_count)[:-1]]
        self.sub_pos = np.column_stack([col[f"halo_{c}"][sub_rows] for c in "xyz"]).astype(np.float64)
        offset = self.sub_pos - self.host_pos[sub_host]
        half = self.Lbox / 2.0
        offset[offset > half] -= self.Lbox
        offset[offset < -half] += self.Lbox
        self.sub_offset = offset
        self.sub_host = sub_host

    def _satellites(self, p: dict, rng: np.random.Generator):
        """(host index, subhalo index, real) of every satellite, from Poisson occupations."""
        m0 = 10.0 ** p["logM0"]
        i0 = int(np.searchsorted(self.host_mass, m0, side="right"))
        mass = self.host_mass[i0:]
        with np.errstate(over="ignore", invalid="ignore"):
            mean = ((mass - m0) / 10.0 ** p["logM1"]) ** p["alpha"]
        mean[mass <= m0] = 0.0
        if not np.all(np.isfinite(mean)):
            raise ValueError(f"satellite occupation is not finite at logM0={p['logM0']}, logM1={p['logM1']}, "
                             f"alpha={p['alpha']}")
        n_sat = rng.poisson(mean)
        hosts = np.flatnonzero(n_sat) + i0
        n = n_sat[hosts - i0]
        real = np.minimum(n, self.sub_count[hosts])
        orphan = n - real
        total_real = int(real.sum())
        real_hosts = np.repeat(hosts, real)
        within = np.arange(total_real) - np.repeat(np.cumsum(real) - real, real)
        real_idx = self.sub_start[real_hosts] + within
        orphan_hosts = np.repeat(hosts, orphan)
        if orphan_hosts.size:
            b = self.host_bin[orphan_hosts]
            if np.any(self.bin_count[b] == 0):
                bad = int(b[self.bin_count[b] == 0][0])
                raise ValueError(f"host-mass bin {bad} of the model's bins has satellites to place but no subhalo")
            draw = np.floor(rng.random(orphan_hosts.size) * self.bin_count[b]).astype(np.int64)
            orphan_idx = self.bin_start[b] + draw
        else:
            orphan_idx = np.zeros(0, dtype=np.int64)
        return real_hosts, real_idx, orphan_hosts, orphan_idx

    def populate(self, params: Mapping[str, float], seed: int) -> Galaxies:
        """One realisation at `params` (the 7 parameters) from `seed` (a non-negative integer)."""
        p = validate_params(params)
        s_cen, s_sat, s_ori = np.random.SeedSequence(_check_seed(seed)).spawn(3)
        rng = _generator(s_cen)
        mean_cen = 0.5 * (1.0 + erf((self.log_host_mass - p["logMmin"]) / p["sigma_logM"]))
        cen_hosts = np.flatnonzero(rng.random(self.n_hosts) < mean_cen)
        real_hosts, real_idx, orphan_hosts, orphan_idx = self._satellites(p, _generator(s_sat))
        n_cen = cen_hosts.size
        sat_hosts = np.concatenate([real_hosts, orphan_hosts])
        positions = np.concatenate([self.host_pos[cen_hosts], self.sub_pos[real_idx],
                                    (self.host_pos[orphan_hosts] + self.sub_offset[orphan_idx]) % self.Lbox])
        reference = np.concatenate([self.host_axis[cen_hosts], self.sub_offset[real_idx], self.sub_offset[orphan_idx]])
        galaxies = Galaxies(
            positions=positions, major=np.empty_like(positions),
            is_central=np.r_[np.ones(n_cen, bool), np.zeros(sat_hosts.size, bool)],
            host=self.host_rows[np.concatenate([cen_hosts, sat_hosts])],
            subhalo=np.concatenate([np.full(n_cen, -1, np.int64), self.sub_rows[real_idx], self.sub_rows[orphan_idx]]),
            real_subhalo=np.r_[np.zeros(n_cen, bool), np.ones(real_idx.size, bool), np.zeros(orphan_idx.size, bool)],
            reference=reference)
        galaxies.major = self.orientations(galaxies, p["mu_cen"], p["mu_sat"], _generator(s_ori))
        return galaxies

    def orientations(self, galaxies: Galaxies, mu_cen: float, mu_sat: float, rng: np.random.Generator) -> np.ndarray:
        """Major axes (N, 3) of `galaxies` drawn about their reference axes at strengths mu_cen, mu_sat."""
        n_cen = galaxies.n_centrals
        major = np.empty((len(galaxies), 3))
        major[:n_cen] = _axes_about(galaxies.reference[:n_cen], float(watson_shape(mu_cen)), rng)
        major[n_cen:] = _axes_about(galaxies.reference[n_cen:], float(watson_shape(mu_sat)), rng)
        return major.astype(np.float32).astype(np.float64)


class FastIAMockModel:
    """IAMockModel's interface (populate, statistics, redraw_orientations, measure) with the fast populate.

    Same parameters, validation, realisation seeds (`realisation_seed`) and orientation seeds
    (`orientation_seed`) as IAMockModel; galaxies equal in law to IAMockModel's, not draw for draw.
    """

    populate_method = "fast"

    def __init__(self, catalog, *, host_bins=None):
        self.catalog = catalog
        self.populator = FastPopulator(catalog, host_bins=host_bins)
        self.Lbox = self.populator.Lbox
        if BIN_EDGES[-1] >= self.Lbox / 3.0:
            raise ValueError(f"box side Lbox={self.Lbox:g} Mpc/h is too small for the radial bins: the largest "
                             f"edge {BIN_EDGES[-1]:.4g} Mpc/h must be below Lbox/3")
        self.host_bins = self.populator.host_bins
        self.n_hosts, self.n_subhalos = self.populator.n_hosts, self.populator.n_subhalos
        self._params: dict[str, float] | None = None

    def set_params(self, params: Mapping[str, float]) -> dict[str, float]:
        """Validate the 7 parameters (ValueError naming a bad one) and keep them for redraw_orientations."""
        self._params = validate_params(params)
        return self._params

    def populate(self, params: Mapping[str, float], seed: int) -> Galaxies:
        """One realisation (identical for the same catalog, params and seed)."""
        self.set_params(params)
        return self.populator.populate(params, seed)

    def redraw_orientations(self, galaxies: Galaxies, seed: int) -> np.ndarray:
        """New major axes (N, 3) for the galaxies (positions kept), from `seed`, at the current parameters."""
        if self._params is None:
            raise RuntimeError("set the parameters (populate, measure or set_params) before redrawing orientations")
        rng = _generator(np.random.SeedSequence(_check_seed(seed)))
        return self.populator.orientations(galaxies, self._params["mu_cen"], self._params["mu_sat"], rng)

    def statistics(self, galaxies: Galaxies) -> np.ndarray:
        """(3, N_BINS) xi, omega, eta of one realisation (NaN in empty bins, all NaN below 2 galaxies)."""
        from training.mocks.correlations import measure_correlations

        return measure_correlations(galaxies.positions, galaxies.major, self.Lbox, rbins=BIN_EDGES).as_array()

    def measure(self, params: Mapping[str, float], seed: int, n_realisations: int = DEFAULT_REALISATIONS,
                orientation_draws: int = 0, progress: bool = False):
        """xi, omega, eta of `n_realisations` realisations and `orientation_draws` orientation-only redraws on
        the last one's positions, as IAMockModel.measure (a PointResult)."""
        from training.mocks.model import measure_point

        return measure_point(self, params, seed, n_realisations, orientation_draws, progress,
                             populate=self.populator.populate)

    def positions(self, galaxies: Galaxies) -> np.ndarray:
        """(n, 3) positions of the galaxies."""
        return galaxies.positions


def mock_model(catalog, populate: str = "fast", **kwargs):
    """The paper's mock model on `catalog` with the chosen populate: FastIAMockModel ("fast") or IAMockModel
    ("halotools", the reference); on a CatalogSet, a BoxSetModel of one such model per box. kwargs (host_bins) go
    to the model."""
    members = getattr(catalog, "members", None)
    if members is not None:
        from training.mocks.model import BoxSetModel

        return BoxSetModel([mock_model(box, populate, **kwargs) for box in members])
    if populate == "fast":
        return FastIAMockModel(catalog, **kwargs)
    if populate == "halotools":
        from training.mocks.model import IAMockModel

        return IAMockModel(catalog, **kwargs)
    raise ValueError(f"populate={populate!r}: expected one of {list(POPULATE_METHODS)}")
