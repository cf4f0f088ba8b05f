"""Dynamic Routing for semantic segmentation (Li et al., CVPR 2020).

Paper: https://arxiv.org/abs/2003.10401 — official code: github.com/yanwei-li/DynamicRouting
(``dl_lib/modeling/dynamic_arch``). Every image chooses its own path through a lattice of
*cells*: ``L`` layers × up to four scales (1/4 … 1/32 of the input, ``2^s·C`` channels).
Each cell transforms the sum of what reaches it (``H = SepConv3×3(Y) + Y``) and a small
*soft conditional gate* decides, per image, how much of the result goes to the same scale
(keep), the finer scale (up) and the coarser scale (down). A cell whose gates are all
(near) zero is *closed*: its input passes straight through on the keep path and nothing
else is computed. A budget loss pulls the *expected* cost (gate-weighted) toward a
fraction ``mu`` of the full network.

Where things live:

- :mod:`~dynn.dynamic_routing.parameters`: the notebook's parameter rules (light);
- :mod:`~dynn.dynamic_routing.model`: routing space, cells, gates, transitions, decoder,
  :class:`DynamicRoutingNet` (dense training pass and per-sample really-skipping inference,
  costs measured with ``dynn.flops``), forced routes;
- :mod:`~dynn.dynamic_routing.train`: budget loss, step function, the stages ``warm_up``,
  ``train_dynamic`` (μ or Dynamic-Raw) and ``train_fixed`` (Network-Fix, and the equal-cost
  static rivals: one fixed route, or a narrower width);
- :mod:`~dynn.dynamic_routing.evaluate`: mIoU, real and expected cost, route diversity,
  gate use per scene regime, the equal-cost rivals, latency, forced routes, the result points;
- :mod:`~dynn.dynamic_routing.claims`: the paper's claims decided from intervals;
- :mod:`~dynn.dynamic_routing.published`: the paper's numbers the claims refer to;
- :mod:`~dynn.dynamic_routing.plots`: route diagrams, overlays, figures and the explorer.

Importing this package loads none of them (nor torch): ``dynn.dynamic_routing.train`` and
friends load on first use.
"""

from dynn.lazy import lazy_dir, lazy_submodules

_SUBMODULES = ["claims", "evaluate", "model", "parameters", "plots", "published", "train"]
__getattr__ = lazy_submodules(__name__, _SUBMODULES)
__dir__ = lazy_dir(__name__, _SUBMODULES)
