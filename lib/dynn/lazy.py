"""Lazy submodules for the method packages (PEP 562).

A notebook's validation cell imports ``dynn.<method>.parameters`` only; the package's heavy
modules (torch, torchvision) load when first used (``bd.train``), so a typo in a parameter
is reported within a second.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Iterable


def lazy_submodules(package: str, names: Iterable[str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``<package>.<name>`` on first access."""
    known = frozenset(names)

    def __getattr__(name: str):
        if name in known:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def lazy_dir(package: str, names: Iterable[str]) -> Callable[[], list[str]]:
    """A module ``__dir__`` that lists the lazy submodules too (tab completion in a notebook)."""
    known = frozenset(names)

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | known)

    return __dir__
