"""Headline numbers the papers and official repositories publish, gathered from every method.

Each method keeps its paper's figures in ``dynn/<method>/published.py`` (a list of dicts
with ``notebook``, ``setting``, ``metric``, ``value``, ``baseline_value``, ``cost_ratio``,
``source``); claims cite them in their ``paper`` field and the report shows them side by
side. They come from full-scale training (CIFAR-10, ImageNet, ActivityNet, Cityscapes) and
sit next to this workbook's small-scale numbers only for orientation.
"""

import importlib

METHODS = ("blockdrop", "sdpoint", "adaskip", "dynamic_routing", "slimmable")


def published() -> list[dict]:
    """Every method's published figures, in method order."""
    return [entry for m in METHODS for entry in importlib.import_module(f"dynn.{m}.published").PUBLISHED]


def __getattr__(name: str):
    if name == "PUBLISHED":  # the whole table, built on first use
        return published()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
