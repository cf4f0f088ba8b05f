"""The dataset registry, deterministic splits and the DataLoader factory."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

SPLITS = ("train", "val", "test")

_DATASETS: dict[str, Callable[..., Dataset]] = {}
_EMBEDDED: set[str] = set()


class DataError(ValueError):
    """A dataset parameter is wrong: the message names it and says how to fix it."""


def register_dataset(name: str, *, embedded: bool = False):
    """Register a builder; ``embedded`` sets ship with a package and need no ``data_root``."""
    def wrap(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        _DATASETS[name] = fn
        if embedded:
            _EMBEDDED.add(name)
        return fn

    return wrap


def is_embedded(name: str) -> bool:
    """True for the sets that need no download and no ``data_root``."""
    return name in _EMBEDDED


def dataset_names() -> list[str]:
    return sorted(_DATASETS)


def get_dataset(name: str, split: str = "train", **kwargs) -> Dataset:
    """Build split ``split`` of dataset ``name``; keyword arguments go to its builder.

    Every builder accepts ``seed`` (deterministic train/val/test split) and the common
    image options documented in :mod:`dynn.data.images`.
    """
    if name not in _DATASETS:
        raise DataError(f"parameter 'dataset' = {name!r} is unknown; allowed: {', '.join(dataset_names())}")
    if split not in SPLITS:
        raise DataError(f"split = {split!r} is unknown; allowed: {', '.join(SPLITS)}")
    return _DATASETS[name](split=split, **kwargs)


def split_indices(n: int, fractions: tuple[float, float, float], seed: int) -> dict[str, np.ndarray]:
    """Deterministic disjoint train/val/test index sets of ``n`` items from ``seed``.

    Validation is separate from test so that policy and width searches can select on
    held-out data without touching the test set.
    """
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    n_train = n - n_val - n_test
    # Kept in permuted order (not sorted): some embedded sets are stored sorted by class,
    # and a prefix of a split (e.g. a smoke run's first 256 images) must stay representative.
    return {
        "train": order[:n_train],
        "val": order[n_train:n_train + n_val],
        "test": order[n_train + n_val:],
    }


def make_loader(
    dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
    num_workers: int = 0, drop_last: bool = False, sampler=None,
) -> DataLoader:
    """A DataLoader whose shuffling is fixed by ``seed`` (same seed, same batches)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
        num_workers=num_workers, drop_last=drop_last, generator=generator,
        persistent_workers=num_workers > 0, worker_init_fn=_seed_worker if num_workers else None,
    )


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    import random

    random.seed(seed)


def require_root(data_root: str | os.PathLike | None, dataset: str, layout: str, how: str) -> Path:
    """The existing folder ``data_root``, or a DataError naming the parameter, layout and remedy."""
    if not data_root:
        raise DataError(
            f"parameter 'data_root' is empty but dataset {dataset!r} needs one; expected layout: "
            f"{layout}. {how}")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"parameter 'data_root' = {str(data_root)!r} does not exist (dataset {dataset!r}); "
            f"expected layout: {layout}. {how}")
    return root
