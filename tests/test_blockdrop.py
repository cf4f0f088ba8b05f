"""BlockDrop: the three forward paths agree, costs add up, rewards and the curriculum follow
the official code, and bad parameters fail before training."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import dynn
import dynn.blockdrop as bd


def _randomise_bn(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics so that a wrong path cannot pass by accident."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def _model(depth=14, policy_depth=8, res=32, downsample=1):
    main = bd.make_main_network(depth, num_classes=10)
    model = bd.BlockDrop(main, bd.PolicyNetwork(main.num_blocks, policy_depth, downsample=downsample))
    _randomise_bn(model)
    return model.eval()


@pytest.mark.parametrize("depth,res", [(14, 32), (50, 64)])
def test_masked_skip_and_single_paths_agree(depth, res):
    model = _model(depth, policy_depth=8 if depth < 50 else 10, downsample=1 if depth < 50 else 2)
    main = model.main
    x = torch.randn(7, 3, res, res)
    policies = torch.bernoulli(torch.full((7, main.num_blocks), 0.5))
    policies[0] = 0  # every block dropped
    policies[1] = 1  # every block kept
    with torch.no_grad():
        masked = main.forward_masked(x, policies)
        skip = main.forward_skip(x, policies)
        single = torch.cat([main.forward_single(x[i:i + 1], policies[i]) for i in range(len(x))])
        full = main(x)
    assert torch.allclose(masked, skip, atol=1e-5, rtol=1e-4)
    assert torch.allclose(masked, single, atol=1e-5, rtol=1e-4)
    assert torch.allclose(full[1], skip[1], atol=1e-5, rtol=1e-4)  # all kept = the unmodified backbone
    assert not torch.allclose(full[0], skip[0], atol=1e-3)  # dropping blocks changes the output


def test_dropped_block_is_shortcut_without_relu():
    block = bd.make_main_network(20, 10).backbone.blocks[3]  # first block of stage 2: stride 2, zero-pad
    _randomise_bn(block)
    block.eval()
    x = torch.randn(2, 16, 8, 8)
    out = bd.block_shortcut(block, x)
    assert out.shape == (2, 32, 4, 4)
    assert (out[:, 16:] == 0).all()  # zero-padded channels
    assert torch.allclose(out[:, :16], nn.functional.avg_pool2d(x, 2))
    assert (out < 0).any()  # no ReLU on a dropped block
    assert torch.allclose(bd.kept_block(block, x), block(x))  # kept block = the backbone's block


def test_real_skip_macs_equal_fixed_plus_kept_blocks():
    model = _model(20)
    costs = bd.block_costs(model, (3, 32, 32))
    assert costs.full == dynn.flops.count_macs(model.main, torch.zeros(1, 3, 32, 32))
    assert len(costs.blocks) == model.num_blocks == 9 and (costs.blocks > 0).all()
    assert costs.fixed > 0 and costs.fixed + costs.blocks.sum() == costs.full
    assert costs.policy == dynn.flops.count_macs(model.policy, torch.zeros(1, 3, 32, 32))
    x = torch.randn(5, 3, 32, 32)
    u = torch.bernoulli(torch.full((5, 9), 0.5))
    measured = dynn.flops.count_macs(model.main.forward_skip, x, u)
    assert measured == pytest.approx(costs.macs(u, with_policy=False).sum())
    single = dynn.flops.count_macs(model.main.forward_single, x[:1], u[0])
    assert single == pytest.approx(costs.macs(u[:1], with_policy=False)[0])
    # the masked (official) path pays for every block somebody in the batch keeps
    masked = dynn.flops.count_macs(model.main.forward_masked, x, u)
    assert masked > measured


def test_bottleneck_costs_include_downsample_in_fixed_part():
    model = _model(50, policy_depth=10, downsample=2)
    costs = bd.block_costs(model, (3, 64, 64))
    assert model.num_blocks == 16
    # the projection shortcut of each stage's first block runs whatever the policy says
    x = torch.randn(1, 3, 64, 64)
    none_kept = dynn.flops.count_macs(model.main.forward_single, x, [0] * 16)
    assert none_kept == costs.fixed
    table = dynn.flops.macs_by_module(model.main.backbone, x)
    downsample = sum(v for k, v in table.items() if k.endswith("downsample"))
    assert downsample > 0 and costs.fixed == table["conv1"] + table["fc"] + downsample


def test_reward_and_bounded_probs():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    targets = torch.tensor([0, 0, 0])
    policy = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    r = bd.reward(logits, targets, policy, gamma=5)
    assert torch.allclose(r, torch.tensor([1 - 0.5 ** 2, -5.0, 1.0]))
    s = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(bd.bounded_probs(s, 0.8), torch.tensor([0.2, 0.5, 0.8]))
    assert torch.equal(bd.greedy_policy(s), torch.tensor([0.0, 1.0, 1.0]))


def test_curriculum_forces_first_blocks_and_masks_them_out_of_the_loss(tmp_path):
    model = _model(20)
    bd.freeze(model.main)
    train_mode = bd.curriculum_train_mode(blocks_per_epoch=2)
    train_mode(model)  # epoch 0: the last 2 decisions are learned
    assert int(model.learned_blocks) == 2 and not model.main.training and model.policy.training
    out = model(torch.randn(6, 3, 32, 32), mode="rollout", alpha=0.8)
    assert (out.sampled[:, :7] == 1).all() and (out.greedy[:, :7] == 1).all()
    assert (out.learned[:, :7] == 0).all() and (out.learned[:, 7:] == 1).all()
    for _ in range(10):
        train_mode(model)
    assert int(model.learned_blocks) == 9  # capped at K


def test_policy_gradient_reaches_only_the_policy_in_the_curriculum():
    model = _model(14)
    bd.freeze(model.main)
    bd.curriculum_train_mode(10)(model)
    step = bd.policy_step_fn(gamma=1, alpha=0.8, beta=0.1, joint=False)
    out = step(model, (torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))))
    out["loss"].backward()
    assert all(p.grad is None for p in model.main.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.policy.parameters())


def test_joint_step_trains_both_networks():
    model = _model(14)
    bd.joint_train_mode(model)
    step = bd.policy_step_fn(gamma=5, alpha=0.8, beta=0.1, joint=True)
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():  # targets the full network gets right: sampled and greedy rewards differ
        y = model.eval().main(x).argmax(1)
    bd.joint_train_mode(model)
    out = step(model, (x, y))
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.main.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.policy.parameters())
    assert out["ce"] > 0


def test_curriculum_stage_resumes_with_its_schedule(tmp_path):
    """A curriculum stage interrupted after one epoch continues the block schedule and ends
    with the same policy as an uninterrupted one."""
    data = torch.utils.data.TensorDataset(torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,)))

    def run(epochs, run_dir):
        torch.manual_seed(0)
        model = _model(8)
        bd.freeze(model.main)
        opt = torch.optim.Adam(model.policy.parameters(), lr=1e-3)
        dynn.train.fit(model, bd.policy_step_fn(gamma=1, alpha=0.8, beta=0.1, joint=False), data, epochs=epochs,
                       optimizer=opt, batch_size=16, run_dir=run_dir, stage="curriculum",
                       train_mode=bd.curriculum_train_mode(1), progress=False)
        return model

    full = run(3, tmp_path / "a")
    run(1, tmp_path / "b")
    resumed = run(3, tmp_path / "b")
    assert int(full.learned_blocks) == int(resumed.learned_blocks) == 3
    for a, b in zip(full.policy.parameters(), resumed.policy.parameters()):
        assert torch.allclose(a, b)


def test_evaluation_summary_and_static_baseline():
    model = _model(14)
    data = torch.utils.data.TensorDataset(torch.randn(20, 3, 32, 32), torch.randint(0, 10, (20,)))
    costs = bd.block_costs(model, (3, 32, 32))
    ev = bd.evaluate_policy(model, data, batch_size=8)
    assert ev.policy.shape == (20, 6) and set(np.unique(ev.policy)) <= {0, 1}
    s = ev.summary(costs)
    assert s["macs_mean"] - s["main_macs_mean"] == pytest.approx(costs.policy)
    assert 1 <= s["distinct_policies"] <= 20
    # threshold 0 keeps every block: the accuracy of the full network
    all_kept = bd.evaluate_policy(model, data, batch_size=8, threshold=0.0, keep_prob=ev.keep_prob)
    full_preds = model.main(torch.stack([d[0] for d in data])).argmax(1).numpy()
    assert (all_kept.policy == 1).all() and (all_kept.preds == full_preds).all()
    static = bd.static_drop_baselines(model, data, ev, costs, counts=[2, 6])
    assert list(static["blocks_mean"]) == [2, 6]
    assert static["macs_mean"].iloc[1] == costs.full  # keeping all, no policy network to pay


def test_bad_shapes_and_names_fail_clearly():
    with pytest.raises(ValueError, match="depth"):
        bd.make_main_network(21, 10)
    with pytest.raises(ValueError, match="policy_depth"):
        bd.PolicyNetwork(9, depth=9)
    main = bd.make_main_network(8, 10)
    with pytest.raises(ValueError, match="3 blocks"):
        bd.BlockDrop(main, bd.PolicyNetwork(5, 8))
    with pytest.raises(ValueError, match="3 decisions"):
        main.forward_single(torch.randn(1, 3, 32, 32), [1, 0])


def test_explorer_shows_a_picked_image():
    pytest.importorskip("ipywidgets")
    model = _model(8)
    data = torch.utils.data.TensorDataset(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    slider = bd.explorer(model, data)
    slider.value = 3  # re-renders for another image without error
    assert slider.max == 3
