"""Downsampling points on any residual backbone, and the SDPoint sampling rule.

An SDPoint *point* is a place where the feature map may be shrunk: the stem (its max-pool
becomes an adaptive max-pool to ``round(H·ratio)``; a CIFAR stem has no max-pool, so the
stem output is adaptively max-pooled) and the output of every residual block, after the
residual add and before the block's final ReLU (adaptive average pooling to
``round(H·ratio)``). Everything after a point then runs on the smaller map, so a cheap
instance really does fewer MACs and is really faster; no mask is involved.

:class:`SDPointNet` wraps a backbone instead of copying it: it reads the backbone through
the foundation's :func:`dynn.models.residual_view` (stem, blocks, head) and evaluates each
block as ``activation(pool(pre_activation(x)))`` with
:func:`dynn.models.residual.pre_activation` / :func:`~dynn.models.residual.activation`.
A *configuration* is one ratio per point (``1.0`` = leave it alone), which covers the
paper's single-point instances, "no downsampling" and the per-layer configurations the
agent of the TwoPipe fork chooses.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models.resnet as tv_resnet

from dynn.flops import count_macs
from dynn.models import preresnet
from dynn.models.residual import activation, pre_activation, residual_view
from dynn.sdpoint.parameters import SAMPLING, backbone_name

Point = str | int | None  # "stem", a block index, or None (no downsampling)
Config = tuple[float, ...]  # one ratio per point: (stem, block 0, block 1, ...)

_MACS_CACHE: dict[tuple, int] = {}  # (architecture key, config, input shape) -> MACs per image
_BOTTLENECKS = (tv_resnet.Bottleneck, preresnet.PreActBottleneck)


def _pooled_size(h: int, w: int, ratio: float) -> tuple[int, int]:
    # Python's round (half to even) as in the official int(round(H*ratio)); at least 1 pixel.
    return max(1, int(round(h * ratio))), max(1, int(round(w * ratio)))


class SDPointNet(nn.Module):
    """A backbone with downsampling points; see the module docstring.

    Points are ordered as the data flows: ``"stem"``, then blocks ``0..N-1``; a
    configuration is a tuple of N+1 ratios in that order. What ``model(x)`` runs:

    - inside ``with model.fixed(config):`` that configuration, in any mode (evaluation of an
      instance, BN recalibration, cost measurement);
    - otherwise, in eval mode: the full network (no downsampling);
    - otherwise, in training mode, by ``sampling``: ``"single"`` samples one SDPoint
      instance per forward pass, uniform over {no downsampling} ∪ points, then a ratio
      uniform over ``ratios``; ``"multi"`` does so for half of the passes and otherwise
      downsamples each point independently with probability ``min(0.5, 2/(N+1))`` (ratio
      uniform), so that the per-layer configurations an agent proposes have been seen in
      training; ``"none"`` trains the full network (the plain baseline).

    :meth:`run` runs an explicit configuration (what evaluation passes as ``forward``).
    The configuration of the last forward pass is kept in ``last_config``.

    ``legacy_official=True`` reproduces the official code's sampling and points: a draw of
    block 0 becomes "no downsampling" (``random.randint(-1, N)`` with ``0 or None``), so
    P(no downsampling) = 2/(N+2) and block 0 is never trained; and block points do nothing
    in BasicBlock networks (the official loop only sets ratios on ``Bottleneck`` modules).
    Random draws use torch's global generator, which :func:`dynn.train.fit` reseeds every
    epoch identically on every rank, so resumed runs replay the same instances and the
    processes of a distributed run draw the same instance at each step (as the official
    DataParallel code does).
    """

    def __init__(
        self,
        backbone: nn.Module,
        ratios: Sequence[float] = (0.5, 0.75),
        *,
        sampling: str = "single",
        legacy_official: bool = False,
    ):
        super().__init__()
        if sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
        if not ratios or any(not (0 < r < 1) for r in ratios):
            raise ValueError(f"downsampling ratios must lie in (0, 1), got {list(ratios)}")
        self.backbone = backbone
        self._view = residual_view(backbone)
        self.num_blocks = self._view.num_blocks
        self.ratios = tuple(float(r) for r in ratios)
        self.sampling = sampling
        self.legacy_official = legacy_official
        self._activation = [activation(b) for b in self._view.blocks]
        # the official code silently ignores block points in BasicBlock networks
        self.block_points_active = [not legacy_official or isinstance(b, _BOTTLENECKS) for b in self._view.blocks]
        self._fixed: Config | None = None
        self.last_config: Config = self.full_config()
        self._stem_pool_size: dict[tuple, tuple[int, int]] = {}
        # MACs depend on the architecture only: share the cache between equal networks
        # (the SDPoint model and its baseline), keyed by module types and parameter shapes.
        self._arch_key = (
            legacy_official,
            tuple(type(m).__name__ for m in backbone.modules()),
            tuple(tuple(p.shape) for p in backbone.parameters()),
        )
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

    def check_config(self, config: Sequence[float]) -> Config:
        if len(config) != self.num_points or any(not (0 < r <= 1) for r in config):
            raise ValueError(f"a configuration is {self.num_points} ratios in (0, 1], got {list(config)}")
        return tuple(float(r) for r in config)

    @contextmanager
    def fixed(self, config: Sequence[float]) -> Iterator["SDPointNet"]:
        """Run ``config`` in every forward pass inside the block, in training or eval mode."""
        saved = self._fixed
        self._fixed = self.check_config(config)
        try:
            yield self
        finally:
            self._fixed = saved

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
        return tuple(self._random_ratio() if float(torch.rand(())) < p else 1.0 for _ in range(self.num_points))

    def sample_config(self) -> Config:
        """The configuration of one training forward pass under ``sampling``."""
        if self.sampling == "none":
            return self.full_config()
        if self.sampling == "multi" and float(torch.rand(())) < 0.5:
            return self.sample_multi()
        return self.sample_instance()

    # ------------------------------------------------------------ forward
    def _stem_target(self, x: torch.Tensor, ratio: float) -> tuple[int, int]:
        if self._view.stem_pool is None:
            return _pooled_size(x.shape[-2], x.shape[-1], ratio)
        key = tuple(x.shape[-2:])
        if key not in self._stem_pool_size:  # official: size after the max-pool, computed once
            with torch.no_grad():
                self._stem_pool_size[key] = tuple(self._view.stem_pool(x[:1]).shape[-2:])
        h, w = self._stem_pool_size[key]
        return _pooled_size(h, w, ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fixed is not None:
            config = self._fixed
        elif self.training:
            config = self.sample_config()
        else:
            config = self.full_config()
        return self.run(x, config)

    def run(self, x: torch.Tensor, config: Sequence[float]) -> torch.Tensor:
        """The network under ``config`` (one ratio per point), whatever the mode."""
        view = self._view
        self.last_config = config = tuple(config)
        x = view.stem(x)
        if config[0] < 1:
            x = F.adaptive_max_pool2d(x, self._stem_target(x, config[0]))
        elif view.stem_pool is not None:
            x = view.stem_pool(x)
        self._record("stem", x)
        for i, block in enumerate(view.blocks):
            ratio = config[i + 1]
            out = pre_activation(block, x)  # the block's own forward up to its final ReLU
            if ratio < 1 and self.block_points_active[i]:
                out = F.adaptive_avg_pool2d(out, _pooled_size(out.shape[-2], out.shape[-1], ratio))
            x = self._activation[i](out)
            self._record(f"block{i}", x)
        return view.head(x)

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
            self.run(torch.zeros(1, *input_shape, device=device), self.check_config(config))
            return self._trace
        finally:
            self._trace = None
            self.train(was_training)

    def macs(self, config: Sequence[float], input_shape: Sequence[int]) -> int:
        """MACs per image of ``config`` measured by :func:`dynn.flops.count_macs` (cached)."""
        config = self.check_config(config)
        key = (self._arch_key, config, tuple(input_shape))
        if key not in _MACS_CACHE:
            device = next(self.parameters()).device
            was_training = self.training
            self.eval()
            try:
                _MACS_CACHE[key] = count_macs(self.run, torch.zeros(1, *input_shape, device=device), config)
            finally:
                self.train(was_training)
        return _MACS_CACHE[key]


def create(
    arch: str,
    depth: int,
    *,
    num_classes: int,
    ratios: Sequence[float] = (0.5, 0.75),
    sampling: str = "single",
    legacy_official: bool = False,
    **backbone_kwargs,
) -> SDPointNet:
    """Build an SDPoint network by family and depth: ``cifar_resnet`` (any 6n+2),
    ``resnet`` (18…152), ``preresnet`` (18…200), ``resnext`` (50/101/152, 32×4d)."""
    from dynn import models

    name = backbone_name(arch, depth)
    return SDPointNet(
        models.create(name, num_classes=num_classes, **backbone_kwargs),
        ratios,
        sampling=sampling,
        legacy_official=legacy_official,
    )


def with_points(model: SDPointNet, *, ratios: Sequence[float], legacy_official: bool = False) -> SDPointNet:
    """The same weights (shared, not copied) with other points: e.g. the plainly trained
    baseline evaluated at the SDPoint model's instances. Trains nothing; runs the full
    network outside ``fixed()``."""
    return SDPointNet(model.backbone, ratios, sampling="none", legacy_official=legacy_official).train(model.training)


def relative_cost(macs: float, full_macs: float) -> float:
    return float(macs) / float(full_macs) if full_macs else math.nan
