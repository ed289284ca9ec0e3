"""Train the IAEmu network on a dataset file and write an emulator artifact (`iaemu-train`).

    iaemu-train --data DATASET.h5 --out ARTIFACT.pt [--config FILE.yaml] [--network paper|tiny] [--epochs N]
        [--device auto] [--max-minutes M] [--resume] [any TrainConfig option]

The shipped emulator's recipe is a config file; this reproduces iaemu_theory/artifacts/iaemu_default.pt:

    iaemu-train --config training/configs/shipped.yaml --data training/data/dataset_hires320x3.h5 --out iaemu_default.pt

A config file is YAML whose keys are TrainConfig's fields (the long options with underscores); options given on
the command line override it. Without a config, the defaults are the paper's recipe: its network ("paper") and
step schedule (x0.9 every 167 epochs, 500 epochs, 100 warm-up epochs at beta = 1), raw parameters in and free
decoders out, with two values measured better here (learning rate 1e-3 instead of 1e-2, dropout 0.05 instead of
0.2). They do not make the shipped emulator, which uses the alignment_p2 input encoding, the alignment output
form, a cosine schedule from 1e-3 to 1e-6 over 240 epochs, 15 warm-up epochs and dropout 0.01.

Targets. Each parameter point has R realisations y_r (per statistic and bin, after xi -> ln xi). The paper
trains on every realisation as its own row with a Gaussian NLL; that loss depends on the realisations only
through their mean ybar and scatter s^2 = (1/R) sum_r (y_r - ybar)^2:

    sum_r 1/2 [(y_r - mu)^2 / sigma^2 + ln sigma^2 + ln 2 pi] = R/2 [((ybar - mu)^2 + s^2) / sigma^2 + ln sigma^2] + const,

so we train on one row per point with the right-hand side: the same optimum, R times fewer rows. beta-NLL
(Seitzer et al. 2022) multiplies each point's term by stopgrad(sigma^2)^beta, which is the same for all of
its realisations, so the equivalence holds with the weighting too.

Schedule as the paper: beta = 1 for a warm-up, then beta_xi = 0.9, beta_omega = beta_eta = 0.5; AdamW
(weight decay 1e-4), batch 128, learning rate x0.9 every 167 epochs (`--lr-schedule step`) or cosine-annealed
to `--lr-min` over the run (`--lr-schedule cosine`), gradient-norm clipping, validation every 5 epochs on
0.7 MSE + 0.3 NLL (per-realisation-row averages), early stopping after 100 epochs without improvement; the
best validation state is what the artifact ships. A checkpoint is written at every validation; `--resume`
continues bit-for-bit on the same device. `--max-minutes` stops cleanly (checkpoint + artifact of the best
state so far, exit status 75) before a time limit. `--init-from ARTIFACT` starts from a trained artifact's
weights with a fresh optimiser: fine-tuning on the same dataset, or continuing on an extended one (then with the
artifact's standardisation).

BatchNorm statistics. During training each BatchNorm layer keeps an exponential moving average of batch
statistics, dominated by the last few batches of an epoch; through a dozen layers that noise moved the
predicted ln xi of every point by up to +-0.1 from one epoch to the next (measured, docs/emulator.md). Before
the artifact is written, the running statistics of the shipped state are therefore re-estimated as exact
averages over the whole training set, in training conditions (dropout on, no gradients):
`recalibrate_batchnorm`.

Distillation. With `--teachers A.pt B.pt ...` (artifacts trained on the same dataset, e.g. the recipe with other
seeds) the targets are the teachers' average prediction instead of the realisation means: ybar their mean, s^2 their
aleatoric variance, at the training points and at `--teacher-points` extra Sobol points of the domain. Independently
trained networks err in partly independent ways, so their average is more accurate than each; one network trained
on it aims to keep that at one network's cost. Validation and the variance refit still use the data.

Variance refit. beta-NLL starves the variance outputs where the variance is small in standardised units (xi), so with
`variance_refit_steps` > 0 (the shipped recipe) the variance rows of the output layers are then refitted by the plain
NLL with everything else frozen: `refit_variances`.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from iaemu_theory.artifact import (INPUT_ENCODINGS, Artifact, check_output_form, encode_params, library_versions,
                                   save_artifact)
from iaemu_theory.conventions import STATISTICS
from iaemu_theory.domain import Domain
from iaemu_theory.emulator import resolve_device
from iaemu_theory.network import OUTPUT_FORMS, IAEmuNetwork, NetworkConfig, count_parameters, ensemble_mean
from training.common.cli import add_debug_argument, run_command
from training.common.datafiles import check_file, missing_hint
from training.common.datafiles import file_sha256 as dataset_sha256
from training.common.fileio import atomic_path
from training.dataset.schema import SPLIT_NAMES, Dataset, read_dataset

#: Exit status of a run stopped by --max-minutes (resume it with --resume).
EXIT_TIME_LIMIT = 75
CHECKPOINT_VERSION = 1
_XI = STATISTICS.index("xi")


@dataclass
class TrainConfig:
    """Hyper-parameters. Defaults: the paper's network and step schedule (module docstring); the shipped emulator's
    values are training/configs/shipped.yaml."""

    epochs: int = 500
    batch_size: int = 128
    lr: float = 1e-3                  # measured better here than the authors' 1e-2; see docs/emulator.md
    weight_decay: float = 1e-4
    lr_step_epochs: int = 167
    lr_gamma: float = 0.9
    grad_clip: float = 10.0
    warmup_epochs: int = 100
    beta: dict = field(default_factory=lambda: {"xi": 0.9, "omega": 0.5, "eta": 0.5})
    val_every: int = 5
    patience: int = 100
    mse_weight: float = 0.7
    seed: int = 0
    network: str = "paper"
    dropout: float = 0.05             # 0.2 (the paper) measured worse on our 3.8k points; see docs/emulator.md
    lr_schedule: str = "step"         # "step" (the paper: x lr_gamma every lr_step_epochs) or "cosine"
    lr_min: float = 1e-6              # the cosine schedule's final learning rate
    input_encoding: str = "identity"  # or "alignment_p2" (iaemu_theory.artifact.INPUT_ENCODINGS)
    output_form: str = "free"         # or "alignment" (iaemu_theory.network.OUTPUT_FORMS; needs alignment_p2)
    variance_refit_steps: int = 0     # L-BFGS iterations of `refit_variances` after training (0: none, the paper)
    teachers: list = field(default_factory=list)  # artifacts whose average prediction is the target (distillation)
    teacher_points: int = 0           # distillation: extra design points labelled by the teachers only

    def betas(self, epoch: int) -> dict:
        """beta per statistic at a (0-based) epoch."""
        if epoch < self.warmup_epochs:
            return {s: 1.0 for s in STATISTICS}
        return {s: float(self.beta[s]) for s in STATISTICS}

    def record(self) -> dict:
        """The settings as an artifact records them; without distillation its two fields are left out, so a
        run records what runs from before distillation existed recorded."""
        d = asdict(self)
        if not self.teachers:
            d.pop("teachers")
            d.pop("teacher_points")
        return d

    def identity(self) -> dict:
        """The settings that must match for --resume (epochs and patience may change; not epochs under the
        cosine schedule, whose length is the run's)."""
        d = self.record()
        for key in ("epochs", "patience") if self.lr_schedule == "step" else ("patience",):
            d.pop(key)
        return d

    def combined(self, val: dict) -> float:
        """The validation measure that picks the best state: mse_weight * MSE + (1 - mse_weight) * NLL."""
        return float(self.mse_weight * val["mse"] + (1 - self.mse_weight) * val["nll"])

    def scheduler(self, opt):
        if self.lr_schedule == "step":
            return torch.optim.lr_scheduler.StepLR(opt, step_size=self.lr_step_epochs, gamma=self.lr_gamma)
        if self.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs, eta_min=self.lr_min)
        raise ValueError(f"lr_schedule {self.lr_schedule!r}; expected 'step' or 'cosine'")


#: Allowed values of TrainConfig's string fields: the command line's choices and a config file's check.
CHOICES = {"network": ("paper", "tiny"), "lr_schedule": ("step", "cosine"), "input_encoding": INPUT_ENCODINGS,
           "output_form": OUTPUT_FORMS}
#: Where the versioned training recipes live; `--config NAME` without a path means NAME.yaml here.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def config_fields() -> tuple[str, ...]:
    """TrainConfig's field names: the keys a config file may hold."""
    return tuple(f.name for f in fields(TrainConfig))


def _config_value(key, value, source):
    """A config file's value for TrainConfig field `key`, checked and converted to the field's type."""
    default = getattr(TrainConfig(), key)
    bad = lambda what: ValueError(f"{source}: {key}: {value!r} is not {what}")  # noqa: E731
    if key == "beta":
        if not isinstance(value, dict) or not set(value) <= set(STATISTICS):
            raise bad(f"a mapping from statistics {list(STATISTICS)} to numbers")
        try:
            return {**default, **{k: float(v) for k, v in value.items()}}
        except (TypeError, ValueError):
            raise bad(f"a mapping from statistics {list(STATISTICS)} to numbers") from None
    if key == "teachers":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of artifact paths")
        return list(value)
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        raise bad(f"a {type(default).__name__}")
    if isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise bad("an integer")
        return value
    if isinstance(default, float):
        try:
            return float(value)         # YAML 1.1 reads 1e-3 (no dot) as a string
        except (TypeError, ValueError):
            raise bad("a number") from None
    if key in CHOICES and value not in CHOICES[key]:
        raise bad(f"one of {list(CHOICES[key])}")
    return str(value)


def resolve_config_path(name) -> Path:
    """A config file's path: `name` as given, else (a bare name such as "shipped") training/configs/NAME.yaml."""
    path = Path(name)
    if not path.exists() and path.parent == Path(".") and not path.suffix and (CONFIG_DIR / f"{name}.yaml").exists():
        return CONFIG_DIR / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"config file {name} does not exist (recipes in {CONFIG_DIR}: {known})")
    return path


def read_config(name) -> dict:
    """TrainConfig values from a YAML config file (keys: TrainConfig fields; unknown keys are an error)."""
    import yaml

    path = resolve_config_path(name)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"config file {path} is not valid YAML: {err}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"config file {path}: expected a mapping of TrainConfig fields, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in config_fields())
    if unknown:
        raise ValueError(f"config file {path}: unknown key(s) {unknown}; valid keys (TrainConfig fields): "
                         f"{list(config_fields())}")
    return {k: _config_value(k, v, path) for k, v in data.items()}


def prepare_output(path: Path, option: str = "--out", log=print) -> None:
    """Before any training: refuse an output path that is a directory, and create its missing parent directory."""
    if path.is_dir():
        raise ValueError(f"{option} {path} is a directory; give a file name in it, e.g. {path / 'iaemu.pt'}")
    parent = path.parent
    if parent.is_dir():
        return
    try:
        parent.mkdir(parents=True)
    except OSError as err:
        raise ValueError(f"{option} {path}: cannot create its directory {parent} ({err})") from None
    log(f"created directory {parent} for {option} {path.name}")


# ---------------------------------------------------------------------------------------------- targets
@dataclass
class Targets:
    """One row per parameter point: raw parameters, per-realisation-mean and scatter (transformed units)."""

    params: np.ndarray          # (N, 7)
    ybar: np.ndarray            # (N, 3, 20) mean over realisations of T(stat)
    s2: np.ndarray              # (N, 3, 20) (1/R) sum (T(stat)_r - ybar)^2
    n_real: np.ndarray          # (N,) realisations per point
    index: np.ndarray           # (N,) row in the dataset file


def transform(stats: np.ndarray) -> np.ndarray:
    """T: ln for xi, identity for omega and eta, on arrays (..., 3, 20)."""
    out = np.array(stats, dtype=np.float64, copy=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[..., _XI, :] = np.log(out[..., _XI, :])
    return out


def usable_points(ds: Dataset) -> tuple[np.ndarray, dict]:
    """Points with all statistics finite in every realisation, xi > 0 in every bin, and R >= 2; and a report."""
    finite = np.all(np.isfinite(ds.stats), axis=(1, 2, 3))
    with np.errstate(invalid="ignore"):
        positive = np.all(ds.stats[:, :, _XI, :] > 0, axis=(1, 2))
    enough = np.full(ds.n_points, ds.n_realisations >= 2)
    report = {"non_finite": int(np.sum(~finite)), "non_positive_xi": int(np.sum(finite & ~positive)),
              "too_few_realisations": int(np.sum(finite & positive & ~enough))}
    return finite & positive & enough, report


def targets(ds: Dataset, rows: np.ndarray) -> Targets:
    """Sufficient statistics of the given dataset rows (which must be usable)."""
    t = transform(ds.stats[rows])
    ybar = t.mean(axis=1)
    s2 = ((t - ybar[:, None]) ** 2).mean(axis=1)
    return Targets(ds.params[rows].astype(np.float64), ybar, s2,
                   np.full(rows.size, ds.n_realisations, dtype=np.float64), rows)


@dataclass
class Scalers:
    input_mean: np.ndarray
    input_std: np.ndarray
    output_mean: np.ndarray     # (3,)
    output_scale: np.ndarray    # (3,)
    input_encoding: str = "identity"

    @classmethod
    def fit(cls, ds: Dataset, rows: np.ndarray, input_encoding: str = "identity") -> "Scalers":
        """Encoded inputs z-scored per feature; each statistic with one mean and scale over all realisations
        and bins."""
        p = encode(ds.params[rows], input_encoding)
        t = transform(ds.stats[rows])
        mean = np.array([t[:, :, k, :].mean() for k in range(len(STATISTICS))])
        scale = np.array([t[:, :, k, :].std() for k in range(len(STATISTICS))])
        std = p.std(axis=0)
        std[std == 0] = 1.0
        scale[scale == 0] = 1.0
        return cls(p.mean(axis=0), std, mean, scale, input_encoding)

    @classmethod
    def of_artifact(cls, art: Artifact) -> "Scalers":
        """The standardisation stored in a trained artifact."""
        return cls(np.asarray(art.input_mean), np.asarray(art.input_std), np.asarray(art.output_mean),
                   np.asarray(art.output_scale), art.input_encoding)

    def standardise(self, tg: Targets):
        """(x, ybar, s2) in network units."""
        x = (encode(tg.params, self.input_encoding) - self.input_mean) / self.input_std
        ybar = (tg.ybar - self.output_mean[:, None]) / self.output_scale[:, None]
        s2 = tg.s2 / self.output_scale[:, None] ** 2
        return x, ybar, s2

    def tensors(self, tg: Targets, device="cpu") -> tuple:
        """(x, ybar, s2, n_real) in network units as float32 tensors on `device`: what the losses take."""
        x, ybar, s2 = self.standardise(tg)
        return tuple(torch.as_tensor(a, dtype=torch.float32, device=device) for a in (x, ybar, s2, tg.n_real))


def encode(params: np.ndarray, input_encoding: str) -> np.ndarray:
    """Parameters as the network sees them (the emulator's own `encode_params`, on numpy)."""
    return encode_params(torch.as_tensor(np.asarray(params, dtype=np.float64)), input_encoding).numpy()


def load_splits(path, log=print):
    """Read a dataset and return (dataset, {split name: usable rows}, report). The repository's dataset, read by its
    path, must have its recorded sha256 (training/data/MANIFEST.json)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"dataset file {path} does not exist{missing_hint(path)}")
    check_file(path)
    ds = read_dataset(path)
    if ds.split is None:
        raise ValueError(f"dataset {path} has no train/validation/test split; make one with "
                         f"`python -m training.dataset split {path} --seed 0`")
    ok, report = usable_points(ds)
    rows = {}
    for code, name in SPLIT_NAMES.items():
        in_split = ds.split == code
        rows[name] = np.flatnonzero(in_split & ok)
        report[f"dropped_{name}"] = int(np.sum(in_split & ~ok))
        report[f"n_{name}"] = int(rows[name].size)
    log(f"dataset {path}: {ds.n_points} points x {ds.n_realisations} realisations; "
        f"train/validation/test = {report['n_train']}/{report['n_validation']}/{report['n_test']}; "
        f"dropped from the splits: {report['dropped_train'] + report['dropped_validation'] + report['dropped_test']} "
        f"(non-finite {report['non_finite']}, non-positive xi {report['non_positive_xi']}, "
        f"fewer than 2 realisations {report['too_few_realisations']})")
    if rows["train"].size < 2 or rows["validation"].size < 1:
        raise ValueError(f"dataset {path}: too few usable points (train {rows['train'].size}, validation "
                         f"{rows['validation'].size}) to train")
    return ds, rows, report


# ---------------------------------------------------------------------------------------------- losses
def sufficient_nll(mu, var, ybar, s2, n_real):
    """Per point and bin: R/2 [((ybar - mu)^2 + s^2) / var + ln var], the Gaussian NLL summed over the
    point's R realisations, minus R/2 ln 2 pi."""
    return 0.5 * n_real[:, None] * (((ybar - mu) ** 2 + s2) / var + torch.log(var))


def beta_nll(mu, var, ybar, s2, n_real, beta: float):
    """beta-NLL per realisation row, averaged: sum(var^beta (detached) * sufficient NLL) / (sum R * bins)."""
    nll = sufficient_nll(mu, var, ybar, s2, n_real)
    if beta:
        nll = nll * var.detach() ** beta
    return nll.sum() / (n_real.sum() * mu.shape[1])


def validation_losses(net, x, ybar, s2, n_real, batch=4096):
    """Per-realisation-row averages on a set: MSE (noise included, as the paper's per-row MSE), NLL
    (without the ln 2 pi / 2 constant), and the MSE of the mean alone; per statistic and summed."""
    net.eval()
    sums = {s: np.zeros(3) for s in STATISTICS}
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out = net(x[i:i + batch])
            w = n_real[i:i + batch, None]
            for k, s in enumerate(STATISTICS):
                mu, var = out[s]
                d2 = (ybar[i:i + batch, k] - mu) ** 2
                row_mse = d2 + s2[i:i + batch, k]
                nll = 0.5 * (row_mse / var + torch.log(var))
                sums[s] += torch.stack([(w * row_mse).sum(), (w * nll).sum(), (w * d2).sum()]).double().cpu().numpy()
    norm = float(n_real.sum()) * ybar.shape[-1]
    res = {}
    for s in STATISTICS:
        mse, nll, mse_mean = sums[s] / norm
        res[s] = {"mse": mse, "nll": nll, "mse_of_mean": mse_mean}
    res["mse"] = sum(res[s]["mse"] for s in STATISTICS)
    res["nll"] = sum(res[s]["nll"] for s in STATISTICS)
    return res


# ---------------------------------------------------------------------------------------------- training
def _atomic_save(obj, path: Path):
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def plot_losses(history: dict, path: Path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    ax.plot(np.arange(1, len(history["train"]) + 1), history["train"], lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (beta-NLL, summed over statistics)")
    ax.set_title("training")
    ax = axes[1]
    ep = history["val_epoch"]
    for key, label in (("val_combined", "0.7 MSE + 0.3 NLL"), ("val_mse", "MSE"), ("val_nll", "NLL")):
        ax.plot(ep, history[key], label=label, lw=1)
    if history.get("best_epoch"):
        ax.axvline(history["best_epoch"], color="k", ls=":", lw=1, label="best")
    ax.set_xlabel("epoch")
    ax.set_title("validation (per realisation row, standardised)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def recalibrate_batchnorm(net, x, batch_size: int, passes: int = 2, seed: int = 0):
    """Replace every BatchNorm layer's running statistics by exact averages of its batch statistics over
    `passes` shuffled passes of x in training conditions (dropout on, batches of batch_size, no gradients).
    Leaves the network in eval mode."""
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None                      # cumulative average
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = x.shape[0]
    net.train()
    with torch.no_grad():
        for _ in range(passes):
            perm = torch.randperm(n, generator=gen).to(x.device)
            for b in range(0, n, batch_size):
                idx = perm[b:b + batch_size]
                if idx.numel() >= 2:
                    net(x[idx])
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    net.eval()
    return net


def refit_variances(net, train_t, val_t, steps: int, log=print) -> dict:
    """Refit the variance rows of every decoder's output layer by the plain Gaussian NLL (beta = 0), all else frozen.

    beta-NLL weights each point's term by var^beta; in standardised ln xi units var is ~1e-3, so at beta_xi = 0.9 the
    gradient that shapes the variance is ~1e3 times weaker than the mean's and the xi variance stays near its
    starting value (measured 0.19 dex too large in sigma on the training points themselves). With the network in
    eval mode the inputs of the output layers are fixed, so the refit is a small smooth problem on them: `steps`
    L-BFGS iterations in blocks of 10, the block with the lowest validation NLL kept. The mean rows are untouched,
    so the predicted means are unchanged (to rounding). Returns, per statistic, the validation NLL (per realisation row)
    before and after and the iterations kept."""
    net.eval()

    def inputs(x):
        """Per statistic: (output-layer input patches (n, bins, C k), variance basis or None, the fixed mean), as
        the network's own forward pass gives them (hooks on each decoder and its output layer). The output conv
        is then one matmul over the unfolded patches: the same map."""
        layer_in, basis = {}, {}
        hooks = []
        for s, dec in net.decoders.items():
            hooks.append(dec.out.register_forward_hook(lambda m, inp, out, s=s: layer_in.__setitem__(s, inp[0])))
            hooks.append(dec.register_forward_hook(
                lambda m, inp, out, s=s: basis.__setitem__(s, inp[2] if len(inp) > 2 else None)))
        try:
            with torch.no_grad():
                pred = net(x)
        finally:
            for h in hooks:
                h.remove()
        out = {}
        for s, dec in net.decoders.items():
            (pad,), (k,), (stride,) = dec.out.padding, dec.out.kernel_size, dec.out.stride
            h = torch.nn.functional.pad(layer_in[s], (pad, pad)).unfold(2, k, stride)  # (n, C, bins, k)
            patches = h.permute(0, 2, 1, 3).reshape(h.shape[0], h.shape[2], -1)        # (n, bins, C k)
            out[s] = (patches, basis[s], pred[s][0])
        return out

    def nll(w, b, patches, vb, mu, ybar, s2, n_real):
        o = torch.matmul(patches, w.T) + b                                              # (n, bins, n_var)
        pre = o[..., 0] if vb is None else torch.einsum("nk,nbk->nb", vb, o)
        var = torch.nn.functional.softplus(pre)
        return sufficient_nll(mu, var, ybar, s2, n_real).sum() / (n_real.sum() * mu.shape[1])

    tr, va = inputs(train_t[0]), inputs(val_t[0])
    report = {}
    for k, s in enumerate(STATISTICS):
        if s not in net.decoders:
            continue
        layer, m = net.decoders[s].out, net.decoders[s].n_mean
        shape = layer.weight[m:].shape
        w = layer.weight[m:].detach().reshape(shape[0], -1).clone().requires_grad_(True)
        b = layer.bias[m:].detach().clone().requires_grad_(True)
        args_tr = (*tr[s], train_t[1][:, k], train_t[2][:, k], train_t[3])
        args_va = (*va[s], val_t[1][:, k], val_t[2][:, k], val_t[3])
        with torch.no_grad():
            before = best = float(nll(w, b, *args_va))
        kept, best_wb = 0, (w.detach().clone(), b.detach().clone())
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=10, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = nll(w, b, *args_tr)
            loss.backward()
            return loss

        for block in range(1, -(-steps // 10) + 1):
            opt.step(closure)
            with torch.no_grad():
                v = float(nll(w, b, *args_va))
            if v < best:
                best, kept, best_wb = v, 10 * block, (w.detach().clone(), b.detach().clone())
        with torch.no_grad():
            layer.weight[m:] = best_wb[0].reshape(shape)
            layer.bias[m:] = best_wb[1]
        report[s] = {"validation_nll_before": before, "validation_nll_after": best, "iterations_kept": kept}
        log(f"variance refit of {s}: validation NLL {before:.5g} -> {best:.5g} ({kept} of {steps} L-BFGS iterations)")
    return report


def refit_artifact_variances(artifact, data, out, steps: int, log=print) -> dict:
    """Apply `refit_variances` to a trained artifact on its own dataset (same splits and standardisation) and write
    the result to `out`, with the training record and metrics of a run whose recipe had `variance_refit_steps`:
    what `finish` would have written. Returns the refit report."""
    from iaemu_theory.artifact import load_artifact

    art = load_artifact(artifact)
    data_hash = dataset_sha256(data)
    if art.dataset_hash != data_hash:
        raise ValueError(f"{artifact} was trained on a dataset with sha256 {art.dataset_hash}, not {data} "
                         f"({data_hash}); refit it on its own dataset")
    ds, rows, _ = load_splits(data, log=log)
    sc = Scalers.of_artifact(art)
    train_t, val_t = sc.tensors(targets(ds, rows["train"])), sc.tensors(targets(ds, rows["validation"]))
    net = art.build_network()
    cfg = TrainConfig(**{**art.training["config"], "variance_refit_steps": int(steps)})
    val = validation_losses(net, *val_t)
    report = refit_variances(net, train_t, val_t, steps, log=log)
    after = validation_losses(net, *val_t)
    training = {**art.training, "config": cfg.record(), "variance_refit": report}
    metrics = {**art.metrics, "validation_before_variance_refit": {"combined": cfg.combined(val), **val},
               "validation": {"combined": cfg.combined(after), **after}}
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    save_artifact(out, replace(art, members=[state], training=training, metrics=metrics, weights_sha256=None,
                               path=None, versions=library_versions()))
    return report


def _check_standardisation(art: Artifact, scalers: "Scalers", what: str) -> None:
    """Refuse an artifact whose standardisation differs from this run's (its outputs would be in other units)."""
    same = all(np.allclose(getattr(art, k), getattr(scalers, k))
               for k in ("input_mean", "input_std", "output_mean", "output_scale"))
    if not same or art.input_encoding != scalers.input_encoding:
        raise ValueError(f"{what}: its standardisation differs from this dataset's training split")


def teacher_targets(teachers, data_hash: str, scalers: "Scalers", params: np.ndarray, n_real: float, log=print):
    """Distillation targets (x, ybar, s2, n_real) in network units at `params` (n, 7): ybar the teachers' average
    predicted mean, s2 their average aleatoric variance, each point weighted as `n_real` realisations. The teachers
    must be trained on this dataset, in this run's units. Returns the tensors and a record of the teachers."""
    from iaemu_theory.artifact import load_artifact

    x = torch.as_tensor((encode(params, scalers.input_encoding) - scalers.input_mean) / scalers.input_std,
                        dtype=torch.float32)
    preds, record = [], []
    for path in teachers:
        art = load_artifact(path)
        if art.dataset_hash != data_hash:
            raise ValueError(f"teacher {path} was trained on a dataset with sha256 {art.dataset_hash}, not this one "
                             f"({data_hash}); distil from teachers of the same dataset")
        _check_standardisation(art, scalers, f"teacher {path}")
        for net in art.build_networks():        # an ensemble teaches with each of its networks
            with torch.no_grad():
                parts = [net(x[i:i + 4096]) for i in range(0, x.shape[0], 4096)]
            preds.append({s: tuple(torch.cat([p[s][k] for p in parts]) for k in (0, 1)) for s in STATISTICS})
        record.append({"artifact": str(path), "weights_sha256": art.weights_sha256, "networks": art.n_members,
                       "seed": (art.training or {}).get("config", {}).get("seed")})
    log(f"distillation targets: the average of {len(preds)} networks of {len(teachers)} teacher artifact(s) at "
        f"{x.shape[0]} points")
    avg = ensemble_mean(preds)
    ybar, s2 = (torch.stack([avg[s][k] for s in STATISTICS], dim=1) for k in (0, 1))
    return (x, ybar, s2, torch.full((x.shape[0],), float(n_real))), record


def _initial_weights(init_from, net_cfg, data_hash, scalers, log=print) -> tuple[dict, dict, "Scalers"]:
    """Weights, provenance and standardisation of an artifact to fine-tune from. It must share the network (the
    dropout rate may differ) and the input encoding. On its own dataset its standardisation must equal this
    training split's; on another dataset (an extended design, another catalog) the run keeps the artifact's
    standardisation, so the weights go on computing the same function in the same units."""
    from iaemu_theory.artifact import load_artifact

    art = load_artifact(init_from)
    shape = lambda cfg: {k: v for k, v in asdict(cfg).items() if k != "dropout"}  # noqa: E731
    if shape(art.config) != shape(net_cfg):
        raise ValueError(f"--init-from {init_from}: its network {shape(art.config)} differs from this run's "
                         f"{shape(net_cfg)}")
    if art.input_encoding != scalers.input_encoding:
        raise ValueError(f"--init-from {init_from}: its input encoding {art.input_encoding!r} differs from this "
                         f"run's {scalers.input_encoding!r}")
    earlier = {k: v for k, v in (art.training or {}).items() if k != "history"}
    provenance = {"artifact": str(init_from), "weights_sha256": art.weights_sha256, "training": earlier,
                  "dataset_sha256": art.dataset_hash}
    if art.dataset_hash == data_hash:
        _check_standardisation(art, scalers, f"--init-from {init_from}")
        return art.state_dict, provenance, scalers
    log(f"--init-from {init_from} was trained on another dataset (sha256 {str(art.dataset_hash)[:12]}..., this one "
        f"{data_hash[:12]}...): keeping its standardisation. Its training points must not be validation or test "
        f"points here (extend a design with `training.dataset split --keep-split-from`).")
    return art.state_dict, provenance, Scalers.of_artifact(art)


@dataclass
class TrainingRun:
    """The state of one training run, shared by its steps (`prepare`, `restore`, `run_epoch`, `finish`)."""

    cfg: TrainConfig
    data: Path
    out: Path
    checkpoint: Path
    plot: Path
    dev: torch.device
    ds: Dataset
    data_report: dict
    data_hash: str
    scalers: Scalers
    net_cfg: NetworkConfig
    provenance: dict | None
    train_t: tuple
    val_t: tuple
    refit_t: tuple              # the data's training targets: what the variance refit fits (train_t but distilled)
    teachers: list | None       # the distillation teachers' record, None without distillation
    net: IAEmuNetwork
    opt: torch.optim.Optimizer
    sched: object
    shuffle: torch.Generator
    history: dict = field(default_factory=lambda: {"train": [], "val_epoch": [], "val_combined": [], "val_mse": [],
                                                   "val_nll": [], "best_epoch": None})
    best: dict = field(default_factory=lambda: {"combined": math.inf, "epoch": None, "state": None, "val": None})
    start_epoch: int = 0

    @property
    def n_train(self) -> int:
        return self.train_t[0].shape[0]

    def save_checkpoint(self, epoch: int) -> None:
        """Everything a resumed run needs to continue bit-identically, after `epoch` epochs."""
        _atomic_save({
            "version": CHECKPOINT_VERSION, "epoch": epoch, "data_sha256": self.data_hash,
            "config": json.loads(json.dumps(self.cfg.identity())),
            "model": self.net.state_dict(), "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "shuffle_rng": self.shuffle.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if self.dev.type == "cuda" else None,
            "history_json": json.dumps(self.history), "best_combined": float(self.best["combined"]),
            "best_epoch": self.best["epoch"], "best_state": self.best["state"],
            "best_val_json": json.dumps(self.best["val"]),
        }, self.checkpoint)

    def keep_if_best(self, done: int, val: dict, combined: float, force: bool = False) -> None:
        """Record the current weights as the best so far when `combined` improves on it (or `force`)."""
        if force or combined < self.best["combined"]:
            self.best = {"combined": combined, "epoch": done, "val": val,
                         "state": {k: v.detach().clone() for k, v in self.net.state_dict().items()}}
            self.history["best_epoch"] = done


def prepare(data, out, cfg: TrainConfig, device="auto", checkpoint=None, plot=None, init_from=None,
            log=print) -> TrainingRun:
    """Step 1: check the outputs, read the splits, fit the scalers and build the network, optimiser, scheduler
    and shuffling generator from the seed (or the weights of `init_from`)."""
    check_output_form(cfg.output_form, cfg.input_encoding)
    data, out = Path(data), Path(out)
    checkpoint = Path(checkpoint) if checkpoint else out.with_name(out.name + ".ckpt")
    plot = Path(plot) if plot else out.with_name(out.stem + "_loss.png")
    dev = resolve_device(device)
    ds, rows, data_report = load_splits(data, log=log)
    for path, option in ((out, "--out"), (checkpoint, "--checkpoint"), (plot, "--plot")):
        prepare_output(path, option, log=log)
    data_hash = dataset_sha256(data)
    scalers = Scalers.fit(ds, rows["train"], cfg.input_encoding)
    net_cfg = replace(NetworkConfig.named(cfg.network), dropout=cfg.dropout, output_form=cfg.output_form)
    provenance = None
    if init_from is not None:
        weights, provenance, scalers = _initial_weights(init_from, net_cfg, data_hash, scalers, log=log)

    refit_t = train_t = scalers.tensors(targets(ds, rows["train"]), dev)
    val_t = scalers.tensors(targets(ds, rows["validation"]), dev)
    teachers = None
    if cfg.teachers:
        params = ds.params[rows["train"]].astype(np.float64)
        if cfg.teacher_points:
            from training.dataset.design import unit_design

            domain = Domain.from_dict(ds.attrs.get("domain") or Domain().to_dict())
            params = np.concatenate([params, domain.from_unit(unit_design(cfg.teacher_points, cfg.seed))])
        train_t, teachers = teacher_targets(cfg.teachers, data_hash, scalers, params, ds.n_realisations, log=log)
        train_t = tuple(t.to(dev) for t in train_t)

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if dev.type == "cuda":
        torch.cuda.manual_seed_all(cfg.seed)
    net = IAEmuNetwork(net_cfg).to(dev)
    if init_from is not None:
        net.load_state_dict(weights, strict=True)
        log(f"initialised from {init_from} (trained {provenance['training'].get('epochs_run')} epochs)")
    opt_kw = {"fused": True} if dev.type == "cuda" else {}
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **opt_kw)
    return TrainingRun(cfg=cfg, data=data, out=out, checkpoint=checkpoint, plot=plot, dev=dev, ds=ds,
                       data_report=data_report, data_hash=data_hash, scalers=scalers, net_cfg=net_cfg,
                       provenance=provenance, train_t=train_t, val_t=val_t, refit_t=refit_t, teachers=teachers,
                       net=net, opt=opt,
                       sched=cfg.scheduler(opt), shuffle=torch.Generator(device="cpu").manual_seed(cfg.seed))


#: What a checkpoint holds (written by `save_checkpoint`); a file lacking any of these cannot be resumed from.
CHECKPOINT_KEYS = ("version", "data_sha256", "config", "model", "optimizer", "scheduler", "shuffle_rng", "torch_rng",
                   "history_json", "best_combined", "best_epoch", "best_state", "best_val_json", "epoch")


def read_checkpoint(path: Path, device) -> dict:
    """A training checkpoint, checked: a damaged, foreign or incomplete file is a ValueError naming it and what to do
    (delete it, or drop --resume), never a raw traceback."""
    fix = "delete it (training then starts from scratch) or drop --resume"
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path} is empty; {fix}")
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:        # torch raises many kinds for a damaged or foreign file
        raise ValueError(f"checkpoint {path} cannot be read ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'truncated'}); {fix}") from None
    if not isinstance(ck, dict):
        raise ValueError(f"checkpoint {path} holds a {type(ck).__name__}, not a training checkpoint; {fix}")
    missing = [k for k in CHECKPOINT_KEYS if k not in ck]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}: not a complete iaemu-train checkpoint; {fix}")
    if ck["version"] != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path}: version {ck['version']}, expected {CHECKPOINT_VERSION}; {fix}")
    return ck


def restore(run: TrainingRun, log=print) -> None:
    """Step 2 (with --resume): continue from the run's checkpoint, refused when it was made on another dataset or
    with other settings."""
    if not run.checkpoint.exists():
        log(f"--resume: no checkpoint {run.checkpoint} yet, starting from scratch")
        return
    checkpoint, dev = run.checkpoint, run.dev
    ck = read_checkpoint(checkpoint, dev)
    if ck["data_sha256"] != run.data_hash:
        raise ValueError(f"checkpoint {checkpoint} was made on a different dataset (sha256 {ck['data_sha256'][:12]}..., "
                         f"{run.data} has {run.data_hash[:12]}...); remove it or drop --resume")
    if ck["config"] != json.loads(json.dumps(run.cfg.identity())):
        raise ValueError(f"checkpoint {checkpoint} used settings {ck['config']}, now {run.cfg.identity()}; "
                         "resume with the same settings")
    run.net.load_state_dict(ck["model"])
    run.opt.load_state_dict(ck["optimizer"])
    run.sched.load_state_dict(ck["scheduler"])
    run.shuffle.set_state(ck["shuffle_rng"].cpu())
    torch.set_rng_state(ck["torch_rng"].cpu())
    if dev.type == "cuda" and ck.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(ck["cuda_rng"].cpu())
    run.history = json.loads(ck["history_json"])
    run.best = {"combined": ck["best_combined"], "epoch": ck["best_epoch"], "state": ck["best_state"],
                "val": json.loads(ck["best_val_json"])}
    run.start_epoch = int(ck["epoch"])
    log(f"resumed from {checkpoint} after epoch {run.start_epoch} (best validation {run.best['combined']:.5g} "
        f"at epoch {run.best['epoch']})")


def run_epoch(run: TrainingRun, epoch: int) -> float:
    """Step 3: one epoch of shuffled mini-batches (beta-NLL of the three statistics, clipped gradients), then the
    scheduler's step; returns the mean training loss."""
    cfg, net, dev = run.cfg, run.net, run.dev
    n_train = run.n_train
    n_batches = max(1, n_train // cfg.batch_size + (n_train % cfg.batch_size >= 2))
    net.train()
    betas = cfg.betas(epoch)
    perm = torch.randperm(n_train, generator=run.shuffle).to(dev)
    total = torch.zeros((), device=dev)
    for b in range(n_batches):
        idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        if idx.numel() < 2:                 # BatchNorm needs two rows in training mode
            continue
        x, ybar, s2, nr = (t[idx] for t in run.train_t)
        pred = net(x)
        loss = sum(beta_nll(*pred[s], ybar[:, k], s2[:, k], nr, betas[s]) for k, s in enumerate(STATISTICS))
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        run.opt.step()
        total += loss.detach()
    run.sched.step()
    train_loss = float(total) / n_batches
    if not math.isfinite(train_loss):
        raise FloatingPointError(f"training loss became {train_loss} at epoch {epoch + 1}; "
                                 "lower --lr or check the dataset")
    run.history["train"].append(train_loss)
    return train_loss


def validate_epoch(run: TrainingRun, done: int) -> float:
    """The validation losses after `done` epochs: recorded in the history, the best weights kept, the checkpoint
    written; returns the combined loss."""
    val = validation_losses(run.net, *run.val_t)
    combined = run.cfg.combined(val)
    run.history["val_epoch"].append(done)
    run.history["val_combined"].append(combined)
    run.history["val_mse"].append(val["mse"])
    run.history["val_nll"].append(val["nll"])
    run.keep_if_best(done, val, combined)
    run.save_checkpoint(done)
    return combined


def finish(run: TrainingRun, stop_reason: str, done: int, epoch_times: list, seconds: float, log=print) -> dict:
    """Step 4: the best weights with BatchNorm statistics re-estimated over the training set, written as the
    artifact with its summary, metrics and loss curve; returns the summary."""
    cfg, net = run.cfg, run.net
    if run.best["state"] is None:               # stopped before any validation: validate the current state
        val = validation_losses(net, *run.val_t)
        run.keep_if_best(done, val, cfg.combined(val), force=True)
        run.save_checkpoint(done)
    best = run.best
    summary = {
        "complete": stop_reason != "time_limit", "stop_reason": stop_reason, "epochs_run": done,
        "best_epoch": best["epoch"], "device": str(run.dev), "config": cfg.record(),
        "n_parameters": count_parameters(net), "data": run.data_report, "dataset_file": run.data.name,
        "dataset_sha256": run.data_hash, "catalog_hash": run.ds.attrs.get("catalog_hash"),
        "seconds_this_run": round(seconds, 1),
        "median_epoch_seconds": float(np.median(epoch_times)) if epoch_times else None,
    }
    if run.provenance is not None:
        summary["initialised_from"] = run.provenance
    if run.teachers is not None:
        summary["teachers"] = run.teachers
    net.load_state_dict(best["state"])
    recalibrate_batchnorm(net, run.train_t[0], cfg.batch_size, seed=cfg.seed)
    val = validation_losses(net, *run.val_t)
    summary["batchnorm_recalibrated"] = True
    log(f"BatchNorm statistics re-estimated over the training set: validation 0.7 MSE + 0.3 NLL "
        f"{best['combined']:.5g} -> {cfg.combined(val):.5g}")
    metrics = {"validation_before_batchnorm_recalibration": {"combined": best["combined"], **best["val"]}}
    if cfg.variance_refit_steps:
        metrics["validation_before_variance_refit"] = {"combined": cfg.combined(val), **val}
        summary["variance_refit"] = refit_variances(net, run.refit_t, run.val_t, cfg.variance_refit_steps, log=log)
        val = validation_losses(net, *run.val_t)
    metrics["validation"] = {"combined": cfg.combined(val), **val}
    summary["history"] = run.history        # in the artifact too, so that its loss curves can be drawn again
    cpu_state = {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}
    sc, ds = run.scalers, run.ds
    art = Artifact(config=run.net_cfg, members=[cpu_state], input_mean=sc.input_mean, input_std=sc.input_std,
                   output_mean=sc.output_mean, output_scale=sc.output_scale, bin_edges=np.asarray(ds.bin_edges),
                   domain=ds.attrs.get("domain") or Domain().to_dict(), dataset_hash=run.data_hash, metrics=metrics,
                   training=summary, versions=library_versions(), input_encoding=sc.input_encoding)
    save_artifact(run.out, art)
    try:
        plot_losses(run.history, run.plot)
    except Exception as err:  # noqa: BLE001  (a figure must never lose a trained model)
        log(f"warning: loss-curve figure not written ({err})")
    log(f"{stop_reason}: {done} epochs; best validation 0.7 MSE + 0.3 NLL = {best['combined']:.5g} at epoch "
        f"{best['epoch']}; artifact {run.out}; checkpoint {run.checkpoint}; loss curve {run.plot}")
    if stop_reason == "time_limit":
        log("stopped before the --max-minutes limit; continue with the same command plus --resume")
    summary["artifact"] = str(run.out)
    return summary


def train(data, out, cfg: TrainConfig, device="auto", resume=False, max_minutes=None, checkpoint=None,
          plot=None, log=print, progress=True, init_from=None) -> dict:
    """Train and write the artifact: `prepare`, `restore` (with `resume`), `run_epoch` with validation every
    `val_every` epochs until the epochs, the patience or `max_minutes` run out, then `finish`. Returns a summary
    dict (also stored in the artifact's "training")."""
    from tqdm.auto import tqdm

    t_start = time.monotonic()
    run = prepare(data, out, cfg, device=device, checkpoint=checkpoint, plot=plot, init_from=init_from, log=log)
    if resume:
        restore(run, log=log)
    start_epoch = run.start_epoch
    log(f"training IAEmu ({cfg.network}: {count_parameters(run.net):,} parameters) on {run.dev} for up to "
        f"{cfg.epochs} epochs; {run.n_train} training points, batch {cfg.batch_size}")
    stop_reason = "max_epochs"
    epoch_times = []
    bar = tqdm(range(start_epoch, cfg.epochs), initial=start_epoch, total=cfg.epochs, desc="iaemu-train",
               unit="epoch", disable=not progress, dynamic_ncols=True)
    epoch = start_epoch
    for epoch in bar:
        t0 = time.monotonic()
        train_loss = run_epoch(run, epoch)
        done = epoch + 1
        if done % cfg.val_every == 0 or done == cfg.epochs:
            combined = validate_epoch(run, done)
            bar.set_postfix(loss=f"{train_loss:.4g}", val=f"{combined:.4g}", best=run.best["epoch"],
                            lr=f"{run.sched.get_last_lr()[0]:.2g}")
            if done - run.best["epoch"] >= cfg.patience:
                stop_reason = "early_stopping"
                break
        epoch_times.append(time.monotonic() - t0)
        if max_minutes is not None:
            elapsed = time.monotonic() - t_start
            per_epoch = max(epoch_times[-5:])
            if elapsed + 2 * per_epoch + 10 > 60 * max_minutes and done < cfg.epochs:
                run.save_checkpoint(done)
                stop_reason = "time_limit"
                break
    bar.close()
    done = epoch + 1 if cfg.epochs > start_epoch else start_epoch
    return finish(run, stop_reason, done, epoch_times, time.monotonic() - t_start, log=log)


# ---------------------------------------------------------------------------------------------- CLI
def _parse_beta(text: str) -> dict:
    out = {"xi": 0.9, "omega": 0.5, "eta": 0.5}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key.strip() not in STATISTICS:
            raise argparse.ArgumentTypeError(f"--beta: unknown statistic {key!r}; expected {list(STATISTICS)}")
        out[key.strip()] = float(value)
    return out


_EPILOG = """Defaults are the paper's network and step schedule, not the shipped emulator's recipe; that is
training/configs/shipped.yaml (--config shipped). Options given here override the config file."""


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="iaemu-train", description=__doc__.split("\n\n")[0], epilog=_EPILOG,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="dataset HDF5 file (training/dataset/schema.py) with a split")
    p.add_argument("--out", required=True, help="artifact file to write (its directory is created if missing)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="YAML file of TrainConfig values (keys: the options below with underscores), or the name of "
                        "a recipe in training/configs (shipped: the shipped emulator's)")
    p.add_argument("--epochs", type=int, default=d.epochs,
                   help="maximum number of epochs (the cosine schedule's length)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--network", default=d.network, choices=CHOICES["network"], help="network size")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint if there is one")
    p.add_argument("--max-minutes", type=float, default=None,
                   help=f"stop cleanly before this wall time (checkpoint + artifact; exit status {EXIT_TIME_LIMIT})")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default: OUT.ckpt)")
    p.add_argument("--plot", default=None, help="loss-curve PNG (default: OUT without suffix + _loss.png)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="training batch size")
    p.add_argument("--lr", type=float, default=d.lr, help="initial learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    p.add_argument("--lr-step-epochs", type=int, default=d.lr_step_epochs, help="step schedule: epochs between steps")
    p.add_argument("--lr-gamma", type=float, default=d.lr_gamma, help="step schedule: factor per step")
    p.add_argument("--lr-schedule", default=d.lr_schedule, choices=CHOICES["lr_schedule"],
                   help="step: x lr-gamma every lr-step-epochs (the paper); cosine: anneal to --lr-min over --epochs")
    p.add_argument("--lr-min", type=float, default=d.lr_min, help="final learning rate of the cosine schedule")
    p.add_argument("--input-encoding", default=d.input_encoding, choices=CHOICES["input_encoding"],
                   help="how the parameters enter the network: as they are, or mu_cen and mu_sat as the mean P2 of "
                        "the galaxy-axis angle (alignment_p2; omega is linear in it)")
    p.add_argument("--output-form", default=d.output_form, choices=CHOICES["output_form"],
                   help="free: the paper's decoders; alignment: xi independent of mu, omega affine and eta quadratic "
                        "in the encoded mu_cen, mu_sat (exact forms of their expectations; needs --input-encoding "
                        "alignment_p2)")
    p.add_argument("--init-from", default=None,
                   help="start from this artifact's weights (fine-tuning; on another dataset, e.g. an extended "
                        "design, its standardisation is kept)")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="gradient-norm clipping threshold")
    p.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs,
                   help="epochs at beta = 1 before --beta applies")
    p.add_argument("--beta", type=_parse_beta, default=d.beta, help="after warm-up, e.g. xi=0.9,omega=0.5,eta=0.5")
    p.add_argument("--val-every", type=int, default=d.val_every, help="epochs between validations (and checkpoints)")
    p.add_argument("--patience", type=int, default=d.patience, help="epochs without validation improvement")
    p.add_argument("--mse-weight", type=float, default=d.mse_weight,
                   help="validation measure: MSE-WEIGHT * MSE + (1 - MSE-WEIGHT) * NLL picks the shipped state")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the initial weights and the shuffling")
    p.add_argument("--dropout", type=float, default=d.dropout, help="dropout rate of every layer")
    p.add_argument("--variance-refit-steps", type=int, default=d.variance_refit_steps,
                   help="after training, L-BFGS iterations refitting the variance outputs by the plain NLL, means "
                        "frozen (0: none)")
    p.add_argument("--teachers", nargs="+", default=d.teachers, metavar="ARTIFACT",
                   help="distillation: train on the average prediction of these artifacts (trained on the same "
                        "dataset) instead of the realisation means; the variance refit still fits the data")
    p.add_argument("--teacher-points", type=int, default=d.teacher_points,
                   help="distillation: extra Sobol points of the training domain, labelled by the teachers")
    p.add_argument("--summary", default=None, help="also write the run summary as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_debug_argument(p)
    return p


_UNSET = object()


def config_from_args(args, file_values: dict | None = None) -> TrainConfig:
    """TrainConfig from TrainConfig's defaults, then a config file's values, then the options given explicitly
    (parsed into a namespace pre-filled with _UNSET, so that argparse's defaults mark what was not given)."""
    values = dict(file_values or {})
    values.update({k: getattr(args, k) for k in config_fields() if getattr(args, k, _UNSET) is not _UNSET})
    return TrainConfig(**values)


def parse_args(argv=None):
    """(namespace, TrainConfig) of a command line."""
    namespace = argparse.Namespace(**{k: _UNSET for k in config_fields()})
    args = build_parser().parse_args(argv, namespace=namespace)
    cfg = config_from_args(args, read_config(args.config) if args.config else None)
    return args, cfg


def main(argv=None) -> int:
    """Entry point of `iaemu-train`; returns the exit status (see `training.common.cli.run_command`)."""
    return run_command("iaemu-train", _main, argv)


def _main(argv: list) -> int:
    args, cfg = parse_args(argv)
    for name in ("epochs", "batch_size", "val_every"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}={getattr(cfg, name)} must be >= 1")
    if cfg.batch_size < 2:
        raise ValueError(f"--batch-size={cfg.batch_size} must be >= 2 (BatchNorm needs two points per batch)")
    summary = train(args.data, args.out, cfg, device=args.device, resume=args.resume,
                    max_minutes=args.max_minutes, checkpoint=args.checkpoint, plot=args.plot,
                    progress=not args.no_progress, init_from=args.init_from)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=1, default=float))
    return EXIT_TIME_LIMIT if summary["stop_reason"] == "time_limit" else 0


if __name__ == "__main__":
    sys.exit(main())
