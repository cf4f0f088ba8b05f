"""ResNeXt-101 and -152 (32×4d), built from torchvision's ``ResNet`` class.

SDPoint's official list has ResNeXt-50/101/152 with cardinality 32 and bottleneck width 4;
torchvision ships ``resnext50_32x4d`` (registered in :mod:`dynn.models.torchvision_models`)
but not the deeper 32×4d variants, which are the same class with ``groups=32,
width_per_group=4`` and the ResNet-101/152 stage depths.
"""

from __future__ import annotations

from torchvision.models.resnet import Bottleneck, ResNet

from dynn.models.registry import register_model


def _resnext_32x4d(layers: list[int], num_classes: int = 1000, **kwargs) -> ResNet:
    return ResNet(Bottleneck, layers, num_classes=num_classes, groups=32, width_per_group=4, **kwargs)


@register_model
def resnext101_32x4d(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNeXt-101 (32×4d), random init (the paper's main ImageNet model)."""
    return _resnext_32x4d([3, 4, 23, 3], num_classes=num_classes, **kwargs)


@register_model
def resnext152_32x4d(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNeXt-152 (32×4d), random init."""
    return _resnext_32x4d([3, 8, 36, 3], num_classes=num_classes, **kwargs)
