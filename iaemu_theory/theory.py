"""IAEmu as a Cobaya Theory: xi, omega, eta of halotools-IA galaxies from the emulator.

The Theory takes the 7 emulator parameters (`conventions.PARAM_NAMES`) as its input parameters and
provides, at the emulator's bin centres `IAEmu.r`:

- ``xi``, ``omega``, ``eta``: the predicted mean (20,);
- ``<stat>_cov``: the emulator's covariance (20, 20), diagonal: aleatoric (shape-noise, one-realisation)
  variance, plus the Monte Carlo dropout epistemic variance when ``mc_passes > 0``;
- ``<stat>_aleatoric_var`` and ``<stat>_epistemic_var``: the two variances separately (20,).

Only the statistics some component asked for are computed (the network then runs only those decoders).
With ``suffix: _1`` every parameter and product name gets the suffix (``mu_cen_1``, ``omega_1``), so
several instances (e.g. one per galaxy sample) live in one Cobaya model.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np
from cobaya.log import LoggedError
from cobaya.theory import Theory

from .conventions import ALIGNMENT_PARAMS, HOD_PARAMS, PARAM_NAMES, STATISTICS

#: Product kinds per statistic: name template -> key in the emulator's prediction dict.
_PRODUCTS = {
    "{s}": "{s}",
    "{s}_aleatoric_var": "{s}_aleatoric_var",
    "{s}_epistemic_var": "{s}_epistemic_var",
    "{s}_cov": None,  # built from the variances
}
_OUTSIDE_POLICIES = ("zero", "extrapolate")
_DTYPES = ("float64", "float32")
#: Environment variable naming an artifact to use when the `artifact` option is null.
ARTIFACT_ENV = "IAEMU_ARTIFACT"


def resolve_artifact(artifact: str | None) -> str | None:
    """The artifact path to load: the option, else $IAEMU_ARTIFACT, else None (the shipped one)."""
    if artifact:
        return os.path.expanduser(str(artifact))
    env = os.environ.get(ARTIFACT_ENV)
    return os.path.expanduser(env) if env else None


class IAEmu(Theory):
    """IAEmu neural emulator of halotools-IA xi, omega, eta (Pandya et al. 2025)."""

    # options: defaults and documentation in IAEmu.yaml
    artifact: str | None
    device: str
    dtype: str
    mc_passes: int
    outside_domain: str
    suffix: str
    threads: int | None

    def initialize(self):
        from .emulator import Emulator, _mc_passes

        if self.outside_domain not in _OUTSIDE_POLICIES:
            raise LoggedError(self.log, "outside_domain=%r: expected one of %s", self.outside_domain,
                              list(_OUTSIDE_POLICIES))
        try:
            self.mc_passes = _mc_passes(self.mc_passes)
        except ValueError as excpt:
            raise LoggedError(self.log, "option %s", excpt) from None
        if self.dtype not in _DTYPES:
            raise LoggedError(self.log, "dtype=%r: expected one of %s", self.dtype, list(_DTYPES))
        self.suffix = "" if self.suffix is None else str(self.suffix)
        if self.threads is not None:
            if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
                raise LoggedError(self.log, "threads=%r: expected a whole number >= 1 (torch intra-op threads), "
                                            "or null to leave torch's setting", self.threads)
            import torch
            torch.set_num_threads(self.threads)
        path = resolve_artifact(self.artifact)
        if path is not None and not os.path.isfile(path):
            raise LoggedError(self.log, "emulator artifact %r does not exist (option 'artifact'%s)", path,
                              "" if self.artifact else f" via ${ARTIFACT_ENV}")
        try:
            self.emulator = Emulator.load(path, device=self.device, dtype=self.dtype)
        except (OSError, ValueError, RuntimeError, KeyError) as excpt:
            raise LoggedError(self.log, "cannot load the emulator artifact %r: %s",
                              path or "(shipped default)", excpt) from excpt
        self._artifact_path = path
        self._emulator64 = None
        if tuple(self.emulator.param_names) != tuple(PARAM_NAMES):
            raise LoggedError(self.log, "artifact parameter order %s differs from %s", self.emulator.param_names,
                              PARAM_NAMES)
        self.r = np.asarray(self.emulator.r, dtype=float)
        self.bin_edges = np.asarray(self.emulator.bin_edges, dtype=float)
        self.domain = self.emulator.domain
        #: Cobaya name of each emulator input, in PARAM_NAMES order.
        self.param_map = {name: name + self.suffix for name in PARAM_NAMES}
        # Declaring input_params makes Cobaya assign exactly these to us, and fail clearly if one is undefined.
        self.input_params = list(self.param_map.values())
        self._stats: list[str] = []
        self._need_epistemic = False
        self._warned_outside = False
        self._x = np.empty((1, len(PARAM_NAMES)))

    # ---- Cobaya interface -------------------------------------------------------------------------

    def product_name(self, template: str, statistic: str) -> str:
        """Cobaya name of a product, e.g. ('{s}_cov', 'omega') -> 'omega_cov_1' with suffix '_1'."""
        return template.format(s=statistic) + self.suffix

    def get_can_provide(self):
        return [self.product_name(t, s) for s in STATISTICS for t in _PRODUCTS]

    def get_can_provide_methods(self):
        # get_xi etc. are conveniences; the products are announced by name (with the suffix) above
        return {}

    def get_can_support_params(self):
        return list(self.param_map.values())

    def must_provide(self, **requirements):
        super().must_provide(**requirements)
        lookup = {self.product_name(t, s): (t, s) for s in STATISTICS for t in _PRODUCTS}
        for name in requirements:
            if name not in lookup:
                continue
            template, stat = lookup[name]
            if stat not in self._stats:
                self._stats.append(stat)
            if template == "{s}_epistemic_var":
                self._need_epistemic = True
        self._stats.sort(key=STATISTICS.index)
        if self._need_epistemic and self.mc_passes <= 0:
            raise LoggedError(self.log, "a likelihood asks for the epistemic variance, but mc_passes=%r; "
                                        "set mc_passes (e.g. 50) in the IAEmu options", self.mc_passes)
        return None

    def initialize_with_provider(self, provider):
        super().initialize_with_provider(provider)
        self._check_fixed_params(provider)
        self._check_sampled_params(provider)

    def _check_sampled_params(self, provider):
        """Warn once per sampled parameter whose prior reaches outside the training domain's range; refuse a
        prior wholly outside it, and a reference (starting point) outside it."""
        model = getattr(provider, "model", None)
        if model is None:
            return
        box = self.domain.box()
        ours = {cobaya_name: name for name, cobaya_name in self.param_map.items()}
        prior = model.prior
        refs = getattr(prior, "ref_pdf", [np.nan] * len(prior.params))
        policy = ("points there get zero likelihood (outside_domain: zero)" if self.outside_domain == "zero" else
                  "the emulator extrapolates there (outside_domain: extrapolate; |mu| > 1 always gets zero "
                  "likelihood, the alignment model being undefined there)")
        for cobaya_name, pdf, ref in zip(prior.params, prior.pdf, refs):
            if cobaya_name not in ours:
                continue
            lo, hi = box[ours[cobaya_name]]
            plo, phi = (float(v) for v in pdf.interval(1.0))
            if phi < lo or plo > hi:
                raise LoggedError(self.log, "the prior of %s, [%g, %g], lies wholly outside the emulator's "
                                            "training range [%.4g, %.4g]: every point would get zero likelihood",
                                  cobaya_name, plo, phi, lo, hi)
            if plo < lo - 1e-9 or phi > hi + 1e-9:
                self.log.warning("the prior of %s, [%g, %g], reaches outside the emulator's training range "
                                 "[%.4g, %.4g]: %s", cobaya_name, plo, phi, lo, hi, policy)
            centre = _ref_centre(ref)
            if centre is not None and not lo - 1e-9 <= centre <= hi + 1e-9:
                raise LoggedError(self.log, "the reference (starting point) of %s, %g, lies outside the emulator's "
                                            "training range [%.4g, %.4g]; set its 'ref' inside it",
                                  cobaya_name, centre, lo, hi)

    def _check_fixed_params(self, provider):
        """Refuse, at initialisation, parameters fixed outside the training domain."""
        model = getattr(provider, "model", None)
        if model is None:
            return
        fixed = {p: v for p, v in model.parameterization.constant_params().items()}
        ours = {name: fixed[cobaya_name] for name, cobaya_name in self.param_map.items() if cobaya_name in fixed}
        if not ours:
            return
        box = self.domain.box()
        reasons = []
        for name, value in ours.items():
            lo, hi = box[name]
            if not (np.isfinite(value) and lo - 1e-9 <= value <= hi + 1e-9):
                reasons.append(f"{self.param_map[name]}={value:g} outside the domain's range [{lo:.4g}, {hi:.4g}]")
        if not reasons and all(n in ours for n in HOD_PARAMS):
            point = {**{n: ours.get(n, 0.0) for n in ALIGNMENT_PARAMS}, **{n: ours[n] for n in HOD_PARAMS}}
            reasons = [f"{r} (suffix {self.suffix!r})" if self.suffix else r for r in self.domain.explain(point)]
        if reasons:
            raise LoggedError(self.log, "fixed parameter(s) outside the emulator's training domain: %s. "
                                        "Fix them inside the domain (see iaemu_theory.domain).", "; ".join(reasons))

    def calculate(self, state, want_derived=True, **params_values_dict):
        x = self._x
        for j, name in enumerate(self.param_map.values()):
            x[0, j] = params_values_dict[name]
        if not self.domain.contains(x)[0]:
            if self.outside_domain == "zero":
                self.log.debug("outside the training domain: %s", "; ".join(self.domain.explain(x)))
                return False
            try:    # physical ranges: |mu| <= 1 (beyond, halotools-IA's alignment model is undefined), sigma_logM > 0
                self.emulator.params_array(x)
            except ValueError as excpt:
                self.log.debug("no prediction: %s", excpt)
                return False
            if not self._warned_outside:
                self.log.warning("extrapolating outside the emulator's training domain (%s); predictions there are "
                                 "not validated. This warning is shown once.", "; ".join(self.domain.explain(x)))
                self._warned_outside = True
        stats = self._stats or list(STATISTICS)
        pred = self.emulator.predict_array(x, stats, self.mc_passes)
        for stat in stats:
            state[stat] = np.asarray(pred[stat][0], dtype=float)
            var = np.asarray(pred[f"{stat}_aleatoric_var"][0], dtype=float)
            state[f"{stat}_aleatoric_var"] = var
            if self.mc_passes > 0:
                epi = np.asarray(pred[f"{stat}_epistemic_var"][0], dtype=float)
                state[f"{stat}_epistemic_var"] = epi
                var = var + epi
            state[f"{stat}_cov"] = np.diag(var)
        return True

    def get_result(self, result_name, **kwargs):
        base = result_name[: len(result_name) - len(self.suffix)] if self.suffix else result_name
        if self.suffix and not result_name.endswith(self.suffix):
            raise LoggedError(self.log, "IAEmu%s does not provide %r", self.suffix, result_name)
        try:
            return self.current_state[base]
        except KeyError:
            raise LoggedError(self.log, "%r was not computed: ask for it in get_requirements (provides: %s)",
                              result_name, self.get_can_provide()) from None

    def get_xi(self):
        return self.current_state["xi"]

    def get_omega(self):
        return self.current_state["omega"]

    def get_eta(self):
        return self.current_state["eta"]

    # ---- differentiable path (float64 torch), for gradient samplers ---------------------------------

    def params_tensor(self, params):
        """A (n, 7) float64 tensor in PARAM_NAMES order from a (.., 7) tensor or a mapping of Cobaya names."""
        import torch

        if isinstance(params, Mapping):
            cols = []
            for name, cobaya_name in self.param_map.items():
                if cobaya_name not in params:
                    raise ValueError(f"parameter {cobaya_name!r} missing; IAEmu{self.suffix} needs "
                                     f"{list(self.param_map.values())}")
                cols.append(torch.as_tensor(params[cobaya_name], dtype=torch.float64).reshape(-1))
            n = max(c.numel() for c in cols)
            return torch.stack([c.expand(n) for c in cols], dim=-1)
        t = torch.as_tensor(params, dtype=torch.float64)
        if t.shape[-1] != len(PARAM_NAMES):
            raise ValueError(f"expected a tensor (..., {len(PARAM_NAMES)}) in the order {list(PARAM_NAMES)}, "
                             f"got shape {tuple(t.shape)}")
        return t.reshape(-1, len(PARAM_NAMES))

    def predict_torch(self, params, statistics=None):
        """Differentiable float64 prediction: dict of (n, 20) tensors, like `Emulator.predict_torch`.

        Uses a float64 copy of the emulator (loaded on first use) so that gradients are accurate.
        Points outside the domain are not masked here; see `inside_torch`.
        """
        from .emulator import Emulator

        if self._emulator64 is None:
            if str(self.dtype) == "float64":
                self._emulator64 = self.emulator
            else:
                self._emulator64 = Emulator.load(self._artifact_path, device="cpu", dtype="float64")
        x = self.params_tensor(params)
        out = self._emulator64.predict_torch(x, statistics=statistics or self._stats or list(STATISTICS),
                                             fixed_hod=self._hod_is_constant(params))
        return {k: v.to("cpu", dtype=x.dtype) for k, v in out.items()}

    def _hod_is_constant(self, params) -> bool:
        """Whether no HOD parameter of `params` (a mapping of Cobaya names to tensors) carries a gradient, so that
        the emulator may reuse its decoders at fixed HOD (NUTS over mu_cen and mu_sat alone)."""
        import torch

        if not isinstance(params, Mapping):
            return False
        hod = (params[self.param_map[n]] for n in HOD_PARAMS)
        return not any(isinstance(v, torch.Tensor) and v.requires_grad for v in hod)

    def inside_torch(self, params):
        """Boolean (n,) numpy mask: which rows of `params` lie in the training domain."""
        x = self.params_tensor(params).detach().cpu().numpy()
        return self.domain.contains(x)


def _ref_centre(ref) -> float | None:
    """The central value of a Cobaya reference: the number itself, a distribution's median, or None."""
    if ref is None:
        return None
    if isinstance(ref, (int, float, np.floating)):
        return None if np.isnan(ref) else float(ref)
    try:
        return float(ref.median())
    except (AttributeError, TypeError, ValueError):
        return None
