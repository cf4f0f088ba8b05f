"""Name → constructor registry shared by every architecture module."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, prefix: str = ""):
    """Register a constructor under its function name, or ``<prefix>.<name>`` (decorator).

    A method's own architectures register under its prefix (``slimmable.resnet20``), so one
    registry serves every notebook and a name can never be registered twice.
    """

    def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = f"{prefix}.{fn.__name__}" if prefix else fn.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = fn
        return fn

    return register(fn) if fn is not None else register


def register_variant(name: str, builder: Callable[..., nn.Module], doc: str, **fixed) -> Callable[..., nn.Module]:
    """Register ``name`` as ``builder`` with some keyword arguments fixed (``cifar_resnet20`` = depth 20)."""

    def constructor(**kwargs) -> nn.Module:
        return builder(**fixed, **kwargs)

    constructor.__name__ = name
    constructor.__doc__ = doc
    return register_model(constructor)


def list_models(prefix: str | None = None) -> list[str]:
    """Registered names; with ``prefix``, only that family (names ``<prefix>.<name>``)."""
    if prefix is None:
        return sorted(_MODELS)
    return sorted(n for n in _MODELS if n.startswith(prefix + "."))


def create(name: str, **kwargs) -> nn.Module:
    """Build a registered model; an unknown name lists what is available."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _MODELS[name](**kwargs)
