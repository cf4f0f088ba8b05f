"""SDPoint: points on every backbone, the sampling rules, BN recalibration, costs, the agent,
the training stages (reuse, DDP) and the explorer."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch.utils.data import TensorDataset

import dynn
import dynn.sdpoint as sdp
from dynn.models import cifar_resnet, preresnet
from dynn.sdpoint.agent import ScoredConfig, SearchResult

# The smallest real training stage: CIFAR ResNet-8 at 8 px on 64 embedded digits, 1 epoch.
TINY_STAGE = dict(
    arch="cifar_resnet",
    depth=8,
    base_width=4,
    dataset="digits",
    data_root="",
    resolution=8,
    train_limit=64,
    epochs=1,
    batch_size=16,
    lr=0.05,
    weight_decay=0.0,
    seed=0,
    progress=False,
)


def _tiny(arch="cifar_resnet", depth=8, **kw):
    torch.manual_seed(0)
    model = sdp.model.create(arch, depth, num_classes=10, **kw)
    # non-trivial BN statistics so that a point that does nothing cannot pass for one that works
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _data(n=16, side=32):
    return TensorDataset(torch.randn(n, 3, side, side), torch.randint(0, 10, (n,)))


# ---------------------------------------------------------------- the network
@pytest.mark.parametrize(
    "arch,depth",
    [("cifar_resnet", 8), ("resnet", 18), ("resnet", 50), ("preresnet", 18), ("preresnet", 50), ("resnext", 50)],
)
def test_full_configuration_is_the_backbone(arch, depth):
    model = _tiny(arch, depth)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), model.backbone(x), atol=1e-5)
        with model.fixed(model.instance_config("stem", 0.5)):
            assert not torch.allclose(model(x), model.backbone(x), atol=1e-3)


def test_eval_mode_runs_the_full_network_unless_fixed():
    """Issue 11/14: a plain ``model.eval(); model(x)`` is the full network, whatever instance
    the last training pass sampled; ``fixed(config)`` is the only way to run an instance."""
    model = _tiny("cifar_resnet", 14).train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(3)
    with torch.no_grad():
        for _ in range(50):  # train until the last sampled pass downsampled somewhere
            model(x)
            if model.last_config != model.full_config():
                break
        assert model.last_config != model.full_config()
        model.eval()
        assert torch.allclose(model(x), model.backbone(x), atol=1e-5)
        assert model.last_config == model.full_config()
        stem = model.instance_config("stem", 0.5)
        with model.fixed(stem):
            assert not torch.allclose(model(x), model.backbone(x), atol=1e-3)
            assert model.last_config == stem
        assert torch.allclose(model(x), model.backbone(x), atol=1e-5)  # fixed() ends with its block


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
        for block in net.blocks[point + 1 :]:
            h = block(h)
        expected = net.forward_head(h)
        with model.fixed(model.instance_config(point, ratio)):
            assert torch.allclose(model(x), expected, atol=1e-5)
        assert torch.allclose(model.run(x, model.instance_config(point, ratio)), expected, atol=1e-5)


@pytest.mark.parametrize(
    "arch,depth,basic",
    [("resnet", 18, True), ("resnet", 50, False), ("preresnet", 18, True), ("cifar_resnet", 8, True)],
)
def test_block_points_work_on_every_block_type_but_legacy_ignores_basicblocks(arch, depth, basic):
    x = torch.randn(2, 3, 32, 32)
    fixed, legacy = _tiny(arch, depth), _tiny(arch, depth, legacy_official=True)
    legacy.load_state_dict(fixed.state_dict())
    config = fixed.instance_config(1, 0.5)
    with torch.no_grad():
        full = fixed(x)
        with fixed.fixed(config), legacy.fixed(config):
            assert not torch.allclose(fixed(x), full, atol=1e-4)
            assert torch.allclose(legacy(x), full, atol=1e-5) == basic


# ---------------------------------------------------------------- sampling
def _first_point(config):
    changed = [i for i, r in enumerate(config) if r < 1]
    return "none" if not changed else changed[0]


def test_sampling_is_uniform_and_legacy_never_trains_block0():
    def draws(model, n=4000):
        torch.manual_seed(0)
        return [_first_point(model.sample_instance()) for _ in range(n)]

    model = _tiny("cifar_resnet", 20)  # 9 blocks + stem + none: 11 choices
    n_choices = model.num_blocks + 2
    fixed = draws(model)
    assert abs(fixed.count("none") / len(fixed) - 1 / n_choices) < 0.02
    assert abs(fixed.count(1) / len(fixed) - 1 / n_choices) < 0.02  # block 0 is config index 1
    legacy = draws(_tiny("cifar_resnet", 20, legacy_official=True))
    assert legacy.count(1) == 0
    assert abs(legacy.count("none") / len(legacy) - 2 / n_choices) < 0.02
    assert abs(legacy.count(0) / len(legacy) - 1 / n_choices) < 0.02  # the stem


def _instance_counts(model, n=6000) -> dict:
    """How often each instance (point, ratio), and "none", is drawn in ``n`` training passes."""
    torch.manual_seed(0)
    counts = {}
    for _ in range(n):
        config = model.sample_instance()
        point = _first_point(config)
        key = "none" if point == "none" else (point, config[point])
        counts[key] = counts.get(key, 0) + 1
    return counts


def _uniformity_p_value(model, counts: dict) -> float:
    """Chi-square test against the paper's rule: 1/(N+2) for no downsampling, then every
    point's share split evenly over the ratios."""
    n, share = sum(counts.values()), 1 / (model.num_blocks + 2)
    keys = ["none"] + [(p, r) for p in range(model.num_points) for r in model.ratios]
    observed = [counts.get(k, 0) for k in keys]
    expected = [n * share] + [n * share / len(model.ratios)] * (len(keys) - 1)
    return stats.chisquare(observed, expected).pvalue


def test_ratio_sampling_is_uniform_over_the_ratios():
    """Issue 14: every (point, ratio) instance is drawn as often as the rule says, the ratios
    of a point equally often; a sampler that always picks one ratio fails the same test."""
    model = _tiny("cifar_resnet", 14, ratios=(0.5, 0.75, 0.6))
    counts = _instance_counts(model)
    assert _uniformity_p_value(model, counts) > 1e-3
    per_ratio = [sum(c for k, c in counts.items() if k != "none" and k[1] == r) for r in model.ratios]
    assert stats.chisquare(per_ratio).pvalue > 1e-3

    class OneRatio(type(model)):
        def _random_ratio(self):
            return self.ratios[0]

    broken = _tiny("cifar_resnet", 14, ratios=(0.5, 0.75, 0.6))
    broken.__class__ = OneRatio
    assert _uniformity_p_value(broken, _instance_counts(broken)) < 1e-6


def test_training_forward_samples_and_is_reproducible():
    model = _tiny().train()
    x = torch.randn(2, 3, 8, 8)
    seen = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        configs = []
        for _ in range(10):
            model(x)
            configs.append(model.last_config)
        seen.append(configs)
    assert seen[0] == seen[1] != seen[2]
    assert len(set(seen[0])) > 2
    with model.fixed(model.instance_config("stem", 0.75)):
        model(x)
        assert model.last_config == model.instance_config("stem", 0.75)
    plain = _tiny(sampling="none").train()
    for _ in range(10):
        plain(x)
        assert plain.last_config == plain.full_config()


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


# ---------------------------------------------------------------- cost
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


def test_latency_table_records_the_batch_that_ran():
    model = _tiny()
    configs = sdp.evaluate.instance_configs(model)
    assert list(configs)[:3] == ["full network", "stem r=0.5", "stem r=0.75"]
    table = sdp.evaluate.latency_table(
        model,
        {k: configs[k] for k in ("full network", "stem r=0.5")},
        torch.randn(5, 3, 32, 32),
        batch=64,
        seconds=0.02,
        rounds=2,
    )
    assert list(table["name"]) == ["full network", "stem r=0.5"]
    assert (table["latency_batch"] == 5).all()  # only 5 images exist: batch 5 ran, not 64
    assert (table["latency_ms"] > 0).all() and (table["latency_batched_ms"] > 0).all()


# ---------------------------------------------------------------- BN recalibration and the table
def test_bn_recalibration_average_and_official():
    model = _tiny()
    bn = model.backbone.stem[1]
    conv = model.backbone.stem[0]
    batches = [torch.randn(8, 3, 32, 32) + i for i in range(2)]
    with torch.no_grad():
        means = [conv(b).mean((0, 2, 3)) for b in batches]
    old = bn.running_mean.clone()
    sdp.evaluate.recalibrate(model, model.full_config(), batches, mode="average")
    assert torch.allclose(bn.running_mean, (means[0] + means[1]) / 2, atol=1e-5)
    assert bn.momentum == 0.1 and not model.training
    model.backbone.stem[1].running_mean.copy_(old)
    sdp.evaluate.recalibrate(model, model.full_config(), batches[:1], mode="official")
    assert torch.allclose(bn.running_mean, 0.9 * old + 0.1 * means[0], atol=1e-5)
    assert bn.momentum == 0.1 and not model.training
    with pytest.raises(ValueError, match="BN recalibration mode"):
        sdp.evaluate.recalibrate(model, model.full_config(), batches, mode="ema")


def test_recalibration_uses_the_instance_it_is_given():
    """The statistics after recalibrating an instance are that instance's, not the full network's."""
    model = _tiny()
    batches = [torch.randn(8, 3, 32, 32)]
    last_bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]
    sdp.evaluate.recalibrate(model, model.full_config(), batches)
    full = last_bn.running_var.clone()
    sdp.evaluate.recalibrate(model, model.instance_config("stem", 0.5), batches)
    assert not torch.allclose(last_bn.running_var, full, atol=1e-4)


def test_instance_table_restores_the_trained_statistics():
    model = _tiny()
    splits = {"val": _data(12), "test": _data(16)}
    before = sdp.evaluate.bn_state(model)
    for mode in sdp.parameters.BN_MODES:
        rows = sdp.evaluate.evaluate_instances(model, splits, calibration=[torch.randn(8, 3, 32, 32)], bn_mode=mode)
        assert len(rows) == 2 * model.num_blocks + 3
        assert rows[0]["point"] == "none" and rows[0]["macs_fraction"] == 1.0 and rows[0]["label"] == "full network"
        assert all(0 <= r[f"{s}_top1"] <= r[f"{s}_top5"] <= 100 for r in rows for s in splits)
    after = sdp.evaluate.bn_state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_evaluation_of_a_split_and_of_its_in_memory_copy_agree():
    model = _tiny()
    data = _data(20)
    assert sdp.evaluate.in_memory(data) is data
    limited = torch.utils.data.Subset(data, range(12))
    stacked = sdp.evaluate.in_memory(limited)
    assert isinstance(stacked, TensorDataset) and len(stacked) == 12
    assert sdp.evaluate.in_memory(limited, max_bytes=1000) is limited  # too large: read batch by batch
    config = model.instance_config("stem", 0.5)
    a = sdp.evaluate.configuration_accuracy(model, config, {"x": limited})["x"]
    b = sdp.evaluate.configuration_accuracy(model, config, {"x": stacked})["x"]
    assert (a["correct"] == b["correct"]).all() and a["top1"] == b["top1"]
    assert sdp.evaluate.example_batch(limited, 4).shape == (4, 3, 32, 32)
    assert sdp.evaluate.input_shape_of(limited) == (3, 32, 32)


def _instances_frame(model):
    rows = []
    for name in ("SDPoint", "baseline"):
        for recal in (False, True):
            for r in sdp.evaluate.evaluate_instances(
                model, {"val": _data(12), "test": _data(16)}, calibration=[torch.randn(8, 3, 32, 32)] if recal else None
            ):
                rows.append(
                    dict(r, model=name, recalibrated=recal, latency_ms=1.0, latency_batched_ms=4.0, latency_batch=8)
                )
    return pd.DataFrame(rows)


def test_result_points_carry_role_series_and_selection():
    model = _tiny()
    instances = _instances_frame(model)
    points = sdp.evaluate.result_points(instances, pd.DataFrame(), agent="none")
    dynn.runs.check_points(points, "classification")  # every field the report reads
    roles = {(p["role"], p["series"], p["selection"]) for p in points}
    assert ("method", "SDPoint", "sweep") in roles and ("reference", "SDPoint full network", "fixed") in roles
    assert ("baseline", "baseline", "fixed") in roles  # the normally trained network, as trained
    assert ("baseline", "baseline at the SDPoint instances (BN recalibrated)", "sweep") in roles
    assert sum(p["role"] == "baseline" and p["selection"] == "fixed" for p in points) == 1
    assert ("ablation", "SDPoint (no recalibration)", "sweep") in roles
    n = 2 * model.num_blocks + 3
    assert sum(p["series"] == "SDPoint" for p in points) == n - 1
    chosen = [p for p in points if p["selection"] == "validation"]
    sweep = {p["label"]: p for p in points if p["series"] == "SDPoint" or p["role"] == "reference"}
    # chosen on validation: no swept instance is both cheaper and better on validation
    for p in chosen:
        assert not any(q["macs"] < p["macs"] and q["val_accuracy"] > p["val_accuracy"] for q in sweep.values())
    assert all(p["latency_batch"] == 1 and p["latency_batched_batch"] == 8 for p in points)
    table = sdp.evaluate.summary_table(instances)
    metrics = sdp.evaluate.summary_metrics(table)
    assert metrics["full_macs"] == model.macs(model.full_config(), (3, 32, 32)) and metrics["latency_batch"] == 8


# ---------------------------------------------------------------- the agent
class _ToyEnv:
    """Reward = number of points where action 1 (ratio 0.5) was chosen at even points and 0 at odd ones."""

    num_points, actions, state_dim = 4, (1.0, 0.5), 5

    def __init__(self):
        self.cache = {}

    def state(self, t, scale):
        return torch.tensor([t / 4, scale, float(t % 2), 1.0, 0.0])

    def evaluate(self, config):
        good = sum((r < 1) == (i % 2 == 0) for i, r in enumerate(config))
        ev = ScoredConfig(tuple(config), 25.0 * good, 1, 1.0, float(good))
        self.cache[tuple(config)] = ev
        return ev


def test_reinforce_learns_a_per_layer_policy():
    result = sdp.agent.search(_ToyEnv(), agent="reinforce", episodes=240, seed=0, progress=False)
    assert isinstance(result, SearchResult)
    assert result.greedy.config == (0.5, 1.0, 0.5, 1.0)
    first = sum(r["reward"] for r in result.history[:40]) / 40
    last = sum(r["reward"] for r in result.history[-40:]) / 40
    assert last > first + 1
    again = SearchResult.from_state_dict(result.state_dict())
    assert again.best() == result.best() and again.greedy == result.greedy and again.history == result.history


def test_agent_environment_on_a_real_network():
    model = _tiny()
    env = sdp.agent.DownsamplingEnv(model, _data(16), calibration=[torch.randn(8, 3, 32, 32)], cost_weight=0.5)
    assert env.actions == (1.0, 0.5, 0.75) and env.state(0, 1.0).shape == (env.state_dim,)
    result = sdp.agent.search(env, agent="random", episodes=5, seed=0, progress=False)
    best = result.best()
    assert best.reward == pytest.approx(best.accuracy / 100 - 0.5 * best.macs_fraction)
    assert 0 < best.macs_fraction <= 1 and len(env.cache) <= 5
    assert {e.config for e in result.explored} == set(env.cache)


def test_dqn_learns_the_toy_policy():
    result = sdp.agent.search(_ToyEnv(), agent="dqn", episodes=120, seed=0, progress=False)
    assert result.greedy.config == (0.5, 1.0, 0.5, 1.0)
    assert len(result.history) == 120


# ---------------------------------------------------------------- parameters and names
def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="depth 19"):
        sdp.model.create("resnet", 19, num_classes=10)
    with pytest.raises(ValueError, match="arch 'vgg'"):
        sdp.parameters.backbone_name("vgg", 16)
    with pytest.raises(ValueError, match="ratios"):
        sdp.model.create("cifar_resnet", 8, num_classes=10, ratios=[1.5])
    with pytest.raises(TypeError, match="residual view needs"):
        sdp.model.SDPointNet(torch.nn.Linear(2, 2))
    model = _tiny()
    with pytest.raises(ValueError, match="block index"):
        model.instance_config(99, 0.5)
    with pytest.raises(dynn.params.ParameterError, match="parameter 'depth' = 50: allowed for arch 'cifar_resnet'"):
        sdp.parameters.check_depth({"arch": "cifar_resnet", "depth": 50})


def test_parameters_agree_with_the_models_and_import_no_torch():
    assert sdp.parameters.ARCH_DEPTHS["cifar_resnet"] == cifar_resnet.DEPTHS
    assert sdp.parameters.ARCH_DEPTHS["preresnet"] == tuple(preresnet.LAYERS)
    names = dynn.models.list_models()
    for arch, depths in sdp.parameters.ARCH_DEPTHS.items():
        for depth in depths:
            assert sdp.parameters.backbone_name(arch, depth) in names
    assert sum(preresnet.LAYERS[200][1]) == 66
    assert sdp.parameters.official_milestones(115) == [40, 75, 105]
    code = "import sys, dynn.sdpoint, dynn.sdpoint.parameters; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- training stages
def test_finished_stage_is_reused_not_retrained(tmp_path, monkeypatch):
    run = dynn.runs.start("sdpoint", {"run_dir": str(tmp_path / "run"), "device": "cpu", "seed": 0})
    kwargs = dict(TINY_STAGE, ratios=[0.5, 0.75], legacy_official=False, multi_point=False)
    model = run.stage(sdp.train.train, **kwargs)
    assert not model.training and model.sampling == "single"
    checkpoint = run.checkpoint("train")
    saved = dynn.train.read_checkpoint(checkpoint)
    assert saved["epoch"] == 1 and saved["params"]["num_classes"] == 10

    def never(model, batch):
        raise AssertionError("a finished stage must not train again")

    monkeypatch.setattr(sdp.train, "sdpoint_step", never)
    again = run.stage(sdp.train.train, **kwargs)
    assert dynn.train.weights_digest(again) == dynn.train.weights_digest(model)
    assert run.checkpoint("train") == checkpoint
    loaded = sdp.train.load_model(checkpoint)
    assert dynn.train.weights_digest(loaded) == dynn.train.weights_digest(model)
    # another argument is another stage directory, never the finished one
    assert run.stage_dir(sdp.train.train, **dict(kwargs, lr=0.1)) != run.stage_dir(sdp.train.train, **kwargs)


def test_agent_and_instance_table_stages_are_saved_and_reused(tmp_path, monkeypatch):
    pre = tmp_path / "train"
    sdp.train.train(
        run_dir=str(pre), device="cpu", **TINY_STAGE, ratios=[0.5, 0.75], legacy_official=False, multi_point=True
    )
    data = dict(dataset="digits", data_root="", resolution=8, train_limit=64, val_limit=32, seed=0)
    agent = dict(agent="random", episodes=3, reward="linear", cost_weight=0.5, bn_batches=1, bn_batch_size=16)
    kwargs = dict(sdpoint_checkpoint=str(pre / "train.ckpt"), **data, **agent, progress=False)
    first = sdp.train.train_agent(run_dir=str(tmp_path / "agent"), device="cpu", **kwargs)
    assert len(first.history) == 3 and first.explored
    table_kwargs = dict(
        checkpoint=str(pre / "train.ckpt"),
        ratios=[0.5, 0.75],
        legacy_official=False,
        **data,
        test_limit=32,
        bn_batches=1,
        bn_batch_size=16,
    )
    table = sdp.evaluate.instance_table(run_dir=str(tmp_path / "table"), device="cpu", **table_kwargs)
    assert len(table) == 2 * (2 * 3 + 3) and set(table["recalibrated"]) == {False, True}

    monkeypatch.setattr(sdp.train, "search", lambda *a, **k: pytest.fail("a finished search must not rerun"))
    monkeypatch.setattr(sdp.evaluate, "evaluate_instances", lambda *a, **k: pytest.fail("a finished table"))
    again = sdp.train.train_agent(run_dir=str(tmp_path / "agent"), device="cpu", **kwargs)
    assert again.history == first.history and again.best() == first.best()
    pd.testing.assert_frame_equal(
        sdp.evaluate.instance_table(run_dir=str(tmp_path / "table"), device="cpu", **table_kwargs), table
    )
    with pytest.raises(dynn.train.CheckpointError, match="episodes"):
        sdp.train.train_agent(run_dir=str(tmp_path / "agent"), device="cpu", **dict(kwargs, episodes=4))
    # a network retrained in place (same path, other weights) never gets the old table
    saved = dynn.train.read_checkpoint(pre / "train.ckpt")
    saved["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in saved["model"].items()}
    torch.save(saved, pre / "train.ckpt")
    with pytest.raises(dynn.train.CheckpointError, match="weights_digest"):
        sdp.evaluate.instance_table(run_dir=str(tmp_path / "table"), device="cpu", **table_kwargs)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_gives_the_same_weights_on_every_rank(tmp_path):
    """The main training stage (SDPoint training) under DistributedDataParallel: 2 gloo ranks."""
    kwargs = dict(TINY_STAGE, ratios=[0.5, 0.75], legacy_official=False, multi_point=False)
    digests = dynn.train.run_elastic(dynn.runs.stage_entry, 2, sdp.train.train, str(tmp_path), "cpu", kwargs)
    assert sorted(digests) == [0, 1]
    assert digests[0] == pytest.approx(digests[1], rel=1e-6)
    model = sdp.train.train(run_dir=str(tmp_path), device="cpu", **kwargs)  # reuses what rank 0 wrote
    assert dynn.train.weights_digest(model) == pytest.approx(digests[0], rel=1e-6)
    assert dynn.train.read_checkpoint(tmp_path / "train.ckpt")["epoch"] == 1
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 1  # rank 0 only: one row per epoch


def test_torchrun_entry_runs_a_stage(tmp_path):
    import yaml

    kwargs = dict(TINY_STAGE, ratios=[0.5, 0.75], legacy_official=False, multi_point=False)
    (tmp_path / "stage.yaml").write_text(yaml.safe_dump({"stage": "dynn.sdpoint.train.train", "arguments": kwargs}))
    sdp.train.main(
        ["--stage", "train", "--config", str(tmp_path / "stage.yaml"), "--run-dir", str(tmp_path), "--device", "cpu"]
    )
    saved = dynn.train.read_checkpoint(tmp_path / "train.ckpt")
    assert saved["epoch"] == 1 and saved["params"]["sampling"] == "single"


# ---------------------------------------------------------------- explorer
def test_explorer_builds_its_widgets_and_redraws():
    model = _tiny()
    instances = _instances_frame(model)
    table = instances[(instances.model == "SDPoint") & instances.recalibrated]
    test, calibration = _data(6), [torch.randn(8, 3, 32, 32)]
    box = sdp.plots.explorer(model, table, test, calibration=calibration, samples=4)
    point, ratio = box.children[0].children
    assert box.last["config"] == model.instance_config("stem", 0.5) and len(box.last["predictions"]) == 4
    point.value = "1"
    ratio.value = 0.75
    assert box.last["config"] == model.instance_config(1, 0.75)
    expected = sdp.plots.instance_predictions(
        model, model.instance_config(1, 0.75), torch.stack([test[i][0] for i in range(4)]), calibration=calibration
    )
    assert box.last["predictions"] == expected.tolist()
    title = box.last["figure"].axes[0].get_title()
    row = table[table.label == "block 1 r=0.75"].iloc[0]
    assert f"{row['test_top1']:.1f}% top-1" in title and f"{row['macs_fraction']:.0%} MACs" in title
    point.value = "none"
    assert box.last["config"] == model.full_config() and ratio.disabled
