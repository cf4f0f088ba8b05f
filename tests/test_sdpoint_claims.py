"""SDPoint's claims (dynn.sdpoint.claims) decide from paired intervals and can fail; the
deployed points are the real instances; the learning rate really decays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

import dynn
import dynn.sdpoint as sdp

# the smallest real training stage (as in tests/test_sdpoint.py): ResNet-8 at 8 px on digits
TINY_STAGE = dict(arch="cifar_resnet", depth=8, base_width=4, dataset="digits", data_root="", resolution=8,
                  train_limit=64, epochs=1, batch_size=16, lr=0.05, weight_decay=0.0, seed=0, progress=False)  # fmt: skip

N = 400  # test images of the synthetic tables
# (label, point, ratio, MACs fraction): a 2-block network's instances
INSTANCES = [
    ("full network", "none", 1.0, 1.0),
    ("stem r=0.5", "stem", 0.5, 0.3),
    ("stem r=0.75", "stem", 0.75, 0.6),
    ("block 0 r=0.5", "0", 0.5, 0.45),
    ("block 0 r=0.75", "0", 0.75, 0.7),
    ("block 1 r=0.5", "1", 0.5, 0.8),
    ("block 1 r=0.75", "1", 0.75, 0.9),
]


def _correct(accuracy: float, rng) -> np.ndarray:
    out = np.zeros(N, bool)
    out[rng.choice(N, int(round(accuracy * N)), replace=False)] = True
    return out


def _table(sdpoint_acc, baseline_acc, *, no_recal_drop=0.3, latency_slowdown=1.0, seed=0):
    """A synthetic instance table: accuracy per instance from the given functions of the
    MACs fraction; latency = slowdown × MACs fraction (full network: 10 ms)."""
    rng = np.random.default_rng(seed)
    rows = []
    for model, acc in (("SDPoint", sdpoint_acc), ("baseline", baseline_acc)):
        for recal in (False, True):
            for label, point, ratio, f in INSTANCES:
                a = acc(f) if recal or point == "none" else max(0.0, acc(f) - no_recal_drop)
                correct = _correct(a, rng)
                ms = 10.0 * (1.0 if point == "none" else latency_slowdown * f)
                rows.append(
                    dict(
                        model=model, recalibrated=recal, label=label, point=point, ratio=ratio,
                        macs=int(1e6 * f), macs_fraction=f, val_top1=100 * a, test_top1=100 * correct.mean(),
                        test_correct=correct, latency_ms=ms, latency_batched_ms=ms * 50, latency_batch=64,
                        latency_spread_ms=0.1, latency_batched_spread_ms=5.0,
                    )
                )  # fmt: skip
    return pd.DataFrame(rows)


def _by_id(claims):
    return {c["id"]: c for c in claims}


def test_claims_hold_for_a_good_sdpoint_model():
    good = _table(lambda f: 0.6 + 0.3 * f, lambda f: 0.85 if f == 1.0 else 0.3)
    claims, details = sdp.claims.paper_claims(good, latency_batch=64)
    c = _by_id(claims)
    assert set(c) == {"monotone_front", "full_cost_vs_baseline", "cheap_instances_beat_baseline",
                      "bn_recalibration_matters", "cheap_instances_faster"}  # fmt: skip
    assert all(c[k]["holds"] is True for k in c), {k: (v["value"], v["ci"]) for k, v in c.items()}
    assert {r["label"] for r in details["cheap_instances"]} == {"stem r=0.5", "block 0 r=0.5"}
    for claim in claims:  # every claim states its rule, interval and the paper's figure
        assert claim["rule"] and claim["paper"] and len(claim["ci"]) == 2 and claim["ci"][0] <= claim["ci"][1]


def test_claims_fail_for_a_bad_sdpoint_model():
    # accuracy falls with MACs, 10 pp below the baseline at full cost, below it at cheap instances,
    # no benefit from recalibration, and cheap instances as slow as the full network
    bad = _table(lambda f: 0.9 - 0.3 * f, lambda f: 0.9, no_recal_drop=0.0, latency_slowdown=1 / 0.3)
    c = _by_id(sdp.claims.paper_claims(bad, latency_batch=64)[0])
    assert c["monotone_front"]["holds"] is False
    assert c["full_cost_vs_baseline"]["holds"] is False and c["full_cost_vs_baseline"]["value"] == pytest.approx(
        -30, abs=3
    )
    assert c["cheap_instances_beat_baseline"]["holds"] is False
    assert c["bn_recalibration_matters"]["holds"] is not True
    assert c["cheap_instances_faster"]["holds"] is False and c["cheap_instances_faster"]["value"] > 2


def test_one_cheap_instance_below_the_baseline_fails_the_claim():
    # SDPoint beats the baseline by 30 pp at stem r=0.5 but loses 30 pp at block 0 r=0.5
    table = _table(lambda f: 0.8 if f < 0.4 else 0.5, lambda f: 0.5 if f < 0.4 else 0.8)
    claim = _by_id(sdp.claims.paper_claims(table, latency_batch=64)[0])["cheap_instances_beat_baseline"]
    assert claim["holds"] is False and claim["value"] == pytest.approx(-30, abs=5)


def test_agent_claim_compares_with_the_front_instance_nearest_in_macs_not_below():
    table = _table(lambda f: 0.5 + 0.4 * f, lambda f: 0.5)
    rng = np.random.default_rng(1)
    agent = pd.DataFrame(
        [
            dict(config=(0.5, 1.0, 0.75), macs=int(0.5e6), macs_fraction=0.5, val_top1=80.0, test_top1=85.0,
                 test_correct=_correct(0.85, rng), best=True, greedy=False),
        ]
    )  # fmt: skip
    claims, details = sdp.claims.paper_claims(table, latency_batch=64, agent_points=agent)
    c = _by_id(claims)["agent_beats_single_point"]
    # the nearest front instance with MACs >= 0.5: stem r=0.75 (0.6), accuracy 0.74
    assert details["agent"]["rival"] == "stem r=0.75"
    assert c["holds"] is True and c["value"] == pytest.approx(11, abs=4)
    worse = agent.assign(test_correct=[_correct(0.5, rng)], test_top1=50.0)
    assert (
        _by_id(sdp.claims.paper_claims(table, latency_batch=64, agent_points=worse)[0])["agent_beats_single_point"][
            "holds"
        ]
        is False
    )


def test_deployed_instance_is_the_recalibrated_instance_and_pickles(tmp_path):
    torch.manual_seed(0)
    model = sdp.model.create("cifar_resnet", 8, num_classes=10).eval()
    calibration = [torch.randn(16, 3, 16, 16) * 2 + 1]
    images = torch.randn(4, 3, 16, 16)
    config = model.instance_config(1, 0.5)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    deployed = sdp.evaluate.deployable(model, config, calibration)
    # the trained model is left alone
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in trained.items())
    sdp.evaluate.recalibrate(model, config, calibration)
    expected = model.eval().run(images, config)
    assert torch.allclose(deployed(images), expected, atol=1e-5)
    assert not torch.allclose(deployed(images), model.eval()(images), atol=1e-3)  # not the full network
    torch.save(deployed, tmp_path / "d.pt")
    again = torch.load(tmp_path / "d.pt", weights_only=False)
    assert torch.allclose(again(images), expected, atol=1e-5)


def test_save_deployed_points_ships_the_validation_front_and_the_baseline(tmp_path):
    torch.manual_seed(0)
    model = sdp.model.create("cifar_resnet", 8, num_classes=10).eval()
    baseline = sdp.model.create("cifar_resnet", 8, num_classes=10, sampling="none").eval()
    data = TensorDataset(torch.randn(12, 3, 16, 16), torch.randint(0, 10, (12,)))
    rows = []
    for name in ("SDPoint", "baseline"):
        for recal in (False, True):
            for r in sdp.evaluate.evaluate_instances(
                model, {"val": data, "test": data}, calibration=[data.tensors[0]] if recal else None
            ):
                rows.append(dict(r, model=name, recalibrated=recal))
    instances = pd.DataFrame(rows)
    run = dynn.runs.start("sdpoint", {"seed": 0, "device": "cpu", "run_dir": str(tmp_path / "run")})
    deployed = sdp.evaluate.save_deployed_points(
        run, model, baseline, instances, data.tensors[0], calibration=[data.tensors[0]]
    )
    front = sdp.evaluate.validation_choice(instances[(instances.model == "SDPoint") & instances.recalibrated])
    assert set(deployed) == {f"{label} (chosen on validation)" for label in front["label"]} | {"baseline full network"}
    points = sdp.evaluate.result_points(instances, pd.DataFrame(), agent="none", deployed=deployed)
    shipped = {p["label"]: p["deployed"] for p in points if "deployed" in p}
    assert shipped == deployed and all((run.dir / f).exists() for f in shipped.values())
    base = torch.load(run.dir / deployed["baseline full network"], weights_only=False)
    assert torch.allclose(base["module"](data.tensors[0]), baseline(data.tensors[0]), atol=1e-5)


def test_learning_rate_really_decays(tmp_path):
    sdp.train.train(
        run_dir=str(tmp_path), device="cpu", **dict(TINY_STAGE, epochs=4, train_limit=32),
        ratios=[0.5, 0.75], legacy_official=False, multi_point=False,
    )  # fmt: skip
    lrs = pd.read_csv(tmp_path / "metrics.csv")["lr"].tolist()  # the rate after each epoch
    assert lrs[0] < TINY_STAGE["lr"] * 1.01 and lrs[-1] <= TINY_STAGE["lr"] / 100
    assert all(b <= a for a, b in zip(lrs, lrs[1:])) and len(set(lrs)) >= 3
