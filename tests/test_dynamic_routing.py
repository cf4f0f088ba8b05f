"""Dynamic Routing: routing-space rules, real skipping = masked network, measured costs,
budget loss, forced routes, mIoU, the training stages (resume, reuse, DDP), the explorer,
and the segmentation datasets (with tiny fake layouts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

import dynn.flops
import dynn.runs
import dynn.train
from dynn.data import DataError, get_dataset
from dynn.data.segmentation import SCENE_REGIMES
from dynn.dynamic_routing import plots, train
from dynn.dynamic_routing.evaluate import (
    confusion_matrix,
    evaluate,
    iou_from_confusion,
    latency_table,
    result_points,
    route_diversity,
)
from dynn.dynamic_routing.model import THRESHOLD, DynamicRoutingNet, build_routing_space, cell_num_list
from dynn.dynamic_routing.parameters import SPEC, MultipleOf
from dynn.dynamic_routing.train import RoutingStep, budget_loss, poly_lr_lambda


def _randomise(model: DynamicRoutingNet, seed: int = 0, spread: float = 3.0) -> DynamicRoutingNet:
    """Random BN statistics and gates that differ between samples (some paths closed)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    for cell in model.cells:
        if cell.gate is not None:
            cell.gate.fc.weight.data = torch.randn(cell.gate.fc.weight.shape, generator=g) * spread
            cell.gate.fc.bias.data = torch.randn(cell.gate.fc.bias.shape, generator=g) * 0.5
    return model.eval()


# ------------------------------------------------------------------ routing space
def test_routing_space_follows_the_official_availability_rules():
    assert cell_num_list(5) == [2, 3, 4, 4, 4]
    nodes = build_routing_space(5, 8)
    layer = {(n.layer, n.scale): n for n in nodes}
    assert len(nodes) == 1 + 2 + 3 + 4 + 4 + 4
    assert layer[(0, 0)].paths == ("keep", "down")  # initial cell: keep and down only
    assert layer[(1, 1)].inputs == ((0, "down"),)  # the newest scale has no keep input
    assert layer[(3, 2)].inputs == ((layer[(2, 1)].index, "down"), (layer[(2, 2)].index, "keep"))  # no up yet
    assert layer[(4, 2)].inputs == (
        (layer[(3, 1)].index, "down"),
        (layer[(3, 2)].index, "keep"),
        (layer[(3, 3)].index, "up"),
    )
    assert "up" not in layer[(2, 0)].paths and "down" not in layer[(4, 3)].paths
    assert all(n.paths == ("keep",) for n in nodes if n.layer == 5)  # the last layer only keeps
    assert [n.channels for n in nodes if n.layer == 5] == [8, 16, 32, 64]
    used = {(src, path) for n in nodes for src, path in n.inputs}
    produced = {(n.index, p) for n in nodes if n.layer < 5 for p in n.paths}
    assert used == produced  # every transition feeds exactly the node the rules say


# ------------------------------------------------------------------ real skipping
@pytest.mark.parametrize("small_gate", [False, True])
def test_real_skip_equals_masked_network_per_sample(small_gate):
    torch.manual_seed(0)
    model = _randomise(DynamicRoutingNet(5, layers=4, init_channels=8, small_gate=small_gate))
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        dense, skip = model(x), model.forward_skip(x)
    torch.testing.assert_close(skip["logits"], dense["logits"], rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(skip["real_cost"], dense["real_cost"])
    for gd, gs in zip(dense["gates"], skip["gates"]):
        torch.testing.assert_close(gs, gd)
    opened = torch.stack([(g > THRESHOLD).any(1) for g in skip["gates"]], 1)  # samples × cells
    assert (~opened).any(), "the test needs some closed cells"
    assert len({tuple(r.tolist()) for r in opened}) > 1, "samples must take different routes"
    assert skip["real_cost"].std() > 0


def test_skipping_counts_exactly_the_reported_real_macs():
    torch.manual_seed(1)
    model = _randomise(DynamicRoutingNet(5, layers=4, init_channels=8), seed=1)
    x = torch.randn(4, 3, 32, 32)
    reported = model.forward_skip(x)["real_cost"]
    counted = [dynn.flops.count_macs(model.forward_skip, x[i : i + 1]) for i in range(4)]
    assert counted == [int(r) for r in reported]
    assert max(counted) < model.cost_table((32, 32)).network_fix_cost + sum(model.cost_table((32, 32)).gate)


def test_network_fix_cost_is_the_dense_network_and_c_full_is_computed():
    model = DynamicRoutingNet(5, layers=3, init_channels=8, using_gate=False).eval()
    x = torch.randn(2, 3, 32, 32)
    table = model.cost_table((32, 32))
    assert sum(table.gate) == 0
    assert dynn.flops.count_macs(model, x[:1]) == table.network_fix_cost
    out = model(x)
    torch.testing.assert_close(out["expected_cost"], torch.full((2,), float(table.full_cost)))
    torch.testing.assert_close(out["real_cost"], torch.full((2,), float(table.network_fix_cost)))
    # per-op table = FlopCounterMode per submodule: sepconvs grow ~4x per coarser scale's 2x channels / 4x fewer pixels
    by_scale = {n.scale: table.cell[n.index] for n in model.nodes if n.layer == 1}
    assert by_scale[0] > 0 and by_scale[1] > 0


def test_forced_route_closes_what_it_says():
    torch.manual_seed(2)
    model = DynamicRoutingNet(5, layers=4, init_channels=8).eval()
    x = torch.randn(2, 3, 32, 32)
    route = model.full_route()
    for node, r in zip(model.nodes, route):  # keep only the finest scale, never go down
        if node.scale > 0:
            r.zero_()
        elif "down" in node.paths:
            r[node.paths.index("down")] = 0
    out = model.forward_skip(x, route=route)
    for node, g in zip(model.nodes, out["gates"]):
        if node.scale > 0:
            assert (g == 0).all()
    assert dynn.flops.count_macs(lambda t: model.forward_skip(t, route=route), x[:1]) == int(out["real_cost"][0])
    full = model.forward_skip(x)
    assert (out["real_cost"] < full["real_cost"]).all()
    replay = model.forward_skip(x, route=model.route_from_gates(full["gates"]))
    torch.testing.assert_close(replay["logits"], full["logits"])


def test_replace_mode_route_runs_no_gates():
    model = _randomise(DynamicRoutingNet(5, layers=3, init_channels=8), seed=4)
    x = torch.randn(2, 3, 32, 32)
    route = model.full_route()
    skip = model.forward_skip(x, route=route, route_mode="replace")
    dense = model(x, route=route, route_mode="replace")
    torch.testing.assert_close(skip["logits"], dense["logits"], rtol=1e-3, atol=1e-4)
    fix_cost = model.cost_table((32, 32)).network_fix_cost  # every path at α = 1, no gate run
    counted = dynn.flops.count_macs(lambda t: model.forward_skip(t, route=route, route_mode="replace"), x[:1])
    assert counted == int(skip["real_cost"][0]) == fix_cost


def test_expected_cost_is_differentiable_in_the_gates():
    model = DynamicRoutingNet(5, layers=3, init_channels=8).train()
    out = model(torch.randn(2, 3, 32, 32))
    out["expected_cost"].mean().backward()
    grads = [c.gate.fc.bias.grad for c in model.cells]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


# ------------------------------------------------------------------ budget and schedule
def test_budget_loss_schedule():
    e = torch.tensor([30.0, 50.0])  # mean 40 of C_full 100 → ratio 0.4
    assert budget_loss(e, 100, 0.1, 0.8, step_rate=0.39) == 0  # before unupdate_rate
    assert budget_loss(e, 100, None, 0.8, step_rate=0.9) == 0  # Dynamic-Raw
    half = budget_loss(e, 100, 0.1, 0.8, step_rate=0.41)  # halfway through the 0.02 warm-up
    full = budget_loss(e, 100, 0.1, 0.8, step_rate=0.9)
    assert float(full) == pytest.approx(0.8 * 0.3**2)
    assert float(half) == pytest.approx(0.5 * float(full))


def test_poly_lr_with_warmup():
    f = poly_lr_lambda(100, warmup_iters=10, warmup_factor=0.001)
    assert f(0) == pytest.approx(0.001)
    assert f(10) == pytest.approx(0.9**0.9)
    assert f(100) == 0
    assert MultipleOf(32, min=32).problem(64) is None and MultipleOf(32).problem(48)


def test_training_progress_is_method_state_saved_with_the_stage():
    step = RoutingStep(total_steps=10, budget_mu=0.1, budget_lambda=0.5)
    model = DynamicRoutingNet(3, layers=1, init_channels=4)
    batch = (torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32)))
    for _ in range(7):
        out = step(model, batch)
    assert step.steps == 7 and out["budget"] > 0  # progress 0.6 ≥ 0.4: the budget is on
    clone = RoutingStep(total_steps=10, budget_mu=0.1, budget_lambda=0.5)
    clone.load_state_dict(step.state_dict())
    assert clone.steps == 7 and clone.step_rate == pytest.approx(0.7)
    other_schedule = RoutingStep(total_steps=5, budget_mu=0.1, budget_lambda=0.5)  # e.g. another nprocs
    other_schedule.load_state_dict(step.state_dict())  # reloading a finished stage is fine...
    with pytest.raises(dynn.train.CheckpointError, match="nprocs"):
        other_schedule(model, batch)  # ...continuing it on another schedule is not


# ------------------------------------------------------------------ metric
def test_miou_ignores_255_and_absent_classes():
    target = torch.tensor([[0, 0, 1, 255], [1, 1, 0, 255]])
    pred = torch.tensor([[0, 1, 1, 2], [1, 1, 0, 0]])
    conf = confusion_matrix(pred, target, 3)
    assert conf.sum() == 6
    iou, miou = iou_from_confusion(conf)
    # class 0: tp 2, fp 0, fn 1 → 2/3; class 1: tp 3, fp 1, fn 0 → 3/4; class 2 absent → NaN
    assert iou[0] == pytest.approx(200 / 3) and iou[1] == pytest.approx(75.0) and np.isnan(iou[2])
    assert miou == pytest.approx((200 / 3 + 75) / 2)


def test_evaluate_reports_costs_and_routes():
    data = get_dataset("digit_scenes", "test", resolution=64, limit=8)
    model = _randomise(DynamicRoutingNet(data.num_classes, layers=3, init_channels=8), seed=3)
    ev = evaluate(model, data, batch_size=4)
    assert 0 <= ev["miou"] <= 100 and len(ev["real_cost"]) == 8
    assert (ev["expected_cost"] <= model.cost_table((64, 64)).full_cost + 1e-3).all()
    div = route_diversity(ev["gates"])
    assert div["images"] == 8 and 1 <= div["distinct_routes"] <= 8


# ------------------------------------------------------------------ data
def test_digit_scenes_regimes_differ_in_object_size_and_count():
    """Only-large, only-small, mixed, crowded and sparse scenes, balanced: the object sizes
    and counts a route has to serve differ from image to image."""
    data = get_dataset("digit_scenes", "test", resolution=64, augment=False)
    by = {r: [s for s, g in zip(data.object_sizes, data.regimes) if g == r] for r in SCENE_REGIMES}
    assert {r: len(v) for r, v in by.items()} == {r: len(data) // len(SCENE_REGIMES) for r in SCENE_REGIMES}
    mean_size = {r: np.mean([np.mean(s) for s in v]) for r, v in by.items()}
    count = {r: np.mean([len(s) for s in v]) for r, v in by.items()}
    assert mean_size["large"] > 2.5 * mean_size["small"] and mean_size["large"] > 2 * mean_size["crowded"]
    assert count["crowded"] > 1.5 * count["small"] > 3 * count["sparse"] and count["sparse"] == 1
    assert all(max(s) > 2.5 * min(s) for s in by["mixed"])  # one large digit among small ones


def test_digit_scenes_are_deterministic_and_multiscale():
    a = get_dataset("digit_scenes", "train", resolution=64, limit=16, augment=False)
    b = get_dataset("digit_scenes", "train", resolution=64, num_images=16, augment=False)
    c = get_dataset("digit_scenes", "test", resolution=64, limit=16, augment=False)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)  # limit = the first scenes
    assert not torch.equal(a.images, c.images)  # test scenes are other scenes (of other digits)
    x, y = a[0]
    assert x.shape == (3, 64, 64) and y.shape == (64, 64) and y.dtype == torch.long
    values = set(torch.unique(a.labels).tolist())
    assert 0 in values and 255 in values and values - {0, 255} <= set(range(1, 11))
    assert len(a.regimes) == 16 and set(a.regimes) <= set(SCENE_REGIMES)
    assert a.num_classes == 11 and a.ignore_index == 255


def _png(path, array, mode=None):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_voc_through_torchvision_with_a_fake_layout(tmp_path):
    base = tmp_path / "VOCdevkit" / "VOC2012"
    names = {"train": ["a", "b", "c", "d"], "val": ["e"]}
    rng = np.random.default_rng(0)
    for split, items in names.items():
        (base / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(items) + "\n")
        for n in items:
            _png(base / "JPEGImages" / f"{n}.jpg", rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
            label = np.zeros((40, 50), np.uint8)
            label[5:20, 5:20], label[20, :] = 15, 255
            _png(base / "SegmentationClass" / f"{n}.png", label, mode="L")
    train = get_dataset("voc", "train", data_root=str(tmp_path), resolution=32, val_fraction=0.25)
    test = get_dataset("voc", "test", data_root=str(tmp_path), resolution=64)
    assert len(train) == 3 and len(test) == 1 and train.num_classes == 21
    x, y = train[0]
    assert x.shape == (3, 32, 32) and y.shape == (32, 32)
    x, y = test[0]  # the whole 40×50 image, padded to a multiple of 32 with the ignore label
    assert x.shape == (3, 64, 64) and (y[40:] == 255).all() and (y[:, 50:] == 255).all() and (y == 15).any()
    crop = get_dataset("voc", "test", data_root=str(tmp_path), resolution=32, whole_image=False)
    assert crop[0][0].shape == (3, 32, 32)  # the centre crop, on request


def test_cityscapes_through_torchvision_with_a_fake_layout(tmp_path):
    rng = np.random.default_rng(0)
    for split, city in (("train", "aachen"), ("val", "frankfurt")):
        for k in range(2):
            stem = f"{city}_000000_00000{k}"
            _png(
                tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                rng.integers(0, 255, (32, 64, 3), dtype=np.uint8),
            )
            label = np.full((32, 64), 7, np.uint8)  # road (train id 0)
            label[:8], label[8:12] = 26, 0  # car (train id 13), unlabeled (ignored)
            _png(tmp_path / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label, mode="L")
    train = get_dataset("cityscapes", "train", data_root=str(tmp_path), resolution=32, augment=False, val_fraction=0.5)
    test = get_dataset("cityscapes", "test", data_root=str(tmp_path), resolution=32)
    assert train.num_classes == 19 and len(train) == 1 and len(test) == 2
    _, y = test[0]
    assert set(torch.unique(y).tolist()) <= {0, 13, 255} and (y == 0).any()


@pytest.mark.parametrize("name", ["voc", "cityscapes"])
def test_missing_data_root_is_one_clear_error(name, tmp_path):
    with pytest.raises(DataError, match="data_root"):
        get_dataset(name, "train", data_root="")
    with pytest.raises(DataError, match="expected layout"):
        get_dataset(name, "train", data_root=str(tmp_path))


# ------------------------------------------------------------------ parameters
def test_parameters_reject_what_the_notebook_cannot_run():
    from dynn.params import ParameterError, check

    good = {
        "dataset": "digit_scenes",
        "data_root": "",
        "crop_size": 64,
        "train_limit": 0,
        "val_limit": 0,
        "test_limit": 0,
        "val_fraction": 0.1,
        "stem_weights": "",
        "layers": 2,
        "init_channels": 8,
        "gate_bias": 1.5,
        "small_gate": False,
        "budget_mu": 0.2,
        "budget_lambda": 0.5,
        "mu_sweep": [],
        "unupdate_rate": 0.4,
        "drop_path_prob": 0.0,
        "epochs": 1,
        "batch_size": 4,
        "optimizer": "adamw",
        "lr": 0.01,
        "weight_decay": 0.0,
        "warmup_iters": 0,
        "grad_clip": 5.0,
        "baselines": True,
        "eval_batch": 4,
        "latency_batch": 4,
        "latency_time": 0.1,
        "route_images": 2,
        "interactive": False,
        "nprocs": 1,
        "device": "cpu",
        "seed": 0,
        "run_dir": "",
        "figures_dir": "",
    }
    assert check(dict(good), SPEC)
    with pytest.raises(ParameterError) as err:
        check(dict(good, dataset="mnist5k", crop_size=48, mu_sweep=[0.1, 2]), SPEC)
    msg = str(err.value)
    assert "'dataset' = 'mnist5k'" in msg and "'digit_scenes'" in msg  # a classification set is refused
    assert "'crop_size' = 48: must be a multiple of 32" in msg and "'mu_sweep'" in msg


# ------------------------------------------------------------------ stages
def _stage_args(**over) -> dict:
    args = dict(
        dataset="digit_scenes",
        data_root="",
        crop_size=32,
        train_limit=16,
        val_limit=4,
        layers=1,
        init_channels=4,
        gate_bias=1.5,
        small_gate=False,
        unupdate_rate=0.4,
        drop_path_prob=0.0,
        epochs=1,
        batch_size=8,
        optimizer="adamw",
        lr=0.01,
        weight_decay=0.0,
        warmup_iters=0,
        grad_clip=5.0,
        seed=0,
        progress=False,
    )
    args.update(over)
    return args


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_finished_stage_is_reused_not_retrained(tmp_path, monkeypatch):
    run = dynn.runs.start(
        "dynamic_routing", {"device": "cpu", "run_dir": str(tmp_path / "run"), "seed": 0}, task="segmentation"
    )
    args = dict(budget_mu=0.2, budget_lambda=0.5, warm_checkpoint="", **_stage_args())
    first = run.stage(train.train_dynamic, **args)
    stage_dir = run.stages["train_dynamic"]
    assert (stage_dir / "train_dynamic.ckpt").exists() and len(first.training_history) == 1
    assert "val_miou" in first.training_history[0]  # validation scored after the epoch

    def never(self, model, batch):
        raise AssertionError("a finished stage must be loaded, not trained again")

    monkeypatch.setattr(RoutingStep, "__call__", never)
    again = run.stage(train.train_dynamic, **args)
    assert run.stages["train_dynamic"] == stage_dir and _same_weights(first, again)
    assert not again.training and again.training_history == first.training_history
    # another budget is another stage: never the same directory
    assert run.stage_dir(train.train_dynamic, **dict(args, budget_mu=0.3)) != stage_dir


def test_dynamic_stage_from_the_shared_warm_up_equals_one_uninterrupted_run(tmp_path):
    args = _stage_args(epochs=2, unupdate_rate=0.5)  # one budget-free epoch, then the budget
    assert train.budget_free_epochs(2, 0.5) == 1
    train.warm_up(run_dir=str(tmp_path / "warm"), device="cpu", **args)
    warm = str(tmp_path / "warm" / "warm_up.ckpt")
    continued = train.train_dynamic(
        run_dir=str(tmp_path / "dyn"), device="cpu", budget_mu=0.1, budget_lambda=0.8, warm_checkpoint=warm, **args
    )
    alone = train.train_dynamic(
        run_dir=str(tmp_path / "alone"), device="cpu", budget_mu=0.1, budget_lambda=0.8, warm_checkpoint="", **args
    )
    assert _same_weights(continued, alone)
    assert [h["stage"] for h in continued.training_history] == ["train_dynamic"] * 2
    assert continued.training_history[0]["shared_from"] == warm
    assert continued.training_history[1]["train_budget"] > 0  # the budget switched on after the warm-up
    with pytest.raises(dynn.train.CheckpointError, match="lr"):  # a warm-up of another schedule is refused
        train.train_dynamic(
            run_dir=str(tmp_path / "other"),
            device="cpu",
            budget_mu=0.1,
            budget_lambda=0.8,
            warm_checkpoint=warm,
            **dict(args, lr=0.02),
        )


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_gives_the_same_weights_on_every_rank(tmp_path):
    args = dict(budget_mu=0.2, budget_lambda=0.5, warm_checkpoint="", **_stage_args(train_limit=32))
    digests = dynn.train.run_elastic(dynn.runs.stage_entry, 2, train.train_dynamic, str(tmp_path), "cpu", args)
    assert sorted(digests) == [0, 1]
    assert digests[0] == pytest.approx(digests[1], rel=1e-6)
    saved = train.train_dynamic(run_dir=str(tmp_path), device="cpu", **args)  # finished: loaded from rank 0's file
    assert dynn.train.weights_digest(saved) == pytest.approx(digests[0], rel=1e-6)
    history = pd.read_csv(tmp_path / "metrics.csv")
    assert len(history) == 1 and history["train_budget"].iloc[0] > 0  # rank 0 only; the budget was on


# ------------------------------------------------------------------ result points, latency, explorer
def test_result_points_carry_roles_and_the_batch_that_really_ran():
    data = get_dataset("digit_scenes", "test", resolution=32, limit=3)
    models = {
        "Dynamic μ=0.2": _randomise(DynamicRoutingNet(data.num_classes, layers=2, init_channels=4), seed=5),
        "Network-Fix": DynamicRoutingNet(data.num_classes, layers=2, init_channels=4, using_gate=False).eval(),
    }
    latency = latency_table(models, data, batch=8, min_run_time=0.01, device="cpu", rounds=1)
    assert set(latency["batch"]) == {1, 3}  # 8 requested, the test set has 3 images
    assert set(latency[latency["label"] == "Network-Fix"]["path"]) == {"dense"}
    evals = {label: evaluate(m, data, batch_size=2) for label, m in models.items()}
    points = result_points(evals, latency, reference="Network-Fix", budgets={"Dynamic μ=0.2": 0.2}, sweep=True)
    points = points.set_index("label")
    assert points.loc["Dynamic μ=0.2", ["role", "series", "selection"]].tolist() == [
        "method",
        "Dynamic Routing",
        "sweep",
    ]
    assert points.loc["Network-Fix", ["role", "selection"]].tolist() == ["baseline", "fixed"]
    assert (points["metric"] == "mIoU").all() and (points["batched_latency_batch"] == 3).all()
    assert points.loc["Network-Fix", "real_ratio"] == pytest.approx(1.0)
    dynn.runs.check_points(points.reset_index().to_dict("records"), "segmentation")


def test_explorer_shows_a_picked_image_and_its_route():
    pytest.importorskip("ipywidgets")
    data = get_dataset("digit_scenes", "test", resolution=32, limit=3)
    model = _randomise(DynamicRoutingNet(data.num_classes, layers=2, init_channels=4), seed=6)
    slider = plots.explorer(model, data, display=False)
    assert slider.max == 2
    slider.value = 2  # redraws for another image without error
    assert slider.value == 2
