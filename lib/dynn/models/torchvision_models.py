"""ImageNet-style backbones from torchvision, registered under their torchvision names.

Weights are never downloaded here (no network reaches the hubs); ``weights=None`` builds
randomly initialised networks, and a notebook can load a local state dict by parameter.
"""

from __future__ import annotations

import torchvision.models as tvm

from dynn.model_names import TORCHVISION_NAMES
from dynn.models.registry import register_variant


for _name in TORCHVISION_NAMES:
    register_variant(_name, getattr(tvm, _name), f"torchvision.models.{_name} (random init).", weights=None)
