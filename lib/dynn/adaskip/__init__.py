"""AR-Net ("AdaSkip"): adaptive frame resolution and frame skipping for video recognition.

Meng et al., *AR-Net: Adaptive Frame Resolution for Efficient Action Recognition*, ECCV
2020; official code ``mengyuest/AR-Net`` (``ops/models_ada.py``, ``main_base.py``). For every
sampled frame a light policy (a small CNN at the lowest resolution → LSTMCell) picks an
action: run the backbone of one resolution, use the policy's own prediction, or skip 1/2/4
frames. Video logits average the chosen per-frame logits; the loss adds the expected MACs
of the chosen backbones and a term that keeps the action usage spread.

Where things live:

- :mod:`dynn.adaskip.parameters`: the notebook's parameter rules (``SPEC``) and the official values;
- :mod:`dynn.adaskip.model`: TSN backbones per resolution, the policy, :class:`AdaSkipNet`,
  inference that really skips (``infer_efficient``), the Gumbel temperature;
- :mod:`dynn.adaskip.train`: losses, step functions and the three stages ``pretrain``,
  ``joint``, ``finetune`` (plain keyword arguments; ``python -m dynn.adaskip.train`` for torchrun);
- :mod:`dynn.adaskip.evaluate`: evaluation modes, measured and official costs, usage per
  frame type, latency;
- :mod:`dynn.adaskip.plots`: figures and the ipywidgets explorer.

Submodules load on first use, so ``import dynn.adaskip`` (and its ``parameters``) does not
import torch.
"""

from dynn.lazy import lazy_dir, lazy_submodules

_SUBMODULES = ["claims", "evaluate", "model", "parameters", "plots", "published", "train"]
__getattr__ = lazy_submodules(__name__, _SUBMODULES)
__dir__ = lazy_dir(__name__, _SUBMODULES)
