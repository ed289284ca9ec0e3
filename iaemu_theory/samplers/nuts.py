"""NUTS as a Cobaya sampler: Pyro's No-U-Turn sampler on the differentiable log-posterior of IAEmu models.

Use it in a Cobaya input as ``sampler: {iaemu_theory.samplers.NUTS: {...}}`` (options and defaults in
NUTS.yaml). Cobaya has no gradient API, so the potential comes from
`iaemu_theory.likelihoods.torch_logposterior`: the float64 torch log-posterior of IAEmu theories and our
likelihoods, with gradients by autograd through the emulator. A model holding any other theory or
likelihood is refused at initialisation (it has no gradients).

Bounded priors. NUTS moves in an unconstrained space: a parameter with a uniform prior on [a, b] is
sampled as z with theta = a + (b - a) sigmoid(z) (a logit transform), and the log-density gains the
log-Jacobian ln(b - a) + ln sigmoid(z) + ln sigmoid(-z), so the draws of theta follow the posterior
exactly. Parameters with normal priors are sampled as they are.

Output. Chain i (counting from 1) is written as a standard Cobaya collection ``PREFIX.i.txt``, each draw
with weight 1 and Cobaya's own log-prior, log-likelihoods and derived parameters (evaluated through the
Cobaya model at the draw), so GetDist reads the files like mcmc chains. Warm-up draws are not written:
no burn-in needs removing. ``PREFIX.nuts_summary.yaml`` holds the means, standard deviations, effective
sample sizes and split R-hat over all chains, and per chain the adapted step size, acceptance rate,
divergences, gradient evaluations and wall time. Chains run one after another, or spread over MPI ranks
(chain i on rank i mod size). A finished chain is recorded in ``PREFIX.checkpoint``; ``-r`` (resume)
skips it.
"""
from __future__ import annotations

import math
import os
import re
import sys
import time

import numpy as np
from cobaya import mpi
from cobaya.collection import SampleCollection
from cobaya.log import LoggedError
from cobaya.sampler import Sampler
from cobaya.yaml import yaml_dump, yaml_load_file

__all__ = ["NUTS", "UnitIntervalTransform", "diagnostics"]

#: Extension of the summary file written beside the chains.
SUMMARY_EXTENSION = ".nuts_summary.yaml"
#: Options whose change makes finished chains unusable on resume.
_CHAIN_SETTINGS = ("warmup", "samples", "step_size", "adapt_step_size", "adapt_mass_matrix", "full_mass",
                   "target_accept", "max_tree_depth", "thin", "seed")


class UnitIntervalTransform:
    """theta = lo + (hi - lo) sigmoid(z) for uniform priors (identity where lo, hi are infinite).

    `forward(z)` returns theta and the log-Jacobian ln|d theta / d z| summed over the last axis.
    """

    def __init__(self, lower, upper):
        import torch

        self.lower = torch.as_tensor(np.asarray(lower, dtype=float), dtype=torch.float64)
        self.upper = torch.as_tensor(np.asarray(upper, dtype=float), dtype=torch.float64)
        self.bounded = torch.isfinite(self.lower) & torch.isfinite(self.upper)
        if np.any(~np.isfinite(lower) ^ ~np.isfinite(upper)):
            raise ValueError("half-bounded priors are not supported: give both bounds or none")
        self.width = torch.where(self.bounded, self.upper - self.lower, torch.ones_like(self.lower))
        self.offset = torch.where(self.bounded, self.lower, torch.zeros_like(self.lower))

    def forward(self, z):
        import torch
        import torch.nn.functional as F

        s = torch.where(self.bounded, torch.sigmoid(z), z)
        theta = self.offset + self.width * s
        logj = torch.where(self.bounded, torch.log(self.width) + F.logsigmoid(z) + F.logsigmoid(-z),
                           torch.zeros_like(z))
        return theta, logj.sum(-1)

    def inverse(self, theta):
        import torch

        theta = torch.as_tensor(theta, dtype=torch.float64)
        u = ((theta - self.offset) / self.width).clamp(1e-12, 1.0 - 1e-12)
        return torch.where(self.bounded, torch.log(u) - torch.log1p(-u), theta)


def diagnostics(draws: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, std, effective sample size and split R-hat of draws (chains, samples, d), per parameter.

    ESS and R-hat are Pyro's (`pyro.ops.stats.effective_sample_size`, `split_gelman_rubin`: Gelman et al.'s
    BDA3 estimators, with each chain split in two for R-hat, so one chain still gets an R-hat).
    """
    import torch
    from pyro.ops.stats import effective_sample_size, split_gelman_rubin

    draws = np.asarray(draws, dtype=float)
    if draws.ndim != 3 or draws.shape[1] < 4:
        raise ValueError(f"draws must have shape (chains, samples >= 4, d), got {draws.shape}")
    t = torch.as_tensor(draws)
    flat = draws.reshape(-1, draws.shape[-1])
    return {"mean": flat.mean(0), "std": flat.std(0, ddof=1),
            "ess": effective_sample_size(t, chain_dim=0, sample_dim=1).numpy(),
            "rhat": split_gelman_rubin(t, chain_dim=0, sample_dim=1).numpy()}


class NUTS(Sampler):
    """No-U-Turn Sampler (Pyro) using the emulator's gradients; see the module docstring."""

    # options: defaults and documentation in NUTS.yaml
    warmup: int
    samples: int
    step_size: float
    adapt_step_size: bool
    adapt_mass_matrix: bool
    full_mass: bool
    target_accept: float
    max_tree_depth: int
    chains: int
    thin: int
    max_tries: int
    progress: bool | str

    # ---- set up ----------------------------------------------------------------------------------

    def initialize(self):
        try:
            import pyro  # noqa: F401
        except ImportError:
            raise LoggedError(self.log, "the NUTS sampler needs Pyro: pip install pyro-ppl (or iaemu[nuts])") from None
        self._check_options()
        from ..likelihoods import torch_logposterior

        try:
            self.names, self.logpost_torch = torch_logposterior(self.model)
        except ValueError as excpt:
            raise LoggedError(self.log, "NUTS needs gradients of the whole posterior, and this model has a part "
                                        "without them: %s. Use Cobaya's mcmc for this model.", excpt) from None
        lower, upper = [], []
        for name, pdf in zip(self.model.prior.params, self.model.prior.pdf):
            if pdf.dist.name == "uniform":
                lo, hi = (float(v) for v in pdf.support())
            else:
                lo, hi = -math.inf, math.inf
            lower.append(lo)
            upper.append(hi)
        if list(self.model.prior.params) != list(self.names):
            raise LoggedError(self.log, "internal: prior order %s differs from the sampled parameters %s",
                              list(self.model.prior.params), self.names)
        self.transform = UnitIntervalTransform(lower, upper)
        self.log.info("NUTS on %s: uniform priors sampled through a logit transform (with its Jacobian): %s",
                      self.names, [n for n, lo in zip(self.names, lower) if np.isfinite(lo)])
        self._my_chains = list(range(mpi.rank(), self.chains, mpi.size()))
        self.collections: dict[int, SampleCollection] = {}
        self.chain_info: dict[int, dict] = {}
        self._draws: dict[int, np.ndarray] = {}
        self.summary: dict | None = None
        finished = self._resumable_chains()
        for i in self._my_chains:
            resume = i in finished
            self.collections[i] = SampleCollection(self.model, self.output, name=str(i + 1), resuming=resume,
                                                   sample_type="mcmc")
            if resume:
                self._draws[i] = self.collections[i][self.names].to_numpy(dtype=float)
                self.chain_info[i] = dict(finished[i])
                self.log.info("chain %d: finished in the previous run, %d draws loaded", i + 1, len(self._draws[i]))

    def _check_options(self):
        ints = {"warmup": 0, "samples": 4, "chains": 1, "thin": 1, "max_tries": 1, "max_tree_depth": 1}
        for name, minimum in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
                    isinstance(value, float) and value.is_integer()):
                raise LoggedError(self.log, "option %s=%r must be an integer >= %d", name, value, minimum)
            if int(value) < minimum:
                raise LoggedError(self.log, "option %s=%r must be >= %d", name, value, minimum)
            setattr(self, name, int(value))
        if self.samples // self.thin < 4:
            raise LoggedError(self.log, "samples=%d with thin=%d keeps fewer than 4 draws per chain", self.samples,
                              self.thin)
        try:
            self.step_size = float(self.step_size)
            self.target_accept = float(self.target_accept)
        except (TypeError, ValueError):
            raise LoggedError(self.log, "step_size=%r and target_accept=%r must be numbers", self.step_size,
                              self.target_accept) from None
        if not self.step_size > 0:
            raise LoggedError(self.log, "option step_size=%r must be > 0", self.step_size)
        if not 0 < self.target_accept < 1:
            raise LoggedError(self.log, "option target_accept=%r must lie in (0, 1)", self.target_accept)
        for name in ("adapt_step_size", "adapt_mass_matrix", "full_mass"):
            if not isinstance(getattr(self, name), bool):
                raise LoggedError(self.log, "option %s=%r must be true or false", name, getattr(self, name))
        if self.progress == "auto":
            self.progress = sys.stderr.isatty()
        if not isinstance(self.progress, bool):
            raise LoggedError(self.log, "option progress=%r: expected auto, true or false", self.progress)
        seeds = np.atleast_1d(np.asarray(self.seed if self.seed is not None else 0, dtype=object))
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in seeds):
            raise LoggedError(self.log, "option seed=%r: expected null or a whole number >= 0 (or a list of them)",
                              self.seed)

    def _settings(self) -> dict:
        return {k: getattr(self, k) for k in _CHAIN_SETTINGS}

    def set_checkpoint_info(self, checkpoint_info):
        """Called by Cobaya on resume (before `initialize`): remember the finished chains."""
        self._checkpoint = checkpoint_info.get("sampler", {}).get(self.get_name()) or {}

    def _resumable_chains(self) -> dict[int, dict]:
        ckpt = getattr(self, "_checkpoint", None)
        if not ckpt or not self.output:
            return {}
        if ckpt.get("settings") != self._settings():
            self.mpi_warning("the chain settings changed since the checkpoint (%s -> %s): running all chains again",
                             ckpt.get("settings"), self._settings())
            return {}
        finished = {int(k): v for k, v in (ckpt.get("finished") or {}).items()}
        return {i: v for i, v in finished.items() if i < self.chains}

    # ---- sampling --------------------------------------------------------------------------------

    def potential(self, z):
        """-(log-posterior + log-Jacobian) at the unconstrained point z (d,); +inf (zero gradient) off support."""
        import torch

        theta, logj = self.transform.forward(z)
        value = self.logpost_torch(theta) + logj
        self._n_grad += 1
        if not bool(torch.isfinite(value)):
            return (z * 0.0).sum() + math.inf
        return -value

    def _chain_seed(self, i: int) -> np.random.SeedSequence:
        if self.seed is not None:
            return np.random.SeedSequence([int(s) for s in np.atleast_1d(self.seed)] + [i])
        return np.random.SeedSequence(int(self._rng.integers(2**63)))

    def _run_chain(self, i: int):
        import torch
        from pyro.infer import MCMC
        from pyro.infer import NUTS as PyroNUTS

        seq = self._chain_seed(i)
        rng = np.random.default_rng(seq)
        start, _ = self.model.get_valid_point(max_tries=self.max_tries, random_state=rng)
        z0 = self.transform.inverse(torch.as_tensor(start, dtype=torch.float64)).detach()
        self._n_grad = 0
        kernel = PyroNUTS(potential_fn=lambda p: self.potential(p["z"]), step_size=self.step_size,
                          adapt_step_size=self.adapt_step_size, adapt_mass_matrix=self.adapt_mass_matrix,
                          full_mass=self.full_mass, target_accept_prob=self.target_accept,
                          max_tree_depth=self.max_tree_depth)
        self.log.info("chain %d: %d warm-up + %d draws from %s", i + 1, self.warmup, self.samples,
                      dict(zip(self.names, np.round(start, 4).tolist())))
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1)))
            mcmc = MCMC(kernel, num_samples=self.samples, warmup_steps=self.warmup, initial_params={"z": z0},
                        num_chains=1, disable_progbar=not self.progress)
            mcmc.run()
        wall = time.perf_counter() - t0
        z = mcmc.get_samples()["z"].detach().to(torch.float64)[::self.thin]
        with torch.no_grad():
            theta, logj = self.transform.forward(z)
            lp_torch = self.logpost_torch(theta).numpy()
        theta = theta.numpy()
        diag = mcmc.diagnostics()
        divergences = len(next(iter(diag.get("divergences", {}).values()), []))
        accept = float(next(iter(diag.get("acceptance rate", {}).values()), float("nan")))
        info = {"seed_entropy": str(seq.entropy), "start": [float(v) for v in start], "wall_s": round(wall, 3),
                "gradient_evaluations": int(self._n_grad), "step_size": float(kernel.step_size),
                "acceptance_rate": round(accept, 4), "divergences": int(divergences), "draws": int(len(theta))}
        self._write_chain(i, theta, lp_torch, info)
        self.log.info("chain %d: %.1f s, %d gradient evaluations (%.2f ms each), step size %.4g, acceptance %.3f, "
                      "%d divergences", i + 1, wall, self._n_grad, 1e3 * wall / max(self._n_grad, 1),
                      info["step_size"], accept, divergences)

    def _write_chain(self, i: int, theta: np.ndarray, lp_torch: np.ndarray, info: dict):
        """Add the draws to chain i's collection with Cobaya's own posterior terms, and write it."""
        collection = self.collections[i]
        worst, rejected = 0.0, 0
        for point, lpt in zip(theta, lp_torch):
            logpost = self.model.logposterior(point)
            if not np.isfinite(logpost.logpost):
                rejected += 1
                continue
            worst = max(worst, abs(logpost.logpost - float(lpt)))
            collection.add(point, derived=logpost.derived, logpost=logpost.logpost, logpriors=logpost.logpriors,
                           loglikes=logpost.loglikes)
        if rejected:
            self.log.warning("chain %d: %d draw(s) have zero posterior in Cobaya's evaluation and were dropped",
                             i + 1, rejected)
        collection.out_update()
        info["max_abs_logpost_difference_cobaya_vs_torch"] = float(worst)
        info["dropped_draws"] = rejected
        self._draws[i] = theta
        self.chain_info[i] = info

    def run(self):
        rounds = math.ceil(self.chains / mpi.size())
        for k in range(rounds):
            mine = self._my_chains[k] if k < len(self._my_chains) else None
            if mine is not None and mine not in self._draws:
                self._run_chain(mine)
            done = mpi.gather({i: self.chain_info[i] for i in self._my_chains[:k + 1]})
            if mpi.is_main_process() and self.output:
                finished = {i: v for part in done for i, v in part.items()}
                with open(self.checkpoint_filename(), "w", encoding="utf-8") as fh:
                    fh.write(yaml_dump({"sampler": {self.get_name(): {"settings": self._settings(),
                                                                      "finished": finished}}}))
        self._summarise()

    def _summarise(self):
        gathered = mpi.gather((self._draws, self.chain_info))
        if mpi.is_main_process():
            draws, infos = {}, {}
            for d, info in gathered:
                draws.update(d)
                infos.update(info)
            order = sorted(draws)
            n = min(len(draws[i]) for i in order)
            stats = diagnostics(np.stack([draws[i][:n] for i in order]))
            params = {name: {"mean": float(stats["mean"][j]), "std": float(stats["std"][j]),
                             "ess": float(stats["ess"][j]), "rhat": float(stats["rhat"][j])}
                      for j, name in enumerate(self.names)}
            self.summary = {"sampler": "NUTS (Pyro)", "chains": len(order), "draws_per_chain": n,
                            "settings": self._settings(),
                            "transform": "logit for uniform priors (Jacobian included), identity otherwise",
                            "params": params, "per_chain": {str(i + 1): infos[i] for i in order},
                            "wall_s_total": round(sum(infos[i]["wall_s"] for i in order), 3)}
            self.log.info("NUTS: %d chain(s) x %d draws", len(order), n)
            self.log.info("%-14s %12s %12s %10s %8s", "parameter", "mean", "std", "ESS", "R-hat")
            for name, p in params.items():
                self.log.info("%-14s %12.5g %12.5g %10.1f %8.4f", name, p["mean"], p["std"], p["ess"], p["rhat"])
            if len(order) < 2:
                self.log.info("one chain only: R-hat is the split-chain estimate (run chains >= 2 for a proper one)")
            if self.output:
                path = self.summary_filename()
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(yaml_dump(self.summary))
                self.log.info("summary written to %s", path)
        self.summary = mpi.share_mpi(self.summary)

    # ---- products --------------------------------------------------------------------------------

    def summary_filename(self) -> str | None:
        if not self.output:
            return None
        return os.path.join(self.output.folder, self.output.prefix + SUMMARY_EXTENSION)

    def collected(self, combined: bool = False, to_getdist: bool = False):
        """This process's chains as a list of SampleCollection; or (combined) one collection of all chains
        of all processes; or (to_getdist) one getdist.MCSamples of all chains. Call from every process.

        (Cobaya samplers usually name this `samples()`; here `samples` is the number-of-draws option.)"""
        mine = [self.collections[i] for i in sorted(self.collections)]
        if not (combined or to_getdist):
            return mine
        everything = [c for part in mpi.gather(mine) for c in part] if mpi.more_than_one_process() else mine
        result = None
        if mpi.is_main_process():
            if to_getdist:
                result = everything[0].to_getdist(combine_with=everything[1:])
            else:
                result = everything[0].copy()
                for c in everything[1:]:
                    result._append(c)
        return mpi.share_mpi(result)

    def products(self, combined: bool = False, to_getdist: bool = False) -> dict:
        """{"sample": see `collected`, "summary": means, stds, ESS, R-hat and per-chain diagnostics}."""
        return {"sample": self.collected(combined=combined, to_getdist=to_getdist), "summary": self.summary}

    @classmethod
    def output_files_regexps(cls, output, info=None, minimal=False):
        regexps = [output.collection_regexp(name=None)]
        if not minimal:
            regexps += [re.compile(output.prefix_regexp_str + re.escape(ext.lstrip(".")) + "$")
                        for ext in (".checkpoint", SUMMARY_EXTENSION)]
        return [(r, None) for r in regexps]

    @classmethod
    def get_version(cls):
        try:
            import pyro
        except ImportError:
            return None
        return {"pyro": pyro.__version__}


def load_summary(prefix: str) -> dict:
    """The summary a NUTS run wrote beside the chains with output prefix `prefix`."""
    return yaml_load_file(prefix + SUMMARY_EXTENSION)
