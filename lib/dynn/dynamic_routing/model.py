"""The Dynamic Routing network: routing space, cells, soft conditional gates, transitions,
decoder, and its costs measured with :mod:`dynn.flops`.

:class:`DynamicRoutingNet` — stem, initial cell, routing space with the official
availability rules (``dynamic_backbone.py``), decoder head; ``using_gate=False`` is the
*Network-Fix* baseline. ``forward`` is the differentiable (masked, dense) path used for
training; :meth:`DynamicRoutingNet.forward_skip` is inference that really skips closed
cells and closed paths *per sample* inside a batch (gather the samples that use a cell →
run → scatter), equal in output to ``forward`` in eval mode. Costs are measured once per
input size with :func:`dynn.flops.macs_by_module` (no hand formulas): per-image *expected*
cost (differentiable, drives the budget), *real* cost (thresholded; + gates that ran, stem
and head) and ``full_cost`` (C_full, the budget's unit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

import dynn.flops

THRESHOLD = 1e-4  # a gate value at or below this is a closed path (official: 0.0001)
IGNORE_INDEX = 255
PATH_SHIFT = {"keep": 0, "up": -1, "down": +1}  # scale change of each transition
SCALE_NAMES = ("1/4", "1/8", "1/16", "1/32")


# ------------------------------------------------------------------ the routing space
def cell_num_list(layers: int) -> list[int]:
    """Cells per layer: 2 scales in layer 1, 3 in layer 2, then 4 (official CELL_NUM_LIST)."""
    return [min(2 + i, 4) for i in range(layers)]


@dataclass(frozen=True)
class Node:
    """One cell of the routing space.

    ``layer`` 0 is the initial cell after the stem; routing layers are 1..L. ``scale`` s
    means 1/2^(s+2) of the input with ``C·2^s`` channels. ``paths`` lists the cell's
    outgoing transitions in gate order (keep first, as in the official gate vector).
    ``inputs`` are ``(node index, path)`` pairs of the previous layer summed into its input.
    """

    index: int
    layer: int
    scale: int
    channels: int
    paths: tuple[str, ...]
    inputs: tuple[tuple[int, str], ...]


def build_routing_space(layers: int, init_channels: int) -> list[Node]:
    """All cells with the official availability rules (``dynamic_backbone.py``).

    A cell at scale s of routing layer l receives the *down* output of scale s−1, the
    *keep* output of scale s and the *up* output of scale s+1 of layer l−1, where those
    exist: the finest scale has no up output, 1/32 has no down output, the last layer
    only keeps (its outputs go to the decoder), and in the first three layers the newest
    (coarsest) scale has no keep input and the second-newest no up input, because the
    previous layer had no cell there.
    """
    if layers < 1:
        raise ValueError(f"layers = {layers}: need at least 1 routing layer")
    nodes = [Node(0, 0, 0, init_channels, ("keep", "down"), ())]
    prev = {0: nodes[0]}
    counts = cell_num_list(layers)
    for li, n in enumerate(counts):  # li is the official layer_index (0-based)
        last = li == layers - 1
        cur = {}
        for s in range(n):
            paths = ("keep",) + (("up",) if s > 0 and not last else ()) + (("down",) if s < 3 and not last else ())
            inputs = []
            if s > 0:
                inputs.append((prev[s - 1].index, "down"))
            if not (li <= 2 and s == n - 1):
                inputs.append((prev[s].index, "keep"))
            if (s < n - 1) if li > 2 else (s < n - 2):
                inputs.append((prev[s + 1].index, "up"))
            node = Node(len(nodes), li + 1, s, init_channels * 2**s, paths, tuple(inputs))
            for src, path in node.inputs:  # the rules above must only use existing outputs
                assert path in nodes[src].paths, (node, src, path)
            nodes.append(node)
            cur[s] = node
        prev = cur
    return nodes


# ------------------------------------------------------------------ building blocks
def conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (+ ReLU): the official ``Conv2d(..., norm, activation)``."""
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


class Stem(nn.Sequential):
    """×4 downsampling: 3×3 s2 conv; depthwise 3×3 + pointwise; depthwise 3×3 s2 + pointwise."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__(
            conv_bn(in_channels, channels, 3, stride=2),
            nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False),
            conv_bn(channels, channels, 1),
            nn.Conv2d(channels, channels, 3, 2, 1, groups=channels, bias=False),
            conv_bn(channels, channels, 1),
        )


class SepConv(nn.Sequential):
    """Two stacked depthwise-separable 3×3 convolutions (DARTS' ``sep_conv_3x3``)."""

    def __init__(self, channels: int):
        super().__init__(
            nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False),
            conv_bn(channels, channels, 1),
            nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False),
            conv_bn(channels, channels, 1, relu=False),
        )


class SoftGate(nn.Module):
    """Soft conditional gate: α = max(0, tanh(conv(pool(ReLU(BN(conv(x))))))), one α per path.

    The last conv's bias starts at ``gate_bias`` (1.5 → α ≈ 0.9: every path open at the
    start). ``small_gate`` computes the gate on a ×0.25 bilinear downsample of the input
    (the official Dynamic-A/B/C setting), which makes the gate ~16× cheaper.
    """

    def __init__(self, channels: int, num_paths: int, gate_bias: float = 1.5, small_gate: bool = False):
        super().__init__()
        self.small_gate = small_gate
        self.reduce = conv_bn(channels, max(1, channels // 2), 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(max(1, channels // 2), num_paths, 1, bias=True)
        nn.init.constant_(self.fc.bias, gate_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.small_gate:
            h, w = x.shape[-2:]
            x = F.interpolate(x, size=(max(1, h // 4), max(1, w // 4)), mode="bilinear", align_corners=False)
        return torch.relu(torch.tanh(self.fc(self.pool(self.reduce(x))).flatten(1)))


def drop_path(x: torch.Tensor, drop_prob: float, layer_rate: float, step_rate: float) -> torch.Tensor:
    """Scheduled drop path: drop a sample's branch with a rate growing with depth and time.

    keep = 1 − drop_prob · layer_rate · step_rate (official ``drop_path``), per sample.
    """
    keep = 1.0 - drop_prob * layer_rate * step_rate
    if drop_prob <= 0 or keep >= 1.0:
        return x
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class Cell(nn.Module):
    """Cell operation ``H = SepConv(Y) + Y``, its gate and its transitions.

    keep = ReLU; up = ReLU → 1×1 conv to C/2 + BN + ReLU → bilinear ×2;
    down = ReLU → 1×1 stride-2 conv to 2C + BN + ReLU. Each output is multiplied by its α.
    """

    def __init__(self, node: Node, using_gate: bool = True, gate_bias: float = 1.5, small_gate: bool = False):
        super().__init__()
        self.node = node
        c = node.channels
        self.sep = SepConv(c)
        self.gate = SoftGate(c, len(node.paths), gate_bias, small_gate) if using_gate else None
        if "up" in node.paths:
            self.up = nn.Sequential(nn.ReLU(), conv_bn(c, c // 2, 1))
        if "down" in node.paths:
            self.down = nn.Sequential(nn.ReLU(), conv_bn(c, 2 * c, 1, stride=2))

    def transition(self, path: str, y: torch.Tensor) -> torch.Tensor:
        if path == "keep":
            return torch.relu(y)
        if path == "up":
            out = self.up(y)
            return F.interpolate(out, size=(2 * out.shape[-2], 2 * out.shape[-1]), mode="bilinear", align_corners=False)
        return self.down(y)

    def gates(self, h: torch.Tensor) -> torch.Tensor:
        if self.gate is None:  # no gates: a static route for every image, or Network-Fix (every path open)
            fixed = getattr(self, "fixed_route", None)
            if fixed is not None:
                return fixed.to(h.dtype).expand(h.shape[0], -1)
            return h.new_ones(h.shape[0], len(self.node.paths))
        return self.gate(h)


class DecoderHead(nn.Module):
    """Official simple decoder: top-down from the coarsest output, 1×1 conv + BN + ReLU
    (halving channels except at 1/4), bilinear ×2, add; 3×3 classifier; upsample to input."""

    def __init__(self, init_channels: int, num_scales: int, num_classes: int):
        super().__init__()
        self.reduce = nn.ModuleList(
            conv_bn(init_channels * 2**s, init_channels * 2**s if s == 0 else init_channels * 2 ** (s - 1), 1)
            for s in range(num_scales)
        )
        self.classifier = nn.Conv2d(init_channels, num_classes, 3, 1, 1)

    def forward(self, features: Sequence[torch.Tensor], size) -> torch.Tensor:
        pred = None
        for s in reversed(range(len(features))):
            feat = features[s] if pred is None else features[s] + pred
            pred = self.reduce[s](feat)
            if s > 0:
                pred = F.interpolate(pred, size=features[s - 1].shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(self.classifier(pred), size=size, mode="bilinear", align_corners=False)


# ------------------------------------------------------------------ the network
@dataclass
class CostTable:
    """Per-op MACs of one image at one input size, measured by ``dynn.flops``.

    ``cell[i]``: the cell operation of node i; ``gate[i]``: its gate; ``path[i]``: its
    transitions in gate order (keep = ReLU, 0 MACs); ``stem`` and ``head`` are always paid.
    """

    stem: int
    head: int
    cell: list[int]
    gate: list[int]
    path: list[list[int]]

    @property
    def full_cost(self) -> int:
        """C_full: the expected cost with every gate at 1 (cells + transitions), the budget's unit."""
        return int(sum(self.cell) + sum(sum(p) for p in self.path))

    @property
    def network_fix_cost(self) -> int:
        """Real cost of the whole network run densely without gates (Network-Fix)."""
        return self.stem + self.head + self.full_cost


class DynamicRoutingNet(nn.Module):
    """The routing space with soft conditional gates, stem and decoder (see module docstring).

    ``forward(x, step_rate, route)`` returns a dict with ``logits``, ``gates`` (one
    ``B×P`` tensor per node, after masking), ``expected_cost`` and ``real_cost`` (``B``,
    MACs per image). ``route`` forces a route by hand: one tensor per node of shape ``P``
    or ``B×P``. With ``route_mode="mask"`` it is multiplied into the gates (0 closes a
    path, 1 leaves the gate's choice); with ``"replace"`` it *is* α and the gates are not
    run at all (so they cost nothing). ``step_rate`` is the training progress (0…1) that
    scheduled drop path needs; the training step keeps it (:class:`dynn.dynamic_routing.train.RoutingStep`).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        layers: int = 16,
        init_channels: int = 64,
        in_channels: int = 3,
        using_gate: bool = True,
        gate_bias: float = 1.5,
        small_gate: bool = False,
        drop_path_prob: float = 0.0,
        static_route: Sequence[Sequence[float]] | None = None,
    ):
        super().__init__()
        self.num_classes, self.layers, self.init_channels = num_classes, layers, init_channels
        self.using_gate, self.drop_path_prob = using_gate, drop_path_prob
        self.nodes = build_routing_space(layers, init_channels)
        if static_route is not None:
            if using_gate:
                raise ValueError(
                    "static_route: a network with one route for every image has no gates (using_gate=False)"
                )
            if [len(r) for r in static_route] != [len(n.paths) for n in self.nodes]:
                raise ValueError(
                    f"static_route has {[len(r) for r in static_route]} paths per cell, this routing space "
                    f"{[len(n.paths) for n in self.nodes]}"
                )
        # One fixed 0/1 route for every image (None: Network-Fix, every path open); a
        # stage argument, rebuilt from it, so not part of the state dict.
        self.static_route = None if static_route is None else [[float(v) for v in r] for r in static_route]
        self.stem = Stem(in_channels, init_channels)
        self.cells = nn.ModuleList(Cell(n, using_gate, gate_bias, small_gate) for n in self.nodes)
        if self.static_route is not None:
            for cell, r in zip(self.cells, self.static_route):
                cell.register_buffer("fixed_route", torch.tensor(r), persistent=False)
        self.final_nodes = [n.index for n in self.nodes if n.layer == layers]
        self.head = DecoderHead(init_channels, len(self.final_nodes), num_classes)
        self._costs: dict[tuple[int, int], CostTable] = {}
        for m in self.modules():  # official: Kaiming (fan_in) everywhere, gate bias = gate_bias
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for cell in self.cells:
            if cell.gate is not None:
                nn.init.constant_(cell.gate.fc.bias, gate_bias)

    # ---------------------------------------------------------------- costs
    def cost_table(self, size: tuple[int, int], device=None) -> CostTable:
        """Per-op MACs at input ``size`` (H, W), measured once with ``dynn.flops`` and cached."""
        size = (int(size[0]), int(size[1]))
        if size not in self._costs:
            device = device or next(self.parameters()).device
            x = torch.zeros(1, self.stem[0][0].in_channels, *size, device=device)
            was_training = self.training
            self.eval()
            try:
                table = dynn.flops.macs_by_module(self, x, with_costs=False)
            finally:
                self.train(was_training)
            get = lambda k: int(table.get(k, 0))  # noqa: E731
            self._costs[size] = CostTable(
                stem=get("stem"),
                head=get("head"),
                cell=[get(f"cells.{n.index}.sep") for n in self.nodes],
                gate=[get(f"cells.{n.index}.gate") for n in self.nodes],
                path=[[get(f"cells.{n.index}.{p}") if p != "keep" else 0 for p in n.paths] for n in self.nodes],
            )
        return self._costs[size]

    def full_cost(self, size) -> int:
        return self.cost_table(size).full_cost

    def _node_costs(
        self, table: CostTable, node: Node, alpha: torch.Tensor, reach: torch.Tensor, gate_ran: bool = True
    ):
        """Expected (differentiable) and real (indicator) MACs of one node, per sample."""
        path_costs = alpha.new_tensor(table.path[node.index])
        opened = (alpha > THRESHOLD).to(alpha.dtype)
        expected = alpha.max(1).values * table.cell[node.index] + (alpha * path_costs).sum(1)
        real = (
            reach.to(alpha.dtype) * (table.gate[node.index] if gate_ran else 0)
            + opened.amax(1) * table.cell[node.index]
            + (opened * path_costs).sum(1)
        )
        return expected, real

    # ---------------------------------------------------------------- routes by hand
    def full_route(self, device=None) -> list[torch.Tensor]:
        """A route with every path open (a starting point for editing a route by hand)."""
        return [torch.ones(len(n.paths), device=device) for n in self.nodes]

    @staticmethod
    def route_from_gates(gates: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The binary route (path open or not) that ``gates`` took, to replay or edit it."""
        return [(g > THRESHOLD).float() for g in gates]

    # ---------------------------------------------------------------- forward passes
    def _alpha(self, cell: Cell, h: torch.Tensor, reach: torch.Tensor, route, route_mode: str = "mask") -> torch.Tensor:
        if route is not None and route_mode == "replace":
            alpha = route[cell.node.index].to(h).expand(h.shape[0], len(cell.node.paths))
        else:
            alpha = cell.gates(h)
            if route is not None:
                alpha = alpha * route[cell.node.index].to(alpha)
        # A cell that nothing reaches is closed (the official inference drops it too).
        alpha = alpha * reach.to(alpha.dtype)[:, None]
        if not self.training:  # exact zeros, so masked and really-skipped inference agree
            alpha = alpha * (alpha > THRESHOLD)
        return alpha

    def forward(
        self, x: torch.Tensor, step_rate: float = 0.0, route=None, with_costs: bool = True, route_mode: str = "mask"
    ) -> dict:
        """Dense pass: every cell computed, outputs multiplied by the gates (training path)."""
        B = x.shape[0]
        h0 = self.stem(x)
        outs: dict[int, dict[str, torch.Tensor]] = {}
        reach_out: dict[int, dict[str, torch.Tensor]] = {}
        gates, expected, real = [], x.new_zeros(B), x.new_zeros(B)
        table = self.cost_table(x.shape[-2:], x.device) if with_costs else None
        for node, cell in zip(self.nodes, self.cells):
            if node.layer == 0:
                h, reach = h0, torch.ones(B, dtype=torch.bool, device=x.device)
            else:
                h = sum(outs[src][path] for src, path in node.inputs)
                reach = torch.stack([reach_out[src][path] for src, path in node.inputs]).any(0)
            alpha = self._alpha(cell, h, reach, route, route_mode)
            opened = alpha > THRESHOLD
            closed = ~opened.any(1)
            y = cell.sep(h)
            if self.training and node.layer > 0:
                y = drop_path(y, self.drop_path_prob, node.layer / self.layers, step_rate)
            y = h + y
            outs[node.index], reach_out[node.index] = {}, {}
            for j, path in enumerate(node.paths):
                out = alpha[:, j, None, None, None] * cell.transition(path, y)
                if path == "keep":  # a closed cell passes its input through
                    out = out + closed.to(h.dtype)[:, None, None, None] * h
                    reach_out[node.index][path] = opened[:, j] | (closed & reach)
                else:
                    reach_out[node.index][path] = opened[:, j]
                outs[node.index][path] = out
            gates.append(alpha)
            if table is not None:
                e, r = self._node_costs(table, node, alpha, reach, gate_ran=route is None or route_mode != "replace")
                expected, real = expected + e, real + r
        logits = self.head([outs[i]["keep"] for i in self.final_nodes], x.shape[-2:])
        if table is not None:
            real = real + table.stem + table.head
        return {"logits": logits, "gates": gates, "expected_cost": expected, "real_cost": real}

    @torch.no_grad()
    def forward_skip(self, x: torch.Tensor, route=None, route_mode: str = "mask") -> dict:
        """Inference that really skips: per node, gather the samples that reach it, run the
        gate on them, run the cell on those whose gate opened a path, run each transition
        only on the samples whose path is open, and scatter the results back.

        Equal to ``forward`` in eval mode (up to float summation order); its MACs, as
        counted by ``dynn.flops``, equal the ``real_cost`` it reports.
        """
        if self.training:
            raise RuntimeError("forward_skip is inference only: call model.eval() first")
        B = x.shape[0]
        h0 = self.stem(x)
        table = self.cost_table(x.shape[-2:], x.device)
        # outs[i][path] = (sample indices, tensor of those samples) — sparse contributions
        outs: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}
        reach_out: dict[int, dict[str, torch.Tensor]] = {}
        shapes: dict[int, tuple] = {0: h0.shape[1:]}
        gates, expected, real = [], x.new_zeros(B), x.new_zeros(B)
        all_idx = torch.arange(B, device=x.device)
        for node, cell in zip(self.nodes, self.cells):
            if node.layer == 0:
                h, reach = h0, torch.ones(B, dtype=torch.bool, device=x.device)
            else:
                src, path = node.inputs[0]
                shape = _target_shape(shapes[src], path)
                h = x.new_zeros(B, *shape)
                for src, path in node.inputs:
                    idx, t = outs[src][path]
                    if idx.numel():
                        h.index_add_(0, idx, t)
                reach = torch.stack([reach_out[src][path] for src, path in node.inputs]).any(0)
            shapes[node.index] = h.shape[1:]
            alpha = x.new_zeros(B, len(node.paths))
            idx = all_idx[reach]
            if idx.numel():
                entry = None if route is None else {node.index: _rows(route[node.index], idx)}
                alpha[idx] = self._alpha(cell, h[idx], reach[idx], entry, route_mode)
            opened = alpha > THRESHOLD
            open_cell = opened.any(1)
            io = all_idx[open_cell]
            y = cell.sep(h[io]) + h[io] if io.numel() else None
            outs[node.index], reach_out[node.index] = {}, {}
            for j, path in enumerate(node.paths):
                if path == "keep":
                    keep = h.clone()  # closed (or unreached) cells pass their input through
                    if io.numel():
                        keep[io] = alpha[io, j, None, None, None] * cell.transition("keep", y)
                    outs[node.index][path] = (all_idx, keep)
                    reach_out[node.index][path] = opened[:, j] | (~open_cell & reach)
                    continue
                sel = opened[io, j] if io.numel() else opened[:0, j]
                ii = io[sel]
                if ii.numel():
                    outs[node.index][path] = (ii, alpha[ii, j, None, None, None] * cell.transition(path, y[sel]))
                else:
                    outs[node.index][path] = (ii, x.new_zeros(0))
                reach_out[node.index][path] = opened[:, j]
            gates.append(alpha)
            e, r = self._node_costs(table, node, alpha, reach, gate_ran=route is None or route_mode != "replace")
            expected, real = expected + e, real + r
        logits = self.head([outs[i]["keep"][1] for i in self.final_nodes], x.shape[-2:])
        return {
            "logits": logits,
            "gates": gates,
            "expected_cost": expected,
            "real_cost": real + table.stem + table.head,
        }


def _target_shape(shape, path: str) -> tuple:
    c, h, w = shape
    if path == "up":
        return (c // 2, 2 * h, 2 * w)
    if path == "down":
        return (2 * c, (h - 1) // 2 + 1, (w - 1) // 2 + 1)
    return (c, h, w)


def _rows(route: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """A per-node route entry restricted to the samples ``idx`` (a ``P`` entry broadcasts)."""
    return route[idx] if route.dim() == 2 else route


def build_model(
    num_classes: int,
    *,
    layers: int,
    init_channels: int,
    gated: bool = True,
    gate_bias: float = 1.5,
    small_gate: bool = False,
    drop_path_prob: float = 0.0,
    in_channels: int = 3,
    static_route: Sequence[Sequence[float]] | None = None,
) -> DynamicRoutingNet:
    """A :class:`DynamicRoutingNet`; ``gated=False`` is Network-Fix (every path always open),
    or with ``static_route`` a static network on that one route (0/1 per cell and path).

    The stages build their networks here, right after seeding, so a network's initial
    weights depend only on the stage's arguments (never on what a notebook built before).
    """
    return DynamicRoutingNet(
        num_classes,
        layers=layers,
        init_channels=init_channels,
        in_channels=in_channels,
        using_gate=gated,
        gate_bias=gate_bias,
        small_gate=small_gate,
        drop_path_prob=drop_path_prob,
        static_route=static_route,
    )
