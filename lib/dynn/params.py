"""Validation of a notebook's parameters: one clear error before any data is loaded.

A notebook declares what each parameter may be with a small spec::

    check(params, {
        "gamma": Number(min=0),
        "dataset": Choice(dataset_names(task="classification")),
        "depth": Choice([8, 14, 20, 32, 56, 110]),
        "data_root": DataRoot(),
        "device": Device(),
    })

All problems are collected and raised together as one :class:`ParameterError` that names
each parameter, its value and what is allowed. Parameters not in the spec are an error
too (a typo in ``-p gama 5`` must not be silently ignored by the notebook).

This module imports neither torch nor the data builders: each method keeps its notebook's
spec in a light ``dynn/<method>/parameters.py``, so validation runs in the notebook's
second cell within a second, before any heavy import, data or run directory.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml


class ParameterError(ValueError):
    """One or more notebook parameters are invalid."""


@dataclass
class Choice:
    options: Iterable[Any]

    def problem(self, value: Any) -> str | None:
        options = list(self.options)
        if value not in options:
            return f"allowed: {', '.join(repr(o) for o in options)}"
        return None


@dataclass
class Number:
    min: float | None = None
    max: float | None = None
    integer: bool = False
    allow_none: bool = False

    def problem(self, value: Any) -> str | None:
        if value is None and self.allow_none:
            return None
        kinds = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or (isinstance(value, float) and math.isnan(value)):
            return f"expected {'an integer' if self.integer else 'a number'}{' or None' if self.allow_none else ''}"
        if self.min is not None and value < self.min:
            return f"must be ≥ {self.min}"
        if self.max is not None and value > self.max:
            return f"must be ≤ {self.max}"
        return None


@dataclass
class Flag:
    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else "expected True or False"


@dataclass
class Text:
    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, str) else "expected a string"


@dataclass
class ListOf:
    item: Any
    min_len: int = 1
    max_len: int | None = None

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, (list, tuple)):
            return "expected a list"
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            return f"expected a list of {self.min_len}..{self.max_len or 'any'} items"
        for i, v in enumerate(value):
            p = self.item.problem(v)
            if p:
                return f"item {i} ({v!r}): {p}"
        return None


@dataclass
class ExistingPath:
    """A filesystem path that must exist when ``required_if(params)`` holds (or always)."""

    required_if: Callable[[dict], bool] | None = None
    allow_empty: bool = True

    def problem(self, value: Any, params: dict | None = None) -> str | None:
        if not isinstance(value, str):
            return "expected a path string"
        needed = self.required_if(params or {}) if self.required_if else True
        if not needed:
            return None
        if not value:
            return "is empty but this setting needs an existing directory"
        if not Path(value).expanduser().exists():
            return "does not exist"
        return None


@dataclass
class DataRoot:
    """``data_root`` holds the chosen ``dataset`` in its expected layout (embedded sets need none).

    Checked with :func:`dynn.data.catalog.check_source` at validation time, so a missing or
    mis-laid dataset stops the notebook before any run directory is created; the message
    names the layout and how to get the data (``-p download True`` where torchvision can).
    """

    def problem(self, value: Any, params: dict | None = None) -> str | None:
        from dynn.data.catalog import DataError, check_source, dataset_names

        params = params or {}
        if not isinstance(value, str):
            return "expected a path string"
        if params.get("dataset") not in dataset_names():
            return None  # the 'dataset' rule reports an unknown name
        try:
            check_source(params.get("dataset", ""), value, download=bool(params.get("download", False)))
        except DataError as err:
            return re.sub(r"^parameter 'data_root' = '[^']*':? *", "", str(err))
        return None


DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass
class Device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (whether it is present is checked by
    :func:`dynn.runs.start`, which needs torch)."""

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str) or not DEVICE_PATTERN.fullmatch(value):
            return "allowed: 'auto', 'cpu', 'cuda', 'cuda:N' (N = 0, 1, ...), 'mps'"
        return None


def run_rules(*, interactive: bool = True) -> dict[str, Any]:
    """The rules of the parameters every notebook shares (where it runs, how it shows);
    ``interactive`` (the explorer widget switch) where the notebook has an explorer."""
    rules = {
        "device": Device(),
        "seed": Number(min=0, integer=True),
        "nprocs": Number(min=1, integer=True),
        "run_dir": Text(),
        "figures_dir": Text(),
    }
    return {**rules, "interactive": Flag()} if interactive else rules


def data_rules(task: str, *, download: bool = True) -> dict[str, Any]:
    """The rules of the data parameters: ``dataset`` (of ``task``), ``data_root`` (layout
    checked), ``download`` (where the task has downloadable sets) and the three limits."""
    rules = {
        "dataset": Choice(dataset_names(task=task)),
        "data_root": DataRoot(),
        "train_limit": Number(min=0, integer=True),
        "val_limit": Number(min=0, integer=True),
        "test_limit": Number(min=0, integer=True),
    }
    return {**rules, "download": Flag()} if download else rules


def dataset_names(task: str | None = None) -> list[str]:
    """The dataset names a notebook of ``task`` accepts (light: no data is loaded)."""
    from dynn.data.catalog import dataset_names as names

    return names(task=task)


def check(params: dict, spec: dict[str, Any]) -> dict:
    """Validate ``params`` against ``spec``; raise one :class:`ParameterError` listing all problems."""
    problems = []
    for name in sorted(set(params) - set(spec)):
        problems.append(f"parameter {name!r} is unknown to this notebook; known: {', '.join(sorted(spec))}")
    for name, rule in spec.items():
        if name not in params:
            problems.append(f"parameter {name!r} is missing")
            continue
        value = params[name]
        needs_params = "params" in inspect.signature(rule.problem).parameters  # rules that read others
        problem = rule.problem(value, params) if needs_params else rule.problem(value)
        if problem:
            problems.append(f"parameter {name!r} = {value!r}: {problem}")
    if problems:
        raise ParameterError("invalid notebook parameters:\n  - " + "\n  - ".join(problems))
    return params


def collect(namespace: dict, names: Iterable[str]) -> dict:
    """Pick the parameters-cell variables out of a notebook's globals, in order."""
    return {n: namespace[n] for n in names if n in namespace}


def parameter_names(notebook_path: str | Path) -> list[str]:
    """Names defined in a notebook's ``parameters`` cell (what ``--help-notebook`` lists)."""
    import papermill

    return list(papermill.inspect_notebook(str(notebook_path)).keys())


def load_param_set(notebook: str, name: str, root: str | Path | None = None) -> dict:
    """Read ``params/<notebook>/<name>.yaml``."""
    from dynn.runs import repo_root

    path = Path(root or repo_root()) / "params" / notebook / f"{name}.yaml"
    return yaml.safe_load(path.read_text()) or {}


_IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})


def from_namespace(namespace: dict, spec: dict[str, Any]) -> dict:
    """Collect and validate the parameters from a notebook's globals.

    Call it in the cell right after the parameters cell, before defining other names: any
    plain value in the namespace that the spec does not know (e.g. papermill's ``-p gama 5``)
    is reported as an unknown parameter instead of being silently ignored.
    """
    import types

    params = {}
    for name, value in namespace.items():
        if name.startswith("_") or name in _IPYTHON_NAMES or name.isupper():
            continue  # private, IPython's own, or a CONSTANT such as an imported SPEC
        if isinstance(value, types.ModuleType) or callable(value):
            continue
        params[name] = value
    return check(params, spec)
