"""Slimmable networks: the DynModel interface, real slicing, MACs, sandwich training, search."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import dynn
import dynn.slimmable as slim
from dynn.slimmable import search, training
from dynn.slimmable.ops import SlimConv2d


def _random_wm(net, rng, low=0.3):
    return rng.uniform(low, 1.0, net.search_dim)


# ---------------------------------------------------------------- the seed's interface
@pytest.mark.parametrize("name, dim", [
    ("resnet20", 12), ("resnet56", 30), ("resnet18", 12), ("resnet50", 21), ("mobilenet_v2", 24),
    ("toy", 13), ("mobilenet_v3", 20), ("efficientnet_b0", 23),
])
def test_search_dim_matches_official_counts(name, dim):
    assert slim.create(name, num_classes=10).search_dim == dim


def test_toy_model_reproduces_the_readme_worked_example():
    net = slim.create("toy")
    wm = np.linspace(0.1, 1.0, 13)
    cs = net.channel_space
    assert [len(e) if isinstance(e, list) else 1 for e in cs] == [1, 4, 4, 4]
    ch = net.decode_wm(wm)
    flat_cs = slim.flatten(cs)
    expected = [max(1, int(w * c + 1e-9)) for w, c in zip(wm, flat_cs)]
    # [c1, [c2..c5], [c6..c9], [c10..c13]]
    assert ch == [expected[0], expected[1:5], expected[5:9], expected[9:13]]
    real = net.decode_ch(ch)
    for s, (start) in enumerate((1, 5, 9)):
        c = expected[start:start + 4]
        assert real[s + 1] == [c[1], c[0], c[2], c[0], c[3], c[0]]  # [c3, c2, c4, c2, c5, c2]
    net.set_real_ch(real)
    y = net(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10)


def test_decode_wm_rejects_bad_input():
    net = slim.create("resnet20")
    with pytest.raises(ValueError, match="search_dim"):
        net.decode_wm(np.ones(5))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        net.decode_wm(np.full(net.search_dim, 1.5))


def test_zero_pad_shortcut_keeps_residual_width_non_decreasing():
    net = slim.create("resnet20")
    wm = np.ones(12)
    wm[0], wm[4] = 1.0, 0.1  # stage 1 residual 16, stage 2 residual would be 3
    real = net.real_ch_of(wm)
    assert real[0] == real[1][1] == 16          # stem tied to stage 1's residual
    assert real[2][1] >= real[1][1]             # zero-pad cannot shrink
    net.set_real_ch(real)
    net(torch.randn(1, 3, 32, 32))


def test_cifar_resnet_equals_foundation_resnet_at_full_width():
    static = dynn.models.create("cifar_resnet20", num_classes=10)
    net = slim.create("resnet20", num_classes=10).load_static(static)
    x = torch.randn(4, 3, 32, 32)
    for mode in ("train", "eval"):
        static.train(mode == "train")
        net.train(mode == "train")
        torch.testing.assert_close(net(x), static(x))


@pytest.mark.parametrize("name", ["resnet20", "resnet50", "mobilenet_v3"])
def test_export_static_is_a_real_smaller_network_with_equal_outputs(name):
    net = slim.create(name, num_classes=10).eval()
    rng = np.random.default_rng(0)
    net.set_wm(_random_wm(net, rng))
    x = torch.randn(2, 3, 32, 32)
    static = slim.export_static(net).eval()
    torch.testing.assert_close(static(x), net(x), rtol=1e-4, atol=1e-5)
    n_slim = sum(p.numel() for p in net.parameters())
    n_static = sum(p.numel() for p in static.parameters())
    assert n_static < n_slim
    for m in static.modules():
        if isinstance(m, SlimConv2d):
            assert m.weight.shape[0] == m.active_out_ch and m.weight.is_contiguous()
    full = dynn.flops.count_macs(net, x[:1])
    assert dynn.flops.count_macs(static, x[:1]) == full  # the same work, no hidden full-size compute


# ---------------------------------------------------------------- cost
def test_macs_ratio_is_monotone_in_uniform_width():
    net = slim.create("resnet20")
    ratios = [net.macs_ratio(net.real_ch_of(net.uniform_wm(w)), 32) for w in (0.25, 0.5, 0.75, 1.0)]
    assert ratios == sorted(ratios) and ratios[-1] == 1.0
    assert 0.2 < ratios[1] < 0.3  # half width ≈ a quarter of the MACs (quadratic in width)


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2", "efficientnet_b0"])
def test_fast_cost_model_equals_flop_counter(name):
    net = slim.create(name, num_classes=10)
    cost = search.CostModel(net, 32)
    rng = np.random.default_rng(1)
    for _ in range(2):
        real = net.real_ch_of(_random_wm(net, rng))
        assert cost.fast(real) == pytest.approx(cost.exact(real), rel=1e-9)


# ---------------------------------------------------------------- training pieces
def test_sandwich_gradient_equals_per_width_backward():
    """One backward of the summed loss = the official per-width backward accumulation."""
    torch.manual_seed(0)
    net = slim.create("resnet8", num_classes=10)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    configs = [net.full_real_ch(), net.real_ch_of(net.uniform_wm(0.6)), net.real_ch_of(net.uniform_wm(0.42))]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    out = training.sandwich_loss(training.Sandwich(net)(x, configs), y, label_smoothing=0.1)
    out["loss"].backward()
    ours = [p.grad.clone() for p in net.parameters()]
    net.load_state_dict(state)
    net.zero_grad()
    net.set_real_ch(configs[0])
    teacher = net(x)
    F.cross_entropy(teacher, y, label_smoothing=0.1).backward()
    for real in configs[1:]:
        net.set_real_ch(real)
        training.soft_cross_entropy(net(x), teacher.detach()).backward()
    for a, p in zip(ours, net.parameters()):
        torch.testing.assert_close(a, p.grad)


def test_bn_recalibration_is_a_cumulative_average_over_batches():
    net = slim.create("resnet8", num_classes=10)
    data = TensorDataset(torch.randn(48, 3, 16, 16), torch.zeros(48, dtype=torch.long))
    real = net.real_ch_of(net.uniform_wm(0.5))
    training.recalibrate_bn(net, real, data, num_batches=3, batch_size=16)
    stem = net.layers[0]
    with torch.no_grad():
        feats = stem.conv(torch.stack([data[i][0] for i in range(48)]))
    c = stem.bn.active_ch
    # equal batches: the cumulative average of the batch means is the overall mean
    torch.testing.assert_close(stem.bn.running_mean[:c], feats.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert stem.bn.momentum == 0.1 and not net.training


def test_layerwise_sampler_hits_cost_targets_and_round_trips_state():
    net = slim.create("resnet20")
    sampler = training.make_sampler("layerwise", net, min_width=0.42, num_sampled=2, resolution=32,
                                    tau=1, search_budget=12, prior_points=2)
    rng = np.random.default_rng(0)
    fake_loss = lambda wms: [1.0 - 0.5 * float(np.mean(w)) + 0.01 * i for i, w in enumerate(wms)]  # noqa: E731
    for _ in range(6):
        for wm in sampler.configs(rng, fake_loss):
            assert wm.min() >= 0.42 - 1e-9 and wm.max() <= 1.0
    assert len(sampler.X) == 12
    evolved = range(sampler.prior_points, len(sampler.X))
    measured = {i: sampler.cost.exact(net.real_ch_of(sampler.X[i])) for i in evolved}  # dynn.flops
    misses = [abs(measured[i] - sampler.target[i]) for i in evolved]
    assert np.median(misses) <= 0.03  # landed on the drawn MACs target (±tolerance)
    assert all(sampler.ratio[i] == pytest.approx(measured[i]) for i in evolved)
    clone = training.make_sampler("layerwise", net, min_width=0.42, num_sampled=2, resolution=32, tau=1,
                                  search_budget=12, prior_points=2)
    clone.load_state_dict(sampler.state_dict())
    assert clone.state_dict() == sampler.state_dict()
    with pytest.raises(ValueError, match="sampler"):
        training.make_sampler("random", net, min_width=0.42, num_sampled=2, resolution=32)


def test_pareto_selection_picks_best_within_budget():
    cost = [0.2, 0.3, 0.5, 0.6, 1.0]
    loss = [2.0, 2.5, 1.5, 1.6, 1.0]
    assert list(search.pareto_indices(cost, loss)) == [0, 2, 4]
    assert search.select_on_front(cost, loss, [0.25, 0.55, 1.0]) == [0, 2, 4]


class _Interrupting(torch.utils.data.Dataset):
    """A dataset that fails after ``limit`` item reads: an interrupted run."""

    def __init__(self, data, limit):
        self.data, self.limit, self.reads = data, limit, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        self.reads += 1
        if self.reads > self.limit:
            raise KeyboardInterrupt("simulated interruption")
        return self.data[i]


def test_training_resumes_to_the_same_weights_and_search(tmp_path):
    data = TensorDataset(torch.randn(32, 3, 16, 16), torch.randint(0, 4, (32,)))
    val = TensorDataset(torch.randn(16, 3, 16, 16), torch.randint(0, 4, (16,)))

    def run(run_dir, train_data):
        torch.manual_seed(0)
        net = slim.create("resnet8", num_classes=4)
        sampler = training.make_sampler("layerwise", net, min_width=0.42, num_sampled=1, resolution=16,
                                        tau=1, search_budget=6, prior_points=2)
        training.train_slimmable(net, sampler, train_data, epochs=2, lr=0.05, batch_size=16, run_dir=run_dir,
                                 stage="lw", device="cpu", seed=0, min_width=0.42, refresh_data=val,
                                 refresh_batch_size=8, progress=False)
        return net, sampler

    straight, s1 = run(tmp_path / "a", data)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", _Interrupting(data, limit=40))  # dies in epoch 2
    resumed, s2 = run(tmp_path / "b", data)
    assert s1.X == s2.X and s1.ratio == s2.ratio
    np.testing.assert_equal(s1.loss, s2.loss)  # nan = proposed, not yet refreshed
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
