"""AR-Net's losses, step functions and its three official training stages.

One library function per stage, of plain keyword arguments (what ``Run.stage`` keys the
stage directory by, and what crosses into TorchElastic workers):

1. :func:`pretrain`: each backbone alone as a TSN at its resolution, and the policy CNN at
   the policy's resolution (official: separate runs of ``main_base.py``, SGD, clip 20).
2. :func:`joint`: policy and backbones together, the masked forward, Gumbel τ decaying per
   epoch; the loss is ``w_acc·CE + w_eff·efficiency_loss`` (the main stage: ``nprocs``).
3. :func:`finetune`: backbones only, the policy frozen (and kept in eval mode), τ carried
   over from joint training.

Every keyword defaults to the official value (:mod:`dynn.adaskip.parameters`); the notebook
passes its own. The Gumbel temperature is method state saved inside the stage checkpoint
(``fit(state=...)``), so an interrupted stage resumes with the temperature it had.

Several nodes: ``torchrun ... -m dynn.adaskip.train --stage joint --config stage.yaml
--run-dir DIR`` runs the same function on every rank (``dynn.train.stage_main``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from dynn.adaskip.evaluate import loss_costs, measure_costs
from dynn.adaskip.model import TSN, AdaSkipNet, GumbelTemperature, PretrainedTSNs, build_model, stream_seed
from dynn.adaskip.parameters import (
    OFFICIAL_DROPOUT,
    OFFICIAL_FINETUNE_LR,
    OFFICIAL_GRAD_CLIP,
    OFFICIAL_INIT_TAU,
    OFFICIAL_JOINT_LR,
    OFFICIAL_PRETRAIN_LR,
    OFFICIAL_SKIP_LIST,
    OFFICIAL_TAU_DECAY,
    OFFICIAL_UNIFORM_LOSS_WEIGHT,
    OFFICIAL_W_ACC,
    OFFICIAL_W_EFF,
    OFFICIAL_WEIGHT_DECAY,
)

from dynn.train import Schedule, Stage, fit, load_checkpoint, read_checkpoint, seed_everything, unwrap

# The arguments of stages 2 and 3 that say how AR-Net is built (``build_model``'s keywords).
ARCH_ARGUMENTS = (
    "reso_list",
    "backbone_list",
    "multi_models",
    "base_width",
    "policy_backbone",
    "policy_width",
    "policy_input_offset",
    "hidden_dim",
    "skip_list",
    "policy_also_backbone",
    "online_policy",
    "dropout",
    "cx_quirk",
)


# ---------------------------------------------------------------- data
def video_set(
    dataset: str,
    split: str,
    reso_list,
    num_segments: int,
    data_root: str = "",
    clip_frames: int = 16,
    limit: int = 0,
):
    """Split ``split`` of a video dataset, every frame at every size in ``reso_list``.

    ``clip_frames`` is the length of a generated clip and only reaches the embedded
    generators (``moving_digits``); real sets read their frames from ``data_root``.
    """
    from dynn.data import get_dataset, is_embedded

    kwargs = dict(reso_list=list(reso_list), num_segments=int(num_segments), channels=3)
    if is_embedded(dataset):
        kwargs["clip_frames"] = int(clip_frames)
    else:
        kwargs["data_root"] = data_root
    return get_dataset(dataset, split, limit=int(limit), **kwargs)


# ---------------------------------------------------------------- losses and steps
def efficiency_loss(r: torch.Tensor, action_costs: torch.Tensor, *, uniform_loss_weight: float):
    """Official ``cal_eff``: expected cost Σ_a mean(r_a)·c_a plus λ_u·‖u − mean(u)‖₂.

    ``u`` is the action-usage histogram normalised to sum 1 (the uniform loss keeps the
    policy from collapsing onto one action). Returns ``(loss, gflops_term, uniform_term)``.
    """
    usage = r.mean(dim=[0, 1])
    gflops_term = torch.sum(usage * action_costs)
    uniform_term = r.new_zeros(())
    if uniform_loss_weight > 1e-5:
        counts = r.sum(dim=[0, 1])
        u = counts / counts.sum()
        uniform_term = torch.norm(u - u.mean(), p=2) * uniform_loss_weight
    return gflops_term + uniform_term, gflops_term, uniform_term


class JointStep:
    """Step function for ``dynn.train.fit``: loss = w_acc·CE + w_eff·efficiency_loss.

    Samples the decisions at the current Gumbel temperature and advances it by one step.
    ``policy_loss_weight > 0`` adds the cross-entropy of the policy's own classifier
    (``lite_fc`` on every step's hidden state, averaged over the clip): in the official loss
    ``lite_fc`` only learns from the frames that chose it, so in short runs it stays at chance
    and the "policy prediction" action is a free skip; its own loss makes it a real
    low-resolution prediction (and gives the LSTM a reason to read the frames).
    """

    def __init__(
        self,
        temperature: GumbelTemperature,
        action_costs: torch.Tensor,
        *,
        w_acc: float,
        w_eff: float,
        uniform_loss_weight: float,
        policy_loss_weight: float = 0.0,
        lite_index: int | None = None,
    ):
        self.temperature, self.action_costs = temperature, action_costs
        self.w_acc, self.w_eff, self.uniform_loss_weight = w_acc, w_eff, uniform_loss_weight
        self.policy_loss_weight, self.lite_index = policy_loss_weight, lite_index

    def __call__(self, model: nn.Module, batch) -> dict:
        inputs, y = batch
        tau = self.temperature.tau
        output, r, _, base_outs = model(input=list(inputs), tau=tau)
        acc_loss = F.cross_entropy(output, y)
        eff, gf, uni = efficiency_loss(r, self.action_costs.to(r.device), uniform_loss_weight=self.uniform_loss_weight)
        loss = self.w_acc * acc_loss + self.w_eff * eff
        policy_ce = acc_loss.new_zeros(())
        if self.policy_loss_weight > 0 and self.lite_index is not None:
            policy_ce = F.cross_entropy(base_outs[:, self.lite_index].mean(1), y)
            loss = loss + self.policy_loss_weight * policy_ce
        self.temperature.advance()
        return {
            "policy_ce": policy_ce.detach(),
            "loss": loss,
            "ce": acc_loss.detach(),
            "eff": eff.detach(),
            "gflops_term": gf.detach(),
            "uniform_term": uni.detach(),
            "accuracy": (output.argmax(1) == y).float().mean() * 100,
            "tau": tau,
        }


def tsn_step(resolution_index: int):
    """Stage 1: TSN cross-entropy on the frames at one resolution."""

    def step(model, batch):
        inputs, y = batch
        logits = model(inputs[resolution_index])
        loss = F.cross_entropy(logits, y)
        return {"loss": loss, "accuracy": (logits.argmax(1) == y).float().mean() * 100}

    return step


def optim_groups(model: nn.Module, lr: float, weight_decay: float, fc_lr5: bool = True) -> list[dict]:
    """Official ``get_optim_policies`` (simplified): Linear weights ×5 lr, Linear biases ×10 lr
    and no decay, BN and other biases no decay; frozen parameters are left out."""
    groups = {"normal": [], "no_decay": [], "lr5": [], "lr10": []}
    for m in model.modules():
        own = [p for p in m.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if isinstance(m, nn.Linear):
            if m.weight.requires_grad:
                groups["lr5" if fc_lr5 else "normal"].append(m.weight)
            if m.bias is not None and m.bias.requires_grad:
                groups["lr10" if fc_lr5 else "no_decay"].append(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            groups["no_decay"] += own
        else:
            for name, p in m.named_parameters(recurse=False):
                if p.requires_grad:
                    groups["no_decay" if name.startswith("bias") else "normal"].append(p)
    spec = {"normal": (1, weight_decay), "no_decay": (1, 0.0), "lr5": (5, weight_decay), "lr10": (10, 0.0)}
    return [
        {"params": ps, "lr": lr * spec[k][0], "weight_decay": spec[k][1], "name": k} for k, ps in groups.items() if ps
    ]


def sgd(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """SGD with momentum 0.9 over the official parameter groups."""
    return torch.optim.SGD(optim_groups(model, lr, weight_decay), lr=lr, momentum=0.9)


def policy_eval_mode(model: nn.Module) -> None:
    """``train_mode`` for finetuning: backbones train, the frozen policy stays in eval mode."""
    net = unwrap(model)
    net.train()
    for m in net.policy_modules():
        m.eval()


def freeze_policy(model: AdaSkipNet) -> None:
    for m in model.policy_modules():
        for p in m.parameters():
            p.requires_grad_(False)


def steps_per_epoch(num_videos: int, batch_size: int) -> int:
    """Optimisation steps per epoch on this process (what ``fit`` runs, DDP shards included)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return max(1, math.ceil(num_videos / world / batch_size))


def _reload(model: nn.Module, stage: Stage) -> nn.Module:
    """The model as its stage checkpoint holds it, in eval mode."""
    load_checkpoint(stage.checkpoint, model)
    return model.eval()


# ---------------------------------------------------------------- stage 1
def pretrain(
    *,
    run_dir: str,
    device: str = "cpu",
    dataset: str,
    data_root: str = "",
    num_segments: int = 16,
    clip_frames: int = 16,
    train_limit: int = 0,
    reso_list,
    backbone_list,
    multi_models: bool = True,
    base_width: int = 16,
    policy_backbone: str = "tiny",
    policy_width: int = 16,
    policy_input_offset: int = 3,
    dropout: float = OFFICIAL_DROPOUT,
    backbone_weights=(),
    epochs: int = 10,
    lr: float = OFFICIAL_PRETRAIN_LR,
    batch_size: int = 48,
    weight_decay: float = OFFICIAL_WEIGHT_DECAY,
    grad_clip: float = OFFICIAL_GRAD_CLIP,
    num_workers: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> PretrainedTSNs:
    """Stage 1: one TSN per resolution (and one for the policy CNN), each trained alone.

    SGD with momentum 0.9, the ``fc_lr5`` groups, gradient clipping, cosine decay over the
    (few) epochs. Each TSN is its own resumable sub-stage (``pretrain_tsn<k>_<size>px``,
    ``pretrain_policy_<size>px``, as the official code trains them in separate runs); when
    all have finished they are bundled into ``pretrain.ckpt``. Returns them in eval mode.
    """
    stage = Stage.of("pretrain", locals())  # first: before any other local name exists
    train_data = video_set(dataset, "train", reso_list, num_segments, data_root, clip_frames, train_limit)
    backbones = list(backbone_list) if multi_models else []
    bank = PretrainedTSNs(
        train_data.num_classes,
        backbone_list=backbones,
        policy_backbone=policy_backbone,
        base_width=base_width,
        policy_width=policy_width,
        dropout=dropout,
        seed=seed,
    )
    load_imagenet_weights([*bank.backbones, bank.policy], backbone_weights)
    jobs = [(tsn, k, f"pretrain_tsn{k}_{reso_list[k]}px") for k, tsn in enumerate(bank.backbones)]
    jobs.append((bank.policy, policy_input_offset, f"pretrain_policy_{reso_list[policy_input_offset]}px"))
    train_tsns(
        bank,
        jobs,
        train_data,
        stage,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        num_workers=num_workers,
    )
    return bank.to(device).eval()


def train_tsns(
    bank: nn.Module,
    jobs,
    train_data,
    stage: Stage,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    grad_clip: float,
    num_workers: int,
) -> None:
    """Train each ``(tsn, resolution_index, sub_stage)`` of ``jobs`` alone, then bundle ``bank``.

    SGD with momentum 0.9, the ``fc_lr5`` groups, gradient clipping, cosine decay. Each TSN
    is its own resumable sub-stage (as the official code trains them in separate runs); when
    all have finished the bank is saved as ``stage``'s checkpoint and a later call reloads it.
    """
    saved = stage.finished()
    if saved is not None:
        load_checkpoint(stage.checkpoint, bank, state=saved)
        return
    for tsn, k, name in jobs:
        optimizer = sgd(tsn, lr, weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
        schedule = Schedule(optimizer, epochs, batch_size, scheduler, grad_clip=grad_clip or None)
        fit(tsn, tsn_step(k), train_data, stage.named(name), schedule, num_workers=num_workers)
    stage.save(model=bank.state_dict(), epoch=epochs, history=[])


def load_imagenet_weights(tsns, paths) -> None:
    """Initialise TSN backbones from local ImageNet state dicts (``paths[i]`` for ``tsns[i]``;
    ``""`` or a missing entry leaves that one random).

    The official backbones start from ImageNet weights; without internet, give the files
    (e.g. torchvision's ``resnet50-0676ba61.pth``). The classifier (``fc`` / ``classifier``)
    is left out: ours is replaced by dropout and a new head. Any other missing or
    unexpected key is an error, so a file for the wrong architecture does not load silently.
    """
    for tsn, path in zip(tsns, list(paths)):
        if not path:
            continue
        state = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        state = {k.removeprefix("module."): v for k, v in state.items()}
        head = ("fc.", "classifier.")
        state = {k: v for k, v in state.items() if not k.startswith(head)}
        missing, unexpected = tsn.base_model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(head)]
        if missing or unexpected:
            raise ValueError(
                f"backbone weights {path}: do not fit {type(tsn.base_model).__name__} "
                f"(missing {missing[:3]}..., unexpected {unexpected[:3]}...)"
            )


def uniform_baselines(
    *,
    run_dir: str,
    device: str = "cpu",
    dataset: str,
    data_root: str = "",
    num_segments: int = 16,
    clip_frames: int = 16,
    train_limit: int = 0,
    reso_list,
    resolutions,
    backbone: str,
    base_width: int = 16,
    dropout: float = OFFICIAL_DROPOUT,
    backbone_weights: str = "",
    epochs: int = 10,
    lr: float = OFFICIAL_PRETRAIN_LR,
    batch_size: int = 48,
    weight_decay: float = OFFICIAL_WEIGHT_DECAY,
    grad_clip: float = OFFICIAL_GRAD_CLIP,
    num_workers: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> nn.ModuleList:
    """The fair uniform (TSN) baselines: ``backbone`` on every frame at each of ``resolutions``.

    ``resolutions`` are indices into ``reso_list``. Give ``epochs`` = the epochs AR-Net's
    backbones see in total (stage 1 + joint + finetuning), on the same training clips, so the
    comparison is between equally trained networks. Returns the TSNs (eval mode), each with
    ``resolution_index`` set.
    """
    stage = Stage.of("uniform_baselines", locals())  # first: before any other local name exists
    train_data = video_set(dataset, "train", reso_list, num_segments, data_root, clip_frames, train_limit)
    tsns = nn.ModuleList()
    for i, _ in enumerate(resolutions):
        seed_everything(stream_seed(seed, "uniform_init", i))
        tsns.append(TSN(backbone, train_data.num_classes, base_width=base_width, dropout=dropout))
    load_imagenet_weights(tsns, [backbone_weights] * len(tsns))
    jobs = [(tsn, int(k), f"uniform_{reso_list[int(k)]}px") for tsn, k in zip(tsns, resolutions)]
    train_tsns(
        tsns,
        jobs,
        train_data,
        stage,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        num_workers=num_workers,
    )
    for tsn, k in zip(tsns, resolutions):
        tsn.resolution_index = int(k)
    return tsns.to(device).eval()


def load_pretrained(
    path: str,
    num_classes: int,
    *,
    backbone_list,
    multi_models: bool = True,
    policy_backbone: str = "tiny",
    base_width: int = 16,
    policy_width: int = 16,
    dropout: float = OFFICIAL_DROPOUT,
) -> PretrainedTSNs:
    """The stage-1 TSNs from ``pretrain.ckpt`` (eval mode)."""
    bank = PretrainedTSNs(
        num_classes,
        backbone_list=list(backbone_list) if multi_models else [],
        policy_backbone=policy_backbone,
        base_width=base_width,
        policy_width=policy_width,
        dropout=dropout,
    )
    load_checkpoint(path, bank)
    return bank.eval()


# ---------------------------------------------------------------- stages 2 and 3
def joint(
    *,
    run_dir: str,
    device: str = "cpu",
    pretrained: str,
    dataset: str,
    data_root: str = "",
    num_segments: int = 16,
    clip_frames: int = 16,
    train_limit: int = 0,
    reso_list,
    backbone_list,
    multi_models: bool = True,
    base_width: int = 16,
    policy_backbone: str = "tiny",
    policy_width: int = 16,
    policy_input_offset: int = 3,
    hidden_dim: int = 512,
    skip_list=OFFICIAL_SKIP_LIST,
    policy_also_backbone: bool = True,
    online_policy: bool = True,
    dropout: float = OFFICIAL_DROPOUT,
    cx_quirk: bool = True,
    w_acc: float = OFFICIAL_W_ACC,
    w_eff: float = OFFICIAL_W_EFF,
    uniform_loss_weight: float = OFFICIAL_UNIFORM_LOSS_WEIGHT,
    policy_loss_weight: float = 0.0,
    largest_cost: float = 0.0,
    init_tau: float = OFFICIAL_INIT_TAU,
    tau_decay: float = OFFICIAL_TAU_DECAY,
    epochs: int = 50,
    lr: float = OFFICIAL_JOINT_LR,
    batch_size: int = 48,
    weight_decay: float = OFFICIAL_WEIGHT_DECAY,
    grad_clip: float = OFFICIAL_GRAD_CLIP,
    num_workers: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> AdaSkipNet:
    """Stage 2: policy and backbones together (masked forward, Gumbel τ = τ₀·exp(tau_decay·epoch)).

    ``pretrained`` is stage 1's ``pretrain.ckpt``. The efficiency loss's action costs are
    the backbones' measured MACs, in GMACs (``largest_cost = 0``, official) or rescaled so
    that the largest backbone costs ``largest_cost``. Returns AR-Net in eval mode.
    """
    stage = Stage.of("joint", locals())  # first: before any other local name exists
    train_data = video_set(dataset, "train", reso_list, num_segments, data_root, clip_frames, train_limit)
    model = build_model(train_data.num_classes, seed=seed, **{k: stage.params[k] for k in ARCH_ARGUMENTS})
    bank = load_pretrained(
        pretrained,
        train_data.num_classes,
        backbone_list=backbone_list,
        multi_models=multi_models,
        policy_backbone=policy_backbone,
        base_width=base_width,
        policy_width=policy_width,
        dropout=dropout,
    )
    model.load_backbones(bank.backbones, bank.policy)
    action_costs = loss_costs(model, measure_costs(model), largest_cost)
    temperature = GumbelTemperature(init_tau, tau_decay, steps_per_epoch(len(train_data), batch_size))
    step = JointStep(
        temperature,
        action_costs,
        w_acc=w_acc,
        w_eff=w_eff,
        uniform_loss_weight=uniform_loss_weight,
        policy_loss_weight=policy_loss_weight,
        lite_index=model.lite_action,
    )
    schedule = Schedule(sgd(model, lr, weight_decay), epochs, batch_size, grad_clip=grad_clip or None)
    fit(model, step, train_data, stage, schedule, num_workers=num_workers, state={"temperature": temperature})
    return _reload(model, stage)


def finetune(
    *,
    run_dir: str,
    device: str = "cpu",
    joint_checkpoint: str,
    dataset: str,
    data_root: str = "",
    num_segments: int = 16,
    clip_frames: int = 16,
    train_limit: int = 0,
    reso_list,
    backbone_list,
    multi_models: bool = True,
    base_width: int = 16,
    policy_backbone: str = "tiny",
    policy_width: int = 16,
    policy_input_offset: int = 3,
    hidden_dim: int = 512,
    skip_list=OFFICIAL_SKIP_LIST,
    policy_also_backbone: bool = True,
    online_policy: bool = True,
    dropout: float = OFFICIAL_DROPOUT,
    cx_quirk: bool = True,
    w_acc: float = OFFICIAL_W_ACC,
    w_eff: float = OFFICIAL_W_EFF,
    uniform_loss_weight: float = OFFICIAL_UNIFORM_LOSS_WEIGHT,
    policy_loss_weight: float = 0.0,
    largest_cost: float = 0.0,
    init_tau: float = OFFICIAL_INIT_TAU,
    tau_decay: float = OFFICIAL_TAU_DECAY,
    epochs: int = 50,
    lr: float = OFFICIAL_FINETUNE_LR,
    batch_size: int = 48,
    weight_decay: float = OFFICIAL_WEIGHT_DECAY,
    grad_clip: float = OFFICIAL_GRAD_CLIP,
    num_workers: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> AdaSkipNet:
    """Stage 3: backbones only, the policy frozen and in eval mode; τ continues from joint training.

    ``joint_checkpoint`` is stage 2's ``joint.ckpt`` (its weights and its final temperature).
    With ``epochs = 0`` it returns the joint model unchanged. Returns AR-Net in eval mode.
    """
    stage = Stage.of("finetune", locals())  # first: before any other local name exists
    train_data = video_set(dataset, "train", reso_list, num_segments, data_root, clip_frames, train_limit)
    model = build_model(train_data.num_classes, seed=seed, **{k: stage.params[k] for k in ARCH_ARGUMENTS})
    saved = read_checkpoint(joint_checkpoint)
    load_checkpoint(joint_checkpoint, model, state=saved)
    freeze_policy(model)
    if epochs == 0:
        return model.to(device).eval()
    joint_epochs = int(saved["state"]["temperature"]["epoch"])
    action_costs = loss_costs(model, measure_costs(model), largest_cost)
    temperature = GumbelTemperature(
        init_tau, tau_decay, steps_per_epoch(len(train_data), batch_size), start_epoch=joint_epochs
    )
    step = JointStep(
        temperature,
        action_costs,
        w_acc=w_acc,
        w_eff=w_eff,
        uniform_loss_weight=uniform_loss_weight,
        policy_loss_weight=policy_loss_weight,
        lite_index=model.lite_action,
    )
    schedule = Schedule(sgd(model, lr, weight_decay), epochs, batch_size, grad_clip=grad_clip or None)
    fit(
        model,
        step,
        train_data,
        stage,
        schedule,
        train_mode=policy_eval_mode,
        num_workers=num_workers,
        state={"temperature": temperature},
    )
    return _reload(model, stage)


STAGES = {"pretrain": pretrain, "uniform_baselines": uniform_baselines, "joint": joint, "finetune": finetune}


if __name__ == "__main__":  # torchrun ... -m dynn.adaskip.train --stage joint --config stage.yaml --run-dir DIR
    from dynn.train import stage_main

    stage_main(STAGES, prog="python -m dynn.adaskip.train")
