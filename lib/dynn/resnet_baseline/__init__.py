"""Static ResNets trained the plain way: the curve every dynamic method must beat.

Same shape as every method package: :mod:`.parameters` (the notebook's parameter spec,
light), :mod:`.train` (the training stage, a function of plain keyword arguments, also
runnable under ``torchrun``). Evaluation and figures use the foundation directly
(:mod:`dynn.evaluate`, :mod:`dynn.flops`, :mod:`dynn.plots`).
"""
import importlib

_SUBMODULES = frozenset({"parameters", "train"})


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
