"""AR-Net (AdaSkip): skipping semantics, masked vs efficient inference, costs, loss, stages, data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import dynn
from dynn import train as dynn_train
from dynn.train import weights_digest
from dynn.adaskip import evaluate as E
from dynn.adaskip import model as M
from dynn.adaskip import parameters as AP
from dynn.adaskip import plots as P
from dynn.adaskip import train as T
from dynn.data import DataError
from dynn.data import video as V
from dynn.params import ParameterError

RESO = [16, 12, 8, 6]


def small_model(**kw) -> M.AdaSkipNet:
    kw = {
        "backbone_list": ["cifar_resnet8"] * 3,
        "reso_list": RESO,
        "base_width": 4,
        "policy_width": 4,
        "hidden_dim": 8,
        **kw,
    }
    model = M.AdaSkipNet(10, **kw).eval()
    with torch.no_grad():  # spread the decisions over all actions
        model.linear.weight.normal_(0, 2)
        model.linear.bias.normal_(0, 1)
    return model


def clip_batch(b=6, t=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, t, 3, r, r, generator=g) for r in RESO]


@pytest.mark.parametrize("cx_quirk", [True, False])
@pytest.mark.parametrize("decision", ["sample", "argmax"])
def test_efficient_path_equals_masked_forward(cx_quirk, decision):
    model = small_model(cx_quirk=cx_quirk)
    inputs = clip_batch()
    noise = M.gumbel_noise((6, 8, model.action_dim), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, r_all, none, base_outs = model(input=inputs, tau=2.0, decision=decision, noise=noise)
    assert none is None and base_outs.shape == (6, model.reso_dim, 8, 10)
    out2, r2 = M.infer_efficient(model, inputs, tau=2.0, decision=decision, noise=noise)
    assert torch.equal(r_all.argmax(-1), r2.argmax(-1))
    torch.testing.assert_close(out, out2, atol=1e-5, rtol=1e-4)
    if decision == "sample":  # the test really exercises skips and several backbones
        chosen = set(r_all.argmax(-1).flatten().tolist())
        assert len(chosen) >= 4 and chosen & {4, 5, 6}


def test_skip_k_covers_k_steps_and_carries_r():
    model = small_model()
    inputs = clip_batch(b=1)
    forced = torch.tensor([[6, 0, 0, 0, 5, 1, 4, 2]])  # skip-4, (ignored)x3, skip-2, (ignored), skip-1, 16px
    with torch.no_grad():
        _, r_all = model.get_lite_j_and_r(inputs, True, 1.0, actions=forced)
    assert r_all.argmax(-1).tolist() == [[6, 6, 6, 6, 5, 5, 4, 2]]
    out, r2 = M.infer_efficient(model, inputs, actions=forced)
    assert r2.argmax(-1).tolist() == [[6, 6, 6, 6, 5, 5, 4, 2]]


def test_cx_quirk_only_changes_steps_after_a_skip():
    inputs = clip_batch(b=1)
    forced = torch.tensor([[3, 5, 3, 3, 3, 3, 3, 3]])  # policy prediction, a skip-2 at t=1, then the policy
    a, b = small_model(cx_quirk=True), small_model(cx_quirk=False)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        ja, _ = a.get_lite_j_and_r(inputs, True, 1.0, actions=forced)
        jb, _ = b.get_lite_j_and_r(inputs, True, 1.0, actions=forced)
    torch.testing.assert_close(ja[0], jb[0])  # before the skip: identical
    torch.testing.assert_close(ja[1], jb[1])  # the deciding step itself: identical
    assert not torch.allclose(ja[3], jb[3])  # after it the cell state differs (official quirk)


def test_measured_macs_follow_the_decisions():
    """With cx_quirk off, efficient-path MACs = chosen backbones + policy on deciding steps only."""
    model = small_model(cx_quirk=False)
    costs = E.measure_costs(model)
    inputs = clip_batch()
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        lite_j, r_all, policy_frames = M.policy_efficient(
            model, inputs, decision="sample", noise=M.gumbel_noise((6, 8, model.action_dim))
        )
        M.run_chosen(model, inputs, r_all, lite_j)
    choice = r_all.argmax(-1)
    expected = sum(int((choice == k).sum()) * c for k, c in enumerate(costs.backbone)) + policy_frames * costs.policy
    assert counter.get_total_flops() // 2 == expected
    assert policy_frames < 6 * 8  # some frames were skipped and the policy did not run on them
    # the masked official path pays every backbone on every frame
    masked = dynn.flops.count_macs(lambda i: model(input=i, decision="argmax"), inputs)
    assert masked == 6 * 8 * (sum(costs.backbone) + costs.policy)


def test_costs_scale_with_resolution():
    costs = E.measure_costs(small_model())
    assert costs.backbone[0] > costs.backbone[1] > costs.backbone[2] > 0
    assert costs.policy_cnn > 0 and costs.policy_step > 0


def test_combine_logits_averages_over_non_skipped_frames():
    model = small_model()
    logits = [torch.full((1, 3, 10), float(k + 1)) for k in range(model.reso_dim)]  # backbone k gives k+1
    r = F.one_hot(torch.tensor([[0, 2, 5]]), model.action_dim).float()  # 16px, 8px, skip
    out = model.combine_logits(r, logits)
    torch.testing.assert_close(out, torch.full((1, 10), (1.0 + 3.0) / 2))
    r_skip = F.one_hot(torch.tensor([[4, 5, 6]]), model.action_dim).float()
    assert torch.equal(model.combine_logits(r_skip, logits), torch.zeros(1, 10))  # all skipped: 0, no NaN


def test_efficiency_loss_terms():
    costs = torch.tensor([4.0, 2.0, 1.0, 0, 0, 0, 0])
    r = F.one_hot(torch.tensor([[0, 1], [2, 4]]), 7).float()
    loss, gflops, uniform = T.efficiency_loss(r, costs, uniform_loss_weight=3.0)
    assert gflops.item() == pytest.approx((4 + 2 + 1) / 4)
    u = torch.tensor([1, 1, 1, 0, 1, 0, 0]) / 4
    assert uniform.item() == pytest.approx(3 * torch.norm(u - u.mean()).item())
    flat = torch.ones(2, 7, 7) / 7
    assert T.efficiency_loss(flat, costs, uniform_loss_weight=3.0)[2].item() == pytest.approx(0, abs=1e-6)


def test_gumbel_is_one_hot_with_gradient():
    logits = torch.randn(5, 7, requires_grad=True)
    r = M.hard_gumbel_softmax(logits, 1.0, None)
    assert torch.equal(r.detach().sum(-1), torch.ones(5)) and set(r.detach().unique().tolist()) <= {0.0, 1.0}
    (r * torch.arange(7.0)).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_joint_step_trains_the_policy_through_r():
    model = small_model().train()
    temperature = M.GumbelTemperature(5.0, -0.045, steps_per_epoch=1)
    step = T.JointStep(
        temperature, torch.tensor([4.0, 2, 1, 0, 0, 0, 0]), w_acc=0.95, w_eff=0.05, uniform_loss_weight=3.0
    )
    out = step(model, (clip_batch(b=4), torch.tensor([1, 2, 3, 4])))
    assert out["tau"] == pytest.approx(5.0) and temperature.tau == pytest.approx(5.0 * np.exp(-0.045))
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert model.linear.weight.grad.abs().sum() > 0  # action head gets gradient (straight-through)
    assert model.base_model_list[0].stem[0].weight.grad is not None


def test_temperature_decays_per_epoch_and_its_state_restores_it():
    s = M.GumbelTemperature(5.0, AP.OFFICIAL_TAU_DECAY, steps_per_epoch=3)
    assert s.tau == pytest.approx(5.0)
    for _ in range(5):
        s.advance()
    assert s.epoch == 1 and s.tau == pytest.approx(5.0 * np.exp(-0.045))  # constant within an epoch
    s.advance()
    assert s.tau == pytest.approx(5.0 * np.exp(-0.09))
    t = M.GumbelTemperature(5.0, AP.OFFICIAL_TAU_DECAY, steps_per_epoch=3)
    t.load_state_dict(s.state_dict())
    assert t.tau == s.tau
    carried = M.GumbelTemperature(5.0, AP.OFFICIAL_TAU_DECAY, steps_per_epoch=3, start_epoch=2)
    assert carried.tau == pytest.approx(s.tau)  # finetuning continues where joint training ended


def test_matched_random_policy_matches_frame_usage():
    model = small_model()
    usage = np.array([0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.2])
    sampler = E.matched_action_sampler(model, usage)
    forced = sampler(400, 16, torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, r = model.get_lite_j_and_r(
            [x[:1].expand(400, -1, -1, -1, -1) for x in clip_batch(b=1, t=16)], True, 1.0, actions=forced
        )
    got = np.bincount(r.argmax(-1).flatten().numpy(), minlength=7) / r.shape[0] / r.shape[1]
    np.testing.assert_allclose(got, usage, atol=0.04)


def test_check_config_names_the_parameters():
    params = {
        "reso_list": [16, 24],
        "multi_models": True,
        "backbone_list": ["a", "b", "c"],
        "policy_input_offset": 5,
        "policy_also_backbone": True,
        "w_acc": 1,
        "w_eff": 0,
        "dataset": "moving_digits",
    }
    with pytest.raises(ParameterError, match="reso_list.*decrease") as err:
        AP.check_config(params)
    assert "policy_input_offset" in str(err.value) and "backbone_list" in str(err.value)


# ---------------------------------------------------------------- data
def test_moving_digits_is_deterministic_multiresolution_and_typed():
    a = dynn.data.get_dataset(
        "moving_digits", "test", reso_list=[16, 12, 8], num_segments=4, clip_frames=8, num_clips=12
    )
    b = dynn.data.get_dataset(
        "moving_digits", "test", reso_list=[16, 12, 8], num_segments=4, clip_frames=8, num_clips=5
    )
    assert torch.equal(a.clips[:5], b.clips)  # a prefix does not depend on the number of clips
    frames, label = a[3]
    assert [f.shape for f in frames] == [(4, 3, 16, 16), (4, 3, 12, 12), (4, 3, 8, 8)]
    torch.testing.assert_close(frames[2], F.interpolate(frames[0], size=(8, 8), mode="nearest"))
    assert 0 <= label < 10 and a.sampled_frame_types().shape == (12, 4)
    types = a.frame_types
    assert (types >= 2).sum(1).min() >= 2  # every clip has informative frames
    blank = a.clips[types == 0].float().mean()
    digit = a.clips[types == 3].float().mean()
    assert digit > 3 * blank
    train = dynn.data.get_dataset("moving_digits", "train", reso_list=[16, 8], num_clips=4)
    assert train.train and not a.train


def test_tsn_indices_follow_the_official_sampling():
    np.testing.assert_array_equal(V.tsn_indices(16, 4, random_shift=False), [2, 6, 10, 14])
    np.testing.assert_array_equal(V.tsn_indices(3, 5, random_shift=False), [0, 1, 2, 2, 2])
    idx = V.tsn_indices(16, 4, random_shift=True, rng=np.random.RandomState(0))
    assert all(4 * i <= j < 4 * (i + 1) for i, j in enumerate(idx))


def _frame_folder(root, videos=3, frames=5):
    from PIL import Image

    lines = []
    for v in range(videos):
        d = root / "frames" / f"video_{v}"
        d.mkdir(parents=True)
        for i in range(frames):
            Image.fromarray(np.full((40, 48, 3), 40 * i + v, dtype=np.uint8)).save(d / f"img_{i + 1:05d}.jpg")
        lines.append(f"frames/video_{v} {frames} {v % 2}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "val.txt").write_text("\n".join(lines[:2]) + "\n")


def test_video_frames_reads_the_official_format(tmp_path):
    _frame_folder(tmp_path)
    train = dynn.data.get_dataset("video_frames", "train", data_root=str(tmp_path), reso_list=[32, 16], num_segments=4)
    test = dynn.data.get_dataset(
        "video_frames", "test", data_root=str(tmp_path), reso_list=[32, 16], num_segments=4
    )  # no test.txt: the official evaluation uses val
    assert len(train) == 3 and len(test) == 2 and train.num_classes == 2
    frames, label = test[1]
    assert [f.shape for f in frames] == [(4, 3, 32, 32), (4, 3, 16, 16)] and label == 1
    # test-time sampling is the centred one: 5 frames, 4 segments -> 0-based frames 0, 1, 3, 4
    means = frames[0].mean(dim=(1, 2, 3))
    assert torch.all(means[1:] >= means[:-1])  # frames come in temporal order
    torch.testing.assert_close(frames[1], F.interpolate(frames[0], size=(16, 16), mode="nearest"))
    frames, _ = train[0]
    assert frames[0].shape == (4, 3, 32, 32)


def test_video_frames_errors_name_the_parameter(tmp_path):
    with pytest.raises(DataError, match="data_root"):
        dynn.data.get_dataset("video_frames", "train", data_root="")
    with pytest.raises(DataError, match="does not exist"):
        dynn.data.get_dataset("video_frames", "train", data_root=str(tmp_path / "nope"))
    with pytest.raises(DataError, match="train.txt"):
        dynn.data.get_dataset("video_frames", "train", data_root=str(tmp_path))
    (tmp_path / "train.txt").write_text("missing_video 10 0\n")
    (tmp_path / "val.txt").write_text("missing_video 10 0\n")
    with pytest.raises(DataError, match="does not exist"):
        dynn.data.get_dataset("video_frames", "train", data_root=str(tmp_path))


def test_check_config_rejects_sizes_the_cifar_resnet_cannot_halve_twice():
    params = {
        "reso_list": [24, 18, 12, 9],
        "multi_models": True,
        "backbone_list": ["cifar_resnet8"] * 3,
        "policy_input_offset": 3,
        "policy_also_backbone": True,
        "w_acc": 1,
        "w_eff": 0,
        "dataset": "moving_digits",
    }
    with pytest.raises(ParameterError, match="divisible by 4"):
        AP.check_config(params)


def test_torchvision_backbones_by_name():
    """The official networks (ResNet per resolution, MobileNetV2 policy) plug in by name."""
    model = M.AdaSkipNet(
        5,
        backbone_list=["resnet18"],
        reso_list=[32, 16],
        policy_backbone="mobilenet_v2",
        policy_input_offset=1,
        hidden_dim=8,
    ).eval()
    assert model.policy_feat_dim == 1280 and model.action_dim == 2 + 3
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(2, 3, 3, r, r, generator=g) for r in (32, 16)]
    noise = M.gumbel_noise((2, 3, model.action_dim), generator=g)
    with torch.no_grad():
        out, r_all, _, _ = model(input=inputs, decision="sample", noise=noise)
    out2, r2 = M.infer_efficient(model, inputs, decision="sample", noise=noise)
    torch.testing.assert_close(out, out2, atol=1e-5, rtol=1e-4)


def test_build_model_is_seeded():
    """Initialisation must not depend on the RNG state left by earlier (possibly resumed) stages."""
    arch = {
        "backbone_list": ["cifar_resnet8"] * 3,
        "reso_list": RESO,
        "policy_backbone": "tiny",
        "policy_input_offset": 3,
        "hidden_dim": 8,
        "skip_list": [1, 2, 4],
        "policy_also_backbone": True,
        "multi_models": True,
        "online_policy": True,
        "dropout": 0.5,
        "base_width": 4,
        "policy_width": 4,
        "cx_quirk": True,
    }
    a = M.build_model(10, seed=3, **arch)
    torch.rand(100)
    b = M.build_model(10, seed=3, **arch)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n


# ---------------------------------------------------------------- evaluation and official costs, directly
def _clip_dataset(n=6, t=8, seed=0):
    """A list dataset of ``n`` clips: items ``(frames per resolution, label)`` as the video sets give."""
    inputs = clip_batch(b=n, t=t, seed=seed)
    return [(tuple(x[i] for x in inputs), i % 10) for i in range(n)]


def test_evaluate_counts_what_ran_and_scores_what_the_efficient_path_predicts():
    model = small_model(cx_quirk=False)
    data = _clip_dataset()
    costs = E.measure_costs(model)
    ev = E.evaluate(model, data, mode="efficient", decision="sample", tau=1.0, batch_size=64, seed=5)
    inputs = [torch.stack([item[0][k] for item in data]) for k in range(len(RESO))]
    noise = E.batch_gumbel_noise(0, (6, 8, model.action_dim), 5, "cpu")  # the noise evaluate used
    out, r_all = M.infer_efficient(model, inputs, tau=1.0, decision="sample", noise=noise)
    targets = np.array([y for _, y in data])
    assert np.array_equal(ev.actions, r_all.argmax(-1).numpy())
    assert ev.accuracy == pytest.approx(100 * float((out.argmax(1).numpy() == targets).mean()))
    np.testing.assert_allclose(ev.usage, np.bincount(ev.actions.ravel(), minlength=model.action_dim) / 48)
    expected = sum(f * c for f, c in zip(ev.backbone_frames, costs.backbone)) + ev.policy_frames * costs.policy
    assert ev.macs_per_video * 6 == expected
    assert ev.policy_frames < 48  # skipped frames really cost nothing
    masked = E.evaluate(model, data, mode="masked", decision="sample", tau=1.0, seed=5)
    assert masked.macs_per_video == 8 * (sum(costs.backbone) + costs.policy)
    assert masked.accuracy == ev.accuracy and np.array_equal(masked.actions, ev.actions)
    uniform = E.evaluate(model, data, mode="uniform", resolution=0)
    assert uniform.macs_per_video == 8 * costs.backbone[0] and (uniform.actions == 0).all()
    assert np.array_equal(uniform.predictions, M.infer_uniform(model, inputs, 0).argmax(1).numpy())


def test_official_cost_accounting_equals_measured_macs_when_no_skip_is_cut_short():
    """Σ_a p_a·c_a + policy·Σ_a p_a·t_a per frame is what runs when the LSTM state skips too."""
    model = small_model(cx_quirk=False)
    costs = E.measure_costs(model)
    one_hot = np.eye(model.action_dim)
    assert E.usage_macs_per_frame(model, costs, one_hot[0]) == costs.backbone[0] + costs.policy
    assert E.usage_macs_per_frame(model, costs, one_hot[model.lite_action]) == costs.policy  # the free action
    assert E.usage_macs_per_frame(model, costs, one_hot[6]) == pytest.approx(costs.policy / 4)  # skip-4
    forced = torch.tensor([6, 0, 0, 0, 5, 0, 0, 1])  # skip-4 (frames 0-3), skip-2 (4-5), 16px, 12px
    fixed_policy = lambda b, steps, generator: forced[None].expand(b, steps)  # noqa: E731
    ev = E.evaluate(model, _clip_dataset(n=3), mode="random", action_sampler=fixed_policy)
    assert ev.actions[0].tolist() == [6, 6, 6, 6, 5, 5, 0, 1]
    official = E.usage_macs_per_frame(model, costs, ev.usage) * 8
    assert official == pytest.approx(costs.backbone[0] + costs.backbone[1] + 4 * costs.policy)
    assert ev.macs_per_video == pytest.approx(official)


# ---------------------------------------------------------------- the stages
STAGE_DATA = dict(
    dataset="moving_digits",
    reso_list=[16, 12, 8, 4],
    num_segments=4,
    clip_frames=8,
    train_limit=16,
    batch_size=8,
    num_workers=0,
    seed=0,
)
STAGE_ARCH = dict(backbone_list=["cifar_resnet8"] * 3, base_width=4, policy_width=4, policy_input_offset=3)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pretrain")
    T.pretrain(run_dir=str(run_dir), **STAGE_DATA, **STAGE_ARCH, epochs=1, lr=0.05, progress=False)
    return str(run_dir / "pretrain.ckpt")


def _joint_args(pretrained):
    return dict(
        pretrained=pretrained,
        **STAGE_DATA,
        **STAGE_ARCH,
        hidden_dim=8,
        w_eff=0.3,
        largest_cost=4.0,
        init_tau=5.0,
        tau_decay=-0.3,
        epochs=2,
        lr=0.02,
        progress=False,
    )


def test_pretrain_reloads_instead_of_retraining(pretrained, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a finished stage must not train again")

    monkeypatch.setattr(T, "fit", never)
    bank = T.pretrain(
        run_dir=str(Path(pretrained).parent), **STAGE_DATA, **STAGE_ARCH, epochs=1, lr=0.05, progress=False
    )
    assert len(bank.backbones) == 3 and not bank.training


def test_temperature_survives_an_interrupted_and_resumed_joint_stage(pretrained, tmp_path, monkeypatch):
    reference = T.joint(run_dir=str(tmp_path / "ref"), **_joint_args(pretrained))
    calls = {"n": 0}
    real_loss = T.efficiency_loss

    def crash_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # first step of epoch 2 (2 steps per epoch)
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(T, "efficiency_loss", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        T.joint(run_dir=str(tmp_path / "run"), **_joint_args(pretrained))
    monkeypatch.setattr(T, "efficiency_loss", real_loss)
    assert torch.load(tmp_path / "run" / "joint.ckpt", weights_only=False)["epoch"] == 1
    resumed = T.joint(run_dir=str(tmp_path / "run"), **_joint_args(pretrained))
    taus = [
        pd.read_csv(tmp_path / d / "metrics.csv").query("stage == 'joint'")["train_tau"].tolist()
        for d in ("ref", "run")
    ]
    assert taus[1] == pytest.approx(taus[0])
    assert taus[1][1] == pytest.approx(5.0 * np.exp(-0.3))  # epoch 2 resumed at the decayed τ, not τ₀
    states = [
        torch.load(tmp_path / d / "joint.ckpt", weights_only=False)["state"]["temperature"] for d in ("ref", "run")
    ]
    assert states[0] == states[1] and states[1]["epoch"] == 2
    assert weights_digest(resumed) == weights_digest(reference)


def test_finetune_carries_the_temperature_and_freezes_the_policy(pretrained, tmp_path):
    joint = T.joint(run_dir=str(tmp_path / "joint"), **_joint_args(pretrained))
    args = {**_joint_args(pretrained), "epochs": 1, "lr": 0.005}
    del args["pretrained"]
    model = T.finetune(run_dir=str(tmp_path / "ft"), joint_checkpoint=str(tmp_path / "joint" / "joint.ckpt"), **args)
    tau = pd.read_csv(tmp_path / "ft" / "metrics.csv").query("stage == 'finetune'")["train_tau"].tolist()
    assert tau == pytest.approx([5.0 * np.exp(-0.3 * 2)])  # continues after the 2 joint epochs
    for a, b in zip(joint.policy_modules(), model.policy_modules()):
        for p, q in zip(a.state_dict().values(), b.state_dict().values()):
            assert torch.equal(p, q)  # frozen weights and, in eval mode, unchanged BN statistics
    changed = [
        not torch.equal(p, q) for p, q in zip(joint.base_model_list.parameters(), model.base_model_list.parameters())
    ]
    assert any(changed)


def _joint_weights_of_this_rank(kwargs: dict) -> float:
    """Elastic worker: train the joint stage and return a digest of *this rank's* weights."""
    from dynn.adaskip import train as stages

    stages._reload = lambda model, stage: model.eval()  # keep the rank's own weights, not rank 0's file
    return weights_digest(stages.joint(**kwargs))


@pytest.mark.slow
def test_ddp_joint_stage_on_two_cpu_processes_gives_the_same_weights_on_every_rank(pretrained, tmp_path):
    kwargs = {**_joint_args(pretrained), "epochs": 1, "run_dir": str(tmp_path), "device": "cpu"}
    digests = dynn_train.run_elastic(_joint_weights_of_this_rank, 2, kwargs)
    assert sorted(digests) == [0, 1]
    assert digests[0] == pytest.approx(digests[1], rel=1e-6)
    model = T.joint(**kwargs)  # the notebook's call after the elastic run: reuses rank 0's checkpoint
    assert weights_digest(model) == pytest.approx(digests[0], rel=1e-6)
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 1  # rank 0 only: one row for the one epoch


# ---------------------------------------------------------------- notebook pieces
def test_parameters_module_is_light():
    import subprocess
    import sys

    code = "import sys, dynn.adaskip, dynn.adaskip.parameters; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_explorer_shows_each_frames_decision():
    pytest.importorskip("ipywidgets")
    import matplotlib.pyplot as plt

    model = small_model(cx_quirk=False)
    data = _clip_dataset(n=4)
    fig, actions, prediction = P._clip_figure(model, data[2][0], data[2][1], tau=1.0, decision="argmax", seed=0)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [model.action_names()[a] for a in actions] and 0 <= prediction < 10
    plt.close(fig)
    box = P.explorer(model, data, tau=1.0, decision="sample")
    clip, rule = box.children[0].children
    assert clip.max == 3
    clip.value = 3  # redraws for another clip without error
    rule.value = "argmax"  # and for the other decision rule
    plt.close("all")
