"""SDPoint (Kuen et al., CVPR 2018): stochastic downsampling for cost-adjustable inference.

One network, trained with a randomly chosen downsampling *instance* (point, ratio) per
forward pass, can afterwards run any of its 2N+3 instances: a whole accuracy–cost curve
from one set of weights. Where things live:

- :mod:`dynn.sdpoint.parameters`: the notebook's parameter rules and the constants (light);
- :mod:`dynn.sdpoint.model`: :class:`SDPointNet`, points on CIFAR ResNets, ResNets,
  ResNeXts and PreResNets read through :func:`dynn.models.residual_view`, the sampling
  rule and its official variant, MACs per configuration;
- :mod:`dynn.sdpoint.train`: the stages (:func:`~dynn.sdpoint.train.train`,
  ``train_baseline``, ``train_agent``) as functions of plain keyword arguments;
- :mod:`dynn.sdpoint.evaluate`: BN recalibration per instance, the instance table,
  latency;
- :mod:`dynn.sdpoint.agent`: the follow-up fork's learned per-layer downsampling;
- :mod:`dynn.sdpoint.plots`: the notebook's figures and the interactive explorer;
- :mod:`dynn.sdpoint.claims`: the paper's claims decided from a run's tables (paired
  intervals), :mod:`dynn.sdpoint.published`: the paper's published figures.

Submodules load on first use (``dynn.sdpoint.model`` ...), so importing this package (and
its parameter rules) does not import torch.
"""

from dynn.lazy import lazy_dir, lazy_submodules

_SUBMODULES = ["agent", "claims", "evaluate", "model", "parameters", "plots", "published", "train"]
__getattr__ = lazy_submodules(__name__, _SUBMODULES)
__dir__ = lazy_dir(__name__, _SUBMODULES)
