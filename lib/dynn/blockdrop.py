"""BlockDrop (Wu et al., CVPR 2018): a policy network decides, once per image, which
residual blocks of a pretrained ResNet to run.

Pieces, in the paper's words:

- :class:`BlockDropResNet` views a backbone as ``stem → K blocks → head``. A *kept* block
  computes ``relu(shortcut(x) + f(x))``, a *dropped* block ``shortcut(x)`` (no ReLU); the
  shortcut (and any downsampling) always runs. :func:`block_shortcut` / :func:`block_residual`
  are the one definition of a block that all three forward paths use:
  ``forward_masked`` (training; every block runs on the whole batch and the policy selects
  the output, as the official code does), ``forward_skip`` (each block runs only on the
  samples that keep it: gather → block → scatter) and ``forward_single`` (batch 1, a plain
  Python ``if``, the official ``forward_single``).
- :class:`PolicyNetwork`: a small ResNet (ResNet-8 for 32×32 inputs; a torchvision-style
  ResNet-10 on a 2× downsampled input for ImageNet sizes) → ``K`` sigmoid keep-probabilities s.
- :func:`bounded_probs` (α-bounding), :func:`reward` (``1 − (|u|₀/K)²`` or ``−γ``), the
  self-critical REINFORCE loss in :func:`policy_step_fn` (curriculum and joint finetuning).
- Cost: :func:`block_costs` builds the per-block MACs table from :func:`dynn.flops.macs_by_module`;
  MACs per image = fixed part + Σ kept residual branches (+ the policy network).

The backbones are the workbook's own (:mod:`dynn.models`): the CIFAR ResNet's ``BasicBlock``
already separates ``shortcut`` from ``residual``; torchvision's ``BasicBlock``/``Bottleneck``
(ResNet-101 for ImageNet-size inputs) are read through the same two functions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models.resnet as tv_resnet

import dynn
from dynn.models.cifar_resnet import DEPTHS as CIFAR_DEPTHS, CifarResNet
from dynn.train import unwrap

TORCHVISION_DEPTHS = {18: "resnet18", 34: "resnet34", 50: "resnet50", 101: "resnet101", 152: "resnet152"}
MAIN_DEPTHS = tuple(CIFAR_DEPTHS) + tuple(TORCHVISION_DEPTHS)
POLICY_DEPTHS = tuple(CIFAR_DEPTHS) + (10, 18)


# ---------------------------------------------------------------- one definition of a block
def block_shortcut(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The identity / downsampling path of a block; it runs whether the block is kept or not."""
    shortcut = getattr(block, "shortcut", None)
    if shortcut is not None:  # dynn CIFAR BasicBlock
        return shortcut(x)
    downsample = getattr(block, "downsample", None)  # torchvision BasicBlock / Bottleneck
    return downsample(x) if downsample is not None else x


def block_residual(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """f(x): the residual branch, the only work that dropping a block saves."""
    if hasattr(block, "residual"):
        return block.residual(x)
    out = F.relu(block.bn1(block.conv1(x)))
    if isinstance(block, tv_resnet.Bottleneck):
        out = F.relu(block.bn2(block.conv2(out)))
        return block.bn3(block.conv3(out))
    return block.bn2(block.conv2(out))


def kept_block(block: nn.Module, x: torch.Tensor, shortcut: torch.Tensor | None = None) -> torch.Tensor:
    """A kept block: ``relu(shortcut(x) + f(x))`` (``shortcut`` may be passed in if already run)."""
    if shortcut is None:
        shortcut = block_shortcut(block, x)
    return F.relu(shortcut + block_residual(block, x))


# ---------------------------------------------------------------- the main network
class BlockDropResNet(nn.Module):
    """A ResNet seen as ``stem → blocks[0..K-1] → head`` with per-block keep/drop decisions.

    Wraps (does not copy) a backbone: a :class:`dynn.models.cifar_resnet.CifarResNet` or a
    torchvision ``ResNet``. ``forward(x)`` is the unmodified full network.
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        if isinstance(backbone, CifarResNet):
            self.block_names = [f"blocks.{i}" for i in range(len(backbone.blocks))]
            self.shortcut_names = [f"blocks.{i}.shortcut" for i in range(len(backbone.blocks))]
            blocks = list(backbone.blocks)
            self.stage_index = list(backbone.stage_index)
        elif isinstance(backbone, tv_resnet.ResNet):
            blocks, self.block_names, self.shortcut_names, self.stage_index = [], [], [], []
            for s, layer in enumerate([backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4]):
                for i, block in enumerate(layer):
                    blocks.append(block)
                    self.block_names.append(f"layer{s + 1}.{i}")
                    self.shortcut_names.append(f"layer{s + 1}.{i}.downsample")
                    self.stage_index.append(s)
        else:
            raise TypeError(f"BlockDrop needs a CifarResNet or a torchvision ResNet, got {type(backbone).__name__}")
        self._blocks = blocks  # plain list: the modules are registered under ``backbone``

    @property
    def num_blocks(self) -> int:
        """K, the number of droppable residual blocks."""
        return len(self._blocks)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        if isinstance(b, CifarResNet):
            return b.stem(x)
        return b.maxpool(b.relu(b.bn1(b.conv1(x))))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        if isinstance(b, CifarResNet):
            return b.forward_head(x)
        return b.fc(torch.flatten(b.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The full network (every block kept): the backbone's own forward."""
        return self.backbone(x)

    def forward_masked(self, x: torch.Tensor, policy: torch.Tensor) -> torch.Tensor:
        """Training path: each block runs on the whole batch, the policy picks its output.

        ``policy`` is ``B×K`` in {0, 1}. As in the official code a block that nobody in the
        batch keeps is not run. Saves no time otherwise; used where BatchNorm must see the
        whole batch (joint finetuning in training mode).
        """
        x = self.stem(x)
        for k, block in enumerate(self._blocks):
            keep = policy[:, k]
            shortcut = block_shortcut(block, x)
            if not bool(keep.any()):
                x = shortcut
                continue
            mask = keep.to(x.dtype).view(-1, 1, 1, 1)
            x = kept_block(block, x, shortcut) * mask + shortcut * (1 - mask)
        return self.head(x)

    def forward_skip(self, x: torch.Tensor, policy: torch.Tensor) -> torch.Tensor:
        """Real skipping, batched: block k runs only on the samples that keep it.

        gather (``index_select``) → block → scatter (``index_copy``) into the shortcut. In
        eval mode this equals :meth:`forward_masked` sample by sample, and the MACs that
        FlopCounterMode sees are exactly fixed part + kept residual branches.
        """
        keep = policy.detach().to("cpu", torch.bool)  # one host copy, not one sync per block
        x = self.stem(x)
        for k, block in enumerate(self._blocks):
            shortcut = block_shortcut(block, x)
            idx = keep[:, k].nonzero().flatten()
            if len(idx) == 0:
                x = shortcut
            elif len(idx) == len(keep):
                x = kept_block(block, x, shortcut)
            else:
                idx = idx.to(x.device)
                kept = kept_block(block, x.index_select(0, idx), shortcut.index_select(0, idx))
                x = shortcut.index_copy(0, idx, kept)
        return self.head(x)

    def forward_single(self, x: torch.Tensor, policy: torch.Tensor | Sequence) -> torch.Tensor:
        """Real skipping for one policy shared by the batch (batch 1 at test time): a Python ``if``."""
        decisions = policy.detach().flatten().tolist() if isinstance(policy, torch.Tensor) else list(policy)
        if len(decisions) != self.num_blocks:
            raise ValueError(f"forward_single needs one policy of {self.num_blocks} decisions, got {len(decisions)}")
        x = self.stem(x)
        for keep, block in zip(decisions, self._blocks):
            x = kept_block(block, x) if keep else block_shortcut(block, x)
        return self.head(x)


def make_main_network(depth: int, num_classes: int, in_channels: int = 3) -> BlockDropResNet:
    """CIFAR ResNet-``depth`` (6n+2) or a torchvision ResNet-18/34/50/101/152 (K=33 for 101)."""
    if depth in CIFAR_DEPTHS:
        backbone = dynn.models.create(f"cifar_resnet{depth}", num_classes=num_classes, in_channels=in_channels)
    elif depth in TORCHVISION_DEPTHS:
        if in_channels != 3:
            raise ValueError("torchvision ResNets take 3-channel input")
        backbone = dynn.models.create(TORCHVISION_DEPTHS[depth], num_classes=num_classes)
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
            self.features = dynn.models.create(f"cifar_resnet{depth}", num_classes=num_blocks,
                                               in_channels=in_channels)
        elif depth == 10:  # ResNet-10: torchvision's ResNet with one BasicBlock per stage
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


# ---------------------------------------------------------------- policy, reward, loss
def bounded_probs(keep_prob: torch.Tensor, alpha: float) -> torch.Tensor:
    """``s' = α·s + (1−α)·(1−s)``: keeps sampling probabilities in [1−α, α] (exploration)."""
    return alpha * keep_prob + (1 - alpha) * (1 - keep_prob)


def greedy_policy(keep_prob: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Test-time policy ``u = 1[s ≥ threshold]`` (0.5 in the paper)."""
    return (keep_prob >= threshold).to(keep_prob.dtype)


def reward(logits: torch.Tensor, targets: torch.Tensor, policy: torch.Tensor, gamma: float) -> torch.Tensor:
    """``R = 1 − (|u|₀/K)²`` if the prediction is correct, else ``−γ`` (Eq. 3; γ is the penalty)."""
    block_use = policy.sum(1) / policy.shape[1]
    correct = logits.argmax(1) == targets
    return torch.where(correct, 1 - block_use ** 2, torch.full_like(block_use, -float(gamma)))


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

    ``learned_blocks`` (a buffer, so that checkpoints carry it) is the curriculum state: the
    first ``K − learned_blocks`` blocks are forced on and out of the loss. ``epochs_started``
    counts curriculum epochs so that a resumed stage continues the schedule.
    """

    def __init__(self, main: BlockDropResNet, policy: PolicyNetwork):
        super().__init__()
        if policy.num_blocks != main.num_blocks:
            raise ValueError(f"policy outputs {policy.num_blocks} decisions but the main network has {main.num_blocks} blocks")
        self.main, self.policy = main, policy
        self.register_buffer("learned_blocks", torch.tensor(main.num_blocks))
        self.register_buffer("epochs_started", torch.tensor(0))

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


def policy_step_fn(*, gamma: float, alpha: float, beta: float, joint: bool) -> Callable:
    """Step function for :func:`dynn.train.fit`: self-critical REINFORCE (+ CE when ``joint``).

    Curriculum (``joint=False``, official ``cl_training.py``): per-decision loss
    ``−log π(u_k)·A`` masked to the learned blocks, minus ``β·Σ −s'·log s'`` (the official
    code's one-sided entropy of the bounded probabilities), all divided by the batch size.
    Joint finetuning (``joint=True``, official ``finetune.py``): ``−Σ_k log π(u_k)·A`` summed
    over the batch, plus the cross-entropy of the main network run with the sampled policy;
    no entropy. The two terms reach disjoint parameters (the policy vs. the main network),
    so under Adam their relative scale does not matter. ``A = R(sampled) − R(greedy)``.
    """

    def step(model: nn.Module, batch) -> dict:
        x, y = batch
        out: Rollout = model(x, mode="rollout", alpha=alpha)
        with torch.no_grad():
            reward_sample = reward(out.logits_sample, y, out.sampled, gamma)
            advantage = reward_sample - reward(out.logits_greedy, y, out.greedy, gamma)
        probs = out.probs.clamp(1e-15, 1 - 1e-15)
        log_prob = out.sampled * torch.log(probs) + (1 - out.sampled) * torch.log(1 - probs)
        pg_loss = -(log_prob * advantage[:, None] * out.learned).sum()
        metrics = {
            "reward": reward_sample.mean(),
            "accuracy": (out.logits_sample.argmax(1) == y).float().mean() * 100,
            "blocks": out.sampled.sum(1).mean(),
            "greedy_blocks": out.greedy.sum(1).mean(),
        }
        if joint:
            ce = F.cross_entropy(out.logits_sample, y)
            loss = pg_loss + ce
            metrics["ce"] = ce.detach()
        else:
            entropy = -(probs * torch.log(probs)).sum()
            loss = (pg_loss - beta * entropy) / len(x)
        return {"loss": loss, **metrics}

    return step


def curriculum_train_mode(blocks_per_epoch: int = 1) -> Callable[[nn.Module], None]:
    """``train_mode`` for the curriculum stage: main network frozen in eval mode, and at
    epoch e (from 0) the last ``min(K, blocks_per_epoch·(e+1))`` decisions are learned
    (official ``cl_step``: one more block per epoch)."""

    def train_mode(net: nn.Module) -> None:
        model = unwrap(net)
        model.train()
        model.main.eval()
        epoch = int(model.epochs_started)
        model.learned_blocks.fill_(min(model.num_blocks, blocks_per_epoch * (epoch + 1)))
        model.epochs_started += 1

    return train_mode


def joint_train_mode(net: nn.Module) -> None:
    """Joint finetuning: both networks train (official ``rnet.train()``), no blocks forced."""
    model = unwrap(net)
    model.train()
    model.learned_blocks.fill_(model.num_blocks)


def freeze(module: nn.Module, frozen: bool = True) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(not frozen)
    return module


# ---------------------------------------------------------------- cost
@dataclass
class BlockCosts:
    """MACs per image measured by FlopCounterMode: fixed part + residual branch of each block."""

    full: int  # the whole main network
    fixed: int  # stem, shortcuts, head: paid whatever the policy
    blocks: np.ndarray  # K residual-branch MACs, saved when the block is dropped
    policy: int  # the policy network

    def macs(self, policy: np.ndarray | torch.Tensor, with_policy: bool = True) -> np.ndarray:
        """MACs per image for each row of an ``N×K`` policy (or one ``K`` policy)."""
        u = np.asarray(policy.detach().cpu() if isinstance(policy, torch.Tensor) else policy, dtype=float)
        return self.fixed + u @ self.blocks + (self.policy if with_policy else 0)

    def table(self, stage_index: Sequence[int] | None = None) -> pd.DataFrame:
        rows = [{"block": k, "stage": (stage_index[k] if stage_index else None), "residual_macs": int(m),
                 "share_of_full": m / self.full} for k, m in enumerate(self.blocks)]
        return pd.DataFrame(rows)


@torch.no_grad()
def block_costs(model: BlockDrop, input_shape: Sequence[int], device: str | torch.device = "cpu") -> BlockCosts:
    """Per-block MACs from one :func:`dynn.flops.macs_by_module` pass of the full main network."""
    main = model.main
    was_training = model.training
    model.eval()
    x = torch.zeros(1, *input_shape, device=device)
    table = dynn.flops.macs_by_module(main.backbone, x)
    blocks = np.array([table.get(b, 0) - table.get(s, 0) for b, s in zip(main.block_names, main.shortcut_names)])
    full = table[""]
    policy = dynn.flops.count_macs(model.policy, x)
    model.train(was_training)
    return BlockCosts(full=int(full), fixed=int(full - blocks.sum()), blocks=blocks, policy=int(policy))


# ---------------------------------------------------------------- evaluation
@dataclass
class PolicyEval:
    """Per-image outcome of greedy BlockDrop inference on a dataset."""

    keep_prob: np.ndarray  # N×K
    policy: np.ndarray  # N×K in {0, 1}
    preds: np.ndarray
    labels: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        return self.preds == self.labels

    @property
    def blocks_used(self) -> np.ndarray:
        return self.policy.sum(1)

    def distinct_policies(self) -> int:
        return len({row.tobytes() for row in self.policy.astype(np.uint8)})

    def summary(self, costs: BlockCosts) -> dict:
        macs = costs.macs(self.policy, with_policy=True)
        main_macs = costs.macs(self.policy, with_policy=False)
        return {
            "accuracy": 100.0 * self.correct.mean(),
            "blocks_mean": float(self.blocks_used.mean()), "blocks_std": float(self.blocks_used.std()),
            "macs_mean": float(macs.mean()), "macs_std": float(macs.std()),
            "main_macs_mean": float(main_macs.mean()), "main_macs_std": float(main_macs.std()),
            "distinct_policies": self.distinct_policies(),
        }


@torch.no_grad()
def evaluate_policy(model: BlockDrop, data, *, batch_size: int = 256, device="cpu",
                    threshold: float = 0.5, fixed_policy: torch.Tensor | None = None,
                    keep_prob: np.ndarray | None = None) -> PolicyEval:
    """Run greedy BlockDrop (real skipping) over ``data``.

    ``threshold`` moves the keep-probability cut-off (the threshold sweep); ``fixed_policy``
    (K,) drops the same blocks for every image (the static baseline); ``keep_prob`` reuses
    already computed probabilities instead of re-running the policy network.
    """
    model.eval()
    probs, policies, preds, labels = [], [], [], []
    offset = 0
    for x, y in dynn.data.make_loader(data, batch_size):
        x = x.to(device)
        if keep_prob is not None:
            s = torch.as_tensor(keep_prob[offset:offset + len(x)], device=device)
        else:
            s = model.keep_prob(x)
        offset += len(x)
        if fixed_policy is not None:
            u = torch.as_tensor(fixed_policy, device=device, dtype=s.dtype).expand(len(x), -1)
        else:
            u = model.force_curriculum(greedy_policy(s, threshold))
        logits = model.main.forward_skip(x, u)
        probs.append(s.cpu())
        policies.append(u.cpu())
        preds.append(logits.argmax(1).cpu())
        labels.append(torch.as_tensor(y))
    cat = lambda ts: torch.cat(ts).numpy()  # noqa: E731
    return PolicyEval(cat(probs), cat(policies).astype(np.int64), cat(preds), cat(labels))


def validation_fn(data, *, batch_size: int = 256, device="cpu") -> Callable[[nn.Module], dict]:
    """``eval_fn`` for :func:`dynn.train.fit`: greedy accuracy and blocks used on ``data``."""

    def eval_fn(model: nn.Module) -> dict:
        ev = evaluate_policy(unwrap(model), data, batch_size=batch_size, device=device)
        return {"accuracy": 100.0 * ev.correct.mean(), "blocks": float(ev.blocks_used.mean()),
                "distinct_policies": ev.distinct_policies()}

    return eval_fn


def threshold_sweep(model: BlockDrop, data, ev: PolicyEval, costs: BlockCosts,
                    thresholds: Sequence[float], *, device="cpu", batch_size: int = 256) -> pd.DataFrame:
    """Accuracy and MACs of the same policy network cut at other keep-probability thresholds."""
    rows = []
    for t in thresholds:
        e = evaluate_policy(model, data, device=device, batch_size=batch_size, threshold=t, keep_prob=ev.keep_prob)
        rows.append({"threshold": t, **e.summary(costs)})
    return pd.DataFrame(rows)


def static_drop_baselines(model: BlockDrop, data, ev: PolicyEval, costs: BlockCosts, *, device="cpu",
                          batch_size: int = 256, counts: Sequence[int] | None = None) -> pd.DataFrame:
    """"Drop the same blocks for everyone": keep the m blocks BlockDrop keeps most often.

    Ranking by BlockDrop's own keep frequency (ties: the higher mean keep-probability) gives
    the strongest static policy we can read off the learned one, at every MACs level.
    """
    K = model.num_blocks
    frequency = ev.policy.mean(0) + 1e-3 * ev.keep_prob.mean(0)
    order = np.argsort(-frequency, kind="stable")
    rows = []
    for m in (counts if counts is not None else range(1, K + 1)):
        u = np.zeros(K, dtype=np.int64)
        u[order[:m]] = 1
        e = evaluate_policy(model, data, device=device, batch_size=batch_size, fixed_policy=torch.as_tensor(u))
        summary = e.summary(costs)
        summary["macs_mean"] = summary["main_macs_mean"]  # a static policy needs no policy network
        rows.append({"kept_blocks": m, "policy": "".join(map(str, u)), **summary})
    return pd.DataFrame(rows)


def latency_table(model: BlockDrop, images: torch.Tensor, *, batch: torch.Tensor,
                  costs: BlockCosts, min_run_time: float = 0.3, rounds: int = 4) -> pd.DataFrame:
    """Measured latency of real skipping vs the full network, beside the MACs ratio.

    Batch 1: for each image of ``images`` (N×C×H×W) the full network, BlockDrop (policy
    network + ``forward_single`` with the image's greedy policy) and the main network alone
    with that policy are timed back to back, so that a shared, changing machine load hits
    all three alike; the per-path medians are averaged over the images. Batch
    ``len(batch)``: policy + batched real skip, batched real skip alone, the masked path
    (what the official batched code runs: every block that any image keeps, on the whole batch)
    and the full network, interleaved over ``rounds`` rounds; per path the fastest round's
    median (on a shared machine the least disturbed one).
    """
    from dynn.flops import measure_latency

    model.eval()
    main = model.main
    infer = lambda z: model.infer(z)[0]  # noqa: E731
    t = lambda fn, *args: measure_latency(fn, *args, min_run_time=min_run_time).median_ms  # noqa: E731
    b1 = {"full": [], "blockdrop": [], "main": []}
    macs_b1, main_macs_b1 = [], []
    with torch.no_grad():
        for i in range(len(images)):
            x = images[i:i + 1]
            u = model.force_curriculum(greedy_policy(model.keep_prob(x)))[0]
            b1["full"].append(t(main, x))
            b1["blockdrop"].append(t(infer, x))
            b1["main"].append(t(main.forward_single, x, u))
            macs_b1.append(float(costs.macs(u[None], True)[0]))
            main_macs_b1.append(float(costs.macs(u[None], False)[0]))
        u = model.force_curriculum(greedy_policy(model.keep_prob(batch)))
        bn = {"full": [], "blockdrop": [], "main": [], "masked": []}
        for _ in range(rounds):
            bn["full"].append(t(main, batch))
            bn["blockdrop"].append(t(infer, batch))
            bn["main"].append(t(main.forward_skip, batch, u))
            bn["masked"].append(t(main.forward_masked, batch, u))
    full_b1 = float(np.mean(b1["full"]))
    full_bn = float(np.min(bn["full"]))

    def row(name, b, ms, ms_full, macs):
        return {"path": name, "batch": b, "latency_ms": ms, "full_latency_ms": ms_full,
                "latency_ratio": ms / ms_full, "macs_ratio": macs / costs.full,
                "latency_over_macs_ratio": (ms / ms_full) / (macs / costs.full)}

    n = len(batch)
    return pd.DataFrame([
        row("BlockDrop: policy + real skip (forward_single)", 1, float(np.mean(b1["blockdrop"])), full_b1, float(np.mean(macs_b1))),
        row("main network only, real skip (forward_single)", 1, float(np.mean(b1["main"])), full_b1, float(np.mean(main_macs_b1))),
        row("BlockDrop: policy + batched real skip", n, float(np.min(bn["blockdrop"])), full_bn, float(costs.macs(u, True).mean())),
        row("main network only, batched real skip", n, float(np.min(bn["main"])), full_bn, float(costs.macs(u, False).mean())),
        row("main network only, masked (official batched path)", n, float(np.min(bn["masked"])), full_bn,
            float(costs.macs(u.amax(0, keepdim=True), False)[0])),  # every block someone keeps
    ])


# ---------------------------------------------------------------- interactive explorer
def explorer(model: BlockDrop, data, *, device="cpu", class_names: Sequence[str] | None = None):
    """ipywidgets explorer: pick a test image, see its keep-probabilities and the blocks it runs."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    model.eval()
    out = widgets.Output()
    slider = widgets.IntSlider(value=0, min=0, max=len(data) - 1, description="image")

    def show(index: int) -> None:
        x, y = data[index]
        with torch.no_grad():
            logits, u, s = model.infer(x[None].to(device))
        s, u = s[0].cpu().numpy(), u[0].cpu().numpy()
        out.clear_output(wait=True)
        with out:
            fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3), gridspec_kw={"width_ratios": [1, 3]})
            ax0.imshow(_to_image(x, data), cmap="gray")
            name = class_names[y] if class_names else y
            ax0.set_title(f"label {name}, predicted {int(logits.argmax())}")
            ax0.axis("off")
            ax1.bar(range(len(s)), s, color=["tab:green" if k else "tab:gray" for k in u])
            ax1.axhline(0.5, color="k", lw=0.8, ls="--")
            ax1.set(xlabel="block", ylabel="keep-probability s",
                    title=f"runs {int(u.sum())} of {len(u)} blocks (green)", ylim=(0, 1))
            plt.show()

    slider.observe(lambda change: show(change["new"]), names="value")
    show(0)
    display(widgets.VBox([slider, out]))
    return slider


def _to_image(x: torch.Tensor, data) -> np.ndarray:
    """Undo the dataset's normalisation for display."""
    mean = getattr(data, "mean", torch.zeros(x.shape[0], 1, 1))
    std = getattr(data, "std", torch.ones(x.shape[0], 1, 1))
    img = (x.cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
    return img[..., 0] if img.shape[-1] == 1 else img


# ---------------------------------------------------------------- figures
def plot_policy_heatmap(ev: PolicyEval, *, n: int = 48, stage_index: Sequence[int] | None = None, seed: int = 0):
    """Keep-probabilities of ``n`` random test images (rows, sorted by blocks used) × blocks,
    with the greedy decisions beside them: instance-specific paths at a glance."""
    import matplotlib.pyplot as plt

    dynn.plots.set_style()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(ev.labels), size=min(n, len(ev.labels)), replace=False)
    rows = rows[np.argsort(ev.blocks_used[rows], kind="stable")]
    K = ev.policy.shape[1]
    xlabels = [f"{k}" + (f"\ns{stage_index[k]}" if stage_index and (k == 0 or stage_index[k] != stage_index[k - 1]) else "")
               for k in range(K)]
    ylabels = [f"{ev.labels[i]}{'' if ev.correct[i] else ' ✗'} ({ev.blocks_used[i]})" for i in rows]
    fig, axes = plt.subplots(1, 2, figsize=(12, max(4, 0.18 * len(rows))), sharey=True)
    dynn.plots.heatmap(ev.keep_prob[rows], ax=axes[0], xlabels=xlabels, ylabels=ylabels, vmin=0, vmax=1,
                       cbar_label="keep-probability s", title="policy network output")
    dynn.plots.heatmap(ev.policy[rows], ax=axes[1], xlabels=xlabels, ylabels=ylabels, vmin=0, vmax=1,
                       cmap="Greens", title="greedy policy (1 = block runs)")
    for ax in axes:
        ax.set_xlabel("block (s = stage start)")
        ax.tick_params(axis="y", labelsize=6)
    axes[0].set_ylabel("test image: label (blocks used), ✗ = misclassified")
    return fig


def plot_blocks_per_class(ev: PolicyEval, class_names: Sequence[str] | None = None):
    """Histogram of blocks used, one panel per class (misclassified images stacked in red)."""
    import matplotlib.pyplot as plt

    dynn.plots.set_style()
    classes = np.unique(ev.labels)
    K = ev.policy.shape[1]
    cols = min(5, len(classes))
    rows = int(np.ceil(len(classes) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), sharex=True, sharey=True, squeeze=False)
    bins = np.arange(K + 2) - 0.5
    for ax, c in zip(axes.flat, classes):
        sel = ev.labels == c
        used = ev.blocks_used[sel]
        ax.hist([used[ev.correct[sel]], used[~ev.correct[sel]]], bins=bins, stacked=True,
                color=["tab:blue", "tab:red"], label=["correct", "wrong"])
        name = class_names[c] if class_names is not None else c
        ax.set_title(f"class {name}: {used.mean():.1f}±{used.std():.1f}", fontsize=9)
    for ax in axes.flat[len(classes):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("blocks used")
    axes.flat[0].set_xlim(max(-0.5, ev.blocks_used.min() - 1.5), K + 0.5)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Blocks used per test image (of K = {K}), by class")
    return fig


def plot_extreme_images(ev: PolicyEval, data, *, n: int = 8, class_names: Sequence[str] | None = None):
    """The test images that run the fewest (top row) and the most (bottom row) blocks."""
    import matplotlib.pyplot as plt

    # ties in blocks used are broken by the summed keep-probability (how sure the policy is)
    order = np.argsort(ev.blocks_used + 1e-3 * ev.keep_prob.mean(1), kind="stable")
    picks = [("fewest", order[:n]), ("most", order[::-1][:n])]
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 4.0), squeeze=False)
    for r, (name, idx) in enumerate(picks):
        for ax, i in zip(axes[r], idx):
            x, y = data[int(i)]
            ax.imshow(_to_image(x, data), cmap="gray")
            label = class_names[y] if class_names is not None else y
            ax.set_title(f"{label}→{ev.preds[i]} · {ev.blocks_used[i]} blk", fontsize=8,
                         color="k" if ev.correct[i] else "tab:red")
            ax.axis("off")
        axes[r][0].text(-0.3, 0.5, f"{name}\nblocks", transform=axes[r][0].transAxes, ha="right", va="center")
    fig.suptitle("Images using the fewest / most blocks (label→prediction, red = wrong)")
    return fig
