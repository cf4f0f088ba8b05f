"""Slimmable networks: the ``DynModel`` interface and the architectures, by name.

**The interface.** An optimiser (uniform sampling, evolutionary search, Bayesian
optimisation) sees a slimmable network as a point ``wm`` in the box ``(0, 1]^search_dim``.
The model turns it into channel counts in three steps (names and semantics from the
Joslim models README):

1. :meth:`DynModel.decode_wm` — flat multipliers → *hierarchical* channel counts, one entry
   per variable: ``int(wm_i · c_i)`` (floor, at least 1) with ``c_i`` from
   ``channel_space``; a stage's list starts with its shared residual width.
2. :meth:`DynModel.decode_ch` — expand shared variables so that every layer has its own
   count: a stage ``[c2, c3, c4, c5]`` becomes ``[c3, c2, c4, c2, c5, c2]``.
3. :meth:`DynModel.set_real_ch` — push the counts into the layers recursively: stem out,
   each stage in/out, classifier in.

A subclass builds ``self.layers`` (``nn.ModuleList`` aligned with the decoded entries: a
stem with ``set_out_ch(int)``, stages/blocks with ``set_in_ch`` / ``set_out_ch``),
``self.head`` (has ``set_in_ch``) and ``self.channel_space``; everything else here is
generic. Where the stem feeds an identity shortcut (basic-block ResNets) it cannot have a
width of its own: set ``tied_stem = True`` and leave it out of ``channel_space``. Cost of
a configuration is *measured* with :mod:`dynn.flops` on a dummy input, not computed from a
formula, and cached per configuration.

**The architectures** register in the workbook's one model registry under the prefix
``slimmable`` (``dynn.models.create("slimmable.cifar_resnet20", num_classes=10)``, or
:func:`create` ``("cifar_resnet20")`` here); names follow the static backbones they make
slimmable:

- CIFAR ResNets (``cifar_resnet8/14/20/32/44/56/110``): the foundation's
  :class:`dynn.models.cifar_resnet.CifarResNet` made slimmable (same layers, same order;
  :meth:`SlimCifarResNet.load_static` copies a trained static network in).
- ImageNet ResNets (``resnet18/34`` basic blocks, ``resnet50/101`` bottlenecks),
  torchvision's layout with projection shortcuts.
- ``mobilenet_v2``, ``mobilenet_v3_large``, ``efficientnet_b0``: torchvision's layouts.
- ``toy``: the worked example of the Joslim models README (stem + 3 stages × 3 inverted
  residuals + head, ``search_dim = 13``), the smallest complete ``DynModel`` to read.

``search_dim`` follows from the architecture: one variable per stem, per depthwise-
separable block, and ``1 + N`` per stage of N residual blocks. Official values (Joslim):
ResNet-20 12, ResNet-56 30, ResNet-18 12, ResNet-50 21, MobileNetV2 24.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import dynn.flops
from dynn.models import list_models, register_model
from dynn.models import create as create_registered
from dynn.slimmable.blocks import (
    SlimBasicBlock,
    SlimBottleNeck,
    SlimConvBNAct,
    SlimDWSConv,
    SlimInvertedResidual,
    SlimStage,
    activation,
)
from dynn.slimmable.ops import SlimConv2d, SlimLinear, make_divisible

PREFIX = "slimmable"


def create(name: str, **kwargs) -> "DynModel":
    """Build slimmable model ``name`` (without the ``slimmable.`` prefix) from the registry."""
    return create_registered(f"{PREFIX}.{name}", **kwargs)


def model_names() -> list[str]:
    """The slimmable architectures' names without the prefix (what the notebook's ``model`` takes)."""
    return [n.removeprefix(PREFIX + ".") for n in list_models(prefix=PREFIX)]


def describe(net: "DynModel", *, resolution: int, min_width: float) -> str:
    """The search space in the README's words: ``search_dim``, ``channel_space``, what
    ``decode_wm`` / ``decode_ch`` make of the smallest width, and its MACs ratio."""
    smallest = net.uniform_wm(min_width)
    full = net.macs_of(net.full_real_ch(), resolution)
    return "\n".join(
        [
            f"search_dim = {net.search_dim}",
            f"channel_space      : {net.channel_space}",
            f"decode_wm({min_width}) : {net.decode_wm(smallest)}",
            f"decode_ch(...)     : {net.decode_ch(net.decode_wm(smallest))}",
            f"full width: {dynn.flops.format_macs(full)} per image; smallest uniform ({min_width}): "
            f"{net.macs_ratio(net.real_ch_of(smallest), resolution):.3f} of it",
        ]
    )


# ====================================================================== the interface
def flatten(nested) -> list:
    """Flatten a hierarchical width list ``[c1, [c2, c3], ...]`` into ``[c1, c2, c3, ...]``."""
    out = []
    for e in nested:
        out.extend(flatten(e) if isinstance(e, (list, tuple)) else [e])
    return out


def last_width(entry) -> int:
    """The output width of one decoded entry (an int, or a stage's last count)."""
    return int(entry[-1]) if isinstance(entry, (list, tuple)) else int(entry)


class DynModel(nn.Module):
    """Base class of every slimmable model; see the module docstring for the contract."""

    # bounds of the search box (Joslim: lower 0.42 in its recipes; configurable per run)
    lower_bnd: float = 0.2
    upper_bnd: float = 1.0
    tied_stem: bool = False
    # channel counts rounded to multiples of this (US-Nets' make_divisible; 1 = floor, Joslim)
    channel_divisor: int = 1

    channel_space: list
    layers: nn.ModuleList
    head: nn.Module

    # -------------------------------------------------------------- the seed's interface
    @property
    def search_dim(self) -> int:
        """Number of independent width variables (layers sharing a width counted once)."""
        return len(flatten(self.channel_space))

    def decode_wm(self, wm: Sequence[float]) -> list:
        """Flat width multipliers in (0, 1] → hierarchical channel counts (``channel_space`` shape).

        Counts are ``int(wm_i · c_i)`` (at least 1), or with ``channel_divisor`` > 1 rounded
        to a multiple of it as US-Nets' ``make_divisible`` does (small layers then stay
        efficient on hardware whose kernels work in blocks of 8 channels).

        With ``tied_stem`` the stem's count (the first stage's residual) is prepended.
        """
        wm = [float(w) for w in np.asarray(wm, dtype=float).ravel()]
        if len(wm) != self.search_dim:
            raise ValueError(f"decode_wm needs {self.search_dim} multipliers (search_dim), got {len(wm)}")
        if any(not (0.0 < w <= 1.0 + 1e-9) for w in wm):
            raise ValueError(f"width multipliers must lie in (0, 1], got {wm}")
        it = iter(wm)

        def scale(c: int) -> int:
            if self.channel_divisor > 1:  # US-Nets style: nearest multiple, never above the full width
                return min(c, make_divisible(next(it) * c, self.channel_divisor))
            return max(1, int(next(it) * c + 1e-9))  # floor, guarding 0.5*16 = 7.999...

        ch = [[scale(c) for c in e] if isinstance(e, (list, tuple)) else scale(e) for e in self.channel_space]
        if self.tied_stem:
            ch = [ch[0][0]] + ch
        return ch

    def decode_ch(self, ch: list) -> list:
        """Hierarchical counts → one count per layer (a stage's shared residual repeated)."""
        if len(ch) != len(self.layers):
            raise ValueError(f"decode_ch expects {len(self.layers)} entries, got {len(ch)}")
        real, prev = [], None
        for layer, entry in zip(self.layers, ch):
            if hasattr(layer, "expand_ch"):
                entry = layer.expand_ch(list(entry), prev)
            elif isinstance(entry, (list, tuple)):
                entry = [int(c) for c in entry]
            else:
                entry = int(entry)
            real.append(entry)
            prev = last_width(entry)
        return real

    def set_real_ch(self, real_ch: list) -> list:
        """Apply per-layer counts: stem out, each stage in/out, classifier in."""
        if len(real_ch) != len(self.layers):
            raise ValueError(f"set_real_ch expects {len(self.layers)} entries, got {len(real_ch)}")
        self.layers[0].set_out_ch(real_ch[0])
        for i in range(1, len(self.layers)):
            self.layers[i].set_in_ch(last_width(real_ch[i - 1]))
            self.layers[i].set_out_ch(real_ch[i])
        self.head.set_in_ch(last_width(real_ch[-1]))
        self.real_ch = real_ch
        return real_ch

    # -------------------------------------------------------------- conveniences
    def real_ch_of(self, wm: Sequence[float]) -> list:
        return self.decode_ch(self.decode_wm(wm))

    def set_wm(self, wm: Sequence[float]) -> list:
        """``set_real_ch(decode_ch(decode_wm(wm)))``; returns the per-layer counts."""
        return self.set_real_ch(self.real_ch_of(wm))

    def full_wm(self) -> np.ndarray:
        return np.ones(self.search_dim)

    def uniform_wm(self, width: float) -> np.ndarray:
        """The same multiplier for every variable (US-Nets' configurations)."""
        return np.full(self.search_dim, float(width))

    def random_sample_wm(self, rng: np.random.Generator | None = None, set_arch: bool = True) -> list:
        """Layer-wise widths drawn i.i.d. from U[lower_bnd, upper_bnd] (Joslim's ``random_sample_wm``)."""
        rng = rng or np.random.default_rng()
        wm = rng.uniform(self.lower_bnd, self.upper_bnd, self.search_dim)
        real = self.real_ch_of(wm)
        if set_arch:
            self.set_real_ch(real)
        return real

    def full_real_ch(self) -> list:
        return self.real_ch_of(self.full_wm())

    def forward_at(self, real_ch: list):
        """A function ``x -> logits`` that runs this network at widths ``real_ch``.

        What :func:`dynn.evaluate.evaluate_classifier` and :func:`dynn.evaluate.recalibrate_bn`
        take as ``forward``: the configuration is applied on every call, so interleaved uses
        of several configurations cannot leak into each other.
        """

        def forward(x: torch.Tensor) -> torch.Tensor:
            self.set_real_ch(real_ch)
            return self(x)

        return forward

    # -------------------------------------------------------------- cost
    def macs_of(self, real_ch: list, resolution: int, in_channels: int = 3) -> int:
        """MACs per image of a configuration, measured by ``dynn.flops.count_macs``.

        Runs one image of zeros through the model (eval mode, no grad) with the
        configuration applied, then restores the previous configuration. Cached.
        """
        key = (repr(real_ch), resolution, in_channels)
        cache = self.__dict__.setdefault("_macs_cache", {})
        if key not in cache:
            previous = getattr(self, "real_ch", None)
            was_training = self.training
            param = next(self.parameters())
            x = torch.zeros(1, in_channels, resolution, resolution, device=param.device, dtype=param.dtype)
            self.eval()
            self.set_real_ch(real_ch)
            cache[key] = dynn.flops.count_macs(self, x)
            self.train(was_training)
            if previous is not None:
                self.set_real_ch(previous)
        return cache[key]

    def macs_ratio(self, real_ch: list, resolution: int, in_channels: int = 3) -> float:
        """MACs of ``real_ch`` divided by the MACs at full width (the papers' "FLOPs ratio")."""
        return self.macs_of(real_ch, resolution, in_channels) / self.macs_of(
            self.full_real_ch(), resolution, in_channels
        )

    def width_profile(self, real_ch: list) -> np.ndarray:
        """Per-layer fraction of the full width (flattened ``decode_ch`` output), for plots."""
        return np.asarray(flatten(real_ch), float) / np.asarray(flatten(self.full_real_ch()), float)


# ====================================================================== ResNets
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


class SlimCifarResNet(DynModel):
    """Slimmable ResNet-(6n+2) for small images; at full width equal to ``CifarResNet``.

    ``channel_space = [[w, w, ..., w], [2w, ...], [4w, ...]]`` (residual first, then each
    block's inner width): ``3·(1+n)`` variables, 12 for ResNet-20. The stem has no variable:
    the first stage's first block has an identity shortcut, so the stem's width *is* that
    stage's residual width (``tied_stem``). Stages 2 and 3 begin with a zero-pad shortcut,
    so ``decode_ch`` keeps their residual width ≥ the previous stage's (as Joslim does).
    """

    tied_stem = True

    def __init__(
        self, depth: int = 20, num_classes: int = 10, base_width: int = 16, in_channels: int = 3, shortcut: str = "A"
    ):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth must be 6n+2 with n ≥ 1, got {depth}")
        n = (depth - 2) // 6
        widths = [base_width, 2 * base_width, 4 * base_width]
        stem = SlimConvBNAct(in_channels, base_width, 3, act="relu")
        stages, channels = [], base_width
        for s, width in enumerate(widths):
            blocks = [
                SlimBasicBlock(channels if i == 0 else width, width, 2 if (s > 0 and i == 0) else 1, shortcut)
                for i in range(n)
            ]
            stages.append(SlimStage(blocks))
            channels = width
        self.layers = nn.ModuleList([stem, *stages])
        self.head = SlimLinear(channels, num_classes)
        self.channel_space = [[w] + [w] * n for w in widths]
        _init(self)
        nn.init.kaiming_uniform_(self.head.weight, a=5**0.5)  # nn.Linear's default, like CifarResNet
        bound = 1 / channels**0.5
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
                blocks.append(
                    SlimBottleNeck(channels, p, stride)
                    if bottleneck
                    else SlimBasicBlock(channels, p, stride, shortcut="B")
                )
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

    def __init__(
        self, in_channels: int, conv_channels: int, num_classes: int, act: str, hidden: int = 0, dropout: float = 0.2
    ):
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
        (3, 64, 24, False, "relu", 2),
        (3, 72, 24, False, "relu", 1),
        (5, 72, 40, True, "relu", 2),
        (5, 120, 40, True, "relu", 1),
        (5, 120, 40, True, "relu", 1),
        (3, 240, 80, False, "hswish", 2),
        (3, 200, 80, False, "hswish", 1),
        (3, 184, 80, False, "hswish", 1),
        (3, 184, 80, False, "hswish", 1),
        (3, 480, 112, True, "hswish", 1),
        (3, 672, 112, True, "hswish", 1),
        (5, 672, 160, True, "hswish", 2),
        (5, 960, 160, True, "hswish", 1),
        (5, 960, 160, True, "hswish", 1),
    ]

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2):
        super().__init__()
        stem = SlimStemWithBlock(
            SlimConvBNAct(in_channels, 16, 3, stride=2, act="hswish"), SlimDWSConv(16, 16, 1, 3, act="relu")
        )
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
    SETTING = [
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    ]

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2):
        super().__init__()
        layers = [
            SlimConvBNAct(in_channels, 32, 3, stride=2, act="silu"),
            SlimDWSConv(32, 16, 1, 3, act="silu", se_channels=8, se_gate="sigmoid", se_act="silu"),
        ]
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

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_width: int = 16,
        widths: tuple = (24, 32, 64),
        expand: int = 4,
    ):
        super().__init__()
        stem = SlimConv2d(in_channels, stem_width, 3, padding=1, bias=False)
        layers: list[nn.Module] = [stem]
        space: list = [stem_width]
        in_ch = stem_width
        for s, c in enumerate(widths):
            rows = [
                (3, (in_ch if i == 0 else c) * expand, c, False, "relu6", (1 if s == 0 else 2) if i == 0 else 1)
                for i in range(3)
            ]
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

    constructor.__name__ = f"cifar_resnet{depth}"
    constructor.__doc__ = f"Slimmable CIFAR ResNet-{depth} (``dynn.models`` ``cifar_resnet{depth}`` made slimmable)."
    register_model(constructor, prefix=PREFIX)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register_cifar(_depth)


@register_model(prefix=PREFIX)
def resnet18(**kwargs) -> SlimResNet:
    return SlimResNet("basic", [2, 2, 2, 2], **kwargs)


@register_model(prefix=PREFIX)
def resnet34(**kwargs) -> SlimResNet:
    return SlimResNet("basic", [3, 4, 6, 3], **kwargs)


@register_model(prefix=PREFIX)
def resnet50(**kwargs) -> SlimResNet:
    return SlimResNet("bottleneck", [3, 4, 6, 3], **kwargs)


@register_model(prefix=PREFIX)
def resnet101(**kwargs) -> SlimResNet:
    return SlimResNet("bottleneck", [3, 4, 23, 3], **kwargs)


@register_model(prefix=PREFIX)
def mobilenet_v2(**kwargs) -> SlimMobileNetV2:
    return SlimMobileNetV2(**kwargs)


@register_model(prefix=PREFIX)
def mobilenet_v3_large(**kwargs) -> SlimMobileNetV3:
    return SlimMobileNetV3(**kwargs)


@register_model(prefix=PREFIX)
def efficientnet_b0(**kwargs) -> SlimEfficientNetB0:
    return SlimEfficientNetB0(**kwargs)


@register_model(prefix=PREFIX)
def toy(**kwargs) -> SlimToyNet:
    return SlimToyNet(**kwargs)
