"""BlockDrop's learning signal and its three training stages.

- :func:`reward` (Eq. 3: ``1 − (|u|₀/K)²`` if correct, ``−γ`` if wrong) and
  :func:`policy_step_fn`: self-critical REINFORCE (advantage = reward of the sampled policy −
  reward of the greedy one), with the entropy bonus in the curriculum and the main network's
  cross-entropy in joint finetuning.
- :class:`Curriculum` (the ``train_mode`` of the curriculum stage: one more block learned per
  epoch, its epoch counter saved in the stage checkpoint) and :func:`joint_train_mode`.
- The stages, each a function of plain keyword arguments that trains with
  :func:`dynn.train.fit` in its own ``run_dir`` and returns its model (eval mode); called again
  after it finished, it reloads instead of retraining:

  1. :func:`pretrain`: the main ResNet (SGD, cosine), or the ``pretrained`` state dict loaded
     instead of training;
  2. :func:`curriculum`: the policy alone, main network frozen (official ``cl_training.py``);
  3. :func:`finetune`: policy and main network jointly (official ``finetune.py``), the main
     training stage, which the notebook can run on several processes (``nprocs``).

  Each is also runnable under ``torchrun`` (several nodes):
  ``python -m dynn.blockdrop.train --stage finetune --config stage.yaml --run-dir DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from dynn.blockdrop.evaluate import validation_fn
from dynn.blockdrop.model import BlockDrop, BlockDropResNet, PolicyNetwork, Rollout, make_main_network
from dynn.data import get_dataset
from dynn.train import Schedule, Stage, fit, load_checkpoint, seed_everything, stage_main, train_classifier, unwrap


# ---------------------------------------------------------------- reward and step
def reward(logits: torch.Tensor, targets: torch.Tensor, policy: torch.Tensor, gamma: float) -> torch.Tensor:
    """``R = 1 − (|u|₀/K)²`` if the prediction is correct, else ``−γ`` (Eq. 3; γ is the penalty)."""
    block_use = policy.sum(1) / policy.shape[1]
    correct = logits.argmax(1) == targets
    return torch.where(correct, 1 - block_use**2, torch.full_like(block_use, -float(gamma)))


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


# ---------------------------------------------------------------- train modes
class Curriculum:
    """``train_mode`` of the curriculum stage and its state.

    Main network frozen in eval mode; at epoch e (from 0) the last
    ``min(K, blocks_per_epoch·(e+1))`` decisions are learned (official ``cl_step``: one more
    block per epoch), written to the model's ``learned_blocks`` buffer. The epoch counter is
    this object's state: passed to ``fit(state={"curriculum": ...})`` it is saved in the
    stage checkpoint, so a resumed stage continues the schedule where it stopped.
    """

    def __init__(self, blocks_per_epoch: int = 1):
        self.blocks_per_epoch = int(blocks_per_epoch)
        self.epochs_started = 0

    def __call__(self, net: nn.Module) -> None:
        model = unwrap(net)
        model.train()
        model.main.eval()
        model.learned_blocks.fill_(min(model.num_blocks, self.blocks_per_epoch * (self.epochs_started + 1)))
        self.epochs_started += 1

    def state_dict(self) -> dict:
        return {"epochs_started": self.epochs_started, "blocks_per_epoch": self.blocks_per_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epochs_started = int(state["epochs_started"])


def joint_train_mode(net: nn.Module) -> None:
    """Joint finetuning: both networks train (official ``rnet.train()``), no blocks forced."""
    model = unwrap(net)
    model.train()
    model.learned_blocks.fill_(model.num_blocks)


def freeze(module: nn.Module, frozen: bool = True) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(not frozen)
    return module


# ---------------------------------------------------------------- stages
def _split(split: str, *, dataset: str, data_root: str, resolution: int, limit: int):
    """One split as every stage reads it (3 channels: the policy and torchvision nets take RGB).

    Stages never download: the notebook's data cell does, once, before any stage runs (a
    stage may run on several processes, and ``download`` is no part of what it computes).
    """
    return get_dataset(dataset, split, limit=limit, data_root=data_root, resolution=resolution, channels=3)


def load_state_dict_file(path: str | Path) -> dict:
    """A main network's weights: a plain state dict, or a checkpoint holding one under ``"model"``."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"parameter 'pretrained' = {str(path)!r}: expected a state dict, got {type(state).__name__}")
    return state


def pretrain(
    *,
    run_dir: str,
    device: str,
    dataset: str,
    data_root: str = "",
    resolution: int = 32,
    train_limit: int = 0,
    depth: int,
    pretrained: str = "",
    epochs: int,
    lr: float = 0.1,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = True,
) -> BlockDropResNet:
    """Stage 1: the main ResNet-``depth``, trained here (SGD, Nesterov momentum 0.9, weight decay
    5e-4, cosine decay from ``lr``) or, when ``pretrained`` names a state dict, loaded from it
    without training (as the official code starts from a ResNet trained elsewhere).

    Either way ``<run_dir>/pretrain.ckpt`` holds the result, so later stages chain on it.
    """
    stage = Stage.of("pretrain", locals())
    train_data = _split("train", dataset=dataset, data_root=data_root, resolution=resolution, limit=train_limit)
    seed_everything(seed)
    main = make_main_network(depth, train_data.num_classes)
    if pretrained:
        main.backbone.load_state_dict(load_state_dict_file(pretrained))
        stage.say(f"stage pretrain: main network loaded from {pretrained}, not trained here")
    trained_epochs = 0 if pretrained else epochs  # 0: the checkpoint holds the loaded weights
    train_classifier(
        main.backbone, train_data, stage, epochs=trained_epochs, lr=lr, weight_decay=5e-4, batch_size=batch_size
    )
    return main.to(device).eval()


def load_policy_weights(policy: PolicyNetwork, path: str | Path) -> list[str]:
    """Start the policy network from an ImageNet classifier's state dict (the paper's ResNet-10
    policy starts from pretrained weights): every tensor whose name and shape match is copied,
    the classifier head (``fc``, K outputs here) and anything the policy lacks (ResNet-18's second
    block per stage, for ResNet-10) are left as they are. Returns the names copied; none at all
    is an error (the wrong file), not a silent random start."""
    state = load_state_dict_file(path)
    own = policy.features.state_dict()
    copied = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape and not k.startswith("fc.")}
    if not copied:
        raise ValueError(
            f"parameter 'policy_pretrained' = {str(path)!r}: no tensor matches the policy network "
            "(expected a torchvision ResNet-18/ResNet-10 state dict)"
        )
    policy.features.load_state_dict(copied, strict=False)
    return sorted(copied)


def _blockdrop_from_main(
    main_checkpoint: str,
    *,
    depth: int,
    num_classes: int,
    policy_depth: int,
    policy_downsample: int,
    seed: int,
    policy_pretrained: str = "",
) -> BlockDrop:
    main = make_main_network(depth, num_classes)
    load_checkpoint(main_checkpoint, main.backbone)
    seed_everything(seed)  # the policy's initialisation depends on the seed only
    policy = PolicyNetwork(main.num_blocks, policy_depth, downsample=policy_downsample)
    if policy_pretrained:
        load_policy_weights(policy, policy_pretrained)
    return BlockDrop(main, policy)


def curriculum(
    *,
    run_dir: str,
    device: str,
    main_checkpoint: str,
    dataset: str,
    data_root: str = "",
    resolution: int = 32,
    train_limit: int = 0,
    val_limit: int = 0,
    depth: int,
    policy_depth: int = 8,
    policy_downsample: int = 1,
    policy_pretrained: str = "",
    epochs: int,
    blocks_per_epoch: int = 1,
    gamma: float = 1.0,
    alpha: float = 0.8,
    beta: float = 0.1,
    lr: float = 1e-3,
    lr_step: int = 0,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = True,
) -> BlockDrop:
    """Stage 2: train the policy with the pretrained main network (``main_checkpoint``) frozen.

    At epoch e the first ``K − blocks_per_epoch·(e+1)`` blocks are forced on and out of the
    loss (:class:`Curriculum`); loss ``−Σ log π(u)·A − β·entropy`` with penalty ``gamma``
    (official ``cl_training.py``: 1), Adam at ``lr``, divided by 10 every ``lr_step`` epochs
    (0: never; the official issue #4's remedy for late accuracy decay). The main network stays
    in eval mode, so rollouts use the real-skip path. ``policy_pretrained`` (a local state dict,
    e.g. torchvision's ResNet-18 ImageNet weights) starts the policy network from it
    (:func:`load_policy_weights`). Returns the whole BlockDrop model.
    """
    stage = Stage.of("curriculum", locals())
    train_data = _split("train", dataset=dataset, data_root=data_root, resolution=resolution, limit=train_limit)
    val_data = _split("val", dataset=dataset, data_root=data_root, resolution=resolution, limit=val_limit)
    model = _blockdrop_from_main(
        main_checkpoint,
        depth=depth,
        num_classes=train_data.num_classes,
        policy_depth=policy_depth,
        policy_downsample=policy_downsample,
        seed=seed,
        policy_pretrained=policy_pretrained,
    )
    freeze(model.main)
    optimizer = torch.optim.Adam(model.policy.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, lr_step, 0.1) if lr_step else None
    block_curriculum = Curriculum(blocks_per_epoch)
    step = policy_step_fn(gamma=gamma, alpha=alpha, beta=beta, joint=False)
    fit(
        model,
        step,
        train_data,
        stage,
        Schedule(optimizer, epochs, batch_size, scheduler),
        train_mode=block_curriculum,
        eval_fn=validation_fn(val_data, device=device),
        state={"curriculum": block_curriculum},
    )
    freeze(model.main, False)
    return model.to(device).eval()


def finetune(
    *,
    run_dir: str,
    device: str,
    curriculum_checkpoint: str,
    dataset: str,
    data_root: str = "",
    resolution: int = 32,
    train_limit: int = 0,
    val_limit: int = 0,
    depth: int,
    policy_depth: int = 8,
    policy_downsample: int = 1,
    epochs: int,
    gamma: float = 10.0,
    alpha: float = 0.8,
    lr: float = 1e-4,
    lr_policy: float = 1e-4,
    lr_step: int = 0,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = True,
) -> BlockDrop:
    """Stage 3: joint finetuning of policy and main network from the curriculum's model.

    Loss = policy-gradient term with penalty ``gamma`` (official 10 on CIFAR, 5 on ImageNet)
    + cross-entropy of the main network run with the *sampled* policy (official
    ``finetune.py``); Adam, ``lr`` for the main network and ``lr_policy`` for the policy,
    both divided by 10 every ``lr_step`` epochs (0: never). While the main network trains
    BatchNorm must see the whole batch, so rollouts use the masked path. Under torchrun or
    ``run.stage(..., nprocs=N)`` this runs DistributedDataParallel inside ``fit``.
    """
    stage = Stage.of("finetune", locals())
    train_data = _split("train", dataset=dataset, data_root=data_root, resolution=resolution, limit=train_limit)
    val_data = _split("val", dataset=dataset, data_root=data_root, resolution=resolution, limit=val_limit)
    main = make_main_network(depth, train_data.num_classes)
    model = BlockDrop(main, PolicyNetwork(main.num_blocks, policy_depth, downsample=policy_downsample))
    load_checkpoint(curriculum_checkpoint, model)
    optimizer = torch.optim.Adam(
        [{"params": model.main.parameters(), "lr": lr}, {"params": model.policy.parameters(), "lr": lr_policy}]
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, lr_step, 0.1) if lr_step else None
    step = policy_step_fn(gamma=gamma, alpha=alpha, beta=0.0, joint=True)
    schedule = Schedule(optimizer, epochs, batch_size, scheduler)
    fit(
        model,
        step,
        train_data,
        stage,
        schedule,
        train_mode=joint_train_mode,
        eval_fn=validation_fn(val_data, device=device),
    )
    return model.to(device).eval()


STAGES = {"pretrain": pretrain, "curriculum": curriculum, "finetune": finetune}


def run_stage(stage: str, run_dir: str, device: str, arguments: dict) -> nn.Module:
    """Stage ``stage`` by name, with positional arguments only: what a launcher calls on every
    rank (:func:`dynn.train.run_elastic`, the torchrun entry :func:`main`)."""
    return STAGES[stage](run_dir=run_dir, device=device, **arguments)


def main(argv: list[str] | None = None) -> None:
    """``torchrun [--nnodes N] --nproc_per_node G -m dynn.blockdrop.train --stage finetune --config stage.yaml --run-dir DIR``.

    The stage function the notebook runs, under PyTorch's own launcher. ``--config`` is the
    ``stage.yaml`` a notebook run writes into the stage directory (its ``arguments``) or a
    YAML of the stage's keyword arguments; point the notebook's ``run_dir`` at the same
    place afterwards and it finds the finished checkpoint instead of training again.
    """
    stage_main(STAGES, argv, prog="python -m dynn.blockdrop.train")


if __name__ == "__main__":
    main()
