"""The dataset registry, the fixed per-dataset splits, ``limit`` and the DataLoader factory."""

from __future__ import annotations

import copy
import importlib
import inspect
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from dynn.data.catalog import (  # noqa: F401  (re-exported)
    CATALOG,
    DataError,
    Source,
    add_source,
    check_source,
    dataset_names,
    is_embedded,
    source,
)

SPLITS = ("train", "val", "test")
SPLIT_SEED = 0  # the one seed of every dataset split: splits belong to the dataset, not to a run

_DATASETS: dict[str, Callable[..., Dataset]] = {}
_BUILDER_MODULES = ("dynn.data.images", "dynn.data.cluttered", "dynn.data.video", "dynn.data.segmentation")


def register_dataset(
    name: str,
    *,
    embedded: bool = False,
    task: str = "classification",
    layout: str = "",
    remedy: str = "",
    downloadable: bool = False,
):
    """Register a builder ``fn(split, **options)`` under ``name``.

    dynn's own sets are described in :data:`dynn.data.catalog.CATALOG`; a name registered
    from outside gets a catalog entry from these keywords (``embedded`` sets need no
    ``data_root``; for the others ``layout`` says what it must hold and ``remedy`` how to
    get it).
    """

    def wrap(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        if name in CATALOG:
            if CATALOG[name].embedded != embedded:
                raise ValueError(f"dataset {name!r}: embedded={embedded} disagrees with the catalog")
        else:
            add_source(name, Source(task, embedded=embedded, layout=layout, remedy=remedy, downloadable=downloadable))
        _DATASETS[name] = fn
        return fn

    return wrap


def _load_builders() -> None:
    for module in _BUILDER_MODULES:
        importlib.import_module(module)


def registered_names() -> list[str]:
    """The names that have a builder (every catalog name once the builders are imported)."""
    _load_builders()
    return sorted(_DATASETS)


def get_dataset(
    name: str, split: str = "train", *, limit: int = 0, download: bool = False, **builder_kwargs
) -> Dataset:
    """Split ``split`` of dataset ``name``; other keyword arguments go to its builder.

    Splits are fixed per dataset (:data:`SPLIT_SEED`): the same images for every run seed,
    validation carved out of the training data, never out of the test set. ``limit`` > 0
    keeps the first ``limit`` items, and the result still carries every attribute of the
    full split (``classes``, ``num_classes``, ``input_shape``, ``mean``, ``std``,
    per-item ones such as ``targets`` or ``difficulty`` cut to the same items).
    Notebooks expose it as ``train_limit``, ``val_limit`` and ``test_limit``.
    ``download=True`` lets torchvision fetch the sets that can be downloaded (CIFAR).
    Embedded sets ignore ``data_root``. :func:`check_source` runs first, so a wrong name or
    ``data_root`` fails before anything is loaded.
    """
    check_source(name, builder_kwargs.get("data_root"), download)
    if split not in SPLITS:
        raise DataError(f"split = {split!r} is unknown; allowed: {', '.join(SPLITS)}")
    if int(limit) < 0:
        raise DataError(f"limit = {limit!r}: expected 0 (everything) or a positive number of items")
    _load_builders()
    builder = _DATASETS[name]
    src = CATALOG[name]
    if src.embedded:
        builder_kwargs.pop("data_root", None)
    if src.downloadable:
        builder_kwargs["download"] = bool(download)
    _check_kwargs(name, builder, builder_kwargs)
    dataset = builder(split=split, **builder_kwargs)
    return head(dataset, int(limit)) if limit else dataset


def _check_kwargs(name: str, builder: Callable, kwargs: dict) -> None:
    params = inspect.signature(builder).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        accepted = ", ".join(p for p in params if p != "split")
        why = (
            " (splits are fixed per dataset, the same for every run seed; seed only drives "
            "initialisation, shuffling and augmentation)"
            if "seed" in unknown
            else ""
        )
        raise TypeError(
            f"dataset {name!r} takes no argument {', '.join(map(repr, unknown))}{why}; accepted: {accepted}"
        )


# ---------------------------------------------------------------- limit
class LimitedDataset(Subset):
    """The first items of a dataset that does not know how to cut itself; attributes forward to it."""

    def __getattr__(self, name: str):
        if name in ("dataset", "indices") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def head(dataset: Dataset, limit: int) -> Dataset:
    """The first ``limit`` items of ``dataset`` (all of them when it has fewer).

    Datasets that list their per-item attributes in ``per_item`` (tensors, arrays or lists
    with one entry per item) are copied with those attributes cut, so the result is the
    same class with every attribute; any other dataset is wrapped in a :class:`LimitedDataset`.
    """
    n = min(int(limit), len(dataset))
    fields = getattr(dataset, "per_item", None)
    if fields is None:
        return LimitedDataset(dataset, range(n))
    out = copy.copy(dataset)
    for field in fields:
        value = getattr(dataset, field)
        if value is not None:
            setattr(out, field, value[:n])
    return out


# ---------------------------------------------------------------- splits and loaders
def split_indices(n: int, fractions: tuple[float, float, float], seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Deterministic disjoint train/val/test index sets of ``n`` items.

    The builders always use :data:`SPLIT_SEED`: a split is a property of the dataset.
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
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    sampler=None,
) -> DataLoader:
    """A DataLoader whose shuffling is fixed by ``seed`` (same seed, same batches)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=generator,
        persistent_workers=num_workers > 0,
        worker_init_fn=_seed_worker if num_workers else None,
    )


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    import random

    random.seed(seed)
