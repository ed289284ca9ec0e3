"""The framework-free emulator: parameters in, xi / omega / eta with their uncertainties out.

Units and conventions (see docs/emulator.md):
- The network works in standardised units: y = (T(stat) - mean) / scale, with T = ln for xi and the identity
  for omega and eta, one mean and one scale per statistic.
- Means: xi = exp(scale * mu + mean), i.e. exp of the predicted mean of ln xi (the median of a log-normal);
  omega, eta = scale * mu + mean.
- Aleatoric variance (realisation scatter, from the variance head): Var[ln xi] = scale^2 v and, to first order,
  Var[xi] ~= xi^2 Var[ln xi]; Var[omega] = scale^2 v, likewise eta.
- Epistemic variance (Monte Carlo dropout: dropout on, BatchNorm in eval mode): the variance over passes of
  the predicted mean, back-transformed the same way. Means and aleatoric variances always come from the
  deterministic network (dropout off), so they do not depend on mc_passes or on the random seed.
- Ensembles (an artifact of several networks trained alike): mu and v are the members' averages in standardised
  units; the epistemic variance pools mc_passes dropout passes of every member, so it includes the spread
  between members.
"""
from __future__ import annotations

import math
import threading
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from .artifact import DEFAULT_ARTIFACT, Artifact, ArtifactError, encode_params, load_artifact, make_random_artifact
from .conventions import HOD_COLUMNS, PARAM_NAMES, PARAM_VALID_RANGES, statistics_list
from .domain import Domain
from .network import FoldedIAEmu, ensemble_mean, mc_dropout_network

__all__ = ["Emulator", "ArtifactError", "DomainWarning", "make_random_artifact", "resolve_device", "DEFAULT_ARTIFACT"]

#: What `Emulator.predict` does with points outside the training domain.
OUTSIDE_POLICIES = ("warn", "raise", "ignore")


class DomainWarning(UserWarning):
    """Points outside the emulator's training domain: their predictions are extrapolations."""

_SCALARS = (float, int, np.floating, np.integer)
_HOD_COLS = list(HOD_COLUMNS)
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device) -> torch.device:
    """The torch device for 'auto' (CUDA when present, else the CPU), 'cpu', 'cuda[:N]', 'mps' or a torch.device;
    ValueError naming the value when it is not one, or asks for CUDA where there is none."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a torch device; expected 'auto', 'cpu' or 'cuda[:N]'") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={device!r}: expected 'auto', 'cpu', 'cuda[:N]' or 'mps'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available here; use device='cpu' or 'auto'")
    return dev


def _resolve_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"dtype={dtype!r} not supported; expected 'float32' or 'float64'")


class Emulator:
    """A loaded IAEmu artifact, ready to predict. Use `Emulator.load(path)`."""

    #: Rows per forward call when predicting many points, by device type: on a CPU small blocks stay in cache
    #: (128 rows ran 2-6x faster per point than 4096), a GPU wants large ones. They also bound the memory of the
    #: network's activations; MC passes count as rows (a block holds max_rows // mc_passes points).
    BLOCK_ROWS = {"cpu": 128, "cuda": 16384, "mps": 4096}
    #: Rows (points x passes) per MC-dropout forward call. Seeded MC results depend on it (masks are drawn block
    #: by block), so it is fixed across devices.
    MC_BLOCK_ROWS = 4096

    def __init__(self, artifact: Artifact, device="auto", dtype="float32"):
        self.artifact = artifact
        self.device = resolve_device(device)
        self.dtype = _resolve_dtype(dtype)
        self.max_rows = self.BLOCK_ROWS[self.device.type]
        self.param_names: tuple[str, ...] = PARAM_NAMES
        self.statistics: tuple[str, ...] = artifact.statistics
        self.bin_edges = np.array(artifact.bin_edges)
        self.r = 0.5 * (self.bin_edges[1:] + self.bin_edges[:-1])
        self.bin_edges.setflags(write=False)
        self.r.setflags(write=False)
        self.domain = Domain.from_dict(artifact.domain)
        self.metadata = artifact.metadata()
        kw = dict(device=self.device, dtype=self.dtype)
        self._in_mean = torch.as_tensor(artifact.input_mean, **kw)
        self._in_std = torch.as_tensor(artifact.input_std, **kw)
        self._out_mean = {s: float(m) for s, m in zip(self.statistics, artifact.output_mean)}
        self._out_scale = {s: float(c) for s, c in zip(self.statistics, artifact.output_scale)}
        #: one plain network per ensemble member: the reference path (eval mode, never switched)
        self.networks = [net.to(**kw).requires_grad_(False) for net in artifact.build_networks()]
        #: per-thread generator of the MC-dropout masks; the MC copies of the networks are never mutated
        self._mc_source = threading.local()
        self.mc_networks = [mc_dropout_network(net, self._mc_source) for net in self.networks]
        mean, std = torch.as_tensor(artifact.input_mean), torch.as_tensor(artifact.input_std)
        #: the inference fast path of each member
        self.folded = [FoldedIAEmu(net.double(), mean, std).to(**kw).eval() for net in artifact.build_networks()]
        #: alignment form: the last HOD point's decoder outputs, reused while only mu_cen and mu_sat change
        self._reuse_hod = artifact.config.output_form == "alignment"
        self._hod_cache = {}

    @classmethod
    def load(cls, path=None, device="auto", dtype="float32") -> "Emulator":
        """Load an artifact file (default: the package's shipped `artifacts/iaemu_default.pt`)."""
        if path is None:
            path = DEFAULT_ARTIFACT
            if not Path(path).is_file():
                raise FileNotFoundError(
                    f"the shipped emulator artifact {path} is not present (it is written by training, see "
                    "training/configs/shipped.yaml: `iaemu-train --config shipped ...` with seeds 0 and 1, then "
                    "`iaemu-ensemble ... --out iaemu_theory/artifacts/iaemu_default.pt`); or pass path= to another "
                    "artifact")
        return cls(load_artifact(path), device=device, dtype=dtype)

    def __repr__(self):
        members = f", members={self.n_members}" if self.n_members > 1 else ""
        return (f"Emulator({self.artifact.path}, statistics={list(self.statistics)}{members}, device={self.device}, "
                f"dtype={self.dtype})")

    @property
    def n_members(self) -> int:
        """Networks averaged in each prediction (1, or the size of an ensemble artifact)."""
        return len(self.folded)

    @property
    def n_bins(self) -> int:
        return self.r.size

    # ------------------------------------------------------------------ input handling
    def params_array(self, params) -> np.ndarray:
        """Parameters as a float64 array (n, 7) in PARAM_NAMES order, from a mapping or an array.

        Refuses non-real, non-finite and physically invalid values (e.g. |mu_cen| > 1, where the alignment
        model is undefined, or sigma_logM <= 0), naming the parameter, the row and the allowed range.
        """
        if isinstance(params, Mapping):
            values = [params.get(n) for n in PARAM_NAMES]
            if (len(params) == len(PARAM_NAMES) and all(isinstance(v, _SCALARS) for v in values)
                    and all(map(math.isfinite, values))):
                p = np.array([values], dtype=np.float64)     # common case: one point given as scalars
                return _check_physical(p)
            missing = [n for n in PARAM_NAMES if n not in params]
            unknown = [k for k in params if k not in PARAM_NAMES]
            if missing or unknown:
                raise ValueError(f"parameters: missing {missing}, unknown {unknown}; expected exactly {list(PARAM_NAMES)}")
            cols = [np.atleast_1d(_real(params[n], n)) for n in PARAM_NAMES]
            sizes = {c.size for c in cols} - {1}
            if len(sizes) > 1 or any(c.ndim != 1 for c in cols):
                raise ValueError(f"parameter arrays must be scalars or 1-d of one common length, got sizes "
                                 f"{ {n: c.shape for n, c in zip(PARAM_NAMES, cols)} }")
            n = sizes.pop() if sizes else 1
            p = np.stack([np.broadcast_to(c, (n,)) for c in cols], axis=1)
        else:
            p = _real(params, "params")
            if p.ndim == 1:
                p = p[None, :]
            if p.ndim != 2 or p.shape[1] != len(PARAM_NAMES):
                raise ValueError(f"parameter array must have shape (n, {len(PARAM_NAMES)}) or ({len(PARAM_NAMES)},) "
                                 f"in the order {list(PARAM_NAMES)}, got shape {p.shape}")
        bad = ~np.isfinite(p)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"parameter {PARAM_NAMES[j]}={float(p[i, j])} (row {i}) is not finite")
        return _check_physical(p)

    def in_domain(self, params) -> np.ndarray:
        """Boolean per row: inside the training domain (where predictions are trusted)?"""
        return self.domain.contains(self.params_array(params))

    def _statistics(self, statistics) -> tuple[str, ...]:
        if statistics is None:
            return self.statistics
        return tuple(statistics_list(statistics, self.statistics))

    # ------------------------------------------------------------------ prediction
    def _back_transform(self, stat, mu, var):
        """Standardised (mean, variance) -> physical (value, variance); see the module docstring."""
        scale, mean = self._out_scale[stat], self._out_mean[stat]
        value = mu * scale + mean
        if stat == "xi":
            value = torch.exp(value)
            return value, var * value.square() * scale**2
        return value, var * scale**2

    def _mc_generator(self, seed) -> torch.Generator:
        """A generator private to one call: seeded by `seed`, else drawn from torch's global generator."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        return gen

    def _epistemic(self, x, statistics, values, mc_passes, gen):
        """Variance over MC-dropout passes of the back-transformed mean (x already encoded), in blocks of
        MC_BLOCK_ROWS // mc_passes points. The masks come from `gen`, private to the call, on a network copy that
        is never switched between modes, so concurrent calls from several threads do not interfere."""
        n = x.shape[0]
        out = {s: [] for s in statistics}
        chunk = max(1, self.MC_BLOCK_ROWS // mc_passes)
        self._mc_source.generator = gen
        try:
            for i in range(0, n, chunk):
                xs = (x[i:i + chunk] - self._in_mean) / self._in_std
                k = xs.shape[0]
                preds = [net(xs.repeat(mc_passes, 1), statistics) for net in self.mc_networks]
                for s in statistics:
                    mu = torch.cat([p[s][0].view(mc_passes, k, -1) for p in preds])
                    out[s].append(mu.var(dim=0, unbiased=True))
        finally:
            self._mc_source.generator = None
        res = {}
        for s in statistics:
            v = torch.cat(out[s]) * self._out_scale[s] ** 2
            res[f"{s}_epistemic_var"] = values[s] ** 2 * v if s == "xi" else v
        return res

    def predict_torch(self, params: torch.Tensor, statistics=None, mc_passes: int = 0, seed: int | None = None,
                      fixed_hod: bool = False):
        """Torch version of `predict`: params a tensor (n, 7) or (7,); differentiable end to end.

        Returns {stat, stat_aleatoric_var[, stat_epistemic_var]: tensor (n, n_bins)} in the emulator's dtype
        and device (load with dtype="float64" for accurate gradients).

        fixed_hod=True says the five HOD parameters are constants whose gradients are not wanted (a fit of mu_cen
        and mu_sat alone): a single point at the previous call's HOD then reuses the decoders' outputs, as the
        Cobaya Theory does, and only the gradients with respect to mu_cen and mu_sat flow. Values are the same.
        """
        statistics = self._statistics(statistics)
        if not isinstance(params, torch.Tensor):
            raise TypeError(f"predict_torch expects a torch.Tensor, got {type(params).__name__}; use predict() for numpy")
        if params.is_complex():
            raise TypeError("predict_torch expects a real tensor, got a complex one")
        x = params.to(device=self.device, dtype=self.dtype)
        if x.ndim == 1:
            x = x.unsqueeze(0)
        if x.ndim != 2 or x.shape[1] != len(PARAM_NAMES):
            raise ValueError(f"params tensor must have shape (n, {len(PARAM_NAMES)}) or ({len(PARAM_NAMES)},), got {tuple(params.shape)}")
        if not bool(torch.isfinite(x).all()):
            i, j = (int(v) for v in torch.nonzero(~torch.isfinite(x))[0])
            raise ValueError(f"parameter {PARAM_NAMES[j]}={float(x[i, j])} (row {i}) is not finite")
        mc_passes = _mc_passes(mc_passes)
        x = encode_params(x, self.artifact.input_encoding)
        out = self._deterministic(x, statistics, reuse_hod=fixed_hod)
        if mc_passes:
            out.update(self._epistemic(x, statistics, out, mc_passes, self._mc_generator(seed)))
        return out

    def _folded(self, x, statistics):
        """The members' average (mean, variance) in standardised units through the folded networks (x encoded)."""
        return ensemble_mean([net(x, statistics) for net in self.folded])

    def _folded_reusing_hod(self, x, statistics):
        """`_folded` for one point, reusing the decoder outputs of the previous call when its HOD parameters (the
        only inputs of the alignment form's decoders) and statistics are the same: a fit of mu_cen and mu_sat at
        fixed HOD then costs a few small products per call. The same numbers as `_folded`."""
        key = (tuple(x[0, _HOD_COLS].tolist()), tuple(statistics), x.dtype)
        mode = torch.is_inference_mode_enabled()     # inference tensors cannot enter autograd: one slot per mode
        cached = self._hod_cache.get(mode)
        if cached is not None and cached[0] == key:
            raws = cached[1]
        else:
            with torch.no_grad():                # constants: the gradients flow through combine_raw alone
                raws = [net.decode(x.detach(), statistics) for net in self.folded]
            self._hod_cache[mode] = (key, raws)  # one assignment: threads see the old pair or the new one
        return ensemble_mean([net.combine_raw(raw, x) for net, raw in zip(self.folded, raws)])

    def _deterministic(self, x, statistics, reuse_hod=False):
        """Means and aleatoric variances (x encoded), through the folded networks in blocks of max_rows.
        reuse_hod: keep the decoder outputs of a single point for the next call at its HOD (no gradients with
        respect to the HOD columns)."""
        n = x.shape[0]
        if reuse_hod and n == 1 and self._reuse_hod:
            pred = self._folded_reusing_hod(x, statistics)
        elif n <= self.max_rows:
            pred = self._folded(x, statistics)
        else:
            parts = [self._folded(x[i:i + self.max_rows], statistics) for i in range(0, n, self.max_rows)]
            pred = {s: (torch.cat([p[s][0] for p in parts]), torch.cat([p[s][1] for p in parts])) for s in statistics}
        out = {}
        for s in statistics:
            out[s], out[f"{s}_aleatoric_var"] = self._back_transform(s, *pred[s])
        return out

    def predict(self, params, mc_passes: int = 0, statistics=None, seed: int | None = None,
                outside: str = "warn") -> dict[str, np.ndarray]:
        """Predict at parameter points.

        params: a mapping of the 7 names (scalars or equal-length arrays), or an array (n, 7) / (7,) in
        PARAM_NAMES order. mc_passes > 0 adds "<stat>_epistemic_var" from that many MC-dropout passes (50 is
        the usual choice; `seed` makes them reproducible). statistics: a subset of ("xi", "omega", "eta");
        only those decoders run. Returns {key: float64 array (n, n_bins)} and "inside", a boolean (n,) mask
        of the points inside the training domain.

        outside: what to do with points outside the training domain (predictions there are extrapolations):
        "warn" (default: one `DomainWarning` per call, naming the first such point), "raise" (ValueError) or
        "ignore". Physically invalid points (|mu| > 1, sigma_logM <= 0, alpha < 0) are always refused.
        """
        if outside not in OUTSIDE_POLICIES:
            raise ValueError(f"outside={outside!r}: expected one of {list(OUTSIDE_POLICIES)}")
        statistics = self._statistics(statistics)
        mc_passes = _mc_passes(mc_passes)
        p = self.params_array(params)
        inside = self.domain.contains(p)
        if outside != "ignore" and not inside.all():
            first = int(np.flatnonzero(~inside)[0])
            text = (f"{int((~inside).sum())} of {len(p)} point(s) outside the emulator's training domain, e.g. row "
                    f"{first}: {'; '.join(self.domain.explain(p[first]))}")
            if outside == "raise":
                raise ValueError(text)
            warnings.warn(text + "; their predictions are extrapolations (mask: result['inside'])", DomainWarning,
                          stacklevel=2)
        res = self.predict_array(p, statistics, mc_passes, seed)
        res["inside"] = inside
        return res

    def predict_array(self, p: np.ndarray, statistics=None, mc_passes: int = 0, seed: int | None = None
                      ) -> dict[str, np.ndarray]:
        """`predict` for a float64 array (n, 7) whose values the caller has already checked (`params_array`, and
        the domain as it sees fit): no input checks, no domain flag. For callers on a hot path that check the
        domain themselves, such as the Cobaya Theory."""
        statistics = self._statistics(statistics)
        mc_passes = _mc_passes(mc_passes)
        n, step = len(p), self.max_rows
        keys = [f"{s}{k}" for s in statistics for k in ("", "_aleatoric_var")]
        keys += [f"{s}_epistemic_var" for s in statistics] if mc_passes else []
        res = {k: np.empty((n, self.n_bins)) for k in keys}
        gen = self._mc_generator(seed) if mc_passes else None
        with torch.inference_mode():
            # block by block into float64 arrays: memory is the output plus one block's activations, and the
            # MC masks are drawn in the same order as for one big block
            chunk = max(1, self.MC_BLOCK_ROWS // mc_passes) if mc_passes else step
            mc_step = chunk * max(1, -(-step // chunk))         # whole MC blocks, at least `step` points
            for i in range(0, n, mc_step):
                x = encode_params(torch.from_numpy(p[i:i + mc_step]).to(device=self.device, dtype=self.dtype),
                                  self.artifact.input_encoding)
                out = self._deterministic(x, statistics, reuse_hod=True)
                if mc_passes:
                    out.update(self._epistemic(x, statistics, out, mc_passes, gen))
                for k, v in out.items():
                    res[k][i:i + mc_step] = v.to("cpu", torch.float64).numpy()
        return res

    def predict_unfolded(self, params, statistics=None) -> dict[str, np.ndarray]:
        """Reference path through the plain networks (no BatchNorm folding); for tests and benchmarks."""
        statistics = self._statistics(statistics)
        p = self.params_array(params)
        parts = []
        with torch.inference_mode():
            x = encode_params(torch.from_numpy(p).to(device=self.device, dtype=self.dtype),
                              self.artifact.input_encoding)
            for i in range(0, x.shape[0], self.max_rows):
                xs = (x[i:i + self.max_rows] - self._in_mean) / self._in_std
                pred = ensemble_mean([net(xs, statistics) for net in self.networks])
                out = {}
                for s in statistics:
                    value, var = self._back_transform(s, *pred[s])
                    out[s], out[f"{s}_aleatoric_var"] = value, var
                parts.append(out)
            return {k: torch.cat([o[k] for o in parts]).to("cpu", torch.float64).numpy() for k in parts[0]}


def _real(values, name) -> np.ndarray:
    """float64 array of `values`, refusing complex input (numpy would drop the imaginary part)."""
    arr = np.asarray(values)
    if np.iscomplexobj(arr):
        raise TypeError(f"{name}: expected real numbers, got complex values")
    try:
        return np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected numbers, got {arr.dtype} values") from None


def _check_physical(p: np.ndarray) -> np.ndarray:
    """Refuse values outside each parameter's physical range (conventions.PARAM_VALID_RANGES)."""
    for j, name in enumerate(PARAM_NAMES):
        lo, hi, lo_inc, hi_inc = PARAM_VALID_RANGES[name]
        v = p[:, j]
        ok = (v >= lo if lo_inc else v > lo) & (v <= hi if hi_inc else v < hi)
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            left, right = "[" if lo_inc else "(", "]" if hi_inc else ")"
            raise ValueError(f"parameter {name}={float(v[i])!r} (row {i}) is outside its physical range "
                             f"{left}{lo:g}, {hi:g}{right}")
    return p


def _mc_passes(value) -> int:
    """mc_passes as an int: 0 (no epistemic variance) or >= 2; refuses fractions and other types."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"mc_passes={value!r}: expected an integer, 0 (no epistemic variance) or >= 2")
    if value < 0 or value == 1:
        raise ValueError(f"mc_passes={value!r}: expected 0 (no epistemic variance) or >= 2")
    return int(value)

