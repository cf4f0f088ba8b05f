"""SDPoint: points on every backbone, the sampling rules, BN recalibration, costs, the agent."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import dynn
from dynn import sdpoint
from dynn.models import preresnet
from dynn.sdpoint.agent import Evaluation, SearchResult


def _tiny(arch="cifar_resnet", depth=8, **kw):
    torch.manual_seed(0)
    model = sdpoint.create(arch, depth, num_classes=10, **kw)
    # non-trivial BN statistics so that a point that does nothing cannot pass for one that works
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("arch,depth", [("cifar_resnet", 8), ("resnet", 18), ("resnet", 50),
                                        ("preresnet", 18), ("preresnet", 50), ("resnext", 50)])
def test_full_configuration_is_the_backbone(arch, depth):
    model = _tiny(arch, depth)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), model.backbone(x), atol=1e-5)
        model.set_instance("stem", 0.5)
        assert not torch.allclose(model(x), model.backbone(x), atol=1e-3)


def test_block_point_pools_after_the_add_before_the_relu():
    model = _tiny("cifar_resnet", 14)
    net, point, ratio = model.backbone, 2, 0.5
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        h = net.stem(x)
        for block in net.blocks[:point]:
            h = block(h)
        b = net.blocks[point]
        h = F.relu(F.adaptive_avg_pool2d(b.shortcut(h) + b.residual(h), 8))  # 16 * 0.5
        for block in net.blocks[point + 1:]:
            h = block(h)
        expected = net.forward_head(h)
        model.set_instance(point, ratio)
        assert torch.allclose(model(x), expected, atol=1e-5)


@pytest.mark.parametrize("arch,depth,basic", [("resnet", 18, True), ("resnet", 50, False),
                                              ("preresnet", 18, True), ("cifar_resnet", 8, True)])
def test_block_points_work_on_every_block_type_but_legacy_ignores_basicblocks(arch, depth, basic):
    x = torch.randn(2, 3, 32, 32)
    fixed, legacy = _tiny(arch, depth), _tiny(arch, depth, legacy_official=True)
    legacy.load_state_dict(fixed.state_dict())
    with torch.no_grad():
        full = fixed(x)
        fixed.set_instance(1, 0.5)
        legacy.set_instance(1, 0.5)
        assert not torch.allclose(fixed(x), full, atol=1e-4)
        assert torch.allclose(legacy(x), full, atol=1e-5) == basic


def test_sampling_is_uniform_and_legacy_never_trains_block0():
    def draws(model, n=4000):
        torch.manual_seed(0)
        out = []
        for _ in range(n):
            c = model.sample_instance()
            changed = [i for i, r in enumerate(c) if r < 1]
            out.append("none" if not changed else changed[0])
        return out

    model = _tiny("cifar_resnet", 20)  # 9 blocks + stem + none: 11 choices
    n_choices = model.num_blocks + 2
    fixed = draws(model)
    assert abs(fixed.count("none") / len(fixed) - 1 / n_choices) < 0.02
    assert abs(fixed.count(1) / len(fixed) - 1 / n_choices) < 0.02  # block 0 is config index 1
    legacy = draws(_tiny("cifar_resnet", 20, legacy_official=True))
    assert legacy.count(1) == 0
    assert abs(legacy.count("none") / len(legacy) - 2 / n_choices) < 0.02
    assert abs(legacy.count(0) / len(legacy) - 1 / n_choices) < 0.02  # the stem


def test_training_forward_samples_and_is_reproducible():
    model = _tiny().train()
    x = torch.randn(2, 3, 8, 8)
    seen = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        configs = []
        for _ in range(10):
            model(x)
            configs.append(model.config)
        seen.append(configs)
    assert seen[0] == seen[1] != seen[2]
    assert len(set(seen[0])) > 2
    with model.fixed(model.instance_config("stem", 0.75)):
        model(x)
        assert model.config == model.instance_config("stem", 0.75)


def test_multi_point_configurations_and_odd_sizes_run():
    model = _tiny("cifar_resnet", 20, sampling="multi").train()
    torch.manual_seed(0)
    configs = [model.sample_config() for _ in range(400)]
    assert any(sum(r < 1 for r in c) >= 2 for c in configs)
    model.eval()
    config = (0.75,) * model.num_points  # 32 -> 24 -> ... odd maps before the strided blocks
    with torch.no_grad(), model.fixed(config):
        for side in (32, 28):
            assert model(torch.randn(2, 3, side, side)).shape == (2, 10)
    shapes = model.trace_shapes(config, (3, 32, 32))
    assert shapes[0][1][1:] == (24, 24) and min(s[1][1] for s in shapes) >= 1


def test_macs_follow_the_feature_map_sizes():
    model = _tiny("cifar_resnet", 8)
    shape = (3, 32, 32)
    full = model.macs(model.full_config(), shape)
    assert full == dynn.flops.count_macs(model.backbone, torch.zeros(1, *shape))
    stem = dynn.flops.count_macs(model.backbone.stem, torch.zeros(1, *shape))
    fc = model.backbone.fc.in_features * model.backbone.fc.out_features
    # every size divides by 2, so the whole body costs exactly a quarter after stem r=0.5
    assert model.macs(model.instance_config("stem", 0.5), shape) == stem + (full - stem - fc) // 4 + fc
    # pooling right before global average pooling changes nothing (the spec's ResNeXt check)
    assert model.macs(model.instance_config(model.num_blocks - 1, 0.5), shape) == full
    costs = [model.macs(model.instance_config(p, r), shape) for p, r in model.instances()]
    assert len(costs) == 2 * model.num_blocks + 3 and max(costs) == full


def test_bn_recalibration_average_and_official():
    model = _tiny()
    bn = model.backbone.stem[1]
    conv = model.backbone.stem[0]
    batches = [torch.randn(8, 3, 32, 32) + i for i in range(2)]
    with torch.no_grad():
        means = [conv(b).mean((0, 2, 3)) for b in batches]
    old = bn.running_mean.clone()
    sdpoint.recalibrate_bn(model, model.full_config(), batches, mode="average")
    assert torch.allclose(bn.running_mean, (means[0] + means[1]) / 2, atol=1e-5)
    assert bn.momentum == 0.1 and not model.training
    model.backbone.stem[1].running_mean.copy_(old)
    sdpoint.recalibrate_bn(model, model.full_config(), batches[:1], mode="official")
    assert torch.allclose(bn.running_mean, 0.9 * old + 0.1 * means[0], atol=1e-5)


def test_instance_table_restores_the_trained_statistics():
    model = _tiny()
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    before = sdpoint.bn_state(model)
    for mode in sdpoint.BN_MODES:
        rows = sdpoint.evaluate_instances(model, x, y, calibration=[torch.randn(8, 3, 32, 32)], bn_mode=mode)
        assert len(rows) == 2 * model.num_blocks + 3
        assert rows[0]["point"] == "none" and rows[0]["macs_fraction"] == 1.0
        assert all(0 <= r["top1"] <= r["top5"] <= 100 for r in rows)
    after = sdpoint.bn_state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


class _ToyEnv:
    """Reward = number of points where action 1 (ratio 0.5) was chosen at even points and 0 at odd ones."""

    num_points, actions, state_dim = 4, (1.0, 0.5), 5

    def __init__(self):
        self.cache = {}

    def state(self, t, scale):
        return torch.tensor([t / 4, scale, float(t % 2), 1.0, 0.0])

    def evaluate(self, config):
        good = sum((r < 1) == (i % 2 == 0) for i, r in enumerate(config))
        ev = Evaluation(tuple(config), 25.0 * good, 1, 1.0, float(good))
        self.cache[tuple(config)] = ev
        return ev


def test_reinforce_learns_a_per_layer_policy():
    result = sdpoint.search(_ToyEnv(), agent="reinforce", episodes=240, seed=0, progress=False)
    assert isinstance(result, SearchResult)
    assert result.greedy.config == (0.5, 1.0, 0.5, 1.0)
    first = sum(r["reward"] for r in result.history[:40]) / 40
    last = sum(r["reward"] for r in result.history[-40:]) / 40
    assert last > first + 1


def test_agent_environment_on_a_real_network():
    model = _tiny()
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    env = sdpoint.DownsamplingEnv(model, x, y, calibration=[torch.randn(8, 3, 32, 32)], cost_weight=0.5)
    assert env.actions == (1.0, 0.5, 0.75) and env.state(0, 1.0).shape == (env.state_dim,)
    result = sdpoint.search(env, agent="random", episodes=5, seed=0, progress=False)
    best = result.best()
    assert best.reward == pytest.approx(best.accuracy / 100 - 0.5 * best.macs_fraction)
    assert 0 < best.macs_fraction <= 1 and len(env.cache) <= 5


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="depth 19"):
        sdpoint.create("resnet", 19, num_classes=10)
    with pytest.raises(ValueError, match="arch 'vgg'"):
        sdpoint.backbone_name("vgg", 16)
    with pytest.raises(ValueError, match="ratios"):
        sdpoint.create("cifar_resnet", 8, num_classes=10, ratios=[1.5])
    with pytest.raises(TypeError, match="SDPoint supports"):
        sdpoint.SDPointNet(torch.nn.Linear(2, 2))
    model = _tiny()
    with pytest.raises(ValueError, match="block index"):
        model.set_instance(99, 0.5)


def test_registered_backbones():
    names = dynn.models.list_models()
    for depth in preresnet.LAYERS:
        assert f"preresnet{depth}" in names
    assert {"resnext101_32x4d", "resnext152_32x4d"} <= set(names)
    assert sum(preresnet.LAYERS[200][1]) == 66
    assert sdpoint.official_milestones(115) == [40, 75, 105]


def test_large_evaluation_sets_are_read_batch_by_batch():
    model = _tiny()
    data = torch.utils.data.TensorDataset(torch.randn(20, 3, 32, 32), torch.randint(0, 10, (20,)))
    x, y = sdpoint.eval_data(data, 0)
    assert isinstance(x, torch.Tensor) and len(x) == 20
    ds, none = sdpoint.eval_data(data, 12, max_bytes=1000)
    assert none is None and len(ds) == 12 and sdpoint.input_shape_of(ds) == (3, 32, 32)
    assert sdpoint.accuracy(model, ds, batch_size=5) == sdpoint.accuracy(model, x[:12], y[:12])
    assert sdpoint.example_batch(ds, 4).shape == (4, 3, 32, 32)


def test_dqn_learns_the_toy_policy():
    result = sdpoint.search(_ToyEnv(), agent="dqn", episodes=120, seed=0, progress=False)
    assert result.greedy.config == (0.5, 1.0, 0.5, 1.0)
    assert len(result.history) == 120
