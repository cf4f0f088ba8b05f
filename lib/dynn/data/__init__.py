"""Datasets by name: ``dynn.data.get_dataset("mnist5k", "train", resolution=32)``.

Embedded sets (``mnist5k``, ``digits``) ship inside installed packages, so every notebook's
defaults run with no download. Real sets (CIFAR, ImageFolder, video frames, VOC,
Cityscapes) take a ``data_root`` and fail early, naming the parameter, when it is wrong.
"""
from dynn.data.registry import (  # noqa: F401
    DataError, dataset_names, get_dataset, is_embedded, make_loader, register_dataset,
)
from dynn.data import images  # noqa: F401  (registers datasets)
from dynn.data import video  # noqa: F401  (registers moving_digits, video_frames)
from dynn.data import segmentation  # noqa: F401  (registers digit_scenes, voc, cityscapes)

__all__ = ["DataError", "dataset_names", "get_dataset", "is_embedded", "make_loader", "register_dataset"]
