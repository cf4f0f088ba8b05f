"""CIFAR-style ResNet (He et al. 2016, Sec. 4.2): depth 6n+2, three stages of n BasicBlocks.

The network exposes ``stem``, a flat ``blocks`` list and ``head`` so that dynamic methods
(BlockDrop, SDPoint, ...) can run blocks selectively without copying the architecture.
Each block separates its residual branch ``f(x)`` (:meth:`BasicBlock.residual`) from its
``shortcut`` because BlockDrop's dropped block computes ``shortcut(x)`` alone.

Shortcut "A" is the weight-free option of the paper as BlockDrop's official code writes
it (average-pool by the stride, then zero-pad the new channels); "B" is a 1×1 projection.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dynn.model_names import CIFAR_DEPTHS as DEPTHS
from dynn.models.registry import register_model, register_variant


class ZeroPadShortcut(nn.Module):
    """Option A: average-pool by ``stride`` and append zero channels (no weights)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError("zero-pad shortcut cannot reduce channels")
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            # ceil_mode matches the strided conv's output size on odd inputs too (7 → 4).
            x = F.avg_pool2d(x, self.stride, ceil_mode=True)
        if self.extra_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x


def make_shortcut(in_channels: int, out_channels: int, stride: int, kind: str) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    if kind == "B":
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    raise ValueError(f"shortcut must be 'A' (zero-pad) or 'B' (projection), got {kind!r}")


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN residual branch; ``forward = relu(shortcut(x) + f(x))``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, shortcut)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """f(x): the part a dynamic method may skip."""
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.shortcut(x) + self.residual(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images, widths ``base_width·(1, 2, 4)``, strides 1/2/2."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        base_width: int = 16,
        in_channels: int = 3,
        shortcut: str = "A",
    ):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth must be 6n+2 with n ≥ 1 (e.g. {DEPTHS}), got {depth}")
        self.depth = depth
        self.blocks_per_stage = (depth - 2) // 6
        widths = [base_width, 2 * base_width, 4 * base_width]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, base_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(base_width),
            nn.ReLU(inplace=True),
        )
        blocks, stage_index = [], []
        channels = base_width
        for stage, width in enumerate(widths):
            for i in range(self.blocks_per_stage):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(BasicBlock(channels, width, stride, shortcut))
                stage_index.append(stage)
                channels = width
        self.blocks = nn.ModuleList(blocks)
        self.stage_index = stage_index  # stage of each block, for plots and policies
        self.num_features = channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def cifar_resnet(depth: int = 20, **kwargs) -> CifarResNet:
    """Any depth 6n+2 (8, 14, 20, 32, 56, 110, ...)."""
    return CifarResNet(depth=depth, **kwargs)


for _depth in DEPTHS:
    globals()[f"cifar_resnet{_depth}"] = register_variant(
        f"cifar_resnet{_depth}",
        CifarResNet,
        f"CIFAR ResNet-{_depth} ({(_depth - 2) // 6} blocks per stage).",
        depth=_depth,
    )
