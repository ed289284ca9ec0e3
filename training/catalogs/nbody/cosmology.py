"""Cosmology of the project's simulations (Bolshoi-Planck's flat LCDM) and the fitting functions used with it.

One home for: the parameters, the colossus cosmology (linear power, Tinker08 mass function, Tinker10 bias,
c(M), virial radius), the jax_cosmo cosmology that jaxpm needs (growth functions, halofit), and the
tabulated FastPM growth factors.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._compat import import_jax_stack

#: Bolshoi-Planck cosmology (flat LCDM).
COSMOLOGY = {"Om0": 0.307, "Ob0": 0.048, "h": 0.678, "sigma8": 0.823, "ns": 0.96}
#: Mean matter density today in units of the critical density times h^2: rho_crit = 2.775e11 h^2 Msun / Mpc^3.
RHO_CRIT = 2.77536627e11
#: Gravitational constant in Mpc (km/s)^2 / Msun.
G_MPC_KMS2_MSUN = 4.30091727e-9
#: Halo mass definition used for halo_mvir (Bryan & Norman virial overdensity, as Rockstar's Mvir).
MDEF = "vir"


def rho_mean() -> float:
    """Mean comoving matter density in (Msun/h) / (Mpc/h)^3."""
    return RHO_CRIT * COSMOLOGY["Om0"]


@lru_cache(maxsize=1)
def colossus_cosmology():
    """The colossus cosmology object (set as colossus' current cosmology).

    Relativistic species are switched off so that colossus' growth matches the jax_cosmo growth that
    drives the simulation (the difference is ~0.1% at z < 10).
    """
    from colossus.cosmology import cosmology

    params = {
        "flat": True,
        "H0": 100.0 * COSMOLOGY["h"],
        "Om0": COSMOLOGY["Om0"],
        "Ob0": COSMOLOGY["Ob0"],
        "sigma8": COSMOLOGY["sigma8"],
        "ns": COSMOLOGY["ns"],
        "relspecies": False,
    }
    cosmology.addCosmology("iaemu_bolplanck", **params)
    return cosmology.setCosmology("iaemu_bolplanck")


def _activate():
    from colossus.cosmology import cosmology

    cosmo = colossus_cosmology()
    cosmology.setCurrent(cosmo)
    return cosmo


def linear_power(k) -> np.ndarray:
    """Linear matter power at z = 0 (colossus, Eisenstein & Hu 1998), k in h/Mpc, P in (Mpc/h)^3."""
    cosmo = _activate()
    k = np.asarray(k, dtype=float)
    out = np.zeros_like(k)
    pos = k > 0
    out[pos] = cosmo.matterPowerSpectrum(k[pos], 0.0)
    return out


def halofit_power(k, a: float = 1.0) -> np.ndarray:
    """Non-linear matter power from jax_cosmo's halofit (Takahashi et al. 2012), interpolated in log-log
    from a table on 1e-3 < k < 50 h/Mpc."""
    lk, lp = _halofit_table(float(a))
    return np.exp(np.interp(np.log(np.asarray(k, dtype=float)), lk, lp))


@lru_cache(maxsize=4)
def _halofit_table(a: float):
    jax, jnp, _, _, _ = import_jax_stack()
    import jax_cosmo.power as power

    k = np.geomspace(1e-3, 50.0, 400)
    fn = jax.jit(lambda cosmo, kk: power.nonlinear_matter_power(cosmo, kk, a))
    p = np.asarray(fn(jax_cosmology(), jnp.asarray(k, dtype=jnp.float32)), dtype=float)
    return np.log(k), np.log(p)


def jax_cosmology():
    """A fresh jax_cosmo Cosmology with the same parameters (for jaxpm's LPT and growth functions).

    Fresh on every call: jax_cosmo caches growth tables inside the object and jaxpm's dGfa needs the table
    that jaxpm's own growth solver writes, not the one halofit writes.
    """
    _, _, jc, _, _ = import_jax_stack()
    om, ob = COSMOLOGY["Om0"], COSMOLOGY["Ob0"]
    return jc.Cosmology(Omega_c=om - ob, Omega_b=ob, h=COSMOLOGY["h"], n_s=COSMOLOGY["ns"],
                        sigma8=COSMOLOGY["sigma8"], Omega_k=0.0, w0=-1.0, wa=0.0)


def growth_tables(a) -> dict[str, np.ndarray]:
    """jaxpm's FastPM growth functions at scale factors `a`: D (=1 today), Gf = a^3 E dD/da, dGf/da, E."""
    _, jnp, _, _, growth = import_jax_stack()
    cosmo = jax_cosmology()
    aj = jnp.asarray(np.atleast_1d(a), dtype=jnp.float32)
    return {
        "D": np.asarray(growth.growth_factor(cosmo, aj), dtype=np.float64),
        "Gf": np.asarray(growth.Gf(cosmo, aj), dtype=np.float64),
        "dGfa": np.asarray(growth.dGfa(cosmo, aj), dtype=np.float64),
        "E": np.asarray(growth.E(cosmo, aj), dtype=np.float64),
    }


def virial_radius(mass) -> np.ndarray:
    """R_vir in Mpc/h for M_vir in Msun/h at z = 0 (colossus, Bryan & Norman 1998)."""
    from colossus.halo import mass_so

    _activate()
    return np.asarray(mass_so.M_to_R(np.asarray(mass, dtype=float), 0.0, MDEF), dtype=float) / 1e3


def virial_velocity(mass) -> np.ndarray:
    """V_vir = sqrt(G M / R_vir) in km/s."""
    m = np.asarray(mass, dtype=float)
    return np.sqrt(G_MPC_KMS2_MSUN * m / virial_radius(m))


def concentration(mass) -> np.ndarray:
    """Median c_vir(M) at z = 0 from colossus' Diemer & Joyce (2019) model, interpolated in log M."""
    m = np.asarray(mass, dtype=float)
    grid, cgrid = _concentration_table()
    return np.interp(np.log10(np.clip(m, 1e8, 1e16)), grid, cgrid)


@lru_cache(maxsize=1)
def _concentration_table():
    from colossus.halo import concentration as conc

    _activate()
    grid = np.linspace(8.0, 16.0, 161)
    c = conc.concentration(10 ** grid, MDEF, 0.0, model="diemer19", range_warning=False)
    return grid, np.asarray(c, dtype=float)


def tinker08_dndlnm(mass) -> np.ndarray:
    """Tinker et al. (2008) dn/dlnM in (h/Mpc)^3 for virial masses in Msun/h at z = 0."""
    from colossus.lss import mass_function

    _activate()
    m = np.asarray(mass, dtype=float)
    return np.asarray(mass_function.massFunction(m, 0.0, q_in="M", q_out="dndlnM", mdef=MDEF, model="tinker08"))


@lru_cache(maxsize=1)
def _cumulative_tinker08():
    lnm = np.linspace(np.log(1e9), np.log(5e16), 2000)
    dn = tinker08_dndlnm(np.exp(lnm))
    # n(>M): integrate dn/dlnM from the top down (trapezoid).
    seg = 0.5 * (dn[1:] + dn[:-1]) * np.diff(lnm)
    ncum = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])
    return lnm, ncum


def tinker08_cumulative(mass) -> np.ndarray:
    """n(>M) in (h/Mpc)^3 from Tinker08."""
    lnm, ncum = _cumulative_tinker08()
    return np.interp(np.log(np.asarray(mass, dtype=float)), lnm, ncum)


def tinker08_mass_at_abundance(n) -> np.ndarray:
    """Inverse of n(>M): the mass above which Tinker08 predicts number density n (h/Mpc)^3."""
    lnm, ncum = _cumulative_tinker08()
    keep = ncum > 0
    # ncum decreases with M; interpolate log n -> ln M.
    x = np.log(ncum[keep])[::-1]
    y = lnm[keep][::-1]
    return np.exp(np.interp(np.log(np.asarray(n, dtype=float)), x, y))


def tinker10_bias(mass) -> np.ndarray:
    """Tinker et al. (2010) linear halo bias for virial masses at z = 0."""
    from colossus.lss import bias

    _activate()
    return np.asarray(bias.haloBias(np.asarray(mass, dtype=float), 0.0, MDEF, model="tinker10"))
