"""Slimmable models (each a :class:`DynModel` with its own ``channel_space``), by name.

``create("resnet20", num_classes=10)`` builds one. Families:

- CIFAR ResNets (``resnet20/32/44/56/110``): the foundation's
  :class:`dynn.models.cifar_resnet.CifarResNet` made slimmable (same layers, same order;
  :meth:`SlimCifarResNet.load_static` copies a trained static network in).
- ImageNet ResNets (``resnet18/34`` basic blocks, ``resnet50/101`` bottlenecks),
  torchvision's layout with projection shortcuts.
- ``mobilenet_v2``, ``mobilenet_v3`` (large), ``efficientnet_b0``: torchvision's layouts.
- ``toy``: the worked example of the Joslim models README (stem + 3 stages × 3 inverted
  residuals + head, ``search_dim = 13``), the smallest complete ``DynModel`` to read.

``search_dim`` follows from the architecture: one variable per stem, per depthwise-
separable block, and ``1 + N`` per stage of N residual blocks. Official values (Joslim):
ResNet-20 12, ResNet-56 30, ResNet-18 12, ResNet-50 21, MobileNetV2 24.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from dynn.slimmable.blocks import (
    SlimBasicBlock, SlimBottleNeck, SlimConvBNAct, SlimDWSConv, SlimInvertedResidual, SlimStage, activation,
)
from dynn.slimmable.dyn_model import DynModel
from dynn.slimmable.ops import SlimConv2d, SlimLinear, make_divisible

_MODELS: dict[str, Callable[..., DynModel]] = {}


def register(fn: Callable[..., DynModel]) -> Callable[..., DynModel]:
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def create(name: str, **kwargs) -> DynModel:
    """Build a slimmable model by name; an unknown name lists the available ones."""
    if name not in _MODELS:
        raise ValueError(f"unknown slimmable model {name!r}; available: {', '.join(list_models())}")
    return _MODELS[name](**kwargs)


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


# ====================================================================== ResNets
class SlimCifarResNet(DynModel):
    """Slimmable ResNet-(6n+2) for small images; at full width equal to ``CifarResNet``.

    ``channel_space = [[w, w, ..., w], [2w, ...], [4w, ...]]`` (residual first, then each
    block's inner width): ``3·(1+n)`` variables, 12 for ResNet-20. The stem has no variable:
    the first stage's first block has an identity shortcut, so the stem's width *is* that
    stage's residual width (``tied_stem``). Stages 2 and 3 begin with a zero-pad shortcut,
    so ``decode_ch`` keeps their residual width ≥ the previous stage's (as Joslim does).
    """

    tied_stem = True

    def __init__(self, depth: int = 20, num_classes: int = 10, base_width: int = 16,
                 in_channels: int = 3, shortcut: str = "A"):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth must be 6n+2 with n ≥ 1, got {depth}")
        n = (depth - 2) // 6
        widths = [base_width, 2 * base_width, 4 * base_width]
        stem = SlimConvBNAct(in_channels, base_width, 3, act="relu")
        stages, channels = [], base_width
        for s, width in enumerate(widths):
            blocks = [SlimBasicBlock(channels if i == 0 else width, width, 2 if (s > 0 and i == 0) else 1, shortcut)
                      for i in range(n)]
            stages.append(SlimStage(blocks))
            channels = width
        self.layers = nn.ModuleList([stem, *stages])
        self.head = SlimLinear(channels, num_classes)
        self.channel_space = [[w] + [w] * n for w in widths]
        _init(self)
        nn.init.kaiming_uniform_(self.head.weight, a=5 ** 0.5)  # nn.Linear's default, like CifarResNet
        bound = 1 / channels ** 0.5
        nn.init.uniform_(self.head.bias, -bound, bound)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.forward_features(x), 1), 1))

    @torch.no_grad()
    def load_static(self, static: nn.Module) -> "SlimCifarResNet":
        """Copy the weights of a same-depth ``dynn.models`` CifarResNet (layers match in order)."""
        src, dst = list(static.state_dict().values()), self.state_dict()
        if len(src) != len(dst):
            raise ValueError(f"different architectures: {len(src)} vs {len(dst)} tensors")
        for (name, d), s in zip(dst.items(), src):
            if d.shape != s.shape:
                raise ValueError(f"shape mismatch at {name}: {tuple(d.shape)} vs {tuple(s.shape)}")
            d.copy_(s)
        return self


class SlimResNet(DynModel):
    """ImageNet-style slimmable ResNet (7×7 stem + max-pool, 4 stages, projection shortcuts).

    Basic blocks: ``channel_space = [[64, 64, 64], ...]`` with the stem tied to the first
    stage's residual (identity shortcut), 12 variables for ResNet-18. Bottlenecks: the
    first stage projects 64 → 256, so the stem has its own variable:
    ``[64, [256, 64, 64, 64], [512, 128×4], [1024, 256×6], [2048, 512×3]]``, 21 for ResNet-50.
    """

    def __init__(self, block: str, depths: list[int], num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        planes = [64, 128, 256, 512]
        bottleneck = block == "bottleneck"
        expansion = SlimBottleNeck.expansion if bottleneck else 1
        stem = SlimConvBNAct(in_channels, 64, 7, stride=2, act="relu", pool=True)
        stages, channels = [], 64
        for s, (p, n) in enumerate(zip(planes, depths)):
            blocks = []
            for i in range(n):
                stride = 2 if (s > 0 and i == 0) else 1
                blocks.append(SlimBottleNeck(channels, p, stride) if bottleneck
                              else SlimBasicBlock(channels, p, stride, shortcut="B"))
                channels = p * expansion
            stages.append(SlimStage(blocks))
        self.layers = nn.ModuleList([stem, *stages])
        self.head = SlimLinear(channels, num_classes)
        self.tied_stem = not bottleneck
        space = [[p * expansion] + [p] * n for p, n in zip(planes, depths)]
        self.channel_space = space if self.tied_stem else [64] + space
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ====================================================================== inverted residuals
class SlimMobileHead(nn.Module):
    """Last 1×1 conv (fixed output width, slimmable input) → pool → classifier MLP."""

    def __init__(self, in_channels: int, conv_channels: int, num_classes: int, act: str,
                 hidden: int = 0, dropout: float = 0.2):
        super().__init__()
        self.conv = SlimConvBNAct(in_channels, conv_channels, 1, act=act)
        layers: list[nn.Module] = []
        width = conv_channels
        if hidden:  # MobileNetV3: Linear → hardswish before the classifier
            layers += [nn.Linear(width, hidden), activation(act)]
            width = hidden
        layers += [nn.Dropout(dropout), nn.Linear(width, num_classes)]
        self.classifier = nn.Sequential(*layers)

    def set_in_ch(self, ch: int) -> None:
        self.conv.set_in_ch(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.conv(x), 1), 1))


class _MobileDynModel(DynModel):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def _inverted_stage(in_ch: int, settings: list[tuple], se_gate: str, se_act: str, se_from_input: bool):
    """One stage from rows ``(kernel, mid, out, se, act, stride)``; returns (stage, out, mids)."""
    blocks, mids = [], []
    for kernel, mid, out, se, act, stride in settings:
        squeeze = 0
        if se:
            squeeze = max(1, in_ch // 4) if se_from_input else make_divisible(mid // 4, 8)
        blocks.append(SlimInvertedResidual(in_ch, out, stride, mid, kernel, act, squeeze, se_gate, se_act))
        mids.append(mid)
        in_ch = out
    return SlimStage(blocks), in_ch, mids


class SlimMobileNetV2(_MobileDynModel):
    """Slimmable MobileNetV2 (torchvision layout); 24 variables as in Joslim.

    ``channel_space = [32, [16], [24, 96, 144], [32, 144, 192, 192], [64, 192, 384×3],
    [96, 384, 576, 576], [160, 576, 960, 960], [320, 960]]``: stem, the first depthwise-
    separable block, then ``[residual, expanded widths...]`` per stage. The last 1×1 conv
    (1280) keeps its width, as in Joslim.
    """

    SETTING = [(6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2):
        super().__init__()
        layers = [SlimConvBNAct(in_channels, 32, 3, stride=2, act="relu6"), SlimDWSConv(32, 16, 1, act="relu6")]
        space: list = [32, [16]]
        in_ch = 16
        for t, c, n, s in self.SETTING:
            rows = [(3, in_ch * t if i == 0 else c * t, c, False, "relu6", s if i == 0 else 1) for i in range(n)]
            stage, in_ch, mids = _inverted_stage(in_ch, rows, "hsigmoid", "relu", False)
            layers.append(stage)
            space.append([c] + mids)
        self.layers = nn.ModuleList(layers)
        self.head = SlimMobileHead(in_ch, 1280, num_classes, "relu6", dropout=dropout)
        self.channel_space = space
        _init(self)


class SlimStemWithBlock(nn.Module):
    """Stem conv followed by a width-preserving residual block that must share its width.

    MobileNetV3-Large's first block (16 → 16, stride 1) adds its input to its output, so
    it cannot be narrower or wider than the stem: one variable for both.
    """

    def __init__(self, stem: SlimConvBNAct, block: SlimDWSConv):
        super().__init__()
        self.stem, self.block = stem, block

    def set_out_ch(self, ch: int) -> None:
        self.stem.set_out_ch(ch)
        self.block.set_in_ch(ch)
        self.block.set_out_ch([ch])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.stem(x))


class SlimMobileNetV3(_MobileDynModel):
    """Slimmable MobileNetV3-Large (torchvision layout, SE with hard-sigmoid, hard-swish).

    ``channel_space = [16, [24, 64, 72], [40, 72, 120, 120], [80, 240, 200, 184, 184],
    [112, 480, 672], [160, 672, 960, 960]]``: 20 variables. Joslim lists 21 (the first block
    16 → 16 as its own variable), but that block has a residual connection, so its width
    must equal the stem's; we fuse them (:class:`SlimStemWithBlock`).
    """

    # kernel, expanded, out, SE, activation, stride (MobileNetV3 paper, Table 1)
    SETTING = [
        (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
        (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
        (3, 240, 80, False, "hswish", 2), (3, 200, 80, False, "hswish", 1),
        (3, 184, 80, False, "hswish", 1), (3, 184, 80, False, "hswish", 1),
        (3, 480, 112, True, "hswish", 1), (3, 672, 112, True, "hswish", 1),
        (5, 672, 160, True, "hswish", 2), (5, 960, 160, True, "hswish", 1), (5, 960, 160, True, "hswish", 1),
    ]

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2):
        super().__init__()
        stem = SlimStemWithBlock(SlimConvBNAct(in_channels, 16, 3, stride=2, act="hswish"),
                                 SlimDWSConv(16, 16, 1, 3, act="relu"))
        layers: list[nn.Module] = [stem]
        space: list = [16]
        in_ch, rows = 16, []
        for i, row in enumerate(self.SETTING):
            rows.append(row)
            if i + 1 == len(self.SETTING) or self.SETTING[i + 1][2] != row[2]:
                stage, in_ch, mids = _inverted_stage(in_ch, rows, "hsigmoid", "relu", False)
                layers.append(stage)
                space.append([row[2]] + mids)
                rows = []
        self.layers = nn.ModuleList(layers)
        self.head = SlimMobileHead(in_ch, 960, num_classes, "hswish", hidden=1280, dropout=dropout)
        self.channel_space = space
        _init(self)


class SlimEfficientNetB0(_MobileDynModel):
    """Slimmable EfficientNet-B0 (torchvision layout: SiLU, SE on the block input / 4).

    ``channel_space = [32, [16], [24, 96, 144], [40, 144, 240], [80, 240, 480, 480],
    [112, 480, 672, 672], [192, 672, 1152×3], [320, 1152]]``: 23 variables. Stochastic
    depth is left out (a slimmable network trains several widths per step already).
    """

    # expand ratio, kernel, stride, out, repeats (EfficientNet paper, Table 1)
    SETTING = [(6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2):
        super().__init__()
        layers = [SlimConvBNAct(in_channels, 32, 3, stride=2, act="silu"),
                  SlimDWSConv(32, 16, 1, 3, act="silu", se_channels=8, se_gate="sigmoid", se_act="silu")]
        space: list = [32, [16]]
        in_ch = 16
        for t, k, s, c, n in self.SETTING:
            rows, block_in = [], in_ch
            for i in range(n):
                rows.append((k, block_in * t, c, True, "silu", s if i == 0 else 1))
                block_in = c
            stage, in_ch, mids = _inverted_stage(in_ch, rows, "sigmoid", "silu", True)
            layers.append(stage)
            space.append([c] + mids)
        self.layers = nn.ModuleList(layers)
        self.head = SlimMobileHead(in_ch, 1280, num_classes, "silu", dropout=dropout)
        self.channel_space = space
        _init(self)


class SlimToyNet(_MobileDynModel):
    """The Joslim models README's worked example: stem + 3 stages × 3 inverted residuals + head.

    Stem and head are bare :class:`SlimConv2d` layers, as in the README. 1 variable for
    the stem, ``1 + 3`` per stage → ``search_dim = 13``; ``decode_wm`` gives
    ``[c1, [c2..c5], [c6..c9], [c10..c13]]`` and ``decode_ch`` expands a stage
    ``[c2, c3, c4, c5]`` to ``[c3, c2, c4, c2, c5, c2]``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, stem_width: int = 16,
                 widths: tuple = (24, 32, 64), expand: int = 4):
        super().__init__()
        stem = SlimConv2d(in_channels, stem_width, 3, padding=1, bias=False)
        layers: list[nn.Module] = [stem]
        space: list = [stem_width]
        in_ch = stem_width
        for s, c in enumerate(widths):
            rows = [(3, (in_ch if i == 0 else c) * expand, c, False, "relu6", (1 if s == 0 else 2) if i == 0 else 1)
                    for i in range(3)]
            stage, in_ch, mids = _inverted_stage(in_ch, rows, "hsigmoid", "relu", False)
            layers.append(stage)
            space.append([c] + mids)
        self.layers = nn.ModuleList(layers)
        self.head = SlimConv2d(in_ch, num_classes, 1)  # after global pooling: a 1×1 conv = linear
        self.channel_space = space
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return torch.flatten(self.head(F.adaptive_avg_pool2d(x, 1)), 1)


# ====================================================================== registry
def _register_cifar(depth: int) -> None:
    def constructor(**kwargs) -> SlimCifarResNet:
        return SlimCifarResNet(depth=depth, **kwargs)

    constructor.__name__ = f"resnet{depth}"
    constructor.__doc__ = f"Slimmable CIFAR ResNet-{depth}."
    register(constructor)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register_cifar(_depth)


@register
def resnet18(**kwargs) -> SlimResNet:
    return SlimResNet("basic", [2, 2, 2, 2], **kwargs)


@register
def resnet34(**kwargs) -> SlimResNet:
    return SlimResNet("basic", [3, 4, 6, 3], **kwargs)


@register
def resnet50(**kwargs) -> SlimResNet:
    return SlimResNet("bottleneck", [3, 4, 6, 3], **kwargs)


@register
def resnet101(**kwargs) -> SlimResNet:
    return SlimResNet("bottleneck", [3, 4, 23, 3], **kwargs)


@register
def mobilenet_v2(**kwargs) -> SlimMobileNetV2:
    return SlimMobileNetV2(**kwargs)


@register
def mobilenet_v3(**kwargs) -> SlimMobileNetV3:
    return SlimMobileNetV3(**kwargs)


@register
def efficientnet_b0(**kwargs) -> SlimEfficientNetB0:
    return SlimEfficientNetB0(**kwargs)


@register
def toy(**kwargs) -> SlimToyNet:
    return SlimToyNet(**kwargs)
