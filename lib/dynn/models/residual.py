"""A residual network seen as ``stem → blocks → head``, each block as ``shortcut + residual``.

BlockDrop runs or drops whole residual branches; SDPoint shrinks the feature map after a
block's residual sum. Both need the same reading of a backbone, so it lives here once, for
every residual family the workbook builds (:mod:`dynn.models.cifar_resnet`, torchvision's
ResNet / ResNeXt, :mod:`dynn.models.preresnet`). The view wraps the backbone's own modules;
nothing is copied, so the backbone's weights and ``forward`` stay the reference.

For every supported block ``block(x) == activation(pre_activation(block, x))`` and, where
the block has a separable shortcut, ``pre_activation(block, x) == shortcut(block, x) +
residual(block, x)`` (tested in ``tests/test_models_flops.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models.resnet as tv_resnet

from dynn.models import cifar_resnet, preresnet


def shortcut(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The identity / downsampling path of a block (it runs whether the block is kept or not)."""
    if isinstance(block, cifar_resnet.BasicBlock):
        return block.shortcut(x)
    if isinstance(block, (tv_resnet.BasicBlock, tv_resnet.Bottleneck)):
        return block.downsample(x) if block.downsample is not None else x
    raise TypeError(f"{type(block).__name__} has no separable shortcut (pre-activation blocks share bn1)")


def residual(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """f(x): the residual branch, the work that dropping a block saves."""
    if isinstance(block, cifar_resnet.BasicBlock):
        return block.residual(x)
    if isinstance(block, tv_resnet.BasicBlock):
        return block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
    if isinstance(block, tv_resnet.Bottleneck):
        out = block.relu(block.bn1(block.conv1(x)))
        out = block.relu(block.bn2(block.conv2(out)))
        return block.bn3(block.conv3(out))
    raise TypeError(f"{type(block).__name__} has no separable residual branch")


def pre_activation(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block's residual sum before its final activation (pre-activation blocks have none)."""
    if isinstance(block, (preresnet.PreActBasicBlock, preresnet.PreActBottleneck)):
        return block(x)
    return shortcut(block, x) + residual(block, x)


def activation(block: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """What follows the residual sum: ReLU, or nothing for a pre-activation block."""
    if isinstance(block, (preresnet.PreActBasicBlock, preresnet.PreActBottleneck)):
        return lambda x: x
    return F.relu


SUPPORTED_BLOCKS = (
    cifar_resnet.BasicBlock,
    tv_resnet.BasicBlock,
    tv_resnet.Bottleneck,
    preresnet.PreActBasicBlock,
    preresnet.PreActBottleneck,
)


@dataclass
class ResidualView:
    """The parts of a residual backbone a dynamic method reaches."""

    stem: Callable[[torch.Tensor], torch.Tensor]  # up to (not including) the stem pool
    stem_pool: nn.Module | None  # the stem max-pool of ImageNet layouts; None for CIFAR
    blocks: list[nn.Module]
    block_names: list[str]  # as in the backbone's named_modules()
    stage_index: list[int]  # stage of each block
    head: Callable[[torch.Tensor], torch.Tensor]  # final features -> logits

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def stem_and_pool(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.stem_pool(x) if self.stem_pool is not None else x

    def shortcut_names(self) -> list[str]:
        """Module names of the shortcuts (for per-module cost tables)."""
        return [
            f"{n}.shortcut" if isinstance(b, cifar_resnet.BasicBlock) else f"{n}.downsample"
            for n, b in zip(self.block_names, self.blocks)
        ]


def residual_view(model: nn.Module) -> ResidualView:
    """The view of a CIFAR ResNet, a torchvision ResNet / ResNeXt or a PreResNet.

    Any other model is a TypeError naming the supported families.
    """
    if isinstance(model, cifar_resnet.CifarResNet):
        view = ResidualView(
            model.stem,
            None,
            list(model.blocks),
            [f"blocks.{i}" for i in range(len(model.blocks))],
            list(model.stage_index),
            model.forward_head,
        )
    elif isinstance(model, (tv_resnet.ResNet, preresnet.PreResNet)):
        names, blocks, stages = [], [], []
        for s, layer in enumerate((model.layer1, model.layer2, model.layer3, model.layer4)):
            for i, block in enumerate(layer):
                names.append(f"layer{s + 1}.{i}")
                blocks.append(block)
                stages.append(s)
        if isinstance(model, preresnet.PreResNet):
            stem, head = model.stem, model.forward_head
        else:
            stem = nn.Sequential(model.conv1, model.bn1, model.relu)  # shares the modules

            def head(x: torch.Tensor) -> torch.Tensor:
                return model.fc(torch.flatten(model.avgpool(x), 1))

        view = ResidualView(stem, model.maxpool, blocks, names, stages, head)
    else:
        raise TypeError(
            f"a residual view needs a CifarResNet, a torchvision ResNet/ResNeXt or a PreResNet, "
            f"not {type(model).__name__}"
        )
    for block in view.blocks:
        if not isinstance(block, SUPPORTED_BLOCKS):
            raise TypeError(f"unsupported residual block {type(block).__name__}")
    return view
