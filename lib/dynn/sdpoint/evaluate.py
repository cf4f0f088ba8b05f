"""Cost-adjustable inference: BN recalibration and the per-instance accuracy/cost table.

Each SDPoint instance sees feature maps of different sizes (and, after pooling, different
statistics) than the mixture the network was trained on, so before evaluating an instance
the paper recomputes the BatchNorm statistics for it on training data (train mode, no
gradients). The official code does this with a plain ``model.train()`` pass over the
training loader: the running statistics are *not* reset between instances and are a
momentum-0.1 moving average. We default to the faithful-to-the-paper version (reset,
then a true cumulative average over ``bn_batches`` batches: ``momentum=None``) and keep the
official behaviour as ``mode="official"``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
import torch
import torch.nn as nn
from torch.utils.data import Dataset, Subset

from dynn.data import make_loader
from dynn.flops import measure_latency
from dynn.runs import atomic_write_text
from dynn.sdpoint.model import Config, SDPointNet

BN_MODES = ("average", "official")


def stack_dataset(data: Dataset, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A (small) dataset as two tensors, so that the 2N+3 evaluations do not re-decode images."""
    n = len(data) if not limit else min(limit, len(data))
    xs, ys = zip(*(data[i] for i in range(n)))
    return torch.stack(xs), torch.as_tensor(ys)


def eval_data(data: Dataset, limit: int = 0, *, max_bytes: int = 2**30):
    """``(images, labels)`` tensors when the (first ``limit``) images fit in ``max_bytes``,
    else ``(dataset, None)``, which the evaluation functions read batch by batch (ImageNet)."""
    n = len(data) if not limit else min(limit, len(data))
    image = data[0][0]
    if n * image.numel() * image.element_size() <= max_bytes:
        return stack_dataset(data, n)
    return (data if n == len(data) else Subset(data, range(n))), None


def example_batch(x, n: int) -> torch.Tensor:
    """The first ``n`` images of tensors or a dataset (for latency measurements)."""
    if isinstance(x, torch.Tensor):
        return x[:n]
    return torch.stack([x[i][0] for i in range(min(n, len(x)))])


def input_shape_of(x) -> tuple[int, ...]:
    return tuple(x.shape[1:]) if isinstance(x, torch.Tensor) else tuple(x[0][0].shape)


def _batches(x, y, batch_size: int):
    if isinstance(x, torch.Tensor):
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]
    else:
        yield from make_loader(x, batch_size, num_workers=min(8, os.cpu_count() or 1) if len(x) > 5000 else 0)


def calibration_batches(data: Dataset, *, batches: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """``batches`` fixed training batches (with the training augmentation) for BN statistics.

    The same images recalibrate every instance, so differences between instances are not
    differences between calibration samples.
    """
    out = []
    for x, _ in make_loader(data, batch_size, shuffle=True, seed=seed):
        out.append(x)
        if len(out) == batches:
            break
    return out


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every BN buffer (running mean/var, batch counter) to restore later."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def restore_bn_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    model.load_state_dict(state, strict=False)


@torch.no_grad()
def recalibrate_bn(model: SDPointNet, config: Sequence[float], batches: Iterable[torch.Tensor], *,
                   mode: str = "average") -> None:
    """Recompute BN statistics of ``model`` under ``config`` from ``batches`` (no gradients).

    ``average``: reset, then the exact mean of the per-batch statistics (``momentum=None``);
    ``official``: keep the current statistics and update them with momentum 0.1, as the
    official evaluation loop does (so the result depends on the instances before it).
    """
    if mode not in BN_MODES:
        raise ValueError(f"BN recalibration mode must be one of {BN_MODES}, got {mode!r}")
    device = next(model.parameters()).device
    bns = _batchnorms(model)
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        if mode == "average":
            bn.reset_running_stats()
            bn.momentum = None
        else:
            bn.momentum = 0.1
    was_training = model.training
    model.train()
    try:
        with model.fixed(config):
            for x in batches:
                model(x.to(device))
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        model.train(was_training)


@torch.no_grad()
def accuracy(model: nn.Module, x, y: torch.Tensor | None = None, *, batch_size: int = 250) -> dict:
    """Top-1 and top-5 accuracy (%) of ``model`` in eval mode on tensors ``x``, ``y`` (or on
    a dataset ``x`` with ``y=None``, see :func:`eval_data`)."""
    device = next(model.parameters()).device
    model.eval()
    c1 = c5 = n = 0
    for xb, yb in _batches(x, y, batch_size):
        logits = model(xb.to(device))
        target = yb.to(device)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        c1 += int((top[:, 0] == target).sum())
        c5 += int((top == target[:, None]).any(1).sum())
        n += len(target)
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n}


def config_accuracy(model: SDPointNet, config: Config, x, y: torch.Tensor | None, *,
                    calibration: Sequence[torch.Tensor] | None = None, bn_mode: str = "average",
                    restore: bool = True) -> dict:
    """Accuracy of one configuration, after BN recalibration when ``calibration`` is given.

    With ``restore`` the trained BN statistics are put back afterwards, so calls do not
    influence each other (the official chain of instances uses ``restore=False``).
    """
    saved = bn_state(model) if (calibration is not None and restore) else None
    try:
        if calibration is not None:
            recalibrate_bn(model, config, calibration, mode=bn_mode)
        with model.fixed(config):
            return accuracy(model, x, y)
    finally:
        if saved is not None:
            restore_bn_state(model, saved)


def evaluate_instances(model: SDPointNet, x, y: torch.Tensor | None, *,
                       calibration: Sequence[torch.Tensor] | None = None,
                       bn_mode: str = "average") -> list[dict]:
    """Accuracy and MACs of every instance (official order), with or without recalibration.

    In ``official`` mode the statistics carry over from one instance to the next, in the
    official order, exactly as the official ``--evaluate`` loop leaves them; the trained
    statistics are restored at the end either way.
    """
    saved = bn_state(model)
    input_shape = input_shape_of(x)
    full = model.macs(model.full_config(), input_shape)
    rows = []
    try:
        for point, ratio in model.instances():
            config = model.instance_config(point, ratio)
            acc = config_accuracy(model, config, x, y, calibration=calibration, bn_mode=bn_mode,
                                  restore=bn_mode != "official")
            macs = model.macs(config, input_shape)
            rows.append({
                "point": "none" if point is None else str(point),
                "ratio": 1.0 if ratio is None else ratio,
                "macs": macs, "macs_fraction": macs / full,
                "top1": acc["top1"], "top5": acc["top5"],
            })
    finally:
        restore_bn_state(model, saved)
    return rows


def config_latency(model: SDPointNet, config: Sequence[float], x: torch.Tensor, *,
                   min_run_time: float = 0.3) -> float:
    """Median latency (ms) of one forward pass of ``x`` under ``config`` (eval mode)."""
    model.eval()
    with model.fixed(config):
        return measure_latency(model, x, min_run_time=min_run_time).median_ms


def cached_table(path: str | Path, compute) -> pd.DataFrame:
    """``compute()`` (a list of dicts) as a DataFrame, stored at ``path`` (CSV) and reused.

    The instance table is the expensive part of a run after training (2N+3 instances × 2
    models × with/without recalibration); a sweep over the agent's parameters keys it by
    the parameters it depends on (through :func:`dynn.runs.stage_dir`) and computes it once.
    """
    path = Path(path)
    if path.exists():
        return pd.read_csv(path, dtype={"point": str})
    table = pd.DataFrame(compute())
    atomic_write_text(path, table.to_csv(index=False))
    return table
