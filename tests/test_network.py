"""The IAEmu network: architecture, shapes, parameter count, and the BatchNorm-folded fast path."""
import numpy as np
import pytest
import torch
from torch import nn

from iaemu_theory.conventions import N_BINS, STATISTICS
from iaemu_theory.network import FoldedIAEmu, IAEmuNetwork, NetworkConfig, count_parameters


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def randomise_batchnorm(net, seed=0, negative_gammas=True):
    """Give every BatchNorm non-trivial running statistics and affine parameters (as after training)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
                gamma = torch.rand(n, generator=g) + 0.5
                if negative_gammas:
                    gamma[::3] *= -1
                m.weight.copy_(gamma)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
        for dec in net.decoders.values():
            dec.out.weight.normal_(0, 0.05, generator=g)
    return net


def test_paper_parameter_count():
    net = IAEmuNetwork(NetworkConfig.paper())
    n = count_parameters(net)
    assert n == 660_602                               # the paper: "about 660k"
    assert abs(n - 660_000) / 660_000 < 0.01
    emb = count_parameters(net.embedding)
    dec = count_parameters(net.decoders["omega"])
    assert emb + 3 * dec == n


def test_architecture_layout():
    net = IAEmuNetwork(NetworkConfig.paper())
    e = net.embedding
    widths = [e.layer1[0], e.layer2[0], e.layer3[0], e.layer4[0], e.bottleneck[0]]
    assert [(l.in_features, l.out_features) for l in widths] == [(7, 128), (128, 128), (128, 256), (256, 256), (256, 128)]
    for block in (e.layer1, e.layer2, e.layer3, e.layer4, e.bottleneck):
        assert [type(m) for m in block] == [nn.Linear, nn.LeakyReLU, nn.BatchNorm1d, nn.Dropout]
    d = net.decoders["xi"]
    assert (d.initial[0].in_features, d.initial[0].out_features) == (128, 700)
    assert [c[0].out_channels for c in d.convs] == [14, 28, 28, 56, 112, 112]
    assert d.out.out_channels == 2
    assert set(net.decoders) == set(STATISTICS)


@pytest.mark.parametrize("cfg", [NetworkConfig.tiny(), NetworkConfig.paper()], ids=["tiny", "paper"])
def test_shapes_and_initial_variance(cfg):
    torch.manual_seed(0)
    net = IAEmuNetwork(cfg).eval()
    out = net(torch.randn(4, 7))
    assert set(out) == set(STATISTICS)
    for mean, var in out.values():
        assert mean.shape == (4, N_BINS) and var.shape == (4, N_BINS)
        assert torch.all(var > 0)
        # variance head starts flat: the same variance (1, standardised) in every bin and for every input
        torch.testing.assert_close(var, torch.ones_like(var))
    only = net(torch.randn(3, 7), statistics=("omega",))
    assert list(only) == ["omega"]


def test_training_mode_batch_and_gradients():
    torch.manual_seed(0)
    net = IAEmuNetwork(NetworkConfig.tiny()).train()
    out = net(torch.randn(8, 7))
    loss = sum(m.square().mean() + v.mean() for m, v in out.values())
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_config_round_trip_and_errors():
    cfg = NetworkConfig.tiny()
    assert NetworkConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown network config field"):
        NetworkConfig.from_dict({**cfg.to_dict(), "width": 3})
    with pytest.raises(ValueError, match="residual"):
        NetworkConfig(conv_channels=(4, 8, 16, 8, 8, 8))
    with pytest.raises(ValueError, match="output bins"):
        NetworkConfig(decoder_length=50)
    with pytest.raises(ValueError, match="unknown network config"):
        NetworkConfig.named("huge")


def test_mc_dropout_mode():
    torch.manual_seed(0)
    net = randomise_batchnorm(IAEmuNetwork(NetworkConfig.tiny())).mc_dropout_mode()
    assert all(not m.training for m in net.modules() if isinstance(m, nn.BatchNorm1d))
    assert all(m.training for m in net.modules() if isinstance(m, nn.Dropout))
    x = torch.randn(1, 7).repeat(2, 1)
    m = net(x)["xi"][0]
    assert not torch.allclose(m[0], m[1])       # different dropout masks per row
    net.eval()
    m = net(x)["xi"][0]
    torch.testing.assert_close(m[0], m[1])


@pytest.mark.parametrize("cfg", [NetworkConfig.tiny(), NetworkConfig.paper()], ids=["tiny", "paper"])
@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_folded_equals_unfolded(cfg, dtype, rtol):
    torch.manual_seed(1)
    net = randomise_batchnorm(IAEmuNetwork(cfg), seed=2).eval()
    in_mean = torch.tensor([0.0, 0.0, 12.5, 0.4, 12.2, 13.5, 1.0], dtype=torch.float64)
    in_std = torch.tensor([0.58, 0.58, 0.58, 0.15, 0.9, 0.4, 0.2], dtype=torch.float64)
    folded = FoldedIAEmu(net.double(), in_mean, in_std).to(dtype)
    ref_net = net.to(dtype)
    x = (torch.randn(16, 7, dtype=torch.float64) * in_std + in_mean).to(dtype)
    with torch.no_grad():
        ref = ref_net((x - in_mean.to(dtype)) / in_std.to(dtype))
        got = folded(x)
        one = folded(x, statistics=("eta",))
    assert list(one) == ["eta"]
    for s in STATISTICS:
        for a, b in zip(got[s], ref[s]):
            scale = b.abs().max()
            assert torch.max(torch.abs(a - b)) <= rtol * 10 * scale, (s, torch.max(torch.abs(a - b)).item())
        torch.testing.assert_close(one["eta"][0], got["eta"][0], rtol=0, atol=0)


def test_folded_gradient_matches_unfolded():
    torch.manual_seed(3)
    net = randomise_batchnorm(IAEmuNetwork(NetworkConfig.tiny()), seed=4).double().eval()
    mean, std = torch.zeros(7, dtype=torch.float64), torch.ones(7, dtype=torch.float64)
    folded = FoldedIAEmu(net, mean, std)
    x = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    g1, = torch.autograd.grad(sum(v.sum() for pair in net(x).values() for v in pair), x)
    g2, = torch.autograd.grad(sum(v.sum() for pair in folded(x).values() for v in pair), x)
    np.testing.assert_allclose(g2.numpy(), g1.numpy(), rtol=1e-10, atol=1e-12)


def alignment_cfg(base=None):
    return NetworkConfig.from_dict({**(base or NetworkConfig.tiny()).to_dict(), "output_form": "alignment"})


def test_alignment_form_builds_in_the_halo_model_structure():
    """output_form 'alignment': xi (mean and variance) independent of the alignment inputs, omega's mean affine
    and eta's mean quadratic in them, at fixed HOD; the embedding sees the five HOD inputs only."""
    torch.manual_seed(4)
    cfg = alignment_cfg()
    net = randomise_batchnorm(IAEmuNetwork(cfg), seed=5).double().eval()
    assert net.embedding.layer1[0].in_features == 5
    assert [net.decoders[s].out.out_channels for s in STATISTICS] == [2, 3 + 6, 6 + 6]
    hod = torch.randn(1, 5, dtype=torch.float64)
    grid = torch.linspace(-1.5, 1.5, 5, dtype=torch.float64)
    cc, ss = torch.meshgrid(grid, grid, indexing="ij")
    x = torch.cat([torch.stack([cc.ravel(), ss.ravel()], 1), hod.expand(25, 5)], dim=1)
    with torch.no_grad():
        out = net(x)
    for part in out["xi"]:
        torch.testing.assert_close(part, part[:1].expand_as(part), rtol=1e-12, atol=1e-12)
    design = {1: [torch.ones(25), cc.ravel(), ss.ravel()]}
    design[2] = design[1] + [cc.ravel() ** 2, (cc * ss).ravel(), ss.ravel() ** 2]
    for stat, degree in (("omega", 1), ("eta", 2)):
        a = torch.stack(design[degree], 1).double()
        mean = out[stat][0]
        fit = a @ torch.linalg.lstsq(a, mean).solution
        torch.testing.assert_close(fit, mean, rtol=1e-9, atol=1e-9)
        if degree == 1:                          # and not a degree lower: the quadratic eta is not affine
            a1 = torch.stack(design[1], 1).double()
            e = out["eta"][0]
            assert torch.max(torch.abs(a1 @ torch.linalg.lstsq(a1, e).solution - e)) > 1e-4
    with pytest.raises(ValueError, match="output_form"):
        NetworkConfig(output_form="linear")


@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_alignment_form_folded_equals_unfolded_with_gradients(dtype, rtol):
    torch.manual_seed(6)
    net = randomise_batchnorm(IAEmuNetwork(alignment_cfg()), seed=7).double().eval()
    in_mean = torch.tensor([0.2, 0.1, 12.5, 0.4, 12.2, 13.5, 1.0], dtype=torch.float64)
    in_std = torch.tensor([0.3, 0.3, 0.58, 0.15, 0.9, 0.4, 0.2], dtype=torch.float64)
    folded = FoldedIAEmu(net, in_mean, in_std).to(dtype)
    x = (torch.randn(9, 7, dtype=torch.float64) * in_std + in_mean)
    with torch.no_grad():
        ref = net((x - in_mean) / in_std)
        got = folded(x.to(dtype))
    for s in STATISTICS:
        for a, b in zip(got[s], ref[s]):
            assert torch.max(torch.abs(a.double() - b)) <= rtol * 10 * b.abs().max()
    folded = FoldedIAEmu(net, in_mean, in_std)
    xg = x.clone().requires_grad_(True)
    g1, = torch.autograd.grad(sum(v.sum() for pair in net((xg - in_mean) / in_std).values() for v in pair), xg)
    g2, = torch.autograd.grad(sum(v.sum() for pair in folded(xg).values() for v in pair), xg)
    np.testing.assert_allclose(g2.numpy(), g1.numpy(), rtol=1e-9, atol=1e-11)
