"""Halos from the z = 0 particles: friends-of-friends groups (kdcount), density-peak centres, mean
velocities, Tinker08 rank-matched masses, R_vir, c(M), shapes from inertia tensors of the members, and
satellite sites ("subhalo" rows) drawn from a triaxial NFW along the measured axes.

The halo model versions (``MODELS``, each a frozen `HaloModel`) share the same simulation and FoF groups and
differ only in the shape estimators and the satellite profile: v1 (reduced tensor inside R_vir, NFW with
c(M)), v2 (non-reduced tensor inside R_vir/2 for the axis, Allgood et al. 2006 iterative ratios inside R_vir,
NFW with c(M)/2), v3 and v4 (v2 plus subhalo masses at the satellite sites in the axis tensor), chosen by the
measured realism test in docs/catalog.md.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace

import numpy as np
from numba import njit

from . import cosmology


def friends_of_friends(pos: np.ndarray, boxsize: float, linking_length: float, min_particles: int):
    """Periodic FoF (kdcount). Returns (member particle indices sorted by group, group offsets, group lengths)
    for the groups with >= min_particles members, largest first."""
    import kdcount
    import kdcount.cluster

    data = kdcount.models.dataset(np.asarray(pos, dtype=np.float64), boxsize=boxsize)
    fof = kdcount.cluster.fof(data, linking_length=linking_length, np=0)
    keep = fof.length >= min_particles
    ngroups = int(keep.sum())  # kdcount sorts groups by length, largest first
    lengths = np.asarray(fof.length[:ngroups], dtype=np.int64)
    offsets = np.asarray(fof.offset[:ngroups], dtype=np.int64)
    nmem = int(lengths.sum())
    members = np.asarray(fof.indices[:nmem], dtype=np.int64)
    del fof, data
    return members, offsets, lengths


@njit(cache=True)
def _member_offsets(pos, members, o, n, origin, boxsize):
    """Positions of members[o:o + n] relative to `origin`, wrapped to the nearest periodic image: (n, 3)."""
    half = 0.5 * boxsize
    rel = np.empty((n, 3))
    for i in range(n):
        p = members[o + i]
        for d in range(3):
            x = pos[p, d] - origin[d]
            if x > half:
                x -= boxsize
            elif x < -half:
                x += boxsize
            rel[i, d] = x
    return rel


@njit(cache=True)
def _group_properties(pos, vel, members, offsets, lengths, boxsize, out_centre, out_vel):
    """Shrinking-sphere density-peak centre (Power et al. 2003) and mean velocity of each group."""
    for g in range(len(offsets)):
        o = offsets[g]
        n = lengths[g]
        ref = pos[members[o]]
        rel = _member_offsets(pos, members, o, n, ref, boxsize)
        vmean = np.zeros(3)
        for i in range(n):
            for d in range(3):
                vmean[d] += vel[members[o + i], d]
        c = np.zeros(3)
        for i in range(n):
            for d in range(3):
                c[d] += rel[i, d]
        for d in range(3):
            c[d] /= n
        r2 = np.empty(n)
        rmax2 = 0.0
        for i in range(n):
            s = 0.0
            for d in range(3):
                s += (rel[i, d] - c[d]) ** 2
            r2[i] = s
            rmax2 = max(rmax2, s)
        radius2 = rmax2
        nmin = max(5, n // 20)
        while True:
            radius2 *= 0.75 ** 2
            cnew = np.zeros(3)
            cnt = 0
            for i in range(n):
                s = 0.0
                for d in range(3):
                    s += (rel[i, d] - c[d]) ** 2
                if s <= radius2:
                    cnt += 1
                    for d in range(3):
                        cnew[d] += rel[i, d]
            if cnt < nmin:
                break
            for d in range(3):
                c[d] = cnew[d] / cnt
        for d in range(3):
            x = ref[d] + c[d]
            x = x % boxsize
            out_centre[g, d] = x
            out_vel[g, d] = vmean[d] / n


@njit(cache=True)
def _group_shapes(pos, members, offsets, lengths, centres, rvir, boxsize, min_count, out_axes, out_ratios, out_ninside):
    """Major axis and b/a, c/a of the reduced inertia tensor sum(x x^T / r^2) of members within R_vir
    of the centre (at least the `min_count` nearest members, for groups whose core is barely resolved)."""
    for g in range(len(offsets)):
        o = offsets[g]
        n = lengths[g]
        rel = _member_offsets(pos, members, o, n, centres[g], boxsize)
        r2 = np.empty(n)
        for i in range(n):
            s = 0.0
            for d in range(3):
                s += rel[i, d] * rel[i, d]
            r2[i] = s
        order = np.argsort(r2)
        inside = 0
        for i in range(n):
            if r2[i] <= rvir[g] ** 2:
                inside += 1
        use = max(inside, min(min_count, n))
        tensor = np.zeros((3, 3))
        for j in range(use):
            i = order[j]
            if r2[i] <= 0.0:
                continue
            for a in range(3):
                for b in range(3):
                    tensor[a, b] += rel[i, a] * rel[i, b] / r2[i]
        w, v = np.linalg.eigh(tensor)  # ascending eigenvalues
        lam1 = max(w[2], 1e-30)
        out_axes[g, 0] = v[0, 2]
        out_axes[g, 1] = v[1, 2]
        out_axes[g, 2] = v[2, 2]
        # intermediate and minor axes (columns 1 and 0) stored for the satellite draws
        out_axes[g, 3] = v[0, 1]
        out_axes[g, 4] = v[1, 1]
        out_axes[g, 5] = v[2, 1]
        out_ratios[g, 0] = np.sqrt(max(w[1], 0.0) / lam1)
        out_ratios[g, 1] = np.sqrt(max(w[0], 0.0) / lam1)
        out_ninside[g] = inside


@njit(cache=True)
def _ellipsoid_shapes(pos, members, offsets, lengths, centres, radius, boxsize, reduced, iterative, min_count,
                      out_axes, out_ratios):
    """Inertia-tensor shapes of the members inside an ellipsoid of the volume of the sphere `radius`:
    plain sum(x x^T) (reduced=False) or reduced sum(x x^T / r_ell^2); with `iterative`, the ellipsoid is
    reshaped to the measured axes until the ratios converge to 0.5% (Allgood et al. 2006), else a sphere.
    At least the `min_count` (elliptically) nearest members are used."""
    for g in range(len(offsets)):
        o = offsets[g]
        n = lengths[g]
        rel = _member_offsets(pos, members, o, n, centres[g], boxsize)
        r2max = radius[g] ** 2
        frame = np.eye(3)
        q = 1.0
        s = 1.0
        for _ in range(50 if iterative else 1):
            a2 = r2max / (q * s) ** (2.0 / 3.0)
            rell = np.empty(n)
            for i in range(n):
                x0 = rel[i, 0] * frame[0, 2] + rel[i, 1] * frame[1, 2] + rel[i, 2] * frame[2, 2]
                x1 = rel[i, 0] * frame[0, 1] + rel[i, 1] * frame[1, 1] + rel[i, 2] * frame[2, 1]
                x2 = rel[i, 0] * frame[0, 0] + rel[i, 1] * frame[1, 0] + rel[i, 2] * frame[2, 0]
                rell[i] = x0 * x0 + x1 * x1 / (q * q) + x2 * x2 / (s * s)
            order = np.argsort(rell)
            inside = 0
            for i in range(n):
                if rell[i] <= a2:
                    inside += 1
            use = max(inside, min(min_count, n))
            tensor = np.zeros((3, 3))
            for j in range(use):
                i = order[j]
                w = 1.0
                if reduced:
                    if rell[i] <= 0.0:
                        continue
                    w = 1.0 / rell[i]
                for a in range(3):
                    for b in range(3):
                        tensor[a, b] += rel[i, a] * rel[i, b] * w
            w, v = np.linalg.eigh(tensor)  # ascending eigenvalues
            lam1 = max(w[2], 1e-30)
            q_new = max(np.sqrt(max(w[1], 0.0) / lam1), 0.05)
            s_new = max(np.sqrt(max(w[0], 0.0) / lam1), 0.05)
            converged = abs(q_new - q) < 0.005 * q and abs(s_new - s) < 0.005 * s
            q, s, frame = q_new, s_new, v
            if converged:
                break
        for d in range(3):
            out_axes[g, d] = frame[d, 2]
            out_axes[g, 3 + d] = frame[d, 1]
        out_ratios[g, 0] = q
        out_ratios[g, 1] = s


@dataclass(frozen=True)
class HaloModel:
    """One halo model version: the shape estimators and the satellite-site profile, on the same FoF groups.

    axis_*: the estimator of the major/intermediate axes (halo_axisA, the central galaxies' reference and the
    satellite frame), as (aperture in R_vir, reduced tensor, iterative); ratio_*: the estimator of b/a, c/a
    (halo_b_to_a, halo_c_to_a, the satellite stretch); conc_factor multiplies c(M) for the satellite NFW profile.
    site_mass_fsub > 0 (v3): every satellite site gets a subhalo mass (SHMF_EVOLVED with that f_sub), and the sites
    inside the axis aperture add m x x^T to the host's (non-reduced) tensor before its major axis is taken, as a
    halo finder's axis includes its subhalos' particles; the sites themselves are drawn in the frame without them.
    site_radius (v4): the sites inside this many R_vir enter the tensor (None: axis_radius, the members' window).
    """

    version: int
    axis_radius: float
    axis_reduced: bool
    axis_iterative: bool
    ratio_radius: float
    ratio_reduced: bool
    ratio_iterative: bool
    conc_factor: float
    site_mass_fsub: float = 0.0
    site_radius: float | None = None

    @property
    def site_window(self) -> float:
        """The window of the satellite sites in the axis tensor, in R_vir."""
        return float(self.axis_radius if self.site_radius is None else self.site_radius)

    def to_dict(self) -> dict:
        """The estimator fields as catalog metadata records them (`halo_model_spec`; the site options only when set)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "version"}
        if not self.site_mass_fsub:
            out.pop("site_mass_fsub")
        if self.site_radius is None:
            out.pop("site_radius")
        return out

    @classmethod
    def from_dict(cls, spec: dict, version: int = 0) -> "HaloModel":
        """A model from a `halo_model_spec` record (as `to_dict` writes it)."""
        return cls(version=int(version), **spec)

    def variant(self, text: str, version: int) -> "HaloModel":
        """This model with 'KEY=VALUE,...' overrides (values parsed as JSON: numbers, true/false), as `version`."""
        known = [f.name for f in fields(self) if f.name != "version"]
        overrides = {}
        for item in filter(None, text.split(",")):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"variant item {item!r}: expected KEY=VALUE")
            if key not in known:
                raise ValueError(f"variant key {key!r}: expected one of {sorted(known)}")
            overrides[key] = json.loads(value)
        return replace(self, version=int(version), **overrides)


#: The halo model versions, by number.
MODELS: dict[int, HaloModel] = {m.version: m for m in (
    HaloModel(1, axis_radius=1.0, axis_reduced=True, axis_iterative=False,
              ratio_radius=1.0, ratio_reduced=True, ratio_iterative=False, conc_factor=1.0),
    HaloModel(2, axis_radius=0.5, axis_reduced=False, axis_iterative=False,
              ratio_radius=1.0, ratio_reduced=True, ratio_iterative=True, conc_factor=0.5),
    HaloModel(3, axis_radius=0.5, axis_reduced=False, axis_iterative=False,
              ratio_radius=1.0, ratio_reduced=True, ratio_iterative=True, conc_factor=0.5, site_mass_fsub=0.1),
    HaloModel(4, axis_radius=0.5, axis_reduced=False, axis_iterative=False,
              ratio_radius=1.0, ratio_reduced=True, ratio_iterative=True, conc_factor=0.5, site_mass_fsub=0.1,
              site_radius=0.75),
)}

#: Evolved subhalo mass function of Jiang & van den Bosch (2016, MNRAS 458, 2848; universal fit, all orders):
#: dN/dln(psi) = gamma psi^alpha exp(-beta psi^omega), psi = present-day subhalo mass / host mass, gamma = 0.31 f_sub.
SHMF_EVOLVED = {"gamma_per_fsub": 0.31, "alpha": -0.82, "beta": 50.0, "omega": 4.0}


#: The halo model version that a catalog name without a "-v<N>" suffix means ("default" = "default-v<DEFAULT_MODEL>").
#: It is the version of the shipped emulator's dataset; the other versions stay loadable by their suffixed names.
DEFAULT_MODEL = 4


def get_model(version: int) -> HaloModel:
    """The halo model `version` (ValueError naming the known versions)."""
    try:
        return MODELS[int(version)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"unknown halo model version {version!r}; expected one of {sorted(MODELS)}") from None


def site_mass_fractions(nsite: np.ndarray, f_sub: float, seed: int) -> np.ndarray:
    """psi = m / M_host of every satellite site (sites ordered by host, then rank): the n most massive subhalos of
    a Poisson draw from SHMF_EVOLVED, in decreasing mass with rank. The k-th largest of a Poisson process has
    N(>psi) = the sum of k unit exponentials."""
    nsite = np.asarray(nsite, dtype=np.int64)
    if not f_sub > 0:
        raise ValueError(f"f_sub={f_sub!r}: expected a positive subhalo mass fraction")
    p = SHMF_EVOLVED
    lnpsi = np.linspace(np.log(1e-8), 0.0, 20001)
    psi = np.exp(lnpsi)
    dn = p["gamma_per_fsub"] * f_sub * psi ** p["alpha"] * np.exp(-p["beta"] * psi ** p["omega"])
    n_above = np.concatenate([np.cumsum((0.5 * (dn[1:] + dn[:-1]) * np.diff(lnpsi))[::-1])[::-1], [0.0]])
    e = np.random.default_rng([int(seed), 31]).exponential(size=int(nsite.sum()))
    total = np.cumsum(e)
    first = np.cumsum(nsite) - nsite
    start = np.repeat(total[first[nsite > 0]] - e[first[nsite > 0]], nsite[nsite > 0])
    return np.interp(total - start, n_above[::-1], psi[::-1])


@njit(cache=True)
def _axes_with_sites(pos, members, offsets, lengths, centres, rvir, aperture, site_aperture, host_mass, boxsize,
                     min_count, site_first, site_count, site_rel, site_mass, out_axes):
    """Major and intermediate axes of the non-reduced tensor of the members inside `aperture` (at least the
    `min_count` nearest), weighted to the host's smooth mass M (1 - F) / N(<R_vir), plus m x x^T of its sites
    inside `site_aperture`; F = the sites' mass fraction inside R_vir (at most 0.5)."""
    for g in range(len(offsets)):
        n = lengths[g]
        rel = _member_offsets(pos, members, offsets[g], n, centres[g], boxsize)
        r2 = np.empty(n)
        for i in range(n):
            r2[i] = rel[i, 0] ** 2 + rel[i, 1] ** 2 + rel[i, 2] ** 2
        order = np.argsort(r2)
        inside = 0
        n_rvir = 0
        for i in range(n):
            if r2[i] <= aperture[g] ** 2:
                inside += 1
            if r2[i] <= rvir[g] ** 2:
                n_rvir += 1
        frac = 0.0
        for j in range(site_first[g], site_first[g] + site_count[g]):
            if site_rel[j, 0] ** 2 + site_rel[j, 1] ** 2 + site_rel[j, 2] ** 2 <= rvir[g] ** 2:
                frac += site_mass[j]
        frac = min(frac / host_mass[g], 0.5)
        w = host_mass[g] * (1.0 - frac) / max(n_rvir, 1)
        tensor = np.zeros((3, 3))
        for k in range(max(inside, min(min_count, n))):
            i = order[k]
            for a in range(3):
                for b in range(3):
                    tensor[a, b] += w * rel[i, a] * rel[i, b]
        for j in range(site_first[g], site_first[g] + site_count[g]):
            if site_rel[j, 0] ** 2 + site_rel[j, 1] ** 2 + site_rel[j, 2] ** 2 <= site_aperture[g] ** 2:
                for a in range(3):
                    for b in range(3):
                        tensor[a, b] += site_mass[j] * site_rel[j, a] * site_rel[j, b]
        _, v = np.linalg.eigh(tensor)  # ascending eigenvalues
        for d in range(3):
            out_axes[g, d] = v[d, 2]
            out_axes[g, 3 + d] = v[d, 1]


def axes_with_sites(pos, members, offsets, lengths, centres, hosts: dict, sites: dict, radius: float,
                    boxsize: float, f_sub: float, seed: int, sites_radius: float, min_count: int = 10) -> np.ndarray:
    """(N, 6) major then intermediate axes of every host with its satellite sites' subhalo masses in the tensor
    (halo model key site_mass_fsub): members inside `radius` R_vir, sites inside `sites_radius` R_vir."""
    nsite = np.bincount(sites["host"], minlength=len(lengths))
    mass = site_mass_fractions(nsite, f_sub, seed) * hosts["mvir"][sites["host"]]
    site_rel = sites["offset_rvir"] * hosts["rvir"][sites["host"]][:, None]
    axes = np.empty((len(lengths), 6))
    rvir = np.asarray(hosts["rvir"], dtype=np.float64)
    _axes_with_sites(pos, members, offsets, lengths, centres, rvir, radius * rvir, sites_radius * rvir,
                     np.asarray(hosts["mvir"], dtype=np.float64),
                     float(boxsize), int(min_count), (np.cumsum(nsite) - nsite).astype(np.int64), nsite.astype(np.int64),
                     np.ascontiguousarray(site_rel, dtype=np.float64), mass, axes)
    return axes


def group_shapes(pos, members, offsets, lengths, centres, rvir, boxsize, radius, reduced, iterative, min_count=10):
    """(axes (N, 6): major then intermediate unit axes, ratios (N, 2): b/a, c/a) of every group."""
    ng = len(offsets)
    axes = np.empty((ng, 6))
    ratios = np.empty((ng, 2))
    _ellipsoid_shapes(pos, members, offsets, lengths, centres, radius * np.asarray(rvir, dtype=np.float64),
                      float(boxsize), bool(reduced), bool(iterative), int(min_count), axes, ratios)
    return axes, ratios


def rank_matched_masses(lengths: np.ndarray, boxsize: float, rng: np.random.Generator) -> np.ndarray:
    """Virial masses assigned by abundance: the i-th largest group gets the mass where the Tinker08
    n(>M) V = i + 1/2. Ties in particle number are ordered at random (seeded)."""
    n = len(lengths)
    order = np.lexsort((rng.random(n), -lengths))
    masses = np.empty(n)
    masses[order] = cosmology.tinker08_mass_at_abundance((np.arange(n) + 0.5) / boxsize ** 3)
    return masses


def find_halos(pos: np.ndarray, mom: np.ndarray, preset, seed: int, progress: bool = True,
               model: int = DEFAULT_MODEL) -> tuple[dict, dict]:
    """(host-halo table (numpy columns), their satellite sites (`satellite_sites`)) from z = 0 particles
    (positions Mpc/h, momenta in Mpc/h at a = 1), with the shapes of halo model `model` (see MODELS). The sites
    are drawn in the frame of the particle axes, before a model with site masses moves the axes towards them."""
    from tqdm import tqdm

    steps = tqdm(total=4, desc="halos", disable=not progress)
    boxsize = preset.boxsize
    ll = preset.linking_length * boxsize / preset.n_particles
    members, offsets, lengths = friends_of_friends(pos, boxsize, ll, preset.min_particles)
    steps.update(1)
    ng = len(lengths)
    vel = mom  # v = 100 p / a km/s; at a = 1 momenta are velocities in units of 100 km/s
    centres = np.empty((ng, 3))
    vmean = np.empty((ng, 3))
    _group_properties(pos, vel, members, offsets, lengths, float(boxsize), centres, vmean)
    vmean *= 100.0
    steps.update(1)
    rng = np.random.default_rng([int(seed), 7])
    mvir = rank_matched_masses(lengths, boxsize, rng)
    rvir = cosmology.virial_radius(mvir)
    conc = cosmology.concentration(mvir)
    steps.update(1)
    axes = np.empty((ng, 6))
    ratios = np.empty((ng, 2))
    ninside = np.empty(ng, dtype=np.int64)
    _group_shapes(pos, members, offsets, lengths, centres, rvir, float(boxsize), 10, axes, ratios, ninside)
    spec = get_model(model)
    if (spec.axis_radius, spec.axis_reduced, spec.axis_iterative) != (1.0, True, False):
        axes, _ = group_shapes(pos, members, offsets, lengths, centres, rvir, boxsize, spec.axis_radius,
                               spec.axis_reduced, spec.axis_iterative)
    if (spec.ratio_radius, spec.ratio_reduced, spec.ratio_iterative) != (1.0, True, False):
        _, ratios = group_shapes(pos, members, offsets, lengths, centres, rvir, boxsize, spec.ratio_radius,
                                 spec.ratio_reduced, spec.ratio_iterative)
    hosts = {
        "x": np.mod(centres[:, 0], boxsize), "y": np.mod(centres[:, 1], boxsize), "z": np.mod(centres[:, 2], boxsize),
        "vx": vmean[:, 0], "vy": vmean[:, 1], "vz": vmean[:, 2],
        "n_fof": lengths, "mass_fof": lengths * preset.particle_mass, "mvir": mvir, "rvir": rvir, "conc": conc,
        "axisA": axes[:, :3], "axisB": axes[:, 3:], "b_to_a": ratios[:, 0], "c_to_a": ratios[:, 1],
        "n_inside_rvir": ninside,
    }
    sites = satellite_sites(hosts, boxsize, seed, conc_factor=spec.conc_factor)
    if spec.site_mass_fsub > 0:
        axes = axes_with_sites(pos, members, offsets, lengths, centres, hosts, sites, spec.axis_radius, boxsize,
                               spec.site_mass_fsub, seed, spec.site_window)
        hosts.update(axisA=axes[:, :3], axisB=axes[:, 3:])
    steps.update(1)
    steps.close()
    return hosts, sites


#: Satellite sites per host: ceil(SITES_PER_MASS * Mvir), at least one. 3 sites per 10^12.5 Msun/h covers
#: the Poisson tails of Zheng07 satellite numbers across the training domain (logM1 >= ~12.1).
SITES_PER_MASS = 3.0 / 10 ** 12.5
#: Largest satellite-site distance from the centre along the major axis, in units of R_vir (storage limit).
MAX_SITE_RADIUS = 3.0


def n_sites(mvir: np.ndarray) -> np.ndarray:
    return np.maximum(1, np.ceil(SITES_PER_MASS * np.asarray(mvir))).astype(np.int64)


def _nfw_radii(conc: np.ndarray, u: np.ndarray) -> np.ndarray:
    """r / R_vir with the enclosed-mass fraction u of an NFW profile truncated at R_vir (inverse CDF)."""
    x = np.linspace(0.0, 1.0, 2049)
    out = np.empty_like(u)
    cgrid = np.unique(np.round(conc, 2))
    cr = np.round(conc, 2)
    for c in cgrid:
        sel = cr == c
        m = np.log1p(c * x) - c * x / (1 + c * x)
        out[sel] = np.interp(u[sel], m / m[-1], x)
    return out


def satellite_sites(hosts: dict, boxsize: float, seed: int, conc_factor: float = 1.0) -> dict:
    """Satellite sites of every host, drawn from an NFW profile (c = conc_factor c(M)) stretched along the host's
    measured principal axes with axis ratios 1 : b/a : c/a (volume preserving), with velocities of the host
    plus isotropic Gaussian dispersion V_vir / sqrt(2). Returns offsets in units of R_vir, host indices, ranks."""
    rng = np.random.default_rng([int(seed), 11])
    nsite = n_sites(hosts["mvir"])
    host = np.repeat(np.arange(len(nsite)), nsite)
    rank = np.arange(len(host)) - np.repeat(np.cumsum(nsite) - nsite, nsite)
    ns = len(host)
    r = _nfw_radii(conc_factor * hosts["conc"][host], rng.random(ns))
    u = rng.normal(size=(ns, 3))
    u /= np.linalg.norm(u, axis=1)[:, None]
    q = np.clip(hosts["b_to_a"][host], 0.05, 1.0)
    s = np.clip(hosts["c_to_a"][host], 0.05, 1.0)
    scale_a = (q * s) ** (-1.0 / 3.0)
    e1 = hosts["axisA"][host]
    e2 = hosts["axisB"][host]
    e3 = np.cross(e1, e2)
    local = u * r[:, None] * np.stack([scale_a, scale_a * q, scale_a * s], axis=1)
    offset = local[:, :1] * e1 + local[:, 1:2] * e2 + local[:, 2:3] * e3
    norm = np.linalg.norm(offset, axis=1)
    too_far = norm > MAX_SITE_RADIUS
    offset[too_far] *= (MAX_SITE_RADIUS / norm[too_far])[:, None]
    sigma = cosmology.virial_velocity(hosts["mvir"][host]) / np.sqrt(2.0)
    dv = rng.normal(size=(ns, 3)) * sigma[:, None]
    return {"host": host, "rank": rank, "offset_rvir": offset, "dv": dv}
