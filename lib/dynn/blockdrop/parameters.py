"""What ``notebooks/blockdrop.ipynb`` accepts, and the depths the method builds (light: no torch).

The notebook's second cell checks its parameters against :data:`SPEC` before anything heavy
is imported, so a typo fails within a second and before any run directory exists. The
depths come from the light :mod:`dynn.model_names` for the same reason;
``tests/test_blockdrop.py`` checks that they agree with the backbones
:mod:`dynn.blockdrop.model` builds.
"""

from __future__ import annotations

from dynn.model_names import CIFAR_DEPTHS, IMAGENET_RESNET_DEPTHS
from dynn.params import Choice, ExistingPath, ListOf, Number, data_rules, run_rules

# Main network: a CIFAR ResNet of depth 6n+2 (K = 3n blocks: 20 → 9, 32 → 15, 110 → 54) or a
# torchvision ResNet for ImageNet-size inputs (101 → K = 33, the paper's ImageNet network).
TORCHVISION_DEPTHS = IMAGENET_RESNET_DEPTHS
MAIN_DEPTHS = CIFAR_DEPTHS + TORCHVISION_DEPTHS
# Policy network: a CIFAR ResNet (8 in the paper) or the ImageNet ResNet-10 / ResNet-18.
POLICY_DEPTHS = CIFAR_DEPTHS + (10, 18)

SPEC = {
    **data_rules("classification"),
    "gamma": Number(min=0),
    "gamma_sweep": ListOf(Number(min=0), min_len=0),
    "alpha": Number(min=0.5, max=1),
    "beta": Number(min=0),
    "depth": Choice(MAIN_DEPTHS),
    "policy_depth": Choice(POLICY_DEPTHS),
    "policy_downsample": Number(min=1, integer=True),
    "policy_pretrained": ExistingPath(required_if=lambda p: bool(p.get("policy_pretrained"))),
    "pretrained": ExistingPath(required_if=lambda p: bool(p.get("pretrained"))),
    "pretrain_epochs": Number(min=0, integer=True),
    "lr_pretrain": Number(min=0),
    "curriculum_epochs": Number(min=0, integer=True),
    "curriculum_step": Number(min=1, integer=True),
    "curriculum_gamma": Number(min=0),
    "curriculum_batch_size": Number(min=1, integer=True),
    "lr_policy": Number(min=0),
    "lr_policy_step": Number(min=0, integer=True),
    "finetune_epochs": Number(min=0, integer=True),
    "lr_finetune": Number(min=0),
    "lr_finetune_policy": Number(min=0),
    "lr_finetune_step": Number(min=0, integer=True),
    "batch_size": Number(min=1, integer=True),
    "resolution": Number(min=8, max=512, integer=True),
    "thresholds": ListOf(Number(min=0, max=1)),
    "latency_images": Number(min=1, integer=True),
    "latency_batch": Number(min=1, integer=True),
    "latency_time": Number(min=0.01),
    **run_rules(),
}
