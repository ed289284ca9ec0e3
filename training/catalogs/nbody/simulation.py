"""The particle-mesh simulation: presets, 2LPT initial conditions (jaxpm) and FastPM time stepping.

Units: comoving positions in Mpc/h, momenta p = a^2 dx/dt / H0 in Mpc/h (jaxpm's convention), so the
peculiar velocity is v = 100 p / a km/s. Equations of motion (as jaxpm's ``make_ode_fn``):
dx/da = p / (a^3 E), dp/da = 1.5 Omega_m F / (a^2 E), F = -grad(laplacian^-1 delta).
FastPM's growth-corrected operators (Feng et al. 2016) make the steps exact for linear growth:
drift  dx = p(a_c) [D(a_1) - D(a_0)] / Gf(a_c),   kick  dp = 1.5 Omega_m F(a_c) [Gf(a_1) - Gf(a_0)] / (a_c^2 E(a_c) dGf/da(a_c)).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from training.common.fileio import atomic_savez

from . import cosmology
from .mesh import binned_power, cic_window2, density_contrast_k, mode_averaged_power, pm_accelerations
from ._compat import import_jax_stack


@dataclass(frozen=True)
class Preset:
    """Size and resolution of one simulation."""

    name: str
    boxsize: float  # Mpc/h
    n_particles: int  # per side
    n_mesh: int  # PM mesh per side
    n_steps: int  # KDK steps from a_init to 1
    a_init: float = 0.1  # z = 9
    min_particles: int = 20  # smallest FoF group kept as a halo
    linking_length: float = 0.2  # in units of the mean interparticle separation
    default_seed: int = 1
    checkpoint_every: int = 5

    @property
    def particle_mass(self) -> float:
        """Msun/h."""
        return cosmology.rho_mean() * self.boxsize ** 3 / self.n_particles ** 3

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, Preset] = {
    # seconds: used by the tests
    "test": Preset("test", boxsize=64.0, n_particles=48, n_mesh=96, n_steps=10, min_particles=20, checkpoint_every=4),
    # the shipped emulator's catalog: 10^11.5 Msun/h = 42 particles of 7.5e9 Msun/h
    "default": Preset("default", boxsize=128.0, n_particles=288, n_mesh=576, n_steps=30, min_particles=20),
    # the resolution study: the default box at 1.37x the particles (12.6 GiB peak, ~20 min on one core)
    "hires320": Preset("hires320", boxsize=128.0, n_particles=320, n_mesh=640, n_steps=30, min_particles=20),
    # for machines with more memory and time: Bolshoi-Planck's box at the same mass resolution
    "large": Preset("large", boxsize=250.0, n_particles=562, n_mesh=1124, n_steps=30, min_particles=20),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]


def time_steps(preset: Preset) -> np.ndarray:
    """Scale factors a_0 = a_init ... a_n = 1, uniform in a (FastPM's default spacing)."""
    return np.linspace(preset.a_init, 1.0, preset.n_steps + 1)


def linear_field(preset: Preset, seed: int) -> np.ndarray:
    """Gaussian linear density field at z = 0 on the particle grid (jaxpm.pm.linear_field, colossus P(k))."""
    jax, jnp, _, pm, _ = import_jax_stack()
    kt = np.logspace(-4, 2, 600)
    lnk = jnp.asarray(np.log(kt), dtype=jnp.float32)
    lnp = jnp.asarray(np.log(cosmology.linear_power(kt)), dtype=jnp.float32)

    def pk(k):
        safe = jnp.where(k > 0, k, 1.0)
        return jnp.where(k > 0, jnp.exp(jnp.interp(jnp.log(safe), lnk, lnp)), 0.0)

    n = preset.n_particles
    field = pm.linear_field((n, n, n), [preset.boxsize] * 3, pk, seed=jax.random.PRNGKey(int(seed)))
    return np.asarray(field, dtype=np.float32)


def initial_conditions(preset: Preset, seed: int):
    """2LPT particles at a_init: (positions (N,3) float32 Mpc/h in [0, L), momenta (N,3) float32, linear field)."""
    _, jnp, _, pm, _ = import_jax_stack()
    delta_lin = linear_field(preset, seed)
    dx, p, _ = pm.lpt(cosmology.jax_cosmology(), jnp.asarray(delta_lin), particles=None, a=preset.a_init, order=2)
    n = preset.n_particles
    cell = preset.boxsize / n
    # Lattice offset by half a PM cell: CIC has a cusp at mesh nodes, and particles sitting on nodes
    # respond non-linearly to their displacement (mixing Fourier modes at the few-percent level).
    offset = 0.5 * preset.boxsize / preset.n_mesh
    q = (np.indices((n, n, n), dtype=np.float32).reshape(3, -1).T) * np.float32(cell) + np.float32(offset)
    pos = q + np.asarray(dx, dtype=np.float32).reshape(-1, 3) * np.float32(cell)
    mom = np.asarray(p, dtype=np.float32).reshape(-1, 3) * np.float32(cell)
    del dx, p
    np.mod(pos, np.float32(preset.boxsize), out=pos)
    pos[pos >= preset.boxsize] = 0.0  # float32 rounding of mod
    return pos, mom, delta_lin


def ic_power_check(preset: Preset, pos: np.ndarray, delta_lin: np.ndarray) -> dict:
    """Power of the 2LPT particles at a_init against D^2 x (the realised linear field) and D^2 x (colossus).

    Both are measured on the same Fourier modes (k below the particle Nyquist), so the first ratio is free
    of cosmic variance and tests the LPT displacement and the CIC; the second also carries the realisation's
    sample variance (error ~ 1/sqrt(modes)).
    """
    n_p, n_m, L = preset.n_particles, preset.n_mesh, preset.boxsize
    kf = 2 * np.pi / L
    knyq = np.pi * n_p / L
    kbins = np.geomspace(kf, knyq, 25)
    d2 = cosmology.growth_tables([preset.a_init])["D"][0] ** 2
    import scipy.fft

    lin_k = scipy.fft.rfftn(delta_lin.astype(np.float32))
    kL, pL, nL = binned_power(lin_k, n_p, L, kbins)
    del lin_k
    dk = density_contrast_k(pos, n_m, L)
    kI, pI, nI = binned_power(dk, n_m, L, kbins, window2=cic_window2(n_m))
    del dk
    p_col = mode_averaged_power(cosmology.linear_power, n_m, L, kbins) * d2
    return {
        "k": kI, "p_ic": pI, "p_lin_field": pL * d2, "p_colossus": p_col,
        "n_modes": nI, "k_nyquist_particles": knyq, "a_init": preset.a_init,
    }


def run_pm(preset: Preset, pos: np.ndarray, mom: np.ndarray, workdir: Path | None = None, start_step: int = 0,
           progress: bool = True, log=print, stop_step: int | None = None):
    """FastPM kick-drift-kick from a_init to a = 1, in place on (pos, mom); checkpoints every few steps.

    With `workdir`, the state after step k is saved to workdir/state.npz (atomically), so a crashed run
    resumes from its last checkpoint with `start_step` (the result is bit-identical to an uninterrupted run).
    `stop_step` ends the run early (after that many steps from a_init).
    """
    from tqdm import tqdm

    a = time_steps(preset)
    a_half = np.sqrt(a[1:] * a[:-1])
    om = cosmology.COSMOLOGY["Om0"]
    ga = cosmology.growth_tables(a)
    gh = cosmology.growth_tables(a_half)
    L = np.float32(preset.boxsize)
    acc = pm_accelerations(pos, preset.n_mesh, preset.boxsize)
    bar = tqdm(total=preset.n_steps, initial=start_step, desc=f"PM {preset.name}", disable=not progress, unit="step")
    stop = preset.n_steps if stop_step is None else int(stop_step)
    for k in range(start_step, stop):
        t0 = time.time()
        # half kick a_k -> a_{k+1/2}, force at a_k
        kick = 1.5 * om * (gh["Gf"][k] - ga["Gf"][k]) / (a[k] ** 2 * ga["E"][k] * ga["dGfa"][k])
        mom += np.float32(kick) * acc
        # drift a_k -> a_{k+1}, momentum at a_{k+1/2}
        drift = (ga["D"][k + 1] - ga["D"][k]) / gh["Gf"][k]
        pos += np.float32(drift) * mom
        np.mod(pos, L, out=pos)
        pos[pos >= L] = 0.0
        # force at a_{k+1}, half kick a_{k+1/2} -> a_{k+1}
        pm_accelerations(pos, preset.n_mesh, preset.boxsize, out=acc)
        kick = 1.5 * om * (ga["Gf"][k + 1] - gh["Gf"][k]) / (a[k + 1] ** 2 * ga["E"][k + 1] * ga["dGfa"][k + 1])
        mom += np.float32(kick) * acc
        bar.update(1)
        if workdir is not None and ((k + 1) % preset.checkpoint_every == 0) and k + 1 < preset.n_steps:
            atomic_savez(Path(workdir) / "state.npz", pos=pos, mom=mom, step=np.int64(k + 1))
        if not progress:
            log(f"step {k + 1}/{preset.n_steps} a={a[k + 1]:.3f} ({time.time() - t0:.1f} s)")
    bar.close()
    return pos, mom
