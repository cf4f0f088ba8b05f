"""Evaluation every method shares: top-k accuracy and BatchNorm recalibration.

One place for the two things that several methods used to write for themselves:

- :func:`evaluate_classifier`: top-1 / top-5 accuracy and cross-entropy of a classifier (or
  of any ``forward`` that maps images to logits: a fixed SDPoint instance, a width
  configuration), with the per-image correctness that paired comparisons need.
- :func:`recalibrate_bn`: re-estimate BatchNorm running statistics as a true average over
  calibration batches (``torch.optim.swa_utils.update_bn``), what SDPoint and the slimmable
  networks do before scoring a configuration whose statistics were never accumulated.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn as nn
from torch.optim.swa_utils import update_bn

from dynn.data import make_loader


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    data,
    *,
    batch_size: int = 256,
    device="cpu",
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    """Top-1 / top-5 accuracy (in %), mean cross-entropy and per-image ``correct`` (bool array).

    ``forward`` defaults to ``model``; the model is put in eval mode either way.
    """
    model.eval()
    forward = forward or model
    correct, in_top5, loss_sum = [], [], 0.0
    for x, y in make_loader(data, batch_size):
        x, y = x.to(device), y.to(device)
        logits = forward(x)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct.append((top[:, 0] == y).cpu())
        in_top5.append((top == y[:, None]).any(1).cpu())
    correct_all = torch.cat(correct).numpy()
    n = max(len(correct_all), 1)
    return {
        "top1": 100.0 * correct_all.mean(),
        "top5": 100.0 * float(torch.cat(in_top5).float().mean()),
        "loss": loss_sum / n,
        "correct": correct_all,
    }


class _Forward(nn.Module):
    """Presents ``forward`` as a module whose BatchNorms are ``model``'s (for ``update_bn``)."""

    def __init__(self, model: nn.Module, forward: Callable):
        super().__init__()
        self.model, self._forward = model, forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, batches: Iterable, *, device="cpu", forward: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> nn.Module:
    """Reset every BatchNorm's running statistics and re-estimate them as a true average.

    ``batches`` yields image tensors or ``(images, labels)``; ``forward`` (default
    ``model``) is what runs on them, e.g. one SDPoint instance or one width configuration,
    so the statistics are those of that configuration. Leaves the model in eval mode.
    """
    update_bn(batches, _Forward(model, forward or model), device=torch.device(device))
    return model.eval()


def calibration_batches(data, *, batches: int, batch_size: int, seed: int = 0) -> list[torch.Tensor]:
    """``batches`` fixed, shuffled batches of training images (the same for every configuration)."""
    out = []
    for i, (x, _) in enumerate(make_loader(data, batch_size, shuffle=True, seed=seed)):
        if i == batches:
            break
        out.append(x)
    return out


def paired_correct(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image difference ``a - b`` of two correctness arrays over the same test images."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same images: {a.shape} vs {b.shape}")
    return a - b
