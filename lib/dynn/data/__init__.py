"""Datasets by name: ``dynn.data.get_dataset("mnist5k", "train", resolution=32)``.

Embedded sets (``mnist5k``, ``digits``, ``cluttered_digits``, ``moving_digits``,
``digit_scenes``) ship inside installed packages, so every notebook's defaults run with no
download. Real sets (CIFAR, ImageFolder, video frames, VOC, Cityscapes) take a
``data_root``; :func:`check_source` fails early, naming the parameter, when it is wrong.

Importing this package is light: the catalog (names, tasks, layouts, :func:`check_source`)
is pure Python; torch and the builders load on first use of ``get_dataset`` and friends.
"""

import importlib

from dynn.data.catalog import CATALOG, DataError, check_source, dataset_names, is_embedded  # noqa: F401

_LAZY = {
    "get_dataset": "dynn.data.registry",
    "make_loader": "dynn.data.registry",
    "register_dataset": "dynn.data.registry",
    "registered_names": "dynn.data.registry",
    "split_indices": "dynn.data.registry",
    "head": "dynn.data.registry",
    "LimitedDataset": "dynn.data.registry",
    "SPLIT_SEED": "dynn.data.registry",
}
_SUBMODULES = frozenset({"catalog", "registry", "images", "cluttered", "video", "segmentation"})

__all__ = ["CATALOG", "DataError", "check_source", "dataset_names", "is_embedded", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"dynn.data.{name}")
    raise AttributeError(f"module 'dynn.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
