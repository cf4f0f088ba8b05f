"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks").

ImageNet-style layout (7×7 stem, max-pool, four stages of 64·2^k channels) with BN-ReLU
*before* each convolution, as in SDPoint's official ``models/preresnet.py`` list
(PreResNet-18/34/50/101/152/200). A pre-activation block has no ReLU after its residual
add, so ``forward`` returns the plain sum ``shortcut + f(x)``; the network applies one
final BN-ReLU before global pooling (``forward_head``).

As in the official code (and fb.resnet.torch), a projection shortcut takes the block's
pre-activated input ``relu(bn1(x))`` rather than ``x``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dynn.models.registry import register_variant

LAYERS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv3×3, BN-ReLU-conv3×3; ``forward = shortcut + f(x)`` (no final ReLU)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.downsample = _projection(in_channels, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        shortcut = self.downsample(pre) if self.downsample is not None else x
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1×1, BN-ReLU-conv3×3, BN-ReLU-conv1×1 (×4 channels); no final ReLU."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out_channels = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.downsample = _projection(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        shortcut = self.downsample(pre) if self.downsample is not None else x
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + shortcut


class PreResNet(nn.Module):
    """Pre-activation ResNet with torchvision-style names (``layer1..4``, ``maxpool``, ``fc``)."""

    def __init__(self, depth: int = 18, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        if depth not in LAYERS:
            raise ValueError(f"PreResNet depth must be one of {sorted(LAYERS)}, got {depth}")
        kind, layers = LAYERS[depth]
        block = PreActBasicBlock if kind == "basic" else PreActBottleneck
        self.depth = depth
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(block(channels, planes, stride=2 if (i > 0 and j == 0) else 1))
                channels = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.bn_final = nn.BatchNorm2d(channels)  # the last block's output is not activated
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def blocks(self) -> list[nn.Module]:
        """All residual blocks in execution order (a flat view of ``layer1..layer4``)."""
        return [b for layer in (self.layer1, self.layer2, self.layer3, self.layer4) for b in layer]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn_final(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


for _depth in LAYERS:
    globals()[f"preresnet{_depth}"] = register_variant(
        f"preresnet{_depth}", PreResNet, f"Pre-activation ResNet-{_depth} (ImageNet layout, random init).", depth=_depth
    )
