"""Slimmable networks: the DynModel interface, real slicing, MACs, sandwich training, search, stages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import dynn
import dynn.evaluate
import dynn.train
from dynn.slimmable import evaluate as slim_eval
from dynn.slimmable import model as slim_model
from dynn.slimmable import parameters, plots, search
from dynn.slimmable import train as slim_train
from dynn.slimmable.model import create, flatten
from dynn.slimmable.ops import SlimBN, SlimConv2d, SlimLinear, export_static


def _random_wm(net, rng, low=0.3):
    return rng.uniform(low, 1.0, net.search_dim)


# ---------------------------------------------------------------- one registry, light parameters
def test_architectures_register_in_the_one_model_registry_under_their_prefix():
    registered = dynn.models.list_models(prefix="slimmable")
    assert registered == sorted(f"slimmable.{n}" for n in parameters.MODELS)  # the notebook's choices exist
    net = dynn.models.create("slimmable.cifar_resnet20", num_classes=10)
    assert isinstance(net, slim_model.SlimCifarResNet)
    assert not isinstance(dynn.models.create("cifar_resnet20", num_classes=10), slim_model.DynModel)
    with pytest.raises(ValueError, match="registered twice"):
        dynn.models.register_model(slim_model.toy, prefix="slimmable")


def test_package_and_parameters_import_without_torch():
    import subprocess
    import sys

    code = "import sys, dynn.slimmable, dynn.slimmable.parameters; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------- the seed's interface
@pytest.mark.parametrize(
    "name, dim",
    [
        ("cifar_resnet20", 12),
        ("cifar_resnet56", 30),
        ("resnet18", 12),
        ("resnet50", 21),
        ("mobilenet_v2", 24),
        ("toy", 13),
        ("mobilenet_v3_large", 20),
        ("efficientnet_b0", 23),
    ],
)
def test_search_dim_matches_official_counts(name, dim):
    assert create(name, num_classes=10).search_dim == dim


def test_toy_model_reproduces_the_readme_worked_example():
    net = create("toy")
    wm = np.linspace(0.1, 1.0, 13)
    cs = net.channel_space
    assert [len(e) if isinstance(e, list) else 1 for e in cs] == [1, 4, 4, 4]
    ch = net.decode_wm(wm)
    flat_cs = flatten(cs)
    expected = [max(1, int(w * c + 1e-9)) for w, c in zip(wm, flat_cs)]
    # [c1, [c2..c5], [c6..c9], [c10..c13]]
    assert ch == [expected[0], expected[1:5], expected[5:9], expected[9:13]]
    real = net.decode_ch(ch)
    for s, (start) in enumerate((1, 5, 9)):
        c = expected[start : start + 4]
        assert real[s + 1] == [c[1], c[0], c[2], c[0], c[3], c[0]]  # [c3, c2, c4, c2, c5, c2]
    net.set_real_ch(real)
    y = net(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10)


def test_decode_wm_rejects_bad_input():
    net = create("cifar_resnet20")
    with pytest.raises(ValueError, match="search_dim"):
        net.decode_wm(np.ones(5))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        net.decode_wm(np.full(net.search_dim, 1.5))


def test_zero_pad_shortcut_keeps_residual_width_non_decreasing():
    net = create("cifar_resnet20")
    wm = np.ones(12)
    wm[0], wm[4] = 1.0, 0.1  # stage 1 residual 16, stage 2 residual would be 3
    real = net.real_ch_of(wm)
    assert real[0] == real[1][1] == 16  # stem tied to stage 1's residual
    assert real[2][1] >= real[1][1]  # zero-pad cannot shrink
    net.set_real_ch(real)
    net(torch.randn(1, 3, 32, 32))


def test_cifar_resnet_equals_foundation_resnet_at_full_width():
    static = dynn.models.create("cifar_resnet20", num_classes=10)
    net = create("cifar_resnet20", num_classes=10).load_static(static)
    x = torch.randn(4, 3, 32, 32)
    for mode in ("train", "eval"):
        static.train(mode == "train")
        net.train(mode == "train")
        torch.testing.assert_close(net(x), static(x))


@pytest.mark.parametrize("name", ["cifar_resnet20", "resnet50", "mobilenet_v3_large"])
def test_export_static_is_a_real_smaller_network_with_equal_outputs(name):
    net = create(name, num_classes=10).eval()
    rng = np.random.default_rng(0)
    net.set_wm(_random_wm(net, rng))
    x = torch.randn(2, 3, 32, 32)
    static = export_static(net).eval()
    torch.testing.assert_close(static(x), net(x), rtol=1e-4, atol=1e-5)
    n_slim = sum(p.numel() for p in net.parameters())
    n_static = sum(p.numel() for p in static.parameters())
    assert n_static < n_slim
    # plain torch layers only: nothing slices or checks widths on the deployed inference path
    assert not any(isinstance(m, (SlimConv2d, SlimBN, SlimLinear)) for m in static.modules())
    assert any(type(m) is torch.nn.Conv2d for m in static.modules())
    assert any(type(m) is torch.nn.BatchNorm2d for m in static.modules())
    for m in static.modules():
        if type(m) is torch.nn.Conv2d:
            assert m.weight.shape[0] == m.out_channels and m.weight.is_contiguous()
    full = dynn.flops.count_macs(net, x[:1])
    assert dynn.flops.count_macs(static, x[:1]) == full  # the same work, no hidden full-size compute


def test_forward_at_runs_the_given_widths_whatever_was_set_before():
    net = create("cifar_resnet8", num_classes=10).eval()
    x = torch.randn(2, 3, 16, 16)
    small = net.real_ch_of(net.uniform_wm(0.5))
    net.set_real_ch(small)
    expected = net(x)
    forward = net.forward_at(small)
    net.set_real_ch(net.full_real_ch())
    torch.testing.assert_close(forward(x), expected)


# ---------------------------------------------------------------- cost
def test_macs_ratio_is_monotone_in_uniform_width():
    net = create("cifar_resnet20")
    ratios = [net.macs_ratio(net.real_ch_of(net.uniform_wm(w)), 32) for w in (0.25, 0.5, 0.75, 1.0)]
    assert ratios == sorted(ratios) and ratios[-1] == 1.0
    assert 0.2 < ratios[1] < 0.3  # half width ≈ a quarter of the MACs (quadratic in width)


@pytest.mark.parametrize("name", ["cifar_resnet20", "mobilenet_v2", "efficientnet_b0"])
def test_fast_cost_model_equals_flop_counter(name):
    net = create(name, num_classes=10)
    cost = search.CostModel(net, 32)
    rng = np.random.default_rng(1)
    for _ in range(2):
        real = net.real_ch_of(_random_wm(net, rng))
        assert cost.fast(real) == pytest.approx(cost.exact(real), rel=1e-9)


# ---------------------------------------------------------------- training pieces
def test_sandwich_gradient_equals_per_width_backward():
    """One backward of the summed loss = the official per-width backward accumulation."""
    torch.manual_seed(0)
    net = create("cifar_resnet8", num_classes=10)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    configs = [net.full_real_ch(), net.real_ch_of(net.uniform_wm(0.6)), net.real_ch_of(net.uniform_wm(0.42))]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    out = slim_train.sandwich_loss(slim_train.Sandwich(net)(x, configs), y, label_smoothing=0.1)
    out["loss"].backward()
    ours = [p.grad.clone() for p in net.parameters()]
    net.load_state_dict(state)
    net.zero_grad()
    net.set_real_ch(configs[0])
    teacher = net(x)
    F.cross_entropy(teacher, y, label_smoothing=0.1).backward()
    for real in configs[1:]:
        net.set_real_ch(real)
        slim_train.soft_cross_entropy(net(x), teacher.detach()).backward()
    for a, p in zip(ours, net.parameters()):
        torch.testing.assert_close(a, p.grad)


class _Recording(torch.nn.Module):
    """Stands in for the Sandwich: records the widths it is asked to run, returns fixed logits."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, configs):
        self.seen.append(configs)
        return [torch.zeros(len(x), 10, requires_grad=True) + i for i in range(len(configs))]


def test_sandwich_trains_largest_then_sampled_then_smallest():
    net = create("cifar_resnet20", num_classes=10)
    sampler = slim_train.make_sampler(
        "layerwise", net, min_width=0.42, num_sampled=2, resolution=32, tau=1, search_budget=8, prior_points=2
    )
    step = slim_train.SandwichStep(net, sampler, min_width=0.42)
    model = _Recording()
    np.random.seed(0)
    for _ in range(3):
        step(model, (torch.zeros(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)))
    for i, configs in enumerate(model.seen):
        assert len(configs) == 4  # n = 4: full, two sampled, smallest
        assert configs[0] == net.full_real_ch()
        assert configs[-1] == net.real_ch_of(net.uniform_wm(0.42))
        assert configs[1:-1] == [net.real_ch_of(w) for w in sampler.X[2 * i : 2 * i + 2]]  # this step's proposals
        macs = [net.macs_of(c, 32) for c in configs]
        assert macs[0] == max(macs) and macs[-1] == min(macs)


def test_full_width_learns_from_labels_and_the_rest_from_it():
    full = torch.tensor([[4.0, 0.0], [0.0, 4.0]], requires_grad=True)
    narrow = torch.tensor([[0.0, 1.0], [1.0, 0.0]], requires_grad=True)
    labels = torch.tensor([1, 0])  # the full width is wrong, the narrow one right
    out = slim_train.sandwich_loss([full, narrow], labels)
    assert out["loss_full"] == pytest.approx(float(F.cross_entropy(full.detach(), labels)))
    assert out["loss_smallest"] == pytest.approx(float(slim_train.soft_cross_entropy(narrow.detach(), full.detach())))
    out["loss"].backward()
    assert narrow.grad[0, 0] < 0  # pulled towards the teacher's (full width's) answer, not the label


def test_bn_recalibration_is_a_cumulative_average_over_batches():
    net = create("cifar_resnet8", num_classes=10)
    data = TensorDataset(torch.randn(48, 3, 16, 16), torch.zeros(48, dtype=torch.long))
    real = net.real_ch_of(net.uniform_wm(0.5))
    batches = dynn.evaluate.calibration_batches(data, batches=3, batch_size=16, seed=0)
    dynn.evaluate.recalibrate_bn(net, batches, forward=net.forward_at(real))
    stem = net.layers[0]
    with torch.no_grad():
        feats = stem.conv(torch.stack([data[i][0] for i in range(48)]))
    c = stem.bn.active_ch
    assert c == real[0] < stem.bn.num_features
    # equal batches: the cumulative average of the batch means is the overall mean
    torch.testing.assert_close(stem.bn.running_mean[:c], feats.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert stem.bn.momentum == 0.1 and not net.training


def test_recalibrated_and_trained_statistics_evaluations_are_what_their_rows_say():
    torch.manual_seed(0)
    net = create("cifar_resnet8", num_classes=4).eval()
    data = TensorDataset(torch.randn(32, 3, 16, 16), torch.randint(0, 4, (32,)))
    with torch.no_grad():  # statistics that fit no width: what shared training leaves behind
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(0.5)
                m.running_var.fill_(3.0)
    trained = slim_eval.bn_statistics(net)
    calibration = dynn.evaluate.calibration_batches(data, batches=2, batch_size=16, seed=0)
    wm = net.uniform_wm(0.5)
    configs = [{"label": "uniform 0.50", "series": slim_eval.SERIES["uniform"], "selection": "sweep", "wm": wm}]
    rows = slim_eval.evaluate_configs(net, configs, data, calibration=calibration, device="cpu", resolution=16)
    stale, recal = rows
    assert (stale["bn_recal"], recal["bn_recal"]) == (False, True)
    assert stale["series"].endswith(slim_eval.NO_RECAL) and stale["role"] == "ablation"
    assert recal["role"] == "baseline"
    real = net.real_ch_of(wm)
    # references computed independently: trained statistics as they are, and a fresh recalibration
    reference_stale = dynn.evaluate.evaluate_classifier(net, data, forward=net.forward_at(real))
    for k, v in slim_eval.bn_statistics(net).items():
        torch.testing.assert_close(v, trained[k])  # evaluate_configs restored what training left
    dynn.evaluate.recalibrate_bn(net, calibration, forward=net.forward_at(real))
    reference_recal = dynn.evaluate.evaluate_classifier(net, data, forward=net.forward_at(real))
    assert abs(reference_recal["loss"] - reference_stale["loss"]) > 1e-3  # the two really differ here
    assert stale["loss"] == pytest.approx(reference_stale["loss"], rel=1e-6)
    assert recal["loss"] == pytest.approx(reference_recal["loss"], rel=1e-6)


# ---------------------------------------------------------------- the search
def test_layerwise_sampler_hits_cost_targets_and_round_trips_state():
    net = create("cifar_resnet20")
    sampler = slim_train.make_sampler(
        "layerwise", net, min_width=0.42, num_sampled=2, resolution=32, tau=1, search_budget=12, prior_points=2
    )
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
    clone = slim_train.make_sampler(
        "layerwise", net, min_width=0.42, num_sampled=2, resolution=32, tau=1, search_budget=12, prior_points=2
    )
    clone.load_state_dict(sampler.state_dict())
    assert clone.state_dict() == sampler.state_dict()
    with pytest.raises(ValueError, match="sampler"):
        slim_train.make_sampler("random", net, min_width=0.42, num_sampled=2, resolution=32)


def test_gaussian_process_ranking_keeps_the_offspring_with_the_lowest_predicted_loss():
    net = create("cifar_resnet20")
    sampler = slim_train.make_sampler("layerwise", net, min_width=0.42, num_sampled=2, resolution=32)
    rng = np.random.default_rng(0)
    sampler.X = [list(np.clip(w + rng.normal(0, 0.03, net.search_dim), 0.42, 1.0)) for w in np.linspace(0.42, 1, 12)]
    sampler.loss = [2.0 - float(np.mean(x)) for x in sampler.X]  # wider = lower loss
    children = [np.full(net.search_dim, 0.45), np.full(net.search_dim, 0.95), np.full(net.search_dim, 0.7)]
    assert sampler.rank(children, rng) == 1
    sampler.loss = [float(np.mean(x)) for x in sampler.X]  # now narrower = lower loss
    assert sampler.rank(children, rng) == 0


def test_pareto_selection_picks_best_within_budget():
    cost = [0.2, 0.3, 0.5, 0.6, 1.0]
    loss = [2.0, 2.5, 1.5, 1.6, 1.0]
    assert list(search.pareto_indices(cost, loss)) == [0, 2, 4]
    assert search.select_on_front(cost, loss, [0.25, 0.55, 1.0]) == [0, 2, 4]


# ---------------------------------------------------------------- stages
def _stage_kwargs(**over):
    kwargs = dict(
        model="cifar_resnet8",
        dataset="digits",
        resolution=8,
        train_limit=32,
        val_limit=16,
        min_width=0.42,
        num_sampled=1,
        label_smoothing=0.1,
        search_budget=4,
        surrogate=True,
        tau=1,
        epochs=2,
        batch_size=16,
        lr=0.05,
        weight_decay=5e-4,
        warmup_epochs=0.0,
        seed=0,
        progress=False,
    )
    kwargs.update(over)
    return kwargs


def test_interrupted_stage_resumes_with_its_search_state(tmp_path, monkeypatch):
    straight = slim_train.train_joint(run_dir=str(tmp_path / "a"), device="cpu", **_stage_kwargs())
    done = search.load_history(str(tmp_path / "a" / "train_joint.ckpt"))
    assert len(done["X"]) == 4 and np.isfinite(done["loss"]).sum() == 3  # the last proposal is not yet refreshed
    assert not list((tmp_path / "a").glob("*.json"))  # no side-car file: the state is in the checkpoint

    original, calls = slim_train.SandwichStep.__call__, {"n": 0}

    def interrupted(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 3:  # first step of epoch 2 (2 steps per epoch)
            raise KeyboardInterrupt("simulated interruption")
        return original(self, model, batch)

    monkeypatch.setattr(slim_train.SandwichStep, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        slim_train.train_joint(run_dir=str(tmp_path / "b"), device="cpu", **_stage_kwargs())
    half = dynn.train.read_checkpoint(tmp_path / "b" / "train_joint.ckpt")
    assert half["epoch"] == 1 and len(half["state"]["sampler"]["X"]) == 2  # one proposal per step so far
    monkeypatch.setattr(slim_train.SandwichStep, "__call__", original)
    resumed = slim_train.train_joint(run_dir=str(tmp_path / "b"), device="cpu", **_stage_kwargs())
    again = search.load_history(str(tmp_path / "b" / "train_joint.ckpt"))
    assert again["X"] == done["X"] and again["ratio"] == done["ratio"] and again["step"] == done["step"]
    np.testing.assert_equal(again["loss"], done["loss"])  # nan = proposed, not yet refreshed
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    # a finished stage is loaded, not retrained; other parameters are refused, not reused
    mtime = (tmp_path / "b" / "train_joint.ckpt").stat().st_mtime_ns
    slim_train.train_joint(run_dir=str(tmp_path / "b"), device="cpu", **_stage_kwargs())
    assert (tmp_path / "b" / "train_joint.ckpt").stat().st_mtime_ns == mtime
    with pytest.raises(dynn.train.CheckpointError, match="tau"):
        slim_train.train_joint(run_dir=str(tmp_path / "b"), device="cpu", **_stage_kwargs(tau=2))


def _rank_digest(kwargs: dict) -> tuple[float, list]:
    """One TorchElastic worker: the Joslim stage, then this rank's weights and search history."""
    net = slim_train.train_joint(**kwargs)
    return dynn.train.weights_digest(net), [float(v) for v in net.head.weight.flatten()[:4]]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_gives_the_same_weights_on_every_rank(tmp_path):
    kwargs = dict(run_dir=str(tmp_path), device="cpu", **_stage_kwargs(train_limit=64, epochs=1))
    results = dynn.train.run_elastic(_rank_digest, 2, kwargs)
    assert sorted(results) == [0, 1]
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-9)
    assert results[0][1] == results[1][1]
    single = slim_train.train_joint(**kwargs)  # the finished stage, loaded from rank 0's checkpoint
    assert dynn.train.weights_digest(single) == pytest.approx(results[0][0], rel=1e-9)
    state = dynn.train.read_checkpoint(tmp_path / "train_joint.ckpt")
    assert state["epoch"] == 1 and len(state["state"]["sampler"]["X"]) > 0
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 1  # rank 0 only


# ---------------------------------------------------------------- figures and explorer
def _table():
    rows = []
    for series, role in ((slim_eval.SERIES["searched"], "method"), (slim_eval.SERIES["layerwise"], "ablation")):
        for r, acc in ((0.3, 50.0), (0.6, 70.0), (1.0, 80.0)):
            for recal in (True, False):
                rows.append(
                    {
                        "series": series + ("" if recal else slim_eval.NO_RECAL),
                        "label": f"{series[:3]} {r}",
                        "macs_ratio": r,
                        "macs": int(r * 1e6),
                        "accuracy": acc - (0 if recal else 20),
                        "top5": 99.0,
                        "bn_recal": recal,
                        "role": role if recal else "ablation",
                        "selection": "sweep",
                        "real_ch": [16, [16, 16], [32, 32], [64, 64]],
                        "latency_ms": r,
                        "latency_batch": 1,
                        "latency_batched_ms": 8 * r,
                        "latency_batched_batch": 8,
                        "latency_device": "cpu",
                        "latency_threads": 1,
                    }
                )
    return pd.DataFrame(rows)


def test_figures_draw_and_the_explorer_redraws():
    import matplotlib.pyplot as plt

    table = _table()
    net = create("cifar_resnet8")
    speed = slim_eval.latency_ratios(table)
    assert speed.latency_ratio.tolist() == pytest.approx([0.3, 0.6, 1.0, 0.3, 0.6, 1.0])
    figs = [
        plots.accuracy_vs_macs(table, title="t"),
        plots.latency_vs_macs(speed),
        plots.width_profile(
            net, table, uniform_series=slim_eval.SERIES["layerwise"], searched_series=slim_eval.SERIES["searched"]
        ),
    ]
    assert all(f.axes for f in figs)
    plt.close("all")
    widget = plots.explorer(table, lower=0.3)
    slider, out = widget.children
    slider.value = 0.65
    text = "".join(o.get("text", "") for o in out.outputs)
    assert "top-1 70.00%" in text and "top-1 80.00%" not in text
    slider.value = 1.0
    assert "top-1 80.00%" in "".join(o.get("text", "") for o in out.outputs)


def test_result_points_carry_role_series_and_selection():
    table = _table()
    points = slim_eval.result_points(table)
    assert {p["role"] for p in points} == {"method", "ablation"}
    assert all(p["selection"] and p["series"] for p in points)
    assert all(p["latency_batched_batch"] == 8 for p in points if p["bn_recal"])
    dynn.runs.check_points(points, "classification")  # the report's schema
