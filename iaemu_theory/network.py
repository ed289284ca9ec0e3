"""The IAEmu network (Pandya et al. 2025, Sec. 3.1 and App. C): one module for training and inference.

An embedding network maps the 7 standardised parameters to a latent vector; one convolutional
decoder per statistic (xi, omega, eta) maps the latent vector to a mean and a variance in each of
the 20 radial bins, in standardised units (see `iaemu_theory.emulator` for the units).

Output forms (`NetworkConfig.output_form`). "free" is the paper's network: mu_cen and mu_sat enter the embedding
like any parameter and each decoder outputs one mean and one variance channel. "alignment" builds in what the
halo model guarantees (docs/validation.md): with the alignment inputs encoded as mean_p2(mu) the expected omega is
linear in them, eta quadratic, and xi does not depend on them. The embedding then sees the five HOD parameters
only; each decoder outputs, per bin, the coefficients of a polynomial in the two standardised alignment inputs
(c, s): xi constant, omega's mean affine (1, c, s), eta's mean quadratic (1, c, s, c^2, cs, s^2), and the
pre-softplus variance of omega and eta quadratic.

Layer order follows the paper: Linear/Conv -> LeakyReLU -> BatchNorm -> Dropout. Because the
BatchNorm comes after the activation it cannot be folded into the preceding layer; `FoldedIAEmu`
folds it exactly into the layers that consume it instead (inference fast path).
"""
from __future__ import annotations

import copy
import math
import threading
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .conventions import ALIGNMENT_COLUMNS, HOD_COLUMNS, N_BINS, PARAM_NAMES, STATISTICS

OUTPUT_FORMS = ("free", "alignment")
#: "alignment" form: degree of the polynomial in the standardised alignment inputs, for (mean, pre-softplus variance).
ALIGNMENT_DEGREES = {"xi": (0, 0), "omega": (1, 2), "eta": (2, 2)}
# as lists: indexing a 1-d tensor with a tuple would address several dimensions
_ALIGN_COLS, _HOD_COLS = list(ALIGNMENT_COLUMNS), list(HOD_COLUMNS)


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture sizes. `paper()` is the published network; `tiny()` is for fast tests."""

    n_inputs: int = len(PARAM_NAMES)
    hidden: int = 128                 # embedding widths: n_inputs -> hidden -> hidden -> 2 hidden -> 2 hidden
    latent: int = 128                 # bottleneck
    decoder_channels0: int = 7        # the decoder's first Linear outputs decoder_channels0 x decoder_length
    decoder_length: int = 100
    conv_channels: tuple[int, ...] = (14, 28, 28, 56, 112, 112)
    n_bins: int = N_BINS
    dropout: float = 0.2
    negative_slope: float = 0.01      # LeakyReLU (PyTorch's default)
    statistics: tuple[str, ...] = STATISTICS
    output_form: str = "free"         # OUTPUT_FORMS; absent from older artifacts' configs

    @classmethod
    def paper(cls) -> "NetworkConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "NetworkConfig":
        return cls(hidden=16, latent=16, decoder_channels0=2, conv_channels=(4, 8, 8, 8, 8, 8))

    @classmethod
    def named(cls, name: str) -> "NetworkConfig":
        if name == "paper":
            return cls.paper()
        if name == "tiny":
            return cls.tiny()
        raise ValueError(f"unknown network config {name!r}; expected 'paper' or 'tiny'")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["conv_channels"] = list(self.conv_channels)
        d["statistics"] = list(self.statistics)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown network config field(s) {unknown}; expected a subset of {sorted(known)}")
        d = dict(d)
        if "conv_channels" in d:
            d["conv_channels"] = tuple(int(c) for c in d["conv_channels"])
        if "statistics" in d:
            d["statistics"] = tuple(d["statistics"])
        return cls(**d)

    def __post_init__(self):
        if self.output_form not in OUTPUT_FORMS:
            raise ValueError(f"output_form {self.output_form!r}; expected one of {list(OUTPUT_FORMS)}")
        if len(self.conv_channels) != 6:
            raise ValueError(f"conv_channels must list 6 hidden conv widths, got {self.conv_channels}")
        if self.conv_channels[1] != self.conv_channels[2] or self.conv_channels[4] != self.conv_channels[5]:
            raise ValueError("conv_channels[1] == conv_channels[2] and conv_channels[4] == conv_channels[5] are needed "
                             f"for the residual connections 2->3 and 5->6, got {self.conv_channels}")
        if self.decoder_length // self.n_bins < 1 or _conv_out_len(self.decoder_length, self.out_kernel, 1) != self.n_bins:
            raise ValueError(f"decoder_length={self.decoder_length} does not give {self.n_bins} output bins "
                             f"with kernel=stride={self.out_kernel}, padding=1")

    @property
    def embedding_columns(self) -> list[int]:
        """Which of the n_inputs columns the embedding sees (all, or the HOD parameters in the alignment form)."""
        return list(range(self.n_inputs)) if self.output_form == "free" else list(_HOD_COLS)

    def degrees(self, statistic: str) -> tuple[int, int] | None:
        """(mean, variance) polynomial degrees in the alignment inputs; None for the free form."""
        return None if self.output_form == "free" else ALIGNMENT_DEGREES[statistic]

    @property
    def out_kernel(self) -> int:
        """Kernel and stride of the output convolution (5 for 100 -> 20 bins, as in the paper)."""
        return max(self.decoder_length // self.n_bins, 1)


def _conv_out_len(length: int, kernel: int, padding: int) -> int:
    return (length + 2 * padding - kernel) // kernel + 1


def _polynomial(c, s, degree: int):
    """Monomials (n, k) of the standardised alignment inputs up to `degree`; None for degree 0 (a constant)."""
    if degree == 0:
        return None
    terms = [torch.ones_like(c), c, s]
    if degree == 2:
        terms += [c * c, c * s, s * s]
    return torch.stack(terms, dim=1)


def n_terms(degree: int) -> int:
    return {0: 1, 1: 3, 2: 6}[degree]


def alignment_bases(cfg: NetworkConfig, x_align, statistic: str):
    """(mean basis, variance basis) for one statistic from the standardised alignment inputs (n, 2)."""
    deg = cfg.degrees(statistic)
    if deg is None:
        return None, None
    c, s = x_align[:, 0], x_align[:, 1]
    return _polynomial(c, s, deg[0]), _polynomial(c, s, deg[1])


def combine(out, mean_basis, var_basis):
    """Decoder channels (n, k_mean + k_var, bins) -> (mean, variance): each is its coefficients times its basis
    (a single channel when the basis is None), the variance through softplus."""
    k = 1 if mean_basis is None else mean_basis.shape[1]
    mean = out[:, 0] if mean_basis is None else torch.einsum("nk,nkb->nb", mean_basis, out[:, :k])
    pre = out[:, k] if var_basis is None else torch.einsum("nk,nkb->nb", var_basis, out[:, k:])
    return mean, F.softplus(pre)


def ensemble_mean(preds: list[dict]) -> dict:
    """{stat: (mean, variance)} of an ensemble from its members' (standardised units): the average mean and the
    average aleatoric variance (the spread between members is epistemic, not realisation scatter)."""
    if len(preds) == 1:
        return preds[0]
    return {s: (torch.stack([p[s][0] for p in preds]).mean(dim=0), torch.stack([p[s][1] for p in preds]).mean(dim=0))
            for s in preds[0]}


def inverse_softplus(y: float) -> float:
    """x with softplus(x) = y (y > 0)."""
    return y + math.log(-math.expm1(-y))


class DenseBlock(nn.Sequential):
    """Linear -> LeakyReLU -> BatchNorm1d -> Dropout, as in the paper."""

    def __init__(self, n_in: int, n_out: int, cfg: NetworkConfig):
        super().__init__(nn.Linear(n_in, n_out), nn.LeakyReLU(cfg.negative_slope), nn.BatchNorm1d(n_out),
                         nn.Dropout(cfg.dropout))


class ConvBlock(nn.Sequential):
    """Conv1d(kernel 3, padding 1) -> LeakyReLU -> BatchNorm1d -> Dropout."""

    def __init__(self, c_in: int, c_out: int, cfg: NetworkConfig):
        super().__init__(nn.Conv1d(c_in, c_out, kernel_size=3, padding=1), nn.LeakyReLU(cfg.negative_slope),
                         nn.BatchNorm1d(c_out), nn.Dropout(cfg.dropout))


class Embedding(nn.Module):
    """Five dense blocks 7 -> h -> h -> 2h -> 2h -> latent, residuals into the third and fourth."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        h = cfg.hidden
        self.layer1 = DenseBlock(len(cfg.embedding_columns), h, cfg)
        self.layer2 = DenseBlock(h, h, cfg)
        self.match = nn.Linear(h, 2 * h)          # projects layer 2's output for the residual into layer 3
        self.layer3 = DenseBlock(h, 2 * h, cfg)
        self.layer4 = DenseBlock(2 * h, 2 * h, cfg)
        self.bottleneck = DenseBlock(2 * h, cfg.latent, cfg)

    def forward(self, x):
        x2 = self.layer2(self.layer1(x))
        x3 = self.layer3(x2) + self.match(x2)
        x4 = self.layer4(x3) + x3
        return self.bottleneck(x4)


class Decoder(nn.Module):
    """Latent -> Linear to C0 x L -> six conv blocks (residuals 2->3, 5->6) -> output conv to (mean, variance)
    channels x bins (one each, or the alignment form's polynomial coefficients)."""

    def __init__(self, cfg: NetworkConfig, statistic: str):
        super().__init__()
        deg = cfg.degrees(statistic)
        self.n_mean, n_var = (1, 1) if deg is None else (n_terms(deg[0]), n_terms(deg[1]))
        self.c0, self.length = cfg.decoder_channels0, cfg.decoder_length
        self.initial = DenseBlock(cfg.latent, self.c0 * self.length, cfg)
        chans = (self.c0,) + tuple(cfg.conv_channels)
        self.convs = nn.ModuleList(ConvBlock(chans[i], chans[i + 1], cfg) for i in range(6))
        k = cfg.out_kernel
        self.out = nn.Conv1d(chans[-1], self.n_mean + n_var, kernel_size=k, stride=k, padding=1)
        # Variance head starts flat: zero weights and softplus(bias) = 1 (unit variance in standardised
        # units) give every bin and every input the same initial variance.
        with torch.no_grad():
            self.out.weight[self.n_mean:].zero_()
            self.out.bias[self.n_mean:] = 0.0
            self.out.bias[self.n_mean] = inverse_softplus(1.0)

    def forward(self, z, mean_basis=None, var_basis=None):
        x = self.initial(z).view(z.shape[0], self.c0, self.length)
        x = self.convs[1](self.convs[0](x))
        x = self.convs[2](x) + x
        x = self.convs[4](self.convs[3](x))
        x = self.convs[5](x) + x
        return combine(self.out(x), mean_basis, var_basis)


class IAEmuNetwork(nn.Module):
    """Embedding + one decoder per statistic. forward(x, statistics) -> {stat: (mean, variance)}, standardised units."""

    def __init__(self, cfg: NetworkConfig | None = None):
        super().__init__()
        self.cfg = cfg or NetworkConfig.paper()
        self.embedding = Embedding(self.cfg)
        self.decoders = nn.ModuleDict({s: Decoder(self.cfg, s) for s in self.cfg.statistics})

    def forward(self, x, statistics=None):
        free = self.cfg.output_form == "free"
        z = self.embedding(x if free else x[:, _HOD_COLS])
        x_align = None if free else x[:, _ALIGN_COLS]
        return {s: self.decoders[s](z, *alignment_bases(self.cfg, x_align, s))
                for s in (statistics or self.cfg.statistics)}

    def mc_dropout_mode(self):
        """BatchNorm in eval mode (running statistics), Dropout active: Monte Carlo dropout."""
        self.eval()
        for m in self.modules():
            if isinstance(m, nn.Dropout):
                m.train()
        return self


class MCDropout(nn.Module):
    """Dropout that is always on and draws its masks from the generator the calling thread has set.

    The draws are those of `nn.Dropout` in training mode with the same generator state, so a seeded pass
    gives the same masks as dropout on torch's global generator seeded alike.
    """

    def __init__(self, p: float, source: threading.local):
        super().__init__()
        self.p = float(p)
        self.source = source

    def forward(self, x):
        if self.p == 0.0:
            return x
        noise = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.source.generator)
        return x * noise.div_(1.0 - self.p)


def mc_dropout_network(net: IAEmuNetwork, source: threading.local) -> IAEmuNetwork:
    """A copy of `net` for Monte Carlo dropout that is never switched between modes: BatchNorm in eval mode
    and every Dropout an `MCDropout` reading its generator from `source.generator`. Threads that each set
    their own generator can share it."""
    mc = copy.deepcopy(net).eval()
    for module in list(mc.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.Dropout):
                setattr(module, name, MCDropout(child.p, source))
    return mc.requires_grad_(False)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------------------
# Inference fast path: BatchNorm folded exactly into the consuming layers.
#
# In eval mode BN(a) = s * a + t per channel. The next Linear/Conv is linear, so
#   W (s * a + t) + b = (W diag(s)) a + (W t + b)
# (and for a zero-padded conv the constant W*t is computed once as a per-position "bias map", exact at the
# boundaries). Residual sums carry their pending shifts into the next consumer's bias. The input
# standardisation is folded into the first Linear the same way.
# ----------------------------------------------------------------------------------------------------------

def _bn_affine(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return s, bn.bias - bn.running_mean * s


class FoldedIAEmu(nn.Module):
    """Deterministic (dropout off, BatchNorm eval) IAEmu with BatchNorm and input scaling folded in.

    Buffers are built in float64; cast with `.to(dtype)`. Same outputs as `IAEmuNetwork.eval()` applied to (x - input_mean) / input_std, in fewer operations;
    only the requested decoders run. Differentiable with respect to its input.
    """

    def __init__(self, net: IAEmuNetwork, input_mean: torch.Tensor, input_std: torch.Tensor):
        super().__init__()
        cfg = self.cfg = net.cfg
        self.slope = cfg.negative_slope
        self.c0, self.length = cfg.decoder_channels0, cfg.decoder_length
        self.out_kernel = cfg.out_kernel
        self.statistics = tuple(cfg.statistics)
        with torch.no_grad():
            f64 = lambda t: t.detach().to(torch.float64)  # noqa: E731  (fold in double precision)
            e = net.embedding
            mean, std = f64(input_mean), f64(input_std)
            l1, l2, l3, l4, l5 = (b[0] for b in (e.layer1, e.layer2, e.layer3, e.layer4, e.bottleneck))
            s1, t1 = map(f64, _bn_affine(e.layer1[2]))
            s2, t2 = map(f64, _bn_affine(e.layer2[2]))
            s3, t3 = map(f64, _bn_affine(e.layer3[2]))
            s4, t4 = map(f64, _bn_affine(e.layer4[2]))
            s5, t5 = map(f64, _bn_affine(e.bottleneck[2]))
            w_in = torch.zeros(l1.weight.shape[0], cfg.n_inputs, dtype=torch.float64)
            w_in[:, cfg.embedding_columns] = f64(l1.weight)     # parameters the embedding does not see: 0
            w1 = w_in / std
            b1 = f64(l1.bias) - w1 @ mean
            w2, b2 = f64(l2.weight) * s1, f64(l2.bias) + f64(l2.weight) @ t1
            wm, bm = f64(e.match.weight), f64(e.match.bias)
            w3, b3 = f64(l3.weight), f64(l3.bias)
            # one matmul gives the residual projection and layer 3's pre-activation; t3 rides in the residual
            w23 = torch.cat([wm * s2, w3 * s2])
            b23 = torch.cat([bm + wm @ t2 + t3, b3 + w3 @ t2])
            w4, b4 = f64(l4.weight), f64(l4.bias)
            w5 = f64(l5.weight)
            b5 = f64(l5.bias) + w5 @ t4        # x4 is kept without its shift t4
            self.register_buffer("w1", w1.T.contiguous())
            self.register_buffer("b1", b1)
            self.register_buffer("w2", w2.T.contiguous())
            self.register_buffer("b2", b2)
            self.register_buffer("w23", w23.T.contiguous())
            self.register_buffer("b23", b23)
            self.register_buffer("s3", s3)
            self.register_buffer("w4", w4.T.contiguous())
            self.register_buffer("b4", b4)
            self.register_buffer("s4", s4)
            self.register_buffer("w5", w5.T.contiguous())
            self.register_buffer("b5", b5)
            self.register_buffer("align_mean", mean[_ALIGN_COLS])
            self.register_buffer("align_std", std[_ALIGN_COLS])
            self.hidden2 = 2 * cfg.hidden
            self.decoders = nn.ModuleDict({s: _FoldedDecoder(net.decoders[s], s5, t5) for s in self.statistics})

    def embed(self, x):
        """Latent vector before the bottleneck's BatchNorm (which each decoder has folded in)."""
        a = F.leaky_relu(torch.addmm(self.b1, x, self.w1), self.slope)
        a = F.leaky_relu(torch.addmm(self.b2, a, self.w2), self.slope)
        y = torch.addmm(self.b23, a, self.w23)
        x3 = torch.addcmul(y[:, :self.hidden2], self.s3, F.leaky_relu(y[:, self.hidden2:], self.slope))
        a = F.leaky_relu(torch.addmm(self.b4, x3, self.w4), self.slope)
        x4 = torch.addcmul(x3, self.s4, a)
        return F.leaky_relu(torch.addmm(self.b5, x4, self.w5), self.slope)

    def decode(self, x, statistics=None):
        """The decoders' raw output channels {stat: (n, k, bins)}. In the alignment form they depend on the HOD
        columns of x only (the alignment inputs enter through `combine_raw`), so they can be reused at fixed HOD."""
        a = self.embed(x)
        return {s: self.decoders[s](a) for s in (statistics or self.statistics)}

    def combine_raw(self, raw, x):
        """{stat: (mean, variance)} from `decode`'s channels and the (encoded) inputs x."""
        x_align = None
        if self.cfg.output_form != "free":
            x_align = (x[:, _ALIGN_COLS] - self.align_mean) / self.align_std
        return {s: combine(out, *alignment_bases(self.cfg, x_align, s)) for s, out in raw.items()}

    def forward(self, x, statistics=None):
        return self.combine_raw(self.decode(x, statistics), x)


class _FoldedDecoder(nn.Module):
    """A decoder with its BatchNorms folded; returns the raw output channels (n, k, bins) for `combine`."""

    def __init__(self, dec: Decoder, s_in: torch.Tensor, t_in: torch.Tensor):
        super().__init__()
        f64 = lambda t: t.detach().to(torch.float64)  # noqa: E731
        self.slope = dec.initial[1].negative_slope
        self.c0, self.length = dec.c0, dec.length
        lin = dec.initial[0]
        w0 = f64(lin.weight)
        self.register_buffer("w0", (w0 * s_in).T.contiguous())
        self.register_buffer("b0", f64(lin.bias) + w0 @ t_in)
        s0, t0 = map(f64, _bn_affine(dec.initial[2]))      # per feature of C0 x L: applied explicitly
        self.register_buffer("s0", s0)
        self.register_buffer("t0", t0)
        convs = [c[0] for c in dec.convs]
        aff = [tuple(map(f64, _bn_affine(c[2]))) for c in dec.convs]
        L = dec.length

        def fold(conv, scale, shift, length):
            """Weights with the input scale folded in; bias map = conv(shift, zero padding) + bias."""
            w = f64(conv.weight)
            w_scaled = w * scale[None, :, None] if scale is not None else w
            shift_map = shift[None, :, None].expand(1, w.shape[1], length)
            bmap = F.conv1d(shift_map, w, None, conv.stride, conv.padding)[0] + f64(conv.bias)[:, None]
            return w_scaled.contiguous(), bmap.contiguous()

        c1 = convs[0]
        self.register_buffer("cw1", f64(c1.weight))
        self.register_buffer("cb1", f64(c1.bias))
        s = [a[0] for a in aff]
        t = [a[1] for a in aff]
        w, m = fold(convs[1], s[0], t[0], L)
        self.register_buffer("cw2", w)
        self.register_buffer("cm2", m)
        w, m = fold(convs[2], s[1], t[1], L)
        self.register_buffer("cw3", w)
        self.register_buffer("cm3", m)
        self.register_buffer("s2", s[1][:, None])
        self.register_buffer("s3", s[2][:, None])
        w, m = fold(convs[3], None, t[1] + t[2], L)          # input = s2 a2 + s3 a3, shifts t2 + t3 pending
        self.register_buffer("cw4", w)
        self.register_buffer("cm4", m)
        w, m = fold(convs[4], s[3], t[3], L)
        self.register_buffer("cw5", w)
        self.register_buffer("cm5", m)
        w, m = fold(convs[5], s[4], t[4], L)
        self.register_buffer("cw6", w)
        self.register_buffer("cm6", m)
        self.register_buffer("s5", s[4][:, None])
        self.register_buffer("s6", s[5][:, None])
        w, m = fold(dec.out, None, t[4] + t[5], L)
        self.register_buffer("ow", w)
        self.register_buffer("om", m)
        self.out_stride = dec.out.stride[0]

    def forward(self, a):
        slope = self.slope
        h = torch.addcmul(self.t0, self.s0, F.leaky_relu(torch.addmm(self.b0, a, self.w0), slope))
        h = h.view(a.shape[0], self.c0, self.length)
        a1 = F.leaky_relu(F.conv1d(h, self.cw1, self.cb1, padding=1), slope)
        a2 = F.leaky_relu(F.conv1d(a1, self.cw2, None, padding=1).add_(self.cm2), slope)
        a3 = F.leaky_relu(F.conv1d(a2, self.cw3, None, padding=1).add_(self.cm3), slope)
        u = torch.addcmul(a2 * self.s2, self.s3, a3)
        a4 = F.leaky_relu(F.conv1d(u, self.cw4, None, padding=1).add_(self.cm4), slope)
        a5 = F.leaky_relu(F.conv1d(a4, self.cw5, None, padding=1).add_(self.cm5), slope)
        a6 = F.leaky_relu(F.conv1d(a5, self.cw6, None, padding=1).add_(self.cm6), slope)
        u = torch.addcmul(a5 * self.s5, self.s6, a6)
        return F.conv1d(u, self.ow, None, stride=self.out_stride, padding=1).add_(self.om)
