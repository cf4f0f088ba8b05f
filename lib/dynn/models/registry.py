"""Name → constructor registry shared by every architecture module."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a constructor under its function name (decorator)."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def register_variant(name: str, builder: Callable[..., nn.Module], doc: str, **fixed) -> Callable[..., nn.Module]:
    """Register ``name`` as ``builder`` with some keyword arguments fixed (``cifar_resnet20`` = depth 20)."""
    def constructor(**kwargs) -> nn.Module:
        return builder(**fixed, **kwargs)

    constructor.__name__ = name
    constructor.__doc__ = doc
    return register_model(constructor)


def list_models() -> list[str]:
    return sorted(_MODELS)


def create(name: str, **kwargs) -> nn.Module:
    """Build a registered model; an unknown name lists what is available."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _MODELS[name](**kwargs)
