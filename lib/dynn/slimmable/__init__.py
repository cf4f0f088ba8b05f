"""Slimmable networks with layer-wise widths (Joslim; US-Nets as the uniform baseline).

One set of weights, many widths: every layer can run with the first ``k`` of its channels.
The models follow the hierarchy of the Joslim models README,
``SlimModel → SlimStage → SlimBlock → SlimOps``. Where things live (the package shape of
every method, with the operators and blocks in modules of their own because the
architectures alone fill ``model.py``):

- :mod:`.parameters` — the notebook's parameter spec and the allowed models (light);
- :mod:`.ops` — ``SlimConv2d``, sliced BN (``SlimBN``), ``SlimLinear``, the zero-pad
  shortcut, ``export_static`` (a real smaller network for timing);
- :mod:`.blocks` — ``SlimBasicBlock``, ``SlimBottleNeck``, ``SlimDWSConv``,
  ``SlimInvertedResidual``, ``SlimStage``;
- :mod:`.model` — ``DynModel`` (``search_dim``, ``channel_space``, ``decode_wm``,
  ``decode_ch``, ``set_real_ch``, MACs via ``dynn.flops``) and the architectures, registered
  in :mod:`dynn.models` as ``slimmable.<name>`` (``slimmable.cifar_resnet20``, ...);
- :mod:`.search` — width samplers: uniform (US-Nets) and layer-wise (cost-targeted,
  GP-guided evolutionary search, standing in for Joslim's Bayesian optimisation), the fast
  cost model, Pareto fronts, the saved search history;
- :mod:`.train` — the sandwich-rule step with in-place distillation and the two training
  stages, :func:`~.train.train_joint` (Joslim) and :func:`~.train.train_uniform` (US-Nets);
- :mod:`.evaluate` — selection on validation (BN recalibrated per configuration), the
  post-hoc search control, accuracy of configurations with and without
  BN recalibration, MACs, latency, the results' points;
- :mod:`.claims` — the paper's claims checked on a run (rules, paired intervals, verdicts);
- :mod:`.published` — the papers' figures the claims correspond to;
- :mod:`.plots` — the notebook's figures and the interactive explorer.

Submodules load on first use, so importing the package (or its parameters) does not load torch.
"""

from dynn.lazy import lazy_dir, lazy_submodules

_SUBMODULES = ["blocks", "claims", "evaluate", "model", "ops", "parameters", "plots", "published", "search", "train"]
__getattr__ = lazy_submodules(__name__, _SUBMODULES)
__dir__ = lazy_dir(__name__, _SUBMODULES)
