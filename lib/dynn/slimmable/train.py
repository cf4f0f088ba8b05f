"""Training a slimmable network: the sandwich rule with in-place distillation, one stage per sampler.

**Sandwich rule with in-place distillation** (US-Nets, kept by Joslim). Every step trains,
in this order, the full width on the labels (optionally label-smoothed), ``num_sampled``
configurations from a sampler (:mod:`dynn.slimmable.search`) and the smallest width, the
latter two on the *detached* full-width soft predictions; the gradients of all widths are
summed into one optimizer step. The official codes call ``backward`` once per width; we
run the widths in one forward call of :class:`Sandwich` and back-propagate the summed loss
once — the same gradient, and one forward per step as DistributedDataParallel expects.

**The two training stages** (functions of plain keyword arguments, run by
:meth:`dynn.runs.Run.stage`, on several processes with ``nprocs``, or under ``torchrun``
through :func:`main`):

- :func:`train_joint` — Joslim: the sampled configurations are *layer-wise* widths proposed
  by the cost-targeted, GP-guided evolutionary search, whose losses are refreshed on the
  validation split; the search's history is saved inside the stage checkpoint (the trainer's
  ``state``), so an interrupted stage resumes the same search.
- :func:`train_uniform` — US-Nets: one uniform multiplier for all layers, redrawn every step.

Both return the trained network at full width in eval mode; a finished stage is loaded.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

import dynn.data
import dynn.train
from dynn.data import make_loader
from dynn.slimmable.model import DynModel, create
from dynn.slimmable.search import CostModel, LayerwiseSampler, UniformSampler


# ====================================================================== losses and the step
class Sandwich(nn.Module):
    """Runs several width configurations of one :class:`DynModel` in one forward call."""

    def __init__(self, net: DynModel):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, configs: Sequence[list]) -> list[torch.Tensor]:
        outputs = []
        for real_ch in configs:
            self.net.set_real_ch(real_ch)
            outputs.append(self.net(x))
        return outputs


def soft_cross_entropy(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """In-place distillation loss: cross-entropy to the teacher's softmax (Joslim's ``CrossEntropyLossSoft``)."""
    return torch.sum(-F.softmax(teacher_logits, dim=1) * F.log_softmax(logits, dim=1), dim=1).mean()


def sandwich_loss(outputs: list[torch.Tensor], labels: torch.Tensor, label_smoothing: float = 0.0) -> dict:
    """``outputs[0]`` is the full width (trained on labels), the rest learn from it."""
    full = outputs[0]
    loss_full = F.cross_entropy(full, labels, label_smoothing=label_smoothing)
    teacher = full.detach()
    distill = [soft_cross_entropy(o, teacher) for o in outputs[1:]]
    return {
        "loss": loss_full + sum(distill),
        "loss_full": loss_full.detach(),
        "loss_smallest": distill[-1].detach() if distill else loss_full.detach(),
        "accuracy_full": (full.argmax(1) == labels).float().mean() * 100,
    }


class SandwichStep:
    """``step_fn`` for :func:`dynn.train.fit`: full + sampled + smallest widths per batch.

    ``refresh_data`` (the validation split, never test) is where a layer-wise sampler
    measures the current loss of the configurations it has seen, one batch per refresh.
    """

    def __init__(
        self,
        net: DynModel,
        sampler,
        min_width: float,
        label_smoothing: float = 0.0,
        refresh_data: Dataset | None = None,
        refresh_batch_size: int = 64,
    ):
        self.net, self.sampler, self.min_width = net, sampler, min_width
        self.label_smoothing = label_smoothing
        self.refresh_data, self.refresh_batch_size = refresh_data, refresh_batch_size

    def configs(self, rng: np.random.Generator) -> list[list]:
        """This step's widths, in the sandwich's order: largest, sampled..., smallest."""
        sampled = self.sampler.configs(rng, self.refresh)
        return (
            [self.net.full_real_ch()]
            + [self.net.real_ch_of(w) for w in sampled]
            + [self.net.real_ch_of(self.net.uniform_wm(self.min_width))]
        )

    def refresh(self, wms: list[np.ndarray]) -> list[float]:
        """Held-out loss of each configuration on one validation batch (batch statistics).

        The batch moves through the validation split with the sampler's refresh count, so
        the history is re-scored on fresh held-out images; BN running statistics are left as
        training had them.
        """
        if self.refresh_data is None:
            return [float("nan")] * len(wms)
        n = len(self.refresh_data)
        bs = min(self.refresh_batch_size, n)
        k = (self.sampler.step // max(1, getattr(self.sampler, "tau", 1))) % max(1, n // bs)
        x, y = next(iter(make_loader(Subset(self.refresh_data, range(k * bs, k * bs + bs)), bs)))
        device = next(self.net.parameters()).device
        x, y = x.to(device), y.to(device)
        bn_buffers = {k: v.clone() for k, v in self.net.state_dict().items() if "running_" in k or "num_batches" in k}
        losses = []
        with torch.no_grad():
            for wm in wms:
                self.net.set_wm(wm)
                losses.append(float(F.cross_entropy(self.net(x), y)))
        self.net.load_state_dict(bn_buffers, strict=False)
        return losses

    def __call__(self, model: nn.Module, batch) -> dict:
        x, y = batch
        rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))  # numpy is reseeded per epoch by fit
        out = sandwich_loss(model(x, self.configs(rng)), y, self.label_smoothing)
        self.net.set_real_ch(self.net.full_real_ch())
        return out


def parameter_groups(net: nn.Module, weight_decay: float, decay_bn_bias: bool) -> list[dict]:
    """SGD parameter groups: with ``decay_bn_bias=False`` BN weights/biases and every bias
    (the one-dimensional tensors) get no weight decay, as in Joslim's recipes."""
    if decay_bn_bias:
        return [{"params": list(net.parameters()), "weight_decay": weight_decay}]
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_linear_decay(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int):
    """Per-step LR: linear warm-up, then linear decay to 0 (Joslim's ``linear_decay``)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, 1.0 - (step - warmup_steps) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_sampler(
    kind: str,
    net: DynModel,
    *,
    min_width: float,
    num_sampled: int,
    resolution: int,
    in_channels: int = 3,
    tau: int = 10,
    search_budget: int = 40,
    prior_points: int | None = None,
    surrogate: bool = True,
):
    """``uniform`` (US-Nets) or ``layerwise`` (Joslim-style, GP-guided evolutionary search)."""
    if kind == "uniform":
        return UniformSampler(net, min_width, num_sampled)
    if kind == "layerwise":
        prior = prior_points if prior_points is not None else max(2, min(20, search_budget // 4))
        return LayerwiseSampler(
            net,
            CostModel(net, resolution, in_channels),
            min_width,
            num_sampled,
            tau=tau,
            search_budget=search_budget,
            prior_points=prior,
            surrogate=surrogate,
        )
    raise ValueError(f"sampler must be 'uniform' or 'layerwise', got {kind!r}")


def train_sandwich(
    net: DynModel,
    sampler,
    train_data: Dataset,
    stage: dynn.train.Stage,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    min_width: float,
    label_smoothing: float = 0.0,
    weight_decay: float = 5e-4,
    warmup_epochs: float = 0.0,
    refresh_data: Dataset | None = None,
    refresh_batch_size: int = 64,
    nesterov: bool = True,
    decay_bn_bias: bool = True,
    scale_lr: bool = False,
) -> list[dict]:
    """Train ``net`` with the sandwich rule as the resumable ``stage``.

    SGD with momentum 0.9 (``nesterov`` optional), per-step warm-up + linear decay as in
    Joslim's recipes. Joslim's ImageNet/CIFAR recipe: ``scale_lr`` (``lr`` is given for a
    batch of 256 and scaled by the global batch / 256), no weight decay on BN parameters and
    biases (``decay_bn_bias=False``), no Nesterov.
    The sampler's state travels inside the stage checkpoint (``fit(state=...)``), so an
    interrupted stage resumes the same search. Leaves ``net`` at full width in eval mode.
    """
    if scale_lr:
        lr = lr * batch_size * _world_size() / 256
    optimizer = torch.optim.SGD(
        parameter_groups(net, weight_decay, decay_bn_bias), lr=lr, momentum=0.9, nesterov=nesterov
    )
    steps_per_epoch = math.ceil(len(train_data) / (batch_size * _world_size()))
    scheduler = warmup_linear_decay(optimizer, epochs * steps_per_epoch, int(warmup_epochs * steps_per_epoch))
    step = SandwichStep(net, sampler, min_width, label_smoothing, refresh_data, refresh_batch_size)
    history = dynn.train.fit(
        Sandwich(net),
        step,
        train_data,
        stage,
        dynn.train.Schedule(optimizer, epochs, batch_size, scheduler, per_step=True),
        eval_fn=lambda _: {"configs_seen": len(getattr(sampler, "X", []))},
        state={"sampler": sampler},
    )
    net.set_real_ch(net.full_real_ch())
    net.eval()
    return history


def _world_size() -> int:
    import os

    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


# ====================================================================== the stages
def _training_split(dataset: str, data_root: str, download: bool, resolution: int, train_limit: int):
    return dynn.data.get_dataset(
        dataset, "train", data_root=data_root, download=download, resolution=resolution, channels=3, limit=train_limit
    )


def _new_network(model: str, num_classes: int, seed: int, channel_divisor: int = 1) -> DynModel:
    torch.manual_seed(seed)  # the same initial weights for both stages of one seed
    net = create(model, num_classes=num_classes)
    net.channel_divisor = int(channel_divisor)
    return net


def train_joint(
    *,
    run_dir: str,
    device: str = "cpu",
    model: str,
    dataset: str,
    data_root: str = "",
    download: bool = False,
    resolution: int = 32,
    train_limit: int = 0,
    val_limit: int = 0,
    min_width: float,
    num_sampled: int,
    label_smoothing: float,
    search_budget: int,
    surrogate: bool,
    tau: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup_epochs: float,
    seed: int,
    channel_divisor: int = 1,
    nesterov: bool = True,
    decay_bn_bias: bool = True,
    scale_lr: bool = False,
    progress: bool = True,
) -> DynModel:
    """Joslim: train slimmable ``model`` jointly with a search over its layer-wise widths.

    The sandwich's sampled configurations come from :class:`~dynn.slimmable.search.LayerwiseSampler`
    (``search_budget`` proposals in all, a new one every ``tau`` steps, the history's losses
    refreshed on the validation split: the first ``val_limit`` images, 0 = all). The
    search history is in the stage checkpoint (:func:`dynn.slimmable.search.load_history`).
    """
    stage = dynn.train.Stage.of("train_joint", locals(), not_params=["download"])
    dynn.train.seed_everything(seed)
    train_data = _training_split(dataset, data_root, download, resolution, train_limit)
    val_data = dynn.data.get_dataset(
        dataset, "val", data_root=data_root, download=download, resolution=resolution, channels=3, limit=val_limit
    )
    net = _new_network(model, train_data.num_classes, seed, channel_divisor)
    sampler = make_sampler(
        "layerwise",
        net,
        min_width=min_width,
        num_sampled=num_sampled,
        resolution=resolution,
        tau=tau,
        search_budget=search_budget,
        surrogate=surrogate,
    )
    train_sandwich(
        net,
        sampler,
        train_data,
        stage,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        min_width=min_width,
        label_smoothing=label_smoothing,
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        refresh_data=val_data,
        nesterov=nesterov,
        decay_bn_bias=decay_bn_bias,
        scale_lr=scale_lr,
    )
    return net


def train_uniform(
    *,
    run_dir: str,
    device: str = "cpu",
    model: str,
    dataset: str,
    data_root: str = "",
    download: bool = False,
    resolution: int = 32,
    train_limit: int = 0,
    min_width: float,
    num_sampled: int,
    label_smoothing: float,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup_epochs: float,
    seed: int,
    channel_divisor: int = 1,
    nesterov: bool = True,
    decay_bn_bias: bool = True,
    scale_lr: bool = False,
    progress: bool = True,
) -> DynModel:
    """US-Nets: train slimmable ``model`` on uniform widths (one multiplier ``~ U[min_width, 1]``
    for every layer, ``num_sampled`` per step, redrawn every step), the same budget as
    :func:`train_joint` and the same initial weights."""
    stage = dynn.train.Stage.of("train_uniform", locals(), not_params=["download"])
    dynn.train.seed_everything(seed)
    train_data = _training_split(dataset, data_root, download, resolution, train_limit)
    net = _new_network(model, train_data.num_classes, seed, channel_divisor)
    sampler = make_sampler("uniform", net, min_width=min_width, num_sampled=num_sampled, resolution=resolution)
    train_sandwich(
        net,
        sampler,
        train_data,
        stage,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        min_width=min_width,
        label_smoothing=label_smoothing,
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        nesterov=nesterov,
        decay_bn_bias=decay_bn_bias,
        scale_lr=scale_lr,
    )
    return net


STAGES = {"train_joint": train_joint, "train_uniform": train_uniform}


def main(argv: list[str] | None = None) -> None:
    """``torchrun [--nnodes N] --nproc_per_node G -m dynn.slimmable.train --stage NAME --config stage.yaml --run-dir DIR``.

    ``stage.yaml`` holds the stage's keyword arguments (the ``stage.yaml`` that
    :meth:`dynn.runs.Run.stage` writes beside a stage works as it is). Point the notebook's
    ``run_dir`` at the same place afterwards: the finished stage is loaded, not retrained.
    """
    dynn.train.stage_main(STAGES, argv, prog="python -m dynn.slimmable.train")


if __name__ == "__main__":
    main()
