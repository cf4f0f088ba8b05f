"""dynn: a workbook of dynamic neural networks.

The library is thin on purpose: notebooks tell the story, these modules hold the parts
that every method shares (data, backbones, cost measurement, a small trainer, the
notebook run contract, plotting) and one package per method.

Submodules load on first use (``dynn.train``, ``dynn.blockdrop``, ...): a notebook's
validation cell imports only :mod:`dynn.params` and its method's ``parameters`` module,
so a typo in a parameter is reported before torch is even imported.
"""

from dynn.lazy import lazy_dir, lazy_submodules

__version__ = "0.2.0"

# Stage checkpoints record this; a checkpoint written by another version is refused
# (not silently reused), because what a stage computes may have changed.
CODE_VERSION = __version__

_SUBMODULES = [
    "adaskip",
    "blockdrop",
    "claims",
    "data",
    "dynamic_routing",
    "evaluate",
    "flops",
    "lazy",
    "models",
    "params",
    "plots",
    "published",
    "report",
    "resnet_baseline",
    "results",
    "runs",
    "sdpoint",
    "slimmable",
    "train",
]
__getattr__ = lazy_submodules(__name__, _SUBMODULES)
__dir__ = lazy_dir(__name__, _SUBMODULES)
