"""Downsampling points on any residual backbone, and the SDPoint sampling rule.

An SDPoint *point* is a place where the feature map may be shrunk: the stem (its max-pool
becomes an adaptive max-pool to ``round(H·ratio)``; a CIFAR stem has no max-pool, so the
stem output is adaptively max-pooled) and the output of every residual block, after the
residual add and before the block's final ReLU (adaptive average pooling to
``round(H·ratio)``). Everything after a point then runs on the smaller map, so a cheap
instance really does fewer MACs and is really faster; no mask is involved.

:class:`SDPointNet` wraps a backbone instead of copying it: it walks the backbone's own
stem, blocks and head (:func:`backbone_parts`) and evaluates each block as
``activation(pool(pre_activation(x)))`` where ``pre_activation`` is the block's residual
sum. A *configuration* is one ratio per point (``1.0`` = leave it alone), which covers
the paper's single-point instances, "no downsampling" and the per-layer configurations
the agent of the TwoPipe fork chooses.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models.resnet as tv_resnet

from dynn.flops import count_macs
from dynn.models import cifar_resnet, preresnet

Point = str | int | None  # "stem", a block index, or None (no downsampling)
Config = tuple[float, ...]  # one ratio per point: (stem, block 0, block 1, ...)

SAMPLING = ("fixed", "single", "multi")
_MACS_CACHE: dict[tuple, int] = {}  # (architecture key, config, input shape) -> MACs per image


# ---------------------------------------------------------------- backbone adapters
def _cifar_pre(block: cifar_resnet.BasicBlock, x: torch.Tensor) -> torch.Tensor:
    return block.shortcut(x) + block.residual(x)


def _tv_basic_pre(block: tv_resnet.BasicBlock, x: torch.Tensor) -> torch.Tensor:
    identity = block.downsample(x) if block.downsample is not None else x
    out = block.relu(block.bn1(block.conv1(x)))
    return block.bn2(block.conv2(out)) + identity


def _tv_bottleneck_pre(block: tv_resnet.Bottleneck, x: torch.Tensor) -> torch.Tensor:
    identity = block.downsample(x) if block.downsample is not None else x
    out = block.relu(block.bn1(block.conv1(x)))
    out = block.relu(block.bn2(block.conv2(out)))
    return block.bn3(block.conv3(out)) + identity


# block type -> (pre-activation residual sum, activation after the point, is a BasicBlock)
# ``block(x) == activation(pre_activation(block, x))`` holds for each (tested).
_BLOCKS: dict[type, tuple[Callable, Callable, bool]] = {
    cifar_resnet.BasicBlock: (_cifar_pre, F.relu, True),
    tv_resnet.BasicBlock: (_tv_basic_pre, F.relu, True),
    tv_resnet.Bottleneck: (_tv_bottleneck_pre, F.relu, False),
    preresnet.PreActBasicBlock: (lambda b, x: b(x), lambda x: x, True),
    preresnet.PreActBottleneck: (lambda b, x: b(x), lambda x: x, False),
}


@dataclass
class BackboneParts:
    """The pieces of a residual network that SDPoint needs to reach."""

    stem: Callable[[torch.Tensor], torch.Tensor]  # up to (not including) the stem pool
    stem_pool: nn.Module | None  # the stem max-pool (ImageNet layouts) or None (CIFAR)
    blocks: list[nn.Module]
    head: Callable[[torch.Tensor], torch.Tensor]  # final features -> logits


def backbone_parts(model: nn.Module) -> BackboneParts:
    """Stem, blocks and head of a supported backbone (CIFAR ResNet, torchvision ResNet /
    ResNeXt, PreResNet); any other model is rejected with the list of supported ones."""
    if isinstance(model, cifar_resnet.CifarResNet):
        parts = BackboneParts(model.stem, None, list(model.blocks), model.forward_head)
    elif isinstance(model, tv_resnet.ResNet):
        stem = nn.Sequential(model.conv1, model.bn1, model.relu)  # shares the modules
        blocks = [b for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer]

        def head(x: torch.Tensor) -> torch.Tensor:
            return model.fc(torch.flatten(model.avgpool(x), 1))

        parts = BackboneParts(stem, model.maxpool, blocks, head)
    elif isinstance(model, preresnet.PreResNet):
        parts = BackboneParts(model.stem, model.maxpool, model.blocks, model.forward_head)
    else:
        raise TypeError(
            f"SDPoint supports CifarResNet, torchvision ResNet/ResNeXt and PreResNet backbones, "
            f"not {type(model).__name__}")
    for block in parts.blocks:
        if type(block) not in _BLOCKS:
            raise TypeError(f"unsupported residual block {type(block).__name__}")
    return parts


def _pooled_size(h: int, w: int, ratio: float) -> tuple[int, int]:
    # Python's round (half to even) as in the official int(round(H*ratio)); at least 1 pixel.
    return max(1, int(round(h * ratio))), max(1, int(round(w * ratio)))


# ---------------------------------------------------------------- the network
class SDPointNet(nn.Module):
    """A backbone with downsampling points; see the module docstring.

    Points are ordered as the data flows: ``"stem"``, then blocks ``0..N-1``; a
    configuration is a tuple of N+1 ratios in that order. ``sampling`` says what a forward
    pass in training mode does:

    - ``"fixed"``: use the configuration set with :meth:`set_instance` / :meth:`set_config`
      (evaluation, BN recalibration, the plain-trained baseline);
    - ``"single"``: SDPoint training, one instance per forward pass, uniform over
      {no downsampling} ∪ points, then a ratio uniform over ``ratios``;
    - ``"multi"``: half of the passes as ``"single"``, the other half a multi-point
      configuration (each point downsampled independently with probability
      ``min(0.5, 2/(N+1))``, ratio uniform), so that the per-layer configurations an agent
      proposes have been seen in training.

    ``legacy_official=True`` reproduces the official code's sampling and points: a draw of
    block 0 becomes "no downsampling" (``random.randint(-1, N)`` with ``0 or None``), so
    P(no downsampling) = 2/(N+2) and block 0 is never trained; and block points do nothing
    in BasicBlock networks (the official loop only sets ratios on ``Bottleneck`` modules).
    Random draws use torch's global generator, which :func:`dynn.train.fit` reseeds every
    epoch, so resumed runs replay the same instances.
    """

    def __init__(self, backbone: nn.Module, ratios: Sequence[float] = (0.5, 0.75), *,
                 sampling: str = "single", legacy_official: bool = False):
        super().__init__()
        if sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
        if not ratios or any(not (0 < r < 1) for r in ratios):
            raise ValueError(f"downsampling ratios must lie in (0, 1), got {list(ratios)}")
        self.backbone = backbone
        self._parts = backbone_parts(backbone)
        self.num_blocks = len(self._parts.blocks)
        self.ratios = tuple(float(r) for r in ratios)
        self.sampling = sampling
        self.legacy_official = legacy_official
        kinds = [_BLOCKS[type(b)] for b in self._parts.blocks]
        self._pre = [k[0] for k in kinds]
        self._act = [k[1] for k in kinds]
        # the official code silently ignores block points in BasicBlock networks
        self.block_points_active = [not (legacy_official and k[2]) for k in kinds]
        self.config: Config = self.full_config()
        self._stem_pool_size: dict[tuple, tuple[int, int]] = {}
        # MACs depend on the architecture only: share the cache between equal networks
        # (the SDPoint model and its baseline), keyed by module types and parameter shapes.
        self._arch_key = (legacy_official, tuple(type(m).__name__ for m in backbone.modules()),
                          tuple(tuple(p.shape) for p in backbone.parameters()))
        self._trace: list | None = None

    # ------------------------------------------------------------ configurations
    @property
    def num_points(self) -> int:
        return self.num_blocks + 1

    @property
    def point_names(self) -> list[str]:
        return ["stem"] + [f"block{i}" for i in range(self.num_blocks)]

    def full_config(self) -> Config:
        return (1.0,) * self.num_points

    def instance_config(self, point: Point, ratio: float | None = None) -> Config:
        """The configuration of one SDPoint instance (``point=None``: no downsampling)."""
        config = [1.0] * self.num_points
        if point is None or point == "none":
            return tuple(config)
        if ratio is None or not (0 < ratio <= 1):
            raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
        if point == "stem":
            config[0] = float(ratio)
        elif isinstance(point, int) and 0 <= point < self.num_blocks:
            config[point + 1] = float(ratio)
        else:
            raise ValueError(f"point must be None, 'stem' or a block index 0..{self.num_blocks - 1}, got {point!r}")
        return tuple(config)

    def instances(self) -> list[tuple[Point, float | None]]:
        """All 2N+3 instances in the official evaluation order: none, stem, blocks 0..N-1."""
        out: list[tuple[Point, float | None]] = [(None, None)]
        for point in ["stem", *range(self.num_blocks)]:
            out += [(point, r) for r in self.ratios]
        return out

    def set_instance(self, point: Point, ratio: float | None = None) -> None:
        self.config = self.instance_config(point, ratio)

    def set_config(self, config: Sequence[float]) -> None:
        if len(config) != self.num_points or any(not (0 < r <= 1) for r in config):
            raise ValueError(f"a configuration is {self.num_points} ratios in (0, 1], got {list(config)}")
        self.config = tuple(float(r) for r in config)

    @contextmanager
    def fixed(self, config: Sequence[float]) -> Iterator["SDPointNet"]:
        """Temporarily run one configuration, even in training mode (BN recalibration)."""
        saved = self.config, self.sampling
        self.set_config(config)
        self.sampling = "fixed"
        try:
            yield self
        finally:
            self.config, self.sampling = saved

    # ------------------------------------------------------------ sampling
    def _randint(self, low: int, high: int) -> int:
        """Uniform integer in [low, high] (inclusive, like python's random.randint)."""
        return int(torch.randint(low, high + 1, ()).item())

    def _random_ratio(self) -> float:
        return self.ratios[self._randint(0, len(self.ratios) - 1)]

    def sample_instance(self) -> Config:
        """One SDPoint training instance (uniform over none ∪ points, ratio uniform)."""
        n = self.num_blocks
        if self.legacy_official:
            draw = self._randint(-1, n)  # -1: none, n: stem, 0..n-1: blocks ...
            if draw == 0:  # ... but `blockID is None and draw or blockID` turns 0 into None
                return self.full_config()
            point = None if draw == -1 else ("stem" if draw == n else draw)
        else:
            draw = self._randint(0, n + 1)  # 0: none, 1: stem, 2..n+1: blocks 0..n-1
            point = None if draw == 0 else ("stem" if draw == 1 else draw - 2)
        return self.instance_config(point, None if point is None else self._random_ratio())

    def sample_multi(self) -> Config:
        """A random per-point configuration (for training a network an agent will search)."""
        p = min(0.5, 2.0 / self.num_points)
        return tuple(self._random_ratio() if float(torch.rand(())) < p else 1.0
                     for _ in range(self.num_points))

    def sample_config(self) -> Config:
        if self.sampling == "multi" and float(torch.rand(())) < 0.5:
            return self.sample_multi()
        return self.sample_instance()

    # ------------------------------------------------------------ forward
    def _stem_target(self, x: torch.Tensor, ratio: float) -> tuple[int, int]:
        if self._parts.stem_pool is None:
            return _pooled_size(x.shape[-2], x.shape[-1], ratio)
        key = tuple(x.shape[-2:])
        if key not in self._stem_pool_size:  # official: size after the max-pool, computed once
            with torch.no_grad():
                self._stem_pool_size[key] = tuple(self._parts.stem_pool(x[:1]).shape[-2:])
        h, w = self._stem_pool_size[key]
        return _pooled_size(h, w, ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.sampling != "fixed":
            self.config = self.sample_config()
        config, parts = self.config, self._parts
        x = parts.stem(x)
        if config[0] < 1:
            x = F.adaptive_max_pool2d(x, self._stem_target(x, config[0]))
        elif parts.stem_pool is not None:
            x = parts.stem_pool(x)
        self._record("stem", x)
        for i, block in enumerate(parts.blocks):
            ratio = config[i + 1]
            out = self._pre[i](block, x)  # == the block's own forward up to its final ReLU
            if ratio < 1 and self.block_points_active[i]:
                out = F.adaptive_avg_pool2d(out, _pooled_size(out.shape[-2], out.shape[-1], ratio))
            x = self._act[i](out)
            self._record(f"block{i}", x)
        return parts.head(x)

    def _record(self, name: str, x: torch.Tensor) -> None:
        if self._trace is not None:
            self._trace.append((name, tuple(x.shape[1:])))

    # ------------------------------------------------------------ cost
    @torch.no_grad()
    def trace_shapes(self, config: Sequence[float], input_shape: Sequence[int]) -> list[tuple[str, tuple]]:
        """(point name, C×H×W after the point) for every point under ``config``."""
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        self._trace = []
        try:
            with self.fixed(config):
                self(torch.zeros(1, *input_shape, device=device))
            return self._trace
        finally:
            self._trace = None
            self.train(was_training)

    def macs(self, config: Sequence[float], input_shape: Sequence[int]) -> int:
        """MACs per image of ``config`` measured by :func:`dynn.flops.count_macs` (cached)."""
        key = (self._arch_key, tuple(float(r) for r in config), tuple(input_shape))
        if key not in _MACS_CACHE:
            device = next(self.parameters()).device
            was_training = self.training
            self.eval()
            try:
                with self.fixed(config):
                    _MACS_CACHE[key] = count_macs(self, torch.zeros(1, *input_shape, device=device))
            finally:
                self.train(was_training)
        return _MACS_CACHE[key]


def create(arch: str, depth: int, *, num_classes: int, ratios: Sequence[float] = (0.5, 0.75),
           sampling: str = "single", legacy_official: bool = False, **backbone_kwargs) -> SDPointNet:
    """Build an SDPoint network by family and depth: ``cifar_resnet`` (any 6n+2),
    ``resnet`` (18…152), ``preresnet`` (18…200), ``resnext`` (50/101/152, 32×4d)."""
    from dynn import models

    name = backbone_name(arch, depth)
    return SDPointNet(models.create(name, num_classes=num_classes, **backbone_kwargs), ratios,
                      sampling=sampling, legacy_official=legacy_official)


ARCH_DEPTHS = {
    "cifar_resnet": cifar_resnet.DEPTHS,
    "resnet": (18, 34, 50, 101, 152),
    "preresnet": tuple(preresnet.LAYERS),
    "resnext": (50, 101, 152),
}


def backbone_name(arch: str, depth: int) -> str:
    """Registry name of a family + depth (``resnext`` means the paper's 32×4d variants)."""
    if arch not in ARCH_DEPTHS:
        raise ValueError(f"arch {arch!r} is unknown; allowed: {', '.join(ARCH_DEPTHS)}")
    if depth not in ARCH_DEPTHS[arch]:
        raise ValueError(f"depth {depth} is not available for {arch}; allowed: {ARCH_DEPTHS[arch]}")
    return f"resnext{depth}_32x4d" if arch == "resnext" else f"{arch}{depth}"


def relative_cost(macs: float, full_macs: float) -> float:
    return float(macs) / float(full_macs) if full_macs else math.nan
