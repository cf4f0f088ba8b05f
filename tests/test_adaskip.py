"""AR-Net (AdaSkip): skipping semantics, masked vs efficient inference, costs, loss, data."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dynn
from dynn import adaskip as A
from dynn.data import DataError
from dynn.data import video as V
from dynn.params import ParameterError

RESO = [16, 12, 8, 6]


def small_model(**kw) -> A.AdaSkipNet:
    kw = {"backbone_list": ["cifar_resnet8"] * 3, "reso_list": RESO, "base_width": 4, "policy_width": 4,
          "hidden_dim": 8, **kw}
    model = A.AdaSkipNet(10, **kw).eval()
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
    noise = A.gumbel_noise((6, 8, model.action_dim), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, r_all, none, base_outs = model(input=inputs, tau=2.0, decision=decision, noise=noise)
    assert none is None and base_outs.shape == (6, model.reso_dim, 8, 10)
    out2, r2 = A.infer_efficient(model, inputs, tau=2.0, decision=decision, noise=noise)
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
    out, r2 = A.infer_efficient(model, inputs, actions=forced)
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
    costs = A.measure_costs(model)
    inputs = clip_batch()
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        lite_j, r_all, policy_frames = A.policy_efficient(model, inputs, decision="sample",
                                                          noise=A.gumbel_noise((6, 8, model.action_dim)))
        A.run_chosen(model, inputs, r_all, lite_j)
    choice = r_all.argmax(-1)
    expected = sum(int((choice == k).sum()) * c for k, c in enumerate(costs.backbone)) + policy_frames * costs.policy
    assert counter.get_total_flops() // 2 == expected
    assert policy_frames < 6 * 8  # some frames were skipped and the policy did not run on them
    # the masked official path pays every backbone on every frame
    masked = dynn.flops.count_macs(lambda i: model(input=i, decision="argmax"), inputs)
    assert masked == 6 * 8 * (sum(costs.backbone) + costs.policy)


def test_costs_scale_with_resolution():
    costs = A.measure_costs(small_model())
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
    loss, gflops, uniform = A.efficiency_loss(r, costs, reso_dim=4, uniform_loss_weight=3.0)
    assert gflops.item() == pytest.approx((4 + 2 + 1) / 4)
    u = torch.tensor([1, 1, 1, 0, 1, 0, 0]) / 4
    assert uniform.item() == pytest.approx(3 * torch.norm(u - u.mean()).item())
    flat = torch.ones(2, 7, 7) / 7
    assert A.efficiency_loss(flat, costs, reso_dim=4, uniform_loss_weight=3.0)[2].item() == pytest.approx(0, abs=1e-6)


def test_gumbel_is_one_hot_with_gradient():
    logits = torch.randn(5, 7, requires_grad=True)
    r = A.hard_gumbel_softmax(logits, 1.0, None)
    assert torch.equal(r.detach().sum(-1), torch.ones(5)) and set(r.detach().unique().tolist()) <= {0.0, 1.0}
    (r * torch.arange(7.0)).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_joint_step_trains_the_policy_through_r():
    model = small_model().train()
    step = A.make_joint_step(A.TemperatureSchedule(5.0), torch.tensor([4.0, 2, 1, 0, 0, 0, 0]), w_acc=0.95,
                             w_eff=0.05, uniform_loss_weight=3.0, reso_dim=model.reso_dim)
    out = step(model, (clip_batch(b=4), torch.tensor([1, 2, 3, 4])))
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert model.linear.weight.grad.abs().sum() > 0  # action head gets gradient (straight-through)
    assert model.base_model_list[0].stem[0].weight.grad is not None


def test_temperature_schedule_resumes():
    s = A.TemperatureSchedule(5.0)
    assert s.tau == pytest.approx(5.0)
    s.step(); s.step()
    assert s.tau == pytest.approx(5.0 * np.exp(-0.09))
    t = A.TemperatureSchedule(5.0)
    t.load_state_dict(s.state_dict())
    assert t.tau == s.tau


def test_matched_random_policy_matches_frame_usage():
    model = small_model()
    usage = np.array([0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.2])
    sampler = A.matched_action_sampler(model, usage)
    forced = sampler(400, 16, torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, r = model.get_lite_j_and_r([x[:1].expand(400, -1, -1, -1, -1) for x in clip_batch(b=1, t=16)],
                                      True, 1.0, actions=forced)
    got = np.bincount(r.argmax(-1).flatten().numpy(), minlength=7) / r.shape[0] / r.shape[1]
    np.testing.assert_allclose(got, usage, atol=0.04)


def test_check_config_names_the_parameters():
    params = {"reso_list": [16, 24], "multi_models": True, "backbone_list": ["a", "b", "c"],
              "policy_input_offset": 5, "policy_also_backbone": True, "w_acc": 1, "w_eff": 0,
              "dataset": "moving_digits"}
    with pytest.raises(ParameterError, match="reso_list.*decrease") as err:
        A.check_config(params)
    assert "policy_input_offset" in str(err.value) and "backbone_list" in str(err.value)


# ---------------------------------------------------------------- data
def test_moving_digits_is_deterministic_multiresolution_and_typed():
    a = dynn.data.get_dataset("moving_digits", "test", reso_list=[16, 12, 8], num_segments=4, clip_frames=8,
                              num_clips=12)
    b = dynn.data.get_dataset("moving_digits", "test", reso_list=[16, 12, 8], num_segments=4, clip_frames=8,
                              num_clips=5)
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
    train = dynn.data.get_dataset("video_frames", "train", data_root=str(tmp_path), reso_list=[32, 16],
                                  num_segments=4)
    test = dynn.data.get_dataset("video_frames", "test", data_root=str(tmp_path), reso_list=[32, 16],
                                 num_segments=4)  # no test.txt: the official evaluation uses val
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
    with pytest.raises(DataError, match="does not exist"):
        dynn.data.get_dataset("video_frames", "train", data_root=str(tmp_path))


def test_check_config_rejects_sizes_the_cifar_resnet_cannot_halve_twice():
    params = {"reso_list": [24, 18, 12, 9], "multi_models": True, "backbone_list": ["cifar_resnet8"] * 3,
              "policy_input_offset": 3, "policy_also_backbone": True, "w_acc": 1, "w_eff": 0,
              "dataset": "moving_digits"}
    with pytest.raises(ParameterError, match="divisible by 4"):
        A.check_config(params)


def test_torchvision_backbones_by_name():
    """The official networks (ResNet per resolution, MobileNetV2 policy) plug in by name."""
    model = A.AdaSkipNet(5, backbone_list=["resnet18"], reso_list=[32, 16], policy_backbone="mobilenet_v2",
                         policy_input_offset=1, hidden_dim=8).eval()
    assert model.policy_feat_dim == 1280 and model.action_dim == 2 + 3
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(2, 3, 3, r, r, generator=g) for r in (32, 16)]
    noise = A.gumbel_noise((2, 3, model.action_dim), generator=g)
    with torch.no_grad():
        out, r_all, _, _ = model(input=inputs, decision="sample", noise=noise)
    out2, r2 = A.infer_efficient(model, inputs, decision="sample", noise=noise)
    torch.testing.assert_close(out, out2, atol=1e-5, rtol=1e-4)


def test_build_model_is_seeded():
    """Initialisation must not depend on the RNG state left by earlier (possibly resumed) stages."""
    params = {"backbone_list": ["cifar_resnet8"] * 3, "reso_list": RESO, "policy_backbone": "tiny",
              "policy_input_offset": 3, "hidden_dim": 8, "skip_list": [1, 2, 4], "policy_also_backbone": True,
              "multi_models": True, "online_policy": True, "dropout": 0.5, "base_width": 4, "policy_width": 4,
              "cx_quirk": True, "seed": 3}
    a = A.build_model(params, 10)
    torch.rand(100)
    b = A.build_model(params, 10)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n
