"""Slimmable networks with layer-wise widths (Joslim; US-Nets as the uniform baseline).

One set of weights, many widths: every layer can run with the first ``k`` of its channels.
The package follows the hierarchy of the Joslim models README,
``SlimModel → SlimStage → SlimBlock → SlimOps``:

- :mod:`~dynn.slimmable.ops` — ``SlimConv2d``, sliced BN (``SlimBN``), ``SlimLinear``,
  shortcuts, ``export_static`` (a real smaller network for timing);
- :mod:`~dynn.slimmable.blocks` — ``SlimBasicBlock``, ``SlimBottleNeck``, ``SlimDWSConv``,
  ``SlimInvertedResidual``, ``SlimStage``;
- :mod:`~dynn.slimmable.dyn_model` — ``DynModel`` (``search_dim``, ``channel_space``,
  ``decode_wm``, ``decode_ch``, ``set_real_ch``, MACs via ``dynn.flops``);
- :mod:`~dynn.slimmable.models` — slimmable ResNets, MobileNetV2/V3, EfficientNet-B0 and
  the README's toy model, by name (``create``);
- :mod:`~dynn.slimmable.search` — width samplers: uniform (US-Nets) and layer-wise
  (cost-targeted evolutionary search, standing in for Joslim's Bayesian optimisation),
  Pareto fronts;
- :mod:`~dynn.slimmable.training` — the sandwich-rule step with in-place distillation,
  BN recalibration, evaluation of configurations.
"""
from dynn.slimmable.blocks import (  # noqa: F401
    SlimBasicBlock, SlimBottleNeck, SlimDWSConv, SlimInvertedResidual, SlimSE, SlimStage,
)
from dynn.slimmable.dyn_model import DynModel, flatten  # noqa: F401
from dynn.slimmable.models import create, list_models  # noqa: F401
from dynn.slimmable.ops import SlimBN, SlimConv2d, SlimLinear, export_static  # noqa: F401
from dynn.slimmable import search, training  # noqa: F401
