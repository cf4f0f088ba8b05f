"""Slimmable blocks (``SlimBlock``) and stages (``SlimStage``), the middle of the hierarchy

    SlimModel → SlimStage → SlimBlock → SlimOps (SlimConv2d, SlimBN)

Each block knows only how its own layers share channels; it exposes ``set_in_ch(c)`` and
``set_out_ch([mid, out])`` (``search_dim = 2``) or ``set_out_ch([out])`` (``search_dim =
1`` for :class:`SlimDWSConv`). A :class:`SlimStage` fuses the blocks' output widths into one
shared *residual* width (identity shortcuts add tensors, so their channel counts must
match), which is why a stage of N blocks has ``1 + N`` independent widths, not ``2N``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dynn.slimmable.ops import SlimBN, SlimConv2d, SlimZeroPadShortcut


def _pair(ch, search_dim: int) -> list[int]:
    if isinstance(ch, int):
        ch = [ch] * search_dim
    if len(ch) != search_dim:
        raise ValueError(f"expected {search_dim} channel counts, got {ch}")
    return [int(c) for c in ch]


def activation(name: str) -> nn.Module:
    """relu, relu6, hswish (MobileNetV3) or silu (EfficientNet, a.k.a. swish)."""
    table = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, "silu": nn.SiLU}
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(table)}")
    return table[name](inplace=True)


class SlimConvBNAct(nn.Module):
    """conv-BN-activation with a slimmable output: stems, last convolutions and, with
    ``act=None``, the strided 1×1 projection of ResNet shortcut "B"."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        act: str | None = "relu",
        pool: bool = False,
    ):
        super().__init__()
        self.conv = SlimConv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)
        self.bn = SlimBN(out_channels)
        self.act = activation(act) if act else nn.Identity()
        self.pool = nn.MaxPool2d(3, 2, 1) if pool else nn.Identity()

    def set_in_ch(self, ch: int) -> None:
        self.conv.set_in_ch(ch)

    def set_out_ch(self, ch: int) -> None:
        self.conv.set_out_ch(ch)
        self.bn.set_out_ch(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.bn(self.conv(x))))


class SlimBasicBlock(nn.Module):
    """ResNet basic block: 3×3 conv (mid) → 3×3 conv (out) + shortcut; ``search_dim = 2``.

    Layer names and order follow :class:`dynn.models.cifar_resnet.BasicBlock`, so weights
    copy over one to one. ``shortcut`` is ``"A"`` (zero-pad, CIFAR) or ``"B"`` (1×1
    projection, ImageNet); identity when stride 1 and widths equal.
    """

    search_dim = 2

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "A"):
        super().__init__()
        self.conv1 = SlimConv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = SlimBN(out_channels)
        self.conv2 = SlimConv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = SlimBN(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = SlimZeroPadShortcut(out_channels, stride)
        else:
            self.shortcut = SlimConvBNAct(in_channels, out_channels, 1, stride, act=None)
        self.has_identity = isinstance(self.shortcut, nn.Identity)

    def set_in_ch(self, ch: int) -> None:
        self.conv1.set_in_ch(ch)
        if hasattr(self.shortcut, "set_in_ch"):
            self.shortcut.set_in_ch(ch)

    def set_out_ch(self, ch) -> None:
        mid, out = _pair(ch, self.search_dim)
        self.conv1.set_out_ch(mid)
        self.bn1.set_out_ch(mid)
        self.conv2.set_in_ch(mid)
        self.conv2.set_out_ch(out)
        self.bn2.set_out_ch(out)
        if hasattr(self.shortcut, "set_out_ch"):
            self.shortcut.set_out_ch(out)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.shortcut(x) + self.residual(x))


class SlimBottleNeck(nn.Module):
    """ResNet bottleneck: 1×1 (mid) → 3×3 (mid) → 1×1 (out = 4·planes); ``search_dim = 2``."""

    search_dim = 2
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = SlimConv2d(in_channels, planes, 1, bias=False)
        self.bn1 = SlimBN(planes)
        self.conv2 = SlimConv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = SlimBN(planes)
        self.conv3 = SlimConv2d(planes, out_channels, 1, bias=False)
        self.bn3 = SlimBN(out_channels)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else SlimConvBNAct(in_channels, out_channels, 1, stride, act=None)
        )
        self.has_identity = isinstance(self.shortcut, nn.Identity)

    def set_in_ch(self, ch: int) -> None:
        self.conv1.set_in_ch(ch)
        if hasattr(self.shortcut, "set_in_ch"):
            self.shortcut.set_in_ch(ch)

    def set_out_ch(self, ch) -> None:
        mid, out = _pair(ch, self.search_dim)
        self.conv1.set_out_ch(mid)
        self.bn1.set_out_ch(mid)
        self.conv2.set_in_ch(mid)
        self.conv2.set_out_ch(mid)
        self.bn2.set_out_ch(mid)
        self.conv3.set_in_ch(mid)
        self.conv3.set_out_ch(out)
        self.bn3.set_out_ch(out)
        if hasattr(self.shortcut, "set_out_ch"):
            self.shortcut.set_out_ch(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class SlimSE(nn.Module):
    """Squeeze-and-excitation on a slimmable feature map.

    As in Joslim's ``SlimSEModule`` only the SE's input/output follow the block width;
    its hidden width stays at full size (it costs few MACs).
    """

    def __init__(self, channels: int, squeeze: int, gate: str = "hsigmoid", act: str = "relu"):
        super().__init__()
        self.fc1 = SlimConv2d(channels, squeeze, 1)
        self.act = activation(act)
        self.fc2 = SlimConv2d(squeeze, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True) if gate == "hsigmoid" else nn.Sigmoid()

    def set_ch(self, ch: int) -> None:
        self.fc1.set_in_ch(ch)
        self.fc2.set_out_ch(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * scale


class SlimDWSConv(nn.Module):
    """Depthwise-separable conv: depthwise k×k (width = input) → 1×1 (out); ``search_dim = 1``.

    The depthwise layer has no width of its own (groups = channels), so its width is the
    input's: that is the "fusion" that removes a search dimension.
    """

    search_dim = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        kernel: int = 3,
        act: str = "relu6",
        se_channels: int = 0,
        se_gate: str = "hsigmoid",
        se_act: str = "relu",
    ):
        super().__init__()
        self.dw = SlimConv2d(in_channels, in_channels, kernel, stride, kernel // 2, groups=in_channels, bias=False)
        self.bn1 = SlimBN(in_channels)
        self.act = activation(act)
        self.se = SlimSE(in_channels, se_channels, se_gate, se_act) if se_channels else None
        self.pw = SlimConv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = SlimBN(out_channels)
        self.use_residual = stride == 1 and in_channels == out_channels

    def set_in_ch(self, ch: int) -> None:
        self.dw.set_in_ch(ch)
        self.dw.set_out_ch(ch)
        self.dw.set_groups(ch)
        self.bn1.set_out_ch(ch)
        if self.se is not None:
            self.se.set_ch(ch)
        self.pw.set_in_ch(ch)

    def set_out_ch(self, ch) -> None:
        (out,) = _pair(ch, self.search_dim)
        self.pw.set_out_ch(out)
        self.bn2.set_out_ch(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.dw(x)))
        if self.se is not None:
            out = self.se(out)
        out = self.bn2(self.pw(out))
        return x + out if self.use_residual else out


class SlimInvertedResidual(nn.Module):
    """MobileNetV2/V3/EfficientNet block: 1×1 expand (mid) → depthwise (mid) → [SE] → 1×1 (out).

    ``search_dim = 2``: the expanded width ``mid`` (shared by the expansion, the depthwise
    conv and the SE) and the output width.
    """

    search_dim = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        mid_channels: int,
        kernel: int = 3,
        act: str = "relu6",
        se_channels: int = 0,
        se_gate: str = "hsigmoid",
        se_act: str = "relu",
    ):
        super().__init__()
        self.expand = SlimConv2d(in_channels, mid_channels, 1, bias=False)
        self.bn1 = SlimBN(mid_channels)
        self.act1 = activation(act)
        self.dw = SlimConv2d(mid_channels, mid_channels, kernel, stride, kernel // 2, groups=mid_channels, bias=False)
        self.bn2 = SlimBN(mid_channels)
        self.act2 = activation(act)
        self.se = SlimSE(mid_channels, se_channels, se_gate, se_act) if se_channels else None
        self.project = SlimConv2d(mid_channels, out_channels, 1, bias=False)
        self.bn3 = SlimBN(out_channels)
        self.use_residual = stride == 1 and in_channels == out_channels

    def set_in_ch(self, ch: int) -> None:
        self.expand.set_in_ch(ch)

    def set_out_ch(self, ch) -> None:
        mid, out = _pair(ch, self.search_dim)
        self.expand.set_out_ch(mid)
        self.bn1.set_out_ch(mid)
        self.dw.set_in_ch(mid)
        self.dw.set_out_ch(mid)
        self.dw.set_groups(mid)
        self.bn2.set_out_ch(mid)
        if self.se is not None:
            self.se.set_ch(mid)
        self.project.set_in_ch(mid)
        self.project.set_out_ch(out)
        self.bn3.set_out_ch(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.expand(x)))
        out = self.act2(self.bn2(self.dw(out)))
        if self.se is not None:
            out = self.se(out)
        out = self.bn3(self.project(out))
        return x + out if self.use_residual else out


class SlimStage(nn.Module):
    """A run of blocks that share one residual width; ``search_dim = 1 + len(blocks)``.

    Its entry in ``channel_space`` / ``decode_wm`` is ``[residual, mid_1, ..., mid_N]``;
    :meth:`expand_ch` turns it into one ``(mid, out)`` pair per block,
    ``[mid_1, residual, mid_2, residual, ...]`` (the seed README's ``decode_ch``).
    """

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        for b in self.blocks[1:]:
            if not getattr(b, "use_residual", getattr(b, "has_identity", True)):
                raise ValueError("every block after a stage's first must keep its width (residual)")
        head = self.blocks[0]
        # a zero-pad shortcut can only add channels: the residual must not shrink
        self.zero_pad_shortcut = isinstance(getattr(head, "shortcut", None), SlimZeroPadShortcut)
        self.search_dim = 1 + len(self.blocks)

    def expand_ch(self, entry: list[int], prev_out: int | None) -> list[int]:
        residual, mids = int(entry[0]), [int(c) for c in entry[1:]]
        if len(mids) != len(self.blocks):
            raise ValueError(f"stage of {len(self.blocks)} blocks needs 1+{len(self.blocks)} widths, got {entry}")
        if self.zero_pad_shortcut and prev_out is not None:
            residual = max(residual, prev_out)
        out = []
        for m in mids:
            out += [m, residual]
        return out

    def set_in_ch(self, ch: int) -> None:
        self.blocks[0].set_in_ch(ch)

    def set_out_ch(self, ch: list[int]) -> None:
        if len(ch) != 2 * len(self.blocks):
            raise ValueError(f"stage expects {2 * len(self.blocks)} real channel counts, got {len(ch)}")
        for i, block in enumerate(self.blocks):
            if i > 0:
                block.set_in_ch(ch[2 * i - 1])
            block.set_out_ch(ch[2 * i : 2 * i + 2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x
