"""SDPoint (Kuen et al., CVPR 2018): stochastic downsampling for cost-adjustable inference.

One network, trained with a randomly chosen downsampling *instance* (point, ratio) per
forward pass, can afterwards run any of its 2N+3 instances: a whole accuracy–cost curve
from one set of weights. The pieces:

- :mod:`dynn.sdpoint.model`: points on CIFAR ResNets, ResNets, ResNeXts and PreResNets
  (:class:`SDPointNet`, the sampling rule and its official variant, MACs per instance);
- :mod:`dynn.sdpoint.evaluate`: BN recalibration per instance and the instance table;
- :mod:`dynn.sdpoint.agent`: the follow-up fork's learned per-layer downsampling (REINFORCE);
- :mod:`dynn.sdpoint.plots`: the notebook's figures.

Training needs no special step function: in training mode :class:`SDPointNet` samples its
own instance in ``forward``, so :func:`dynn.train.classification_step` is the SDPoint step.
"""
from __future__ import annotations

import torch

from dynn.sdpoint.agent import AGENTS, REWARDS, DownsamplingEnv, SearchResult, search  # noqa: F401
from dynn.sdpoint.evaluate import (  # noqa: F401
    BN_MODES, accuracy, bn_state, cached_table, calibration_batches, config_accuracy, config_latency,
    eval_data, evaluate_instances, example_batch, input_shape_of, recalibrate_bn, restore_bn_state,
    stack_dataset,
)
from dynn.sdpoint.model import (  # noqa: F401
    ARCH_DEPTHS, SAMPLING, SDPointNet, backbone_name, backbone_parts, create,
)
from dynn.sdpoint import plots  # noqa: F401

OFFICIAL_EPOCHS = 115
OFFICIAL_MILESTONES = (40, 75, 105)  # lr ÷10 at these of 115 ImageNet epochs


def official_milestones(epochs: int) -> list[int]:
    """The official ImageNet step schedule (÷10 at 40/75/105 of 115 epochs) scaled to ``epochs``."""
    return sorted({max(1, round(m * epochs / OFFICIAL_EPOCHS)) for m in OFFICIAL_MILESTONES})


def make_optimizer(model: torch.nn.Module, *, lr: float, weight_decay: float, epochs: int):
    """SGD (momentum 0.9) with the official step schedule, as in the official ``main.py``."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, official_milestones(epochs), gamma=0.1)
    return optimizer, scheduler
