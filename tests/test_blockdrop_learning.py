"""BlockDrop's learning signal: exact values of the self-critical advantage and the loss, the
α-bounded sampling, the entropy term's sign, and a toy problem the policy must learn (drop the
useless blocks, keep the useful ones). Each test fails when its part of the signal breaks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import dynn.blockdrop as bd
from dynn.blockdrop.model import BlockDrop, Rollout


class FixedRollout(nn.Module):
    """A 'model' whose rollout is given: probabilities (a leaf to differentiate), policies, logits."""

    def __init__(self, rollout: Rollout):
        super().__init__()
        self.out = rollout

    def forward(self, x, mode="rollout", alpha=0.8):
        return self.out


def _rollout():
    # Two images, K = 2 blocks, 3 classes, target class 0 for both.
    probs = torch.tensor([[0.8, 0.3], [0.6, 0.9]], requires_grad=True)
    sampled = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    greedy = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    learned = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # image 2's first decision is forced (curriculum)
    right, wrong = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 3.0, 0.0])
    logits_sample = torch.stack([right, wrong])  # image 1 right with 1 block, image 2 wrong with 2
    logits_greedy = torch.stack([right, right])  # both right: 2 blocks, 1 block
    return Rollout(probs, sampled, greedy, learned, logits_sample, logits_greedy), torch.tensor([0, 0])


def _expected_advantages(gamma):
    r_sample = [1 - (1 / 2) ** 2, -gamma]
    r_greedy = [1 - (2 / 2) ** 2, 1 - (1 / 2) ** 2]
    return [a - b for a, b in zip(r_sample, r_greedy)]  # self-critical: R(sampled) − R(greedy)


def test_curriculum_loss_is_the_self_critical_policy_gradient_minus_the_entropy_bonus():
    gamma, beta = 2.0, 0.1
    rollout, y = _rollout()
    out = bd.train.policy_step_fn(gamma=gamma, alpha=0.8, beta=beta, joint=False)(
        FixedRollout(rollout), (torch.zeros(2, 1), y)
    )
    A = _expected_advantages(gamma)
    assert A == pytest.approx([0.75, -2.75])
    p, u, m = rollout.probs.tolist(), rollout.sampled.tolist(), rollout.learned.tolist()
    log_pi = [[math.log(p[i][k]) if u[i][k] else math.log(1 - p[i][k]) for k in range(2)] for i in range(2)]
    pg = -sum(log_pi[i][k] * A[i] * m[i][k] for i in range(2) for k in range(2))
    entropy = -sum(p[i][k] * math.log(p[i][k]) for i in range(2) for k in range(2))  # official one-sided term
    assert float(out["loss"]) == pytest.approx((pg - beta * entropy) / 2, rel=1e-6)
    assert float(out["reward"]) == pytest.approx((0.75 - gamma) / 2)
    out["loss"].backward()
    grad = rollout.probs.grad
    # Image 1 was rewarded for keeping block 0 and dropping block 1 (A > 0): descent raises p[0,0],
    # lowers p[0,1]. Image 2 was punished for keeping block 1 (A < 0): descent lowers p[1,1].
    assert grad[0, 0] < 0 and grad[0, 1] > 0 and grad[1, 1] > 0
    # The forced decision p[1,0] gets only the entropy bonus: −β·d(−p log p)/dp / B = β(log p + 1)/B.
    assert float(grad[1, 0]) == pytest.approx(beta * (math.log(0.6) + 1) / 2, rel=1e-5)


def test_joint_loss_is_the_policy_gradient_plus_cross_entropy_without_entropy():
    gamma = 5.0
    rollout, y = _rollout()
    out = bd.train.policy_step_fn(gamma=gamma, alpha=0.8, beta=0.1, joint=True)(
        FixedRollout(rollout), (torch.zeros(2, 1), y)
    )
    A = _expected_advantages(gamma)
    p, u, m = rollout.probs.tolist(), rollout.sampled.tolist(), rollout.learned.tolist()
    log_pi = [[math.log(p[i][k]) if u[i][k] else math.log(1 - p[i][k]) for k in range(2)] for i in range(2)]
    pg = -sum(log_pi[i][k] * A[i] * m[i][k] for i in range(2) for k in range(2))
    ce = float(torch.nn.functional.cross_entropy(rollout.logits_sample, y))
    assert float(out["loss"]) == pytest.approx(pg + ce, rel=1e-6)


class ConstantPolicy(nn.Module):
    """One learnable logit per block, the same for every image (a policy network reduced to its bias)."""

    def __init__(self, num_blocks: int, init: float = 0.0):
        super().__init__()
        self.num_blocks = num_blocks
        self.logits = nn.Parameter(torch.full((num_blocks,), float(init)))

    def forward(self, x):
        return torch.sigmoid(self.logits).expand(len(x), -1)


def test_sampling_is_bounded_by_alpha_both_ways():
    main = bd.model.make_main_network(8, num_classes=10).eval()
    policy = ConstantPolicy(3)
    policy.logits.data = torch.tensor([-30.0, 30.0, 0.0])  # s ≈ 0, 1, 0.5
    model = BlockDrop(main, policy).eval()
    torch.manual_seed(0)
    out = model(torch.randn(4000, 3, 8, 8), mode="rollout", alpha=0.8)
    freq = out.sampled.mean(0)
    # s' = α·s + (1 − α)·(1 − s): an almost surely dropped block is still tried 20 % of the time.
    assert freq.tolist() == pytest.approx([0.2, 0.8, 0.5], abs=0.03)
    assert out.probs[0].tolist() == pytest.approx([0.2, 0.8, 0.5], abs=1e-6)
    assert out.greedy[0].tolist() == [0.0, 1.0, 1.0]  # greedy reads s itself, not s'


def _toy_main_network(useful: list[int]) -> bd.model.BlockDropResNet:
    """A ResNet-14 (K = 6) whose blocks outside ``useful`` add nothing (residual branch zeroed:
    keeping or dropping them gives the same output) and whose ``useful`` blocks dominate the
    features (residual branch scaled up), so that dropping one changes the prediction."""
    torch.manual_seed(3)
    main = bd.model.make_main_network(14, num_classes=10)
    for k, block in enumerate(main.view.blocks):
        bn = block.bn2
        if k in useful:
            bn.weight.data.mul_(4.0)
        else:
            bn.weight.data.zero_()
            bn.bias.data.zero_()
    return main.eval()


def test_policy_learns_to_drop_useless_blocks_and_keep_useful_ones():
    """Targets are the full network's own predictions, so keeping every block is always right;
    dropping a useless block costs nothing and earns reward, dropping a useful one makes the
    prediction wrong (−γ). Starting from keep-probability 0.5 everywhere, the curriculum's
    self-critical REINFORCE must end with exactly the useful blocks kept."""
    useful = [0, 2, 4]
    main = _toy_main_network(useful)
    x = torch.randn(512, 3, 16, 16)
    with torch.no_grad():
        y = main(x).argmax(1)
        for k in useful:  # the toy is what it claims: dropping a useful block breaks most predictions
            u = torch.ones(len(x), 6)
            u[:, k] = 0
            assert (main.forward_skip(x, u).argmax(1) == y).float().mean() < 0.6
        u = torch.ones(len(x), 6)
        u[:, [1, 3, 5]] = 0
        assert torch.equal(main.forward_skip(x, u).argmax(1), y)
    model = BlockDrop(main, ConstantPolicy(6))
    bd.train.freeze(model.main)
    bd.train.Curriculum(blocks_per_epoch=6)(model)
    step = bd.train.policy_step_fn(gamma=1.0, alpha=0.8, beta=0.1, joint=False)
    optimizer = torch.optim.Adam(model.policy.parameters(), lr=0.05)
    torch.manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, len(x), (64,))
        loss = step(model, (x[idx], y[idx]))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    keep = torch.sigmoid(model.policy.logits.detach())
    assert bd.model.greedy_policy(keep).tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0], keep
    assert (keep[useful] > 0.8).all() and (keep[[1, 3, 5]] < 0.2).all(), keep


def test_gamma_claim_needs_rising_blocks_and_a_positive_accuracy_interval():
    def ev(blocks, correct):
        n = len(correct)
        policy = np.zeros((n, 4), dtype=np.int64)
        policy[:, :blocks] = 1
        return bd.evaluate.PolicyEval(np.zeros((n, 4)), policy, np.where(correct, 0, 1), np.zeros(n, dtype=int))

    rng = np.random.default_rng(0)
    lo, hi = rng.random(2000) < 0.6, rng.random(2000) < 0.9
    good = bd.claims.gamma_claim({0.3: ev(1, lo), 1.0: ev(2, lo | hi), 5.0: ev(3, hi)})
    assert good["holds"] is True and good["ci"][0] > 0
    not_rising = bd.claims.gamma_claim({0.3: ev(3, lo), 5.0: ev(2, hi)})
    assert not_rising["holds"] is False
    worse = bd.claims.gamma_claim({0.3: ev(1, hi), 5.0: ev(3, lo)})
    assert worse["holds"] is False
    assert bd.claims.gamma_claim(None)["holds"] is None


def test_matched_static_point_is_the_nearest_not_below():
    import pandas as pd

    static = pd.DataFrame({"kept_blocks": [1, 2, 3, 4], "macs_mean": [10.0, 20.0, 30.0, 40.0]})
    assert int(bd.claims.matched_static(static, 21.0)["kept_blocks"]) == 3
    assert int(bd.claims.matched_static(static, 20.0)["kept_blocks"]) == 2
    assert int(bd.claims.matched_static(static, 55.0)["kept_blocks"]) == 4
