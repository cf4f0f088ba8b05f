"""Slimmable operators: layers that run with the first ``k`` of their channels.

A slimmable network keeps ONE set of weights at full width; a narrower configuration uses
the leading slice of every weight tensor (``weight[:out, :in]``), exactly as in Joslim's
``dyn_model.py`` and US-Nets' ``slimmable_ops.py``. Each operator holds its *active*
channel counts, set from outside through ``set_in_ch`` / ``set_out_ch`` / ``set_groups``;
the model-level logic that keeps those counts consistent lives in
:class:`dynn.slimmable.model.DynModel`.

Because the slice is taken before the convolution, a narrow configuration really computes
less (``dynn.flops`` sees the smaller convolutions). For latency measurements
:func:`export_static` goes one step further and copies the active slices into plain,
contiguous, smaller layers, so the timed network is an ordinary small network.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F


class SlimConv2d(nn.Conv2d):
    """Conv2d whose active input/output channels and groups can be changed at run time.

    ``set_groups`` matters for depthwise convolutions, whose group count follows the
    channel count (``groups = channels``).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.active_in_ch = self.in_channels
        self.active_out_ch = self.out_channels
        self.active_groups = self.groups

    def set_in_ch(self, ch: int) -> None:
        self.active_in_ch = int(ch)

    def set_out_ch(self, ch: int) -> None:
        self.active_out_ch = int(ch)

    def set_groups(self, groups: int) -> None:
        self.active_groups = int(groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.active_in_ch:
            raise RuntimeError(f"SlimConv2d expects {self.active_in_ch} active input channels, got {x.shape[1]}")
        in_per_group = self.active_in_ch // self.active_groups
        weight = self.weight[: self.active_out_ch, :in_per_group]
        bias = self.bias[: self.active_out_ch] if self.bias is not None else None
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.active_groups)


class SlimBN(nn.BatchNorm2d):
    """Sliced BatchNorm: one BN at full width whose first ``k`` channels serve width ``k``.

    The running statistics are shared by every width during training (as in Joslim), so
    they fit no particular configuration: evaluate a configuration only after
    :func:`dynn.evaluate.recalibrate_bn` has re-estimated them for it.
    Slices of the running buffers are views, so the in-place update of
    ``F.batch_norm`` writes into the full buffers.
    """

    def __init__(self, num_features: int, **kwargs):
        super().__init__(num_features, **kwargs)
        self.active_ch = num_features

    def set_out_ch(self, ch: int) -> None:
        self.active_ch = int(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.active_ch
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            # momentum None = cumulative moving average (what BN recalibration uses)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean[:c] if track and self.running_mean is not None else None,
            self.running_var[:c] if track and self.running_var is not None else None,
            self.weight[:c] if self.weight is not None else None,
            self.bias[:c] if self.bias is not None else None,
            use_batch_stats,
            factor,
            self.eps,
        )


class SlimLinear(nn.Linear):
    """Classifier whose input width follows the last feature map; outputs (classes) fixed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.active_in_ch = self.in_features

    def set_in_ch(self, ch: int) -> None:
        self.active_in_ch = int(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, : self.active_in_ch], self.bias)


class SlimZeroPadShortcut(nn.Module):
    """Weight-free shortcut "A": average-pool by the stride, append zero channels.

    The same operation as :class:`dynn.models.cifar_resnet.ZeroPadShortcut` (so the
    slimmable CIFAR ResNet equals the foundation's at full width), with the number of
    output channels set at run time. It can only *add* channels, which is why
    ``decode_ch`` keeps a stage's residual width ≥ the previous stage's.
    """

    def __init__(self, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.active_out_ch = out_channels

    def set_in_ch(self, ch: int) -> None:  # the input width is whatever arrives
        pass

    def set_out_ch(self, ch: int) -> None:
        self.active_out_ch = int(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride)
        extra = self.active_out_ch - x.shape[1]
        if extra < 0:
            raise RuntimeError(f"zero-pad shortcut cannot reduce {x.shape[1]} to {self.active_out_ch} channels")
        return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10% (torchvision)."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


@torch.no_grad()
def export_static(model: nn.Module) -> nn.Module:
    """A deep copy in which every slimmable layer is replaced by a plain, smaller torch layer.

    ``SlimConv2d`` → ``nn.Conv2d``, ``SlimBN`` → ``nn.BatchNorm2d`` and ``SlimLinear`` →
    ``nn.Linear``, each holding a contiguous copy of its active slice (and the BN its
    running statistics for this configuration). The copy computes the same function as
    ``model`` in its current configuration, but no slicing or width bookkeeping is left on
    its inference path: what is timed is an ordinary small network, the one a deployment
    would ship. Its widths are fixed: ``set_real_ch`` does not apply to the copy.
    """
    static = copy.deepcopy(model).eval()
    _replace_slim_layers(static)
    return static


def _plain(m: nn.Module) -> nn.Module | None:
    """The plain torch layer equal to slimmable layer ``m`` at its active widths (else None)."""
    if isinstance(m, SlimConv2d):
        in_per_group = m.active_in_ch // m.active_groups
        plain = nn.Conv2d(
            m.active_in_ch,
            m.active_out_ch,
            m.kernel_size,
            m.stride,
            m.padding,
            m.dilation,
            m.active_groups,
            bias=m.bias is not None,
        )
        plain.weight.copy_(m.weight[: m.active_out_ch, :in_per_group])
        if m.bias is not None:
            plain.bias.copy_(m.bias[: m.active_out_ch])
        return plain
    if isinstance(m, SlimBN):
        c = m.active_ch
        plain = nn.BatchNorm2d(c, eps=m.eps, momentum=m.momentum, affine=m.affine, track_running_stats=True)
        if m.affine:
            plain.weight.copy_(m.weight[:c])
            plain.bias.copy_(m.bias[:c])
        plain.running_mean.copy_(m.running_mean[:c])
        plain.running_var.copy_(m.running_var[:c])
        return plain.eval()
    if isinstance(m, SlimLinear):
        plain = nn.Linear(m.active_in_ch, m.out_features, bias=m.bias is not None)
        plain.weight.copy_(m.weight[:, : m.active_in_ch])
        if m.bias is not None:
            plain.bias.copy_(m.bias)
        return plain
    return None


def _replace_slim_layers(module: nn.Module) -> None:
    for name, child in module.named_children():
        plain = _plain(child)
        if plain is None:
            _replace_slim_layers(child)
        else:
            reference = child.weight if child.weight is not None else child.running_mean
            setattr(module, name, plain.to(device=reference.device, dtype=reference.dtype))
