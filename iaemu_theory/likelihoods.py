"""Gaussian likelihoods of measured IA correlation functions given the IAEmu Theory.

- `IACorrelationLikelihood`: any data vector of xi / omega / eta (files in the format documented in
  docs/cobaya.md), scale cuts, interpolation to the data's radii, covariance corrections.
- `TNG300Likelihood`: the real TNG300-1 measurements of Van Alfen et al. (2024) for samples 1, 2, 3,
  with the occupation parameters fixed to each sample's best-fit HOD (Pandya et al. 2025, Sec. 4.3).

Model vector: the emulator mean at its bin centres, interpolated to each data radius linearly in ln r
(in ln xi for xi, which is a steep power law; linear in the value for omega and eta). At an emulator
centre the interpolation returns the emulator's own value exactly. Data outside the emulator's centre
range are refused (the TNG preset drops them instead, see `TNG300Likelihood`).

Covariance: the data covariance, plus optionally `emulator_aleatoric` x the emulator's aleatoric variance
(the scatter of one mock realisation) and the epistemic variance (Monte Carlo dropout), both propagated
through the interpolation. When the covariance depends on the parameters the log-likelihood includes
-1/2 ln det(C / C_data), so it reduces to -chi2/2 when the emulator terms are off.

Jackknife covariances: `covariance_correction: hartlap` multiplies chi2 by (n - p - 2) / (n - 1)
(Hartlap et al. 2007); `sellentin-heavens` uses the multivariate t of Sellentin & Heavens (2016),
-(n/2) ln(1 + chi2 / (n - 1)); n = `n_subvolumes`, p = the number of data points fitted.

Every likelihood also has `loglike_torch(params)`, the same log-likelihood in float64 torch, differentiable
through the emulator (for gradient samplers); `torch_logposterior(model)` assembles a whole Cobaya model's.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
from cobaya.likelihood import Likelihood
from cobaya.log import LoggedError

from .conventions import HOD_PARAMS, PARAM_LATEX, PARAM_NAMES, STATISTICS, statistics_list

_CORRECTIONS = ("none", "hartlap", "sellentin-heavens")
#: Largest condition number accepted for the data's correlation matrix (a scale-free measure of degeneracy);
#: beyond it the inverse loses more than 10 of float64's 16 digits.
MAX_CORRELATION_CONDITION = 1e10
#: Statistics interpolated in ln(value) (positive power laws); the others in the value itself.
_LOG_INTERPOLATED = ("xi",)


def read_data_file(path: str) -> list[tuple[str, float, float, float]]:
    """Rows (statistic, r, value, err) of a data file: `STAT R VALUE [ERR]` per line, '#' comments.

    ERR (a standard deviation) is optional; it is NaN when absent.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    rows = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            cols = line.split()
            if len(cols) not in (3, 4):
                raise ValueError(f"{path}:{lineno}: expected 'STATISTIC R VALUE [ERR]', got {len(cols)} columns")
            stat = cols[0]
            if stat not in STATISTICS:
                raise ValueError(f"{path}:{lineno}: statistic {stat!r} is not one of {list(STATISTICS)}")
            try:
                nums = [float(c) for c in cols[1:]]
            except ValueError:
                raise ValueError(f"{path}:{lineno}: R, VALUE, ERR must be numbers, got {cols[1:]}") from None
            r, value = nums[0], nums[1]
            err = nums[2] if len(nums) == 3 else float("nan")
            if len(nums) == 3 and not (np.isfinite(err) and err > 0):
                raise ValueError(f"{path}:{lineno}: ERR must be a finite standard deviation > 0, got {cols[3]}")
            if not (np.isfinite(r) and r > 0 and np.isfinite(value)):
                raise ValueError(f"{path}:{lineno}: need a finite positive r and a finite value, got {cols[1:3]}")
            rows.append((stat, r, value, err))
    if not rows:
        raise ValueError(f"data file {path!r} holds no data rows")
    return rows


def read_covariance_file(path: str) -> np.ndarray:
    """A square covariance matrix from a text file (whitespace columns, '#' comments) or a .npy file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"covariance file {path!r} does not exist")
    try:
        cov = np.load(path) if path.endswith(".npy") else np.loadtxt(path, ndmin=2)
    except ValueError as err:
        raise ValueError(f"covariance file {path!r} cannot be read as a matrix of numbers: {err}") from None
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"covariance in {path!r} has shape {cov.shape}; expected a square matrix")
    return np.asarray(cov, dtype=float)


def interpolation_nodes(r_model: np.ndarray, r_data: np.ndarray):
    """(j, t) per data radius: it lies a fraction t of the way, in ln r, from model radius j to j + 1.

    Raises for data outside the model's range. At a model radius t is exactly 0 (or 1 at the last one).
    """
    r_model = np.asarray(r_model, dtype=float)
    x = np.log(r_model)
    xd = np.log(np.asarray(r_data, dtype=float))
    tol = 1e-9
    bad = (xd < x[0] - tol) | (xd > x[-1] + tol)
    if np.any(bad):
        raise ValueError(f"data radii {np.asarray(r_data)[bad].tolist()} lie outside the emulator's range "
                         f"[{r_model[0]:.6g}, {r_model[-1]:.6g}] Mpc/h; cut them (r_min / r_max)")
    xd = np.clip(xd, x[0], x[-1])
    j = np.clip(np.searchsorted(x, xd, side="right") - 1, 0, x.size - 2)
    t = (xd - x[j]) / (x[j + 1] - x[j])
    t[np.abs(t) < 1e-9] = 0.0
    t[np.abs(t - 1.0) < 1e-9] = 1.0
    return j, t


def interpolation_matrix(r_model: np.ndarray, r_data: np.ndarray) -> np.ndarray:
    """W (len(r_data), len(r_model)): linear interpolation in ln r from model radii to data radii.

    Exact at the model's own radii (the row is a unit vector); raises for data outside the model's range.
    """
    j, t = interpolation_nodes(r_model, r_data)
    w = np.zeros((j.size, len(r_model)))
    rows = np.arange(j.size)
    w[rows, j] = 1.0 - t
    w[rows, j + 1] += t
    return w


def _log_interpolate(y, j, t):
    """Interpolation of ln y, linear in ln r: y_j^(1-t) y_(j+1)^t (exact where t is 0 or 1). numpy or torch."""
    return y[..., j] ** (1.0 - t) * y[..., j + 1] ** t


class _IALikelihood(Likelihood):
    """Shared machinery: data blocks, covariance, interpolation, numpy and torch log-likelihoods."""

    # ---- set up ------------------------------------------------------------------------------------

    def _load(self) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], np.ndarray]:
        """Subclasses: the data blocks [(statistic, r, value)] and the covariance of their concatenation."""
        raise NotImplementedError

    def _drop_outside(self) -> bool:
        """Whether data outside the emulator's range are dropped (True) or refused (False)."""
        return False

    def _statistics_option(self, value) -> list[str] | None:
        """The `statistics` option as a list (None: every statistic the data hold), read by `statistics_list`."""
        if value is None:
            return None
        try:
            return statistics_list(value, option="option statistics")
        except ValueError as exc:
            raise LoggedError(self.log, "%s", exc) from None

    def _check_scale_cut(self, option: str, value):
        """r_min / r_max: null, a number > 0, or a mapping from statistics to numbers (or null)."""
        values = value.items() if isinstance(value, Mapping) else [(None, value)]
        for stat, v in values:
            if stat is not None and stat not in STATISTICS:
                raise LoggedError(self.log, "option %s=%r: key %r is not one of %s", option, dict(value), stat,
                                  list(STATISTICS))
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise LoggedError(self.log, "option %s=%r: expected a scale in Mpc/h (a finite number >= 0), "
                                            "a mapping {statistic: number} or null", option, value)

    def initialize(self):
        if isinstance(self.emulator_aleatoric, bool):
            self.emulator_aleatoric = 1.0 if self.emulator_aleatoric else 0.0
        if self.emulator_aleatoric is None:
            self.emulator_aleatoric = 0.0
        if not isinstance(self.emulator_aleatoric, (int, float)) or not np.isfinite(self.emulator_aleatoric) \
                or self.emulator_aleatoric < 0:
            raise LoggedError(self.log, "option emulator_aleatoric=%r: expected a finite weight >= 0 (or true/false)",
                              self.emulator_aleatoric)
        self.emulator_aleatoric = float(self.emulator_aleatoric)
        if not isinstance(self.emulator_epistemic, bool):
            raise LoggedError(self.log, "option emulator_epistemic=%r: expected true or false", self.emulator_epistemic)
        self.suffix = "" if self.suffix is None else str(self.suffix)
        self.statistics = self._statistics_option(self.statistics)
        for option in ("r_min", "r_max"):
            self._check_scale_cut(option, getattr(self, option))
        if self.n_subvolumes is not None and (isinstance(self.n_subvolumes, bool) or not isinstance(
                self.n_subvolumes, (int, np.integer)) or self.n_subvolumes < 2):
            raise LoggedError(self.log, "option n_subvolumes=%r: expected a whole number >= 2 (jackknife "
                                        "subvolumes) or null", self.n_subvolumes)
        try:
            blocks, cov = self._load()
        except (OSError, ValueError) as excpt:
            raise LoggedError(self.log, "%s", excpt) from excpt
        self._all_blocks = blocks
        self._all_cov = cov
        self._theory = None
        if self.covariance_correction is None:
            self.covariance_correction = "none"
        self.covariance_correction = str(self.covariance_correction).lower()
        if self.covariance_correction not in _CORRECTIONS:
            raise LoggedError(self.log, "covariance_correction=%r is not one of %s", self.covariance_correction,
                              list(_CORRECTIONS))

    def _cut(self, r_model: np.ndarray):
        """Apply statistics selection and scale cuts; returns blocks and the sub-covariance."""
        stats_in = [b[0] for b in self._all_blocks]
        wanted = self._wanted_statistics()
        for s in wanted:
            if s not in stats_in:
                raise LoggedError(self.log, "option statistics: %r requested but the data hold only %s", s,
                                  list(dict.fromkeys(stats_in)))
        keep_idx, blocks = [], []
        start = 0
        for stat, r, value in self._all_blocks:
            idx = np.arange(start, start + r.size)
            start += r.size
            if stat not in wanted:
                continue
            lo, hi = self._range_for(self.r_min, stat, 0.0), self._range_for(self.r_max, stat, np.inf)
            mask = (r >= lo) & (r <= hi)
            inside = (r >= r_model[0] * (1 - 1e-9)) & (r <= r_model[-1] * (1 + 1e-9))
            if self._drop_outside():
                dropped = mask & ~inside
                if np.any(dropped):
                    self.log.info("%s: dropping %d bin(s) at r = %s Mpc/h outside the emulator's range [%.4g, %.4g]",
                                  stat, dropped.sum(), np.round(r[dropped], 4).tolist(), r_model[0], r_model[-1])
                mask &= inside
            if not np.any(mask):
                raise LoggedError(self.log, "no %s data left after the scale cuts r in [%g, %g]", stat, lo, hi)
            blocks.append((stat, r[mask], value[mask]))
            keep_idx.append(idx[mask])
        keep = np.concatenate(keep_idx)
        return blocks, self._all_cov[np.ix_(keep, keep)]

    @staticmethod
    def _range_for(option, stat, default):
        if option is None:
            return default
        if isinstance(option, Mapping):
            value = option.get(stat)
            return default if value is None else float(value)
        return float(option)

    def _wanted_statistics(self) -> list[str]:
        """The statistics fitted: the option, else every statistic in the data."""
        return self.statistics or list(dict.fromkeys(b[0] for b in self._all_blocks))

    def get_requirements(self):
        reqs = {}
        for s in self._wanted_statistics():
            reqs[s + self.suffix] = None
            if self.emulator_aleatoric > 0:
                reqs[f"{s}_aleatoric_var{self.suffix}"] = None
            if self.emulator_epistemic:
                reqs[f"{s}_epistemic_var{self.suffix}"] = None
        return reqs

    def initialize_with_provider(self, provider):
        super().initialize_with_provider(provider)
        first = next(iter(self.get_requirements()))
        self._theory = provider.requirement_providers[first]
        r_model = np.asarray(getattr(self._theory, "r", None), dtype=float)
        if r_model.ndim != 1 or r_model.size < 2:
            raise LoggedError(self.log, "the provider of %r (%r) does not expose the emulator's bin centres 'r'",
                              first, self._theory)
        self.setup(r_model)

    def setup(self, r_model: np.ndarray):
        """Cut the data and precompute interpolation and covariance for the emulator radii `r_model`."""
        blocks, cov = self._cut(r_model)
        self.r_model = r_model
        self.blocks = blocks
        self.stats = [b[0] for b in blocks]
        self.data_vector = np.concatenate([b[2] for b in blocks])
        try:
            self.nodes = [interpolation_nodes(r_model, b[1]) for b in blocks]
            self.interp = [interpolation_matrix(r_model, b[1]) for b in blocks]
        except ValueError as excpt:
            raise LoggedError(self.log, "%s", excpt) from excpt
        n = self.data_vector.size
        if cov.shape != (n, n):
            raise LoggedError(self.log, "covariance shape %s does not match the %d data points", cov.shape, n)
        if not np.all(np.isfinite(cov)):
            raise LoggedError(self.log, "the covariance has non-finite entries")
        if not np.allclose(cov, cov.T, rtol=1e-8, atol=0):
            raise LoggedError(self.log, "the covariance is not symmetric")
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            eig = np.linalg.eigvalsh(cov)
            raise LoggedError(self.log, "the covariance (%d x %d) is not positive definite (smallest eigenvalue "
                                        "%.3g)", n, n, eig.min()) from None
        sd = np.sqrt(np.diag(cov))
        condition = np.linalg.cond(cov / np.outer(sd, sd))
        if not condition <= MAX_CORRELATION_CONDITION:
            raise LoggedError(self.log, "the covariance (%d x %d) is numerically singular: its correlation matrix "
                                        "has condition number %.3g > %.0e (nearly degenerate data points)", n, n,
                              condition, MAX_CORRELATION_CONDITION)
        self.cov_data = cov
        self._logdet_data = 2.0 * np.sum(np.log(np.diag(chol)))
        self.precision_data = np.linalg.inv(cov)
        self.precision_data = 0.5 * (self.precision_data + self.precision_data.T)
        self._variable_cov = self.emulator_aleatoric > 0 or self.emulator_epistemic
        self._set_correction(n)

    def _set_correction(self, p: int):
        nsub = self.n_subvolumes
        self._hartlap = 1.0
        if self.covariance_correction == "none":
            return
        if nsub is None:
            raise LoggedError(self.log, "covariance_correction=%r needs n_subvolumes (the number of jackknife "
                                        "subvolumes)", self.covariance_correction)
        nsub = int(nsub)
        if self.covariance_correction == "hartlap":
            if nsub <= p + 2:
                raise LoggedError(self.log, "Hartlap correction needs n_subvolumes > n_data + 2 (got %d subvolumes "
                                            "for %d data points)", nsub, p)
            self._hartlap = (nsub - p - 2.0) / (nsub - 1.0)
        elif nsub < 2:
            raise LoggedError(self.log, "Sellentin-Heavens needs n_subvolumes >= 2, got %d", nsub)
        self.n_subvolumes = nsub

    # ---- the log-likelihood: one implementation, numpy (Cobaya) or float64 torch (differentiable) -------------

    def _model_and_cov_blocks(self, ops, predictions, batch: int, with_cov: bool = True):
        """Model vector (batch, p) and, with emulator variances, the covariance blocks [(batch, k, k)] per statistic."""
        model_parts, cov_blocks = [], []
        for (stat, r, _), w, (j, t) in zip(self.blocks, self.interp, self.nodes):
            w = ops.asarray(w)
            y = predictions[stat]
            m = _log_interpolate(y, ops.index(j), ops.asarray(t)) if stat in _LOG_INTERPOLATED else y @ w.T
            model_parts.append(m)
            if with_cov and self._variable_cov:
                var = 0.0 * y
                if self.emulator_aleatoric > 0:
                    var = var + self.emulator_aleatoric * predictions[f"{stat}_aleatoric_var"]
                if self.emulator_epistemic:
                    var = var + predictions[f"{stat}_epistemic_var"]
                jac = ops.expand(w, batch)
                if stat in _LOG_INTERPOLATED:
                    jac = m[:, :, None] * jac / y[:, None, :]
                cov_blocks.append((jac * var[:, None, :]) @ ops.transpose(jac))
        return ops.cat(model_parts), cov_blocks

    def _loglike(self, ops, predictions, batch: int):
        """log L (batch,) from predictions {stat: (batch, 20), '<stat>_aleatoric_var': ...} in `ops`' arrays."""
        model_vec, cov_blocks = self._model_and_cov_blocks(ops, predictions, batch)
        res = ops.asarray(self.data_vector) - model_vec
        if not self._variable_cov:
            chi2 = ((res @ ops.asarray(self.precision_data)) * res).sum(-1)
            logdet = 0.0 * chi2
        else:
            cov = ops.copy(ops.expand(ops.asarray(self.cov_data), batch))
            start = 0
            for block in cov_blocks:
                k = block.shape[-1]
                cov[:, start:start + k, start:start + k] = cov[:, start:start + k, start:start + k] + block
                start += k
            chol = ops.cholesky(cov)
            z = ops.solve_lower(chol, res)
            chi2 = (z * z).sum(-1)
            logdet = 2.0 * ops.log(ops.diagonal(chol)).sum(-1) - self._logdet_data
        if self.covariance_correction == "sellentin-heavens":
            n = self.n_subvolumes
            return -0.5 * n * ops.log1p(chi2 / (n - 1.0)) - 0.5 * logdet
        return -0.5 * self._hartlap * chi2 - 0.5 * logdet

    def model_vector(self, predictions: Mapping[str, np.ndarray]) -> np.ndarray:
        """The emulator prediction at the data radii, concatenated like the data vector."""
        batched = {k: np.asarray(predictions[k], dtype=float)[None] for k, _, _ in self.blocks}
        return self._model_and_cov_blocks(_NUMPY, batched, 1, with_cov=False)[0][0]

    def _variances(self, predictions):
        names = [f"{s}_aleatoric_var" for s, _, _ in self.blocks if self.emulator_aleatoric > 0]
        names += [f"{s}_epistemic_var" for s, _, _ in self.blocks if self.emulator_epistemic]
        return {n: np.asarray(predictions[n], dtype=float)[None] for n in names}

    def loglike_from_predictions(self, predictions: Mapping[str, np.ndarray]) -> float:
        """log L from emulator predictions at its centres: {stat: (20,), '<stat>_aleatoric_var': ...}."""
        batched = {k: np.asarray(predictions[k], dtype=float)[None] for k, _, _ in self.blocks}
        if self._variable_cov:
            batched.update(self._variances(predictions))
        try:
            return float(self._loglike(_NUMPY, batched, 1)[0])
        except np.linalg.LinAlgError:  # the covariance is not positive definite at this point
            return -np.inf

    def logp(self, **params_values):
        predictions = {}
        for stat in dict.fromkeys(self.stats):
            predictions[stat] = self.provider.get_result(stat + self.suffix)
            if self.emulator_aleatoric > 0:
                predictions[f"{stat}_aleatoric_var"] = self.provider.get_result(f"{stat}_aleatoric_var{self.suffix}")
            if self.emulator_epistemic:
                predictions[f"{stat}_epistemic_var"] = self.provider.get_result(f"{stat}_epistemic_var{self.suffix}")
        return self.loglike_from_predictions(predictions)

    def loglike_torch(self, params):
        """log L as a float64 torch tensor (n,), differentiable w.r.t. the parameters.

        `params`: a mapping of this likelihood's Theory input names (e.g. ``mu_cen``, or ``mu_cen_1`` with a
        suffix) to tensors, or a tensor (..., 7) in PARAM_NAMES order. Points outside the training domain get
        -inf when the Theory's policy is ``zero``. Needs an initialised model (`cobaya.model.get_model`).
        """
        import torch

        if self._theory is None:
            raise RuntimeError("loglike_torch needs the likelihood inside an initialised Cobaya model")
        x = self._theory.params_tensor(params)
        if self.emulator_epistemic:
            raise NotImplementedError("the epistemic variance (Monte Carlo dropout) is random, so not differentiable; "
                                      "set emulator_epistemic: false for gradient-based sampling")
        pred = self._theory.predict_torch(params, statistics=list(dict.fromkeys(self.stats)))
        logl = self._loglike(_torch_ops(), pred, x.shape[0])
        if self._theory.outside_domain == "zero":
            inside = torch.as_tensor(self._theory.inside_torch(x))
            logl = torch.where(inside, logl, torch.full_like(logl, -np.inf))
        return logl


class _NumpyOps:
    """The array operations `_IALikelihood._loglike` needs, on numpy float64 arrays."""

    asarray = staticmethod(lambda a: np.asarray(a, dtype=np.float64))
    index = staticmethod(np.asarray)
    cat = staticmethod(lambda parts: np.concatenate(parts, axis=-1))
    expand = staticmethod(lambda a, n: np.broadcast_to(a, (n, *a.shape)))
    transpose = staticmethod(lambda a: np.swapaxes(a, -1, -2))
    copy = staticmethod(np.array)
    cholesky = staticmethod(np.linalg.cholesky)
    diagonal = staticmethod(lambda a: np.diagonal(a, axis1=-2, axis2=-1))
    log = staticmethod(np.log)
    log1p = staticmethod(np.log1p)

    @staticmethod
    def solve_lower(chol, b):
        from scipy.linalg import solve_triangular

        return np.stack([solve_triangular(c, v, lower=True) for c, v in zip(chol, b)])


class _TorchOps:
    """The same operations on float64 torch tensors (differentiable)."""

    def __init__(self):
        import torch

        self.torch = torch

    def asarray(self, a):
        return self.torch.as_tensor(a, dtype=self.torch.float64)

    def index(self, a):
        return self.torch.as_tensor(a)

    def cat(self, parts):
        return self.torch.cat(parts, dim=-1)

    def expand(self, a, n):
        return a.expand(n, *a.shape)

    def transpose(self, a):
        return a.transpose(-1, -2)

    def copy(self, a):
        return a.clone()

    def cholesky(self, a):
        return self.torch.linalg.cholesky(a)

    def diagonal(self, a):
        return self.torch.diagonal(a, dim1=-2, dim2=-1)

    def log(self, a):
        return self.torch.log(a)

    def log1p(self, a):
        return self.torch.log1p(a)

    def solve_lower(self, chol, b):
        return self.torch.linalg.solve_triangular(chol, b[:, :, None], upper=False)[:, :, 0]


_NUMPY = _NumpyOps()
_TORCH: list = []


def _torch_ops() -> _TorchOps:
    if not _TORCH:
        _TORCH.append(_TorchOps())
    return _TORCH[0]


class IACorrelationLikelihood(_IALikelihood):
    """Gaussian likelihood of measured xi / omega / eta given the IAEmu Theory (data files; see docs/cobaya.md)."""

    # options: defaults and documentation in IACorrelationLikelihood.yaml
    data_file: str | None
    cov_file: str | None
    statistics: Sequence[str] | str | None
    r_min: float | Mapping | None
    r_max: float | Mapping | None
    emulator_aleatoric: float | bool
    emulator_epistemic: bool
    covariance_correction: str | None
    n_subvolumes: int | None
    suffix: str

    def _load(self):
        if not self.data_file:
            raise ValueError("option 'data_file' is required (rows 'STATISTIC R VALUE [ERR]')")
        rows = read_data_file(os.path.expanduser(self.data_file))
        blocks = []
        for stat in STATISTICS:
            sel = [row for row in rows if row[0] == stat]
            if sel:
                blocks.append((stat, np.array([s[1] for s in sel]), np.array([s[2] for s in sel])))
        # the covariance follows the file's row order; reorder rows to the block order above
        order = np.concatenate([[i for i, row in enumerate(rows) if row[0] == stat] for stat in STATISTICS
                                if any(row[0] == stat for row in rows)]).astype(int)
        if self.cov_file:
            cov = read_covariance_file(os.path.expanduser(self.cov_file))
            if cov.shape[0] != len(rows):
                raise ValueError(f"covariance {self.cov_file!r} is {cov.shape[0]}x{cov.shape[1]} but the data file "
                                 f"{self.data_file!r} has {len(rows)} rows: their lengths must match")
            cov = cov[np.ix_(order, order)]
        else:
            err = np.array([rows[i][3] for i in order])
            if not np.all(np.isfinite(err)):
                raise ValueError(f"no cov_file given and the data file {self.data_file!r} lacks an ERR column "
                                 f"on some rows")
            cov = np.diag(err ** 2)
        for stat, r, _ in blocks:
            if np.any(np.diff(r) <= 0):
                raise ValueError(f"{stat} radii in {self.data_file!r} must increase strictly, got {r.tolist()}")
        return blocks, cov


class TNG300Likelihood(_IALikelihood):
    """TNG300-1 IA measurements (Van Alfen et al. 2024), samples 1-3, HOD fixed to each sample's best fit."""

    # options: defaults and documentation in TNG300Likelihood.yaml
    sample: int
    statistics: Sequence[str] | str | None
    r_min: float | Mapping | None
    r_max: float | Mapping | None
    emulator_aleatoric: float | bool
    emulator_epistemic: bool
    covariance_correction: str | None
    n_subvolumes: int | None
    fix_hod: bool
    suffix: str

    @classmethod
    def get_modified_defaults(cls, defaults, input_options=None):
        """Add the alignment priors and (fix_hod) the sample's best-fit HOD as fixed parameters."""
        from .tng300 import TNG300_HOD

        input_options = input_options or {}
        sample = input_options.get("sample", defaults.get("sample", 1))
        suffix = input_options.get("suffix", defaults.get("suffix", "")) or ""
        fix_hod = input_options.get("fix_hod", defaults.get("fix_hod", True))
        params = dict(defaults.get("params") or {})

        def latex(name):
            return PARAM_LATEX[name] + (f"^{{({suffix.lstrip('_')})}}" if suffix else "")

        for name, loc in (("mu_cen", 0.5), ("mu_sat", 0.0)):
            params[name + suffix] = {"prior": {"min": -1.0, "max": 1.0}, "ref": {"dist": "norm", "loc": loc,
                                     "scale": 0.1}, "proposal": 0.05, "latex": latex(name)}
        if fix_hod and sample in TNG300_HOD:
            for name in HOD_PARAMS:
                params[name + suffix] = {"value": float(TNG300_HOD[sample][name]), "latex": latex(name)}
        defaults["params"] = params
        return defaults

    def _drop_outside(self):
        return True

    def _load(self):
        from .tng300 import TNG300_HOD, TNG300_N_JACKKNIFE, load_tng300, load_tng300_omega_cov

        if isinstance(self.sample, bool) or self.sample not in TNG300_HOD:
            raise ValueError(f"option sample={self.sample!r}: expected one of {sorted(TNG300_HOD)}")
        stats = self.statistics or list(STATISTICS)
        blocks, covs = [], []
        for stat in STATISTICS:
            if stat not in stats:
                continue
            d = load_tng300(self.sample, stat)
            blocks.append((stat, np.asarray(d["r"]), np.asarray(d["value"])))
            if stat == "omega" and self.sample == 3:
                covs.append(load_tng300_omega_cov(3))
                self.log.info("TNG300 sample 3 omega: full 14x14 jackknife covariance (%d subvolumes)",
                              TNG300_N_JACKKNIFE)
            else:
                covs.append(np.diag(np.asarray(d["err"]) ** 2))
                self.log.info("TNG300 sample %d %s: diagonal jackknife errors only (no covariance published)",
                              self.sample, stat)
        if len(blocks) > 1:
            self.log.info("TNG300: no cross-covariance between %s; blocks treated as independent",
                          [b[0] for b in blocks])
        if self.n_subvolumes is None:
            self.n_subvolumes = TNG300_N_JACKKNIFE
        if self.covariance_correction in (None, "auto"):
            full = self.sample == 3 and "omega" in stats
            self.covariance_correction = "hartlap" if full else "none"
            self.log.info("TNG300 sample %d: covariance correction %s (auto)", self.sample,
                          self.covariance_correction)
        cov = np.zeros((sum(b[1].size for b in blocks),) * 2)
        start = 0
        for c in covs:
            k = c.shape[0]
            cov[start:start + k, start:start + k] = c
            start += k
        return blocks, cov


def torch_logposterior(model):
    """A differentiable float64 log-posterior of a Cobaya model made of IAEmu theories and our likelihoods.

    Returns (names, f): the sampled parameter names and f(theta) for a tensor (..., d) in that order,
    = log prior + sum of `loglike_torch`. Supports uniform and normal priors on sampled parameters and fixed
    parameters; raises ValueError for any other component or prior (they have no gradients).
    """
    import torch

    from .theory import IAEmu

    for name, theory in model.theory.items():
        if not isinstance(theory, IAEmu):
            raise ValueError(f"theory {name!r} ({type(theory).__name__}) is not differentiable; only IAEmu is")
    likes = []
    for name, like in model.likelihood.items():
        if not hasattr(like, "loglike_torch"):
            raise ValueError(f"likelihood {name!r} ({type(like).__name__}) has no loglike_torch: it is not "
                             f"differentiable, so gradient samplers cannot use this model")
        likes.append(like)
    if getattr(model.prior, "external", None):
        raise ValueError(f"external priors {list(model.prior.external)} are not differentiable")
    names = list(model.parameterization.sampled_params())
    fixed = dict(model.parameterization.constant_params())
    dependent = [p for p in model.parameterization.input_params() if p not in names and p not in fixed]
    if dependent:
        raise ValueError(f"input parameters {dependent} are functions of others; the differentiable path supports "
                         f"only sampled and fixed parameters")
    priors = []
    for name, pdf in zip(model.prior.params, model.prior.pdf):
        dist = pdf.dist.name
        if dist == "uniform":
            lo, hi = pdf.support()
            priors.append(("uniform", float(lo), float(hi), -float(np.log(hi - lo))))
        elif dist == "norm":
            loc, scale = float(pdf.mean()), float(pdf.std())
            priors.append(("norm", loc, scale, -float(np.log(scale * np.sqrt(2 * np.pi)))))
        else:
            raise ValueError(f"prior of {name!r} ({dist}) is not supported by the differentiable path; use "
                             f"uniform or normal")

    def logpost(theta):
        theta = torch.as_tensor(theta, dtype=torch.float64)
        flat = theta.reshape(-1, len(names))
        values = {n: flat[:, i] for i, n in enumerate(names)}
        values.update({n: torch.full((flat.shape[0],), float(v), dtype=torch.float64) for n, v in fixed.items()})
        total = torch.zeros(flat.shape[0], dtype=torch.float64)
        for i, (kind, a, b, c) in enumerate(priors):
            v = flat[:, i]
            if kind == "uniform":
                total = total + torch.where((v >= a) & (v <= b), torch.full_like(v, c), torch.full_like(v, -np.inf))
            else:
                total = total + c - 0.5 * ((v - a) / b) ** 2
        for like in likes:
            sub = {n: values[n] for n in like._theory.param_map.values()}
            total = total + like.loglike_torch(sub)
        return total.reshape(theta.shape[:-1])

    return names, logpost


__all__ = ["IACorrelationLikelihood", "TNG300Likelihood", "interpolation_matrix", "interpolation_nodes", "read_covariance_file",
           "read_data_file", "torch_logposterior", "PARAM_NAMES"]
