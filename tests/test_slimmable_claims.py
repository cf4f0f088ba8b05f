"""Slimmable, issue 17: validation selection after BN recalibration, the post-hoc control,
plain exported networks, width rounding, the paper's claims and Joslim's GPU recipe."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch.utils.data import TensorDataset

import dynn.evaluate
import dynn.train
from dynn.slimmable import claims as slim_claims
from dynn.slimmable import evaluate as slim_eval
from dynn.slimmable import search
from dynn.slimmable import train as slim_train
from dynn.slimmable.model import create, flatten


# ---------------------------------------------------------------- widths rounded like US-Nets
def test_channel_divisor_rounds_widths_to_multiples_never_above_full():
    net = create("cifar_resnet20", num_classes=10)
    full = flatten(net.full_real_ch())
    net.channel_divisor = 8
    for w in (0.3, 0.42, 0.55, 0.8, 1.0):
        real = flatten(net.real_ch_of(net.uniform_wm(w)))
        assert all(c % 8 == 0 and c <= f for c, f in zip(real, full))
    assert flatten(net.real_ch_of(net.uniform_wm(0.42)))[:2] == [8, 8]  # 6.7 channels → 8
    net.channel_divisor = 1
    assert flatten(net.real_ch_of(net.uniform_wm(0.42)))[:2] == [6, 6]  # Joslim floors


# ---------------------------------------------------------------- selection on validation
def _tiny():
    torch.manual_seed(0)
    net = create("cifar_resnet8", num_classes=4).eval()
    with torch.no_grad():  # statistics that fit no width, as shared training leaves them
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(0.5)
                m.running_var.fill_(3.0)
    data = TensorDataset(torch.randn(32, 3, 16, 16), torch.randint(0, 4, (32,)))
    return net, data


def test_search_front_scores_each_configuration_after_its_own_recalibration():
    net, data = _tiny()
    cost = search.CostModel(net, 16)
    calibration = dynn.evaluate.calibration_batches(data, batches=2, batch_size=16, seed=0)
    wm = np.linspace(0.4, 0.9, net.search_dim)
    trained = slim_eval.bn_statistics(net)
    front = slim_eval.search_front(
        net, {"X": [list(wm)]}, data, cost=cost, min_width=0.4, calibration=calibration, device="cpu"
    )
    for k, v in slim_eval.bn_statistics(net).items():
        torch.testing.assert_close(v, trained[k])  # training's statistics are restored
    real = net.real_ch_of(wm)
    stale = dynn.evaluate.evaluate_classifier(net, data, forward=net.forward_at(real))
    dynn.evaluate.recalibrate_bn(net, calibration, forward=net.forward_at(real))
    recal = dynn.evaluate.evaluate_classifier(net, data, forward=net.forward_at(real))
    assert abs(recal["loss"] - stale["loss"]) > 1e-3
    assert front.val_loss.iloc[0] == pytest.approx(recal["loss"], rel=1e-6)  # recalibrated, not stale
    assert front.macs_ratio.iloc[0] == pytest.approx(cost.exact(real))
    assert list(front.macs_ratio.iloc[1:]) == pytest.approx([1.0, cost.exact(net.real_ch_of(net.uniform_wm(0.4)))])


def test_operating_points_are_chosen_on_validation_not_test():
    rows = [  # within 0.5 MACs the best *test* accuracy belongs to the row validation rejects
        {"series": "s", "label": "a", "macs_ratio": 0.30, "accuracy": 90.0, "val_loss": 0.9},
        {"series": "s", "label": "b", "macs_ratio": 0.45, "accuracy": 70.0, "val_loss": 0.5},
        {"series": "s", "label": "c", "macs_ratio": 0.70, "accuracy": 99.0, "val_loss": 0.1},
        {"series": "u", "label": "u1", "macs_ratio": 0.20, "accuracy": 80.0},
        {"series": "u", "label": "u2", "macs_ratio": 0.40, "accuracy": 60.0},
    ]
    assert slim_eval.accuracy_at(rows, "s", 0.5) == 70.0
    assert slim_eval.accuracy_at(rows, "u", 0.5) == 60.0  # a uniform width follows from its budget
    assert np.isnan(slim_eval.accuracy_at(rows, "s", 0.2))
    rows[0]["targets"] = [0.5]  # chosen for this budget by the search's validation front
    assert slim_eval.chosen_row(rows, "s", 0.5)["label"] == "a"


def test_chosen_per_target_takes_the_lowest_validation_loss_within_each_budget():
    table = pd.DataFrame({"macs_ratio": [0.2, 0.3, 0.45, 0.6, 1.0], "val_loss": [1.0, 0.7, 0.8, 0.4, 0.3]})
    assert slim_eval.chosen_per_target(table, [0.25, 0.5, 0.75, 1.0, 0.1]) == {0.25: 0, 0.5: 1, 0.75: 3, 1.0: 4}


# ---------------------------------------------------------------- the post-hoc control
def test_posthoc_search_proposes_the_budget_without_touching_the_weights():
    net, data = _tiny()
    before = dynn.train.weights_digest(net)
    cost = search.CostModel(net, 16)
    history = slim_eval.posthoc_search(
        net, data, cost=cost, min_width=0.4, num_sampled=2, search_budget=9, surrogate=True, seed=0, batch_size=16
    )
    assert len(history["X"]) == len(history["loss"]) == 9
    assert np.isfinite(history["loss"]).all()
    assert dynn.train.weights_digest(net) == before
    assert len({tuple(x) for x in history["X"][4:]}) > 1  # evolution, not a repeated point
    for x, r, t in zip(history["X"][2:], history["ratio"][2:], history["target"][2:]):  # past the 2 prior points
        assert abs(cost.exact(net.real_ch_of(np.asarray(x))) - r) < 1e-9
        assert abs(r - t) <= 0.05  # aimed at its cost target (ResNet-8's few channels: coarse steps)
    again = slim_eval.posthoc_search(
        net, data, cost=cost, min_width=0.4, num_sampled=2, search_budget=9, surrogate=True, seed=0, batch_size=16
    )
    assert again["X"] == history["X"]  # seeded


# ---------------------------------------------------------------- the claims
def _claims_table(method_correct, rival_correct, stale_correct):
    n = len(method_correct[0])

    def row(series, label, ratio, correct, recal=True, targets=None, val_loss=None, model="layerwise"):
        return {
            "model": model,
            "series": series,
            "label": label,
            "macs_ratio": ratio,
            "accuracy": 100 * float(np.mean(correct)),
            "correct": np.asarray(correct, bool),
            "bn_recal": recal,
            "targets": targets or [],
            "val_loss": val_loss,
        }

    S = slim_eval.SERIES
    rows = []
    for k, (t, ratio) in enumerate(((0.25, 0.24), (0.5, 0.49), (0.75, 0.74), (1.0, 1.0))):
        rows.append(row(S["searched"], f"searched {ratio}", ratio, method_correct[k], targets=[t], val_loss=1 - t))
        rows.append(row(S["searched"] + slim_eval.NO_RECAL, f"searched {ratio}", ratio, stale_correct, recal=False))
        rows.append(row(S["posthoc"], f"post-hoc {ratio}", ratio, rival_correct[k], targets=[t], model="uniform"))
        # uniform rivals: one cheaper than the method (must not be used), one just above it
        rows.append(row(S["uniform"], f"uniform cheap {ratio}", ratio - 0.02, np.ones(n), model="uniform"))
        rows.append(row(S["uniform"], f"uniform {ratio}", ratio + 0.005, rival_correct[k], model="uniform"))
    return pd.DataFrame(rows)


def test_claims_are_paired_matched_not_cheaper_and_flip_with_the_data():
    rng = np.random.default_rng(0)
    n = 400
    good = [rng.random(n) < p for p in (0.6, 0.75, 0.85, 0.95)]
    bad = [rng.random(n) < p - 0.3 for p in (0.6, 0.75, 0.85, 0.95)]
    stale = rng.random(n) < 0.1
    table = _claims_table(good, bad, stale)
    speed = table[table.bn_recal & (table.series == slim_eval.SERIES["searched"])].assign(
        ratio_rounds_batched=[[0.3, 0.31, 0.29]] * 4, latency_batched_batch=64
    )
    by_id = {c["id"]: c for c in slim_claims.paper_claims(table, speed)}
    assert by_id["monotone_in_macs"]["holds"] is True
    for t in (0.25, 0.5, 0.75):
        c = by_id[f"layerwise_ge_uniform@{t}"]
        # the matched rival is the uniform width not cheaper than the method (not the all-correct cheaper one)
        assert c["value"] == pytest.approx(
            100 * (good[[0.25, 0.5, 0.75].index(t)].mean() - bad[[0.25, 0.5, 0.75].index(t)].mean())
        )
        assert c["holds"] is True and c["ci"][0] > 0
    assert by_id["joint_ge_posthoc"]["holds"] is True
    assert by_id["bn_recalibration_needed"]["holds"] is True  # 60 % → 10 %
    assert by_id["latency_follows_macs"]["value"] == pytest.approx(0.3 / 0.24)
    assert by_id["latency_follows_macs"]["holds"] is True and by_id["latency_follows_macs"]["above"] is False
    # swapping the two models turns every comparison around
    swapped = {c["id"]: c for c in slim_claims.paper_claims(_claims_table(bad, good, stale), speed)}
    assert swapped["layerwise_ge_uniform@0.5"]["holds"] is False
    assert swapped["joint_ge_posthoc"]["holds"] is False
    # a flat curve is not shown monotone
    flat = {c["id"]: c for c in slim_claims.paper_claims(_claims_table([good[0]] * 4, bad, stale), speed)}
    assert flat["monotone_in_macs"]["holds"] is None
    for c in by_id.values():
        assert c["rule"] and c["paper"] and c["statement"]


# ---------------------------------------------------------------- latency of plain exported networks
def test_latency_ratios_are_measured_per_round_against_the_full_network():
    net = create("cifar_resnet8", num_classes=4).eval()
    rows = [{"model": "m", "label": "half", "series": "s", "real_ch": net.real_ch_of(net.uniform_wm(0.5))}]
    x = [torch.randn(1, 3, 16, 16), torch.randn(4, 3, 16, 16)]
    speed = slim_eval.measure_latency({"m": net}, rows, x, latency_time=0.05, rounds=3)
    r = speed.iloc[0]
    assert r.latency_batch == 1 and r.latency_batched_batch == 4
    assert len(r.ratio_rounds) == len(r.ratio_rounds_batched) == 3
    assert r.latency_ratio == pytest.approx(float(np.median(r.ratio_rounds)))
    assert r.latency_ratio_batched == pytest.approx(
        float(np.median(r.ratio_rounds_batched))
    )  # a ratio, never a timing bound


# ---------------------------------------------------------------- Joslim's recipe
def test_parameter_groups_leave_bn_and_biases_undecayed_and_lr_scales_with_batch(tmp_path):
    net = create("cifar_resnet8", num_classes=4)
    decay, no_decay = slim_train.parameter_groups(net, 5e-4, decay_bn_bias=False)
    assert all(p.ndim > 1 for p in decay["params"]) and decay["weight_decay"] == 5e-4
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) > 0
    assert all(p.ndim == 1 for p in no_decay["params"])
    bn = [m.weight for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(any(p is w for p in no_decay["params"]) for w in bn)
    (group,) = slim_train.parameter_groups(net, 5e-4, decay_bn_bias=True)
    assert len(group["params"]) == len(list(net.parameters()))


def _write_fake_cifar100(root, n_train=40, n_test=20):
    """CIFAR-100's python layout: cifar-100-python/{train,test,meta}, pickled dicts."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(n):
        return {
            "data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
            "fine_labels": rng.integers(0, 100, n).tolist(),
            "coarse_labels": rng.integers(0, 20, n).tolist(),
            "filenames": ["x"] * n,
        }

    (folder / "train").write_bytes(pickle.dumps(batch(n_train)))
    (folder / "test").write_bytes(pickle.dumps(batch(n_test)))
    (folder / "meta").write_bytes(
        pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": ["x"] * 20})
    )


def test_cifar100_preset_runs_joslims_recipe_for_a_few_steps(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    from dynn.slimmable.parameters import SPEC

    preset = yaml.safe_load(open("params/slimmable/cifar100.yaml"))
    assert preset["scale_lr"] is True and preset["decay_bn_bias"] is False and preset["nesterov"] is False
    assert set(preset) <= set(SPEC)
    _write_fake_cifar100(tmp_path)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # fake files, real loader
    seen = {}
    original = torch.optim.SGD

    def spy(params, **kwargs):
        seen.update(kwargs, groups=params)
        return original(params, **kwargs)

    monkeypatch.setattr(torch.optim, "SGD", spy)
    kwargs = {
        k: preset[k]
        for k in (
            "dataset",
            "resolution",
            "min_width",
            "num_sampled",
            "label_smoothing",
            "weight_decay",
            "nesterov",
            "decay_bn_bias",
            "scale_lr",
            "channel_divisor",
        )
        if k in preset
    }
    net = slim_train.train_uniform(
        run_dir=str(tmp_path / "run"),
        device="cpu",
        model="cifar_resnet8",  # the preset's ResNet-56, shrunk for a test
        data_root=str(tmp_path),
        train_limit=16,
        epochs=1,
        batch_size=8,
        lr=preset["lr"],
        warmup_epochs=0,
        seed=0,
        progress=False,
        **kwargs,
    )
    assert net.head.out_features == 100
    assert seen["lr"] == pytest.approx(preset["lr"] * 8 / 256) and seen["nesterov"] is False
    assert [g["weight_decay"] for g in seen["groups"]] == [preset["weight_decay"], 0.0]
    state = dynn.train.read_checkpoint(tmp_path / "run" / "train_uniform.ckpt")
    assert state["epoch"] == 1
