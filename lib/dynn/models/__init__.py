"""Backbones by name: ``dynn.models.create("cifar_resnet20", num_classes=10)``.

A registry (timm-style) turns the string in a notebook's parameters cell into a model.
Each architecture family lives in its own module and registers its public constructors;
a method's own architectures register under a prefix (``slimmable.resnet20``).
:mod:`dynn.models.residual` reads any residual family as stem → blocks → head.
"""

from dynn.models.registry import create, list_models, register_model  # noqa: F401
from dynn.models import cifar_resnet, torchvision_models  # noqa: F401  (registers models)
from dynn.models import preresnet, resnext  # noqa: F401  (PreResNet-18…200, ResNeXt-101/152 32x4d)
from dynn.models.residual import ResidualView, residual_view  # noqa: F401

__all__ = ["create", "list_models", "register_model", "residual_view", "ResidualView"]
