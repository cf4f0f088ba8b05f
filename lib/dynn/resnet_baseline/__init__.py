"""Static ResNets trained the plain way: the curve every dynamic method must beat.

Same shape as every method package: :mod:`.parameters` (the notebook's parameter spec,
light), :mod:`.train` (the training stage, a function of plain keyword arguments, also
runnable under ``torchrun``). Evaluation and figures use the foundation directly
(:mod:`dynn.evaluate`, :mod:`dynn.flops`, :mod:`dynn.plots`).
"""

from dynn.lazy import lazy_dir, lazy_submodules

_SUBMODULES = ["parameters", "train"]
__getattr__ = lazy_submodules(__name__, _SUBMODULES)
__dir__ = lazy_dir(__name__, _SUBMODULES)
