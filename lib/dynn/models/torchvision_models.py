"""ImageNet-style backbones from torchvision, registered under their torchvision names.

Weights are never downloaded here (no network reaches the hubs); ``weights=None`` builds
randomly initialised networks, and a notebook can load a local state dict by parameter.
"""

from __future__ import annotations

import torchvision.models as tvm

from dynn.models.registry import register_variant

TORCHVISION_NAMES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "efficientnet_b0",
)


for _name in TORCHVISION_NAMES:
    register_variant(_name, getattr(tvm, _name), f"torchvision.models.{_name} (random init).", weights=None)
