"""dynn: a workbook of dynamic neural networks.

The library is thin on purpose: notebooks tell the story, these modules hold the parts
that every method shares (data, backbones, cost measurement, a small trainer, the
notebook run contract, plotting) and one module per method.
"""
from dynn import data, flops, models, params, plots, runs, train  # noqa: F401
from dynn import baseline, published, results  # noqa: F401

__version__ = "0.1.0"
