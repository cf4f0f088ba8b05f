"""BlockDrop's two networks: the main ResNet whose blocks can be dropped, and the policy network.

A *kept* block computes ``relu(shortcut(x) + f(x))``, a *dropped* block ``shortcut(x)`` (no
ReLU); the shortcut (and any downsampling) always runs. The backbone is read through the
foundation's residual view (:func:`dynn.models.residual_view`, with
:func:`dynn.models.residual.shortcut` / :func:`~dynn.models.residual.residual` as the one
definition of a block's two paths), so the same code serves the CIFAR ResNets and
torchvision's ResNets (ResNet-101 for ImageNet-size inputs). Three forward paths:

- :meth:`BlockDropResNet.forward_masked` (training, the official batched path): every block
  runs on the whole batch and the policy selects the output;
- :meth:`BlockDropResNet.forward_skip`: block k runs only on the images that keep it
  (gather → block → scatter), so dropped blocks really save time, batched;
- :meth:`BlockDropResNet.forward_single`: one policy for the batch (batch 1 at test time), a
  Python ``if`` per block (the official ``forward_single``).

:class:`BlockDrop` joins the two networks: greedy inference (``u = 1[s ≥ 0.5]``) and the
rollouts (sampled and greedy policies with their logits) that the REINFORCE step in
:mod:`dynn.blockdrop.train` needs.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

import dynn.models
from dynn.blockdrop.parameters import CIFAR_DEPTHS, MAIN_DEPTHS, POLICY_DEPTHS, TORCHVISION_DEPTHS
from dynn.models.preresnet import PreResNet
from dynn.models.residual import ResidualView, residual, residual_view, shortcut


def kept_block(block: nn.Module, x: torch.Tensor, identity: torch.Tensor | None = None) -> torch.Tensor:
    """A kept block: ``relu(shortcut(x) + f(x))`` (``identity`` = the shortcut if already run)."""
    if identity is None:
        identity = shortcut(block, x)
    return F.relu(identity + residual(block, x))


# ---------------------------------------------------------------- the main network
class BlockDropResNet(nn.Module):
    """A ResNet seen as ``stem → blocks[0..K-1] → head`` with per-block keep/drop decisions.

    Wraps (does not copy) the backbone: ``forward(x)`` is the unmodified full network and
    the block paths are those of :mod:`dynn.models.residual`. Pre-activation ResNets are
    refused: their blocks share one BatchNorm between shortcut and residual branch, so a
    block cannot be dropped while its shortcut runs.
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        if isinstance(backbone, PreResNet):
            raise TypeError(
                "BlockDrop drops a block's residual branch and keeps its shortcut; pre-activation "
                "blocks have no separable shortcut. Use a CIFAR ResNet or a torchvision ResNet."
            )
        self.backbone = backbone
        view = self.view  # TypeError for anything but a residual network
        self.block_names = list(view.block_names)
        self.shortcut_names = view.shortcut_names()
        self.stage_index = list(view.stage_index)

    @property
    def view(self) -> ResidualView:
        """The backbone's residual view, built once (kept out of copies: it holds closures)."""
        view = self.__dict__.get("_view")
        if view is None:
            view = self.__dict__["_view"] = residual_view(self.backbone)
        return view

    def __getstate__(self) -> dict:  # deepcopy/pickle rebuild the view on the copy's own modules
        state = self.__dict__.copy()
        state.pop("_view", None)
        return state

    @property
    def num_blocks(self) -> int:
        """K, the number of droppable residual blocks."""
        return len(self.block_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The full network (every block kept): the backbone's own forward."""
        return self.backbone(x)

    def forward_masked(self, x: torch.Tensor, policy: torch.Tensor) -> torch.Tensor:
        """Training path: each block runs on the whole batch, the policy picks its output.

        ``policy`` is ``B×K`` in {0, 1}. As in the official code a block that nobody in the
        batch keeps is not run. Saves no time otherwise; used where BatchNorm must see the
        whole batch (joint finetuning in training mode).
        """
        view = self.view
        x = view.stem_and_pool(x)
        for k, block in enumerate(view.blocks):
            keep = policy[:, k]
            identity = shortcut(block, x)
            if not bool(keep.any()):
                x = identity
                continue
            mask = keep.to(x.dtype).view(-1, 1, 1, 1)
            x = kept_block(block, x, identity) * mask + identity * (1 - mask)
        return view.head(x)

    def forward_skip(self, x: torch.Tensor, policy: torch.Tensor) -> torch.Tensor:
        """Real skipping, batched: block k runs only on the samples that keep it.

        gather (``index_select``) → block → scatter (``index_copy``) into the shortcut. In
        eval mode this equals :meth:`forward_masked` sample by sample, and the MACs that
        FlopCounterMode sees are exactly fixed part + kept residual branches.
        """
        view = self.view
        keep = policy.detach().to("cpu", torch.bool)  # one host copy, not one sync per block
        x = view.stem_and_pool(x)
        for k, block in enumerate(view.blocks):
            identity = shortcut(block, x)
            idx = keep[:, k].nonzero().flatten()
            if len(idx) == 0:
                x = identity
            elif len(idx) == len(keep):
                x = kept_block(block, x, identity)
            else:
                idx = idx.to(x.device)
                kept = kept_block(block, x.index_select(0, idx), identity.index_select(0, idx))
                x = identity.index_copy(0, idx, kept)
        return view.head(x)

    def forward_single(self, x: torch.Tensor, policy: torch.Tensor | Sequence) -> torch.Tensor:
        """Real skipping for one policy shared by the batch (batch 1 at test time): a Python ``if``."""
        decisions = policy.detach().flatten().tolist() if isinstance(policy, torch.Tensor) else list(policy)
        if len(decisions) != self.num_blocks:
            raise ValueError(f"forward_single needs one policy of {self.num_blocks} decisions, got {len(decisions)}")
        view = self.view
        x = view.stem_and_pool(x)
        for keep, block in zip(decisions, view.blocks):
            x = kept_block(block, x) if keep else shortcut(block, x)
        return view.head(x)


def make_main_network(depth: int, num_classes: int, in_channels: int = 3) -> BlockDropResNet:
    """CIFAR ResNet-``depth`` (6n+2) or a torchvision ResNet-18/34/50/101/152 (K=33 for 101)."""
    if depth in CIFAR_DEPTHS:
        backbone = dynn.models.create(f"cifar_resnet{depth}", num_classes=num_classes, in_channels=in_channels)
    elif depth in TORCHVISION_DEPTHS:
        if in_channels != 3:
            raise ValueError("torchvision ResNets take 3-channel input")
        backbone = dynn.models.create(f"resnet{depth}", num_classes=num_classes)
    else:
        raise ValueError(f"parameter 'depth' = {depth!r}: allowed {MAIN_DEPTHS}")
    return BlockDropResNet(backbone)


# ---------------------------------------------------------------- the policy network
class PolicyNetwork(nn.Module):
    """Small ResNet read once per image → K keep-probabilities ``s = sigmoid(Linear(features))``.

    ``downsample`` > 1 average-pools the input first (the official ImageNet policy sees
    112×112 instead of 224×224), so the policy's cost stays small next to the main network.
    """

    def __init__(self, num_blocks: int, depth: int = 8, in_channels: int = 3, downsample: int = 1):
        super().__init__()
        if depth in CIFAR_DEPTHS:
            self.features = dynn.models.create(f"cifar_resnet{depth}", num_classes=num_blocks, in_channels=in_channels)
        elif depth == 10:  # ResNet-10: torchvision's ResNet with one BasicBlock per stage
            import torchvision.models.resnet as tv_resnet

            self.features = tv_resnet.ResNet(tv_resnet.BasicBlock, [1, 1, 1, 1], num_classes=num_blocks)
        elif depth == 18:
            self.features = dynn.models.create("resnet18", num_classes=num_blocks)
        else:
            raise ValueError(f"parameter 'policy_depth' = {depth!r}: allowed {POLICY_DEPTHS}")
        self.num_blocks, self.downsample = num_blocks, downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample > 1:
            x = F.avg_pool2d(x, self.downsample)
        return torch.sigmoid(self.features(x))


# ---------------------------------------------------------------- policies
def bounded_probs(keep_prob: torch.Tensor, alpha: float) -> torch.Tensor:
    """``s' = α·s + (1−α)·(1−s)``: keeps sampling probabilities in [1−α, α] (exploration)."""
    return alpha * keep_prob + (1 - alpha) * (1 - keep_prob)


def greedy_policy(keep_prob: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Test-time policy ``u = 1[s ≥ threshold]`` (0.5 in the paper)."""
    return (keep_prob >= threshold).to(keep_prob.dtype)


class Rollout(NamedTuple):
    """What one REINFORCE step needs: bounded probabilities, both policies and their logits.

    A tuple, so that DistributedDataParallel finds the output tensors."""

    probs: torch.Tensor  # s', B×K, differentiable w.r.t. the policy network
    sampled: torch.Tensor  # u ~ Bernoulli(s')
    greedy: torch.Tensor  # 1[s ≥ 0.5]: the self-critical baseline's policy
    learned: torch.Tensor  # B×K mask of decisions that enter the loss (curriculum)
    logits_sample: torch.Tensor
    logits_greedy: torch.Tensor


class BlockDrop(nn.Module):
    """Main network + policy network; ``forward(x)`` is greedy inference with real skipping.

    ``learned_blocks`` is a registered buffer (so checkpoints carry it): the first
    ``K − learned_blocks`` decisions are forced to keep and left out of the loss. It is part of
    the model because it changes inference too (a policy stopped half-way through the
    curriculum keeps those blocks at test time); the curriculum's epoch counter that moves it
    is :class:`dynn.blockdrop.train.Curriculum`, saved in the stage checkpoint by ``fit(state=...)``.
    """

    def __init__(self, main: BlockDropResNet, policy: PolicyNetwork):
        super().__init__()
        if policy.num_blocks != main.num_blocks:
            raise ValueError(
                f"policy outputs {policy.num_blocks} decisions but the main network has {main.num_blocks} blocks"
            )
        self.main, self.policy = main, policy
        self.register_buffer("learned_blocks", torch.tensor(main.num_blocks))

    @property
    def num_blocks(self) -> int:
        return self.main.num_blocks

    def keep_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.policy(x)

    def force_curriculum(self, policy: torch.Tensor) -> torch.Tensor:
        """Set the first ``K − learned_blocks`` decisions to keep (curriculum; a copy)."""
        forced = self.num_blocks - int(self.learned_blocks)
        if forced > 0:
            policy = policy.clone()
            policy[:, :forced] = 1
        return policy

    def run_policy(self, x: torch.Tensor, policy: torch.Tensor) -> torch.Tensor:
        """Masked path while the main network trains (BatchNorm sees the batch), real skip otherwise."""
        return self.main.forward_masked(x, policy) if self.main.training else self.main.forward_skip(x, policy)

    def rollout(self, x: torch.Tensor, alpha: float) -> Rollout:
        keep_prob = self.keep_prob(x)
        probs = bounded_probs(keep_prob, alpha)
        with torch.no_grad():
            sampled = self.force_curriculum(torch.bernoulli(probs.detach()))
            greedy = self.force_curriculum(greedy_policy(keep_prob.detach()))
            learned = torch.ones_like(sampled)
            learned[:, : self.num_blocks - int(self.learned_blocks)] = 0
            logits_greedy = self.run_policy(x, greedy)
        logits_sample = self.run_policy(x, sampled)  # differentiable iff the main network trains
        return Rollout(probs, sampled, greedy, learned, logits_sample, logits_greedy)

    def infer(self, x: torch.Tensor, threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Greedy policy + real skipping: ``(logits, policy, keep_prob)``."""
        keep_prob = self.keep_prob(x)
        policy = self.force_curriculum(greedy_policy(keep_prob, threshold))
        if len(x) == 1:
            logits = self.main.forward_single(x, policy[0])
        else:
            logits = self.main.forward_skip(x, policy)
        return logits, policy, keep_prob

    def forward(self, x: torch.Tensor, mode: str = "infer", alpha: float = 0.8):
        """``mode="infer"``: logits of greedy real-skip inference; ``"rollout"``: a :class:`Rollout`.

        One entry point so that a DistributedDataParallel wrapper sees every call.
        """
        if mode == "rollout":
            return self.rollout(x, alpha)
        if mode == "infer":
            return self.infer(x)[0]
        raise ValueError(f"mode must be 'infer' or 'rollout', got {mode!r}")


def make_blockdrop(*, depth: int, num_classes: int, policy_depth: int, policy_downsample: int = 1) -> BlockDrop:
    """A main ResNet-``depth`` and a policy ResNet-``policy_depth`` with one output per block."""
    main = make_main_network(depth, num_classes)
    return BlockDrop(main, PolicyNetwork(main.num_blocks, policy_depth, downsample=policy_downsample))
