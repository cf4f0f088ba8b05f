"""Semantic-segmentation datasets: embedded ``digit_scenes``, PASCAL VOC and Cityscapes.

Items are ``(image, label)``: a normalised float ``3×H×W`` image and a long ``H×W`` map of
class indices where ``255`` (:data:`IGNORE_INDEX`) marks pixels that count for nothing
(object borders in VOC, void classes in Cityscapes, blurry digit edges, crop padding).
Every dataset carries ``classes``, ``num_classes``, ``ignore_index``, ``input_shape``,
``mean`` and ``std``.

Common options: ``split`` (``train``/``val``/``test``; ``val`` is a fixed slice of the
official training set, ``test`` is the official validation set; splits are the same for
every run seed, there is no ``seed`` argument),
``resolution`` (the square crop side in pixels; for ``digit_scenes`` the generated image
side) and ``augment`` (random scale, crop and flip; default on for ``train`` only).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dynn.data.catalog import CATALOG
from dynn.data.registry import SPLIT_SEED, DataError, register_dataset, split_indices

IGNORE_INDEX = 255
# Scale regimes of digit_scenes: per image, how many digits and which box sides (as a
# fraction of the image side) — so that which scales a good route needs depends on the image.
SCENE_REGIMES = {
    "large": {"count": (1, 2), "size": (0.55, 0.8)},  # one or two big digits: coarse context
    "small": {"count": (3, 5), "size": (0.16, 0.22)},  # a few small digits: fine detail
    "mixed": {"count": (1, 1), "size": (0.55, 0.7), "extra": {"count": (2, 3), "size": (0.16, 0.22)}},
    "crowded": {"count": (7, 10), "size": (0.16, 0.3)},  # many small and medium digits
    "sparse": {"count": (1, 1), "size": (0.25, 0.4)},  # one medium digit on a wide background
}
DIGIT_SCENE_COUNTS = {"train": 2000, "val": 200, "test": 400}


# ------------------------------------------------------------------ in-memory scenes
class SegmentationArrays(Dataset):
    """Images (uint8 ``N×3×H×W``) and label maps (uint8 ``N×H×W``) held in memory."""

    per_item = ("images", "labels", "object_sizes", "regimes")

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        classes: list[str],
        mean,
        std,
        augment: bool = False,
        hflip: bool = False,
        name: str = "",
        object_sizes=None,
        regimes=None,
    ):
        self.images, self.labels = images, labels
        self.classes, self.num_classes = list(classes), len(classes)
        self.ignore_index = IGNORE_INDEX
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.augment, self.hflip, self.name = augment, hflip, name
        self.input_shape = tuple(images.shape[1:])
        self.object_sizes = object_sizes  # per image: side (px) of each pasted object
        self.regimes = regimes  # per image: its scale regime (digit_scenes), else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        x = self.images[index].float().div_(255)
        y = self.labels[index].long()
        if self.augment:  # random translation by up to 1/8 of the side (padding is ignored)
            side = x.shape[-1]
            pad = max(1, side // 8)
            x = F.pad(x, (pad,) * 4)
            y = F.pad(y, (pad,) * 4, value=IGNORE_INDEX)
            i, j = torch.randint(0, 2 * pad + 1, (2,)).tolist()
            x, y = x[:, i : i + side, j : j + side], y[i : i + side, j : j + side]
            if self.hflip and torch.rand(()) < 0.5:
                x, y = x.flip(-1), y.flip(-1)
        return (x - self.mean) / self.std, y


def _texture(rng: np.random.Generator, side: int) -> np.ndarray:
    """A coloured background: two oriented sinusoidal gratings plus pixel noise (3×side×side)."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    base = rng.uniform(0.05, 0.5, size=(3, 1, 1)).astype(np.float32)
    img = np.repeat(base, side, 1).repeat(side, 2)
    for _ in range(2):
        theta, freq, phase = rng.uniform(0, np.pi), rng.uniform(2, 9), rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
        img = img + rng.uniform(0.03, 0.1, size=(3, 1, 1)).astype(np.float32) * wave
    img = img + rng.normal(0, 0.03, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 1)


def _regime_sizes(rng: np.random.Generator, regime: str, side: int) -> list[int]:
    """Box sides (px, largest first) of the digits of one image of ``regime``."""
    spec, sizes = SCENE_REGIMES[regime], []
    while spec is not None:
        lo, hi = spec["count"]
        for _ in range(int(rng.integers(lo, hi + 1))):
            sizes.append(max(8, int(round(rng.uniform(*spec["size"]) * side))))
        spec = spec.get("extra")
    return sorted(sizes, reverse=True)


def make_digit_scenes(
    digits: np.ndarray, digit_labels: np.ndarray, n_images: int, side: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[list[int]], list[str]]:
    """Scenes of five scale regimes: only large digits, only small ones, mixed, crowded, sparse.

    Each image belongs to one regime of :data:`SCENE_REGIMES` (each once in every block of
    five images, in a fixed random order), so the scales that matter — coarse context for a 45-px digit, fine detail for
    eleven 12-px ones — differ from image to image and a good route depends on the image.
    Digits (strokes thickened by a 3×3 max filter) are pasted largest first at random
    positions (overlaps avoided where possible) in a light colour on a darker coloured
    texture. Labels: 0 background, ``d+1`` for digit ``d`` where the digit's (resized) ink is
    > 0.5, 255 on the blurry edge (0.2–0.5), where the class is ambiguous. Deterministic in
    ``seed``. Returns uint8 images ``N×3×side×side``, uint8 labels ``N×side×side``, each
    image's digit box sides (px) and its regime.
    """
    rng = np.random.default_rng(seed)
    pool = torch.from_numpy(digits.astype(np.float32) / 255)[:, None]
    # Thicken the strokes (3×3 max filter) so that even the small digits keep visible ink.
    pool = F.max_pool2d(pool, 3, stride=1, padding=1)
    resized: dict[int, np.ndarray] = {}

    def ink_of(d: int, s: int) -> np.ndarray:
        if s not in resized:
            resized[s] = F.interpolate(pool, size=(s, s), mode="bilinear", antialias=True, align_corners=False)[
                :, 0
            ].numpy()
        return resized[s][d]

    names = list(SCENE_REGIMES)
    # Every block of five images holds each regime once, in a random order from its own
    # stream, so a prefix of the scenes (num_images) is the same scenes and stays balanced.
    order = np.random.default_rng(seed + 1)
    blocks = -(-n_images // len(names))
    regimes = [names[i] for _ in range(blocks) for i in order.permutation(len(names))][:n_images]
    images = np.zeros((n_images, 3, side, side), np.uint8)
    labels = np.zeros((n_images, side, side), np.uint8)
    object_sizes: list[list[int]] = []
    for k in range(n_images):
        img = _texture(rng, side)
        lab = np.zeros((side, side), np.uint8)
        occupied = np.zeros((side, side), bool)
        placed = []
        for s in _regime_sizes(rng, regimes[k], side):  # large digits first, smaller ones on top
            s = min(s, side)
            for _ in range(20):
                r, c = rng.integers(0, side - s + 1, size=2)
                if not occupied[r : r + s, c : c + s].any():
                    break
            occupied[r : r + s, c : c + s] = True
            d = int(rng.integers(len(digits)))
            ink = ink_of(d, s)
            colour = rng.uniform(0.75, 1.0, 3).astype(np.float32)  # light ink on a darker texture
            patch = img[:, r : r + s, c : c + s]
            img[:, r : r + s, c : c + s] = patch * (1 - ink) + colour[:, None, None] * ink
            sub = lab[r : r + s, c : c + s]
            sub[(ink > 0.2) & (ink <= 0.5)] = IGNORE_INDEX
            sub[ink > 0.5] = int(digit_labels[d]) + 1
            placed.append(s)
        images[k] = np.round(img * 255).astype(np.uint8)
        labels[k] = lab
        object_sizes.append(placed)
    return images, labels, object_sizes, regimes


@functools.lru_cache(maxsize=1)
def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    from dynn.data.images import _mnist5k_arrays  # parsed once per process, shared

    x, y = _mnist5k_arrays()
    return x.reshape(len(x), -1), y


@functools.lru_cache(maxsize=8)
def _digit_scene_split(split: str, side: int, n_images: int):
    x, y = _mnist5k()
    idx = split_indices(len(y), (0.7, 0.1, 0.2))[split]  # test scenes use unseen digits
    digits = x.reshape(-1, 28, 28)[idx]
    split_seed = SPLIT_SEED * 1009 + {"train": 1, "val": 2, "test": 3}[split]  # fixed per split
    images, labels, sizes, regimes = make_digit_scenes(digits, y[idx], n_images, side, split_seed)
    return torch.from_numpy(images), torch.from_numpy(labels), sizes, regimes


@register_dataset("digit_scenes", embedded=True)
def digit_scenes(
    split: str = "train",
    *,
    resolution: int | None = None,
    augment: bool | None = None,
    num_images: int | None = None,
    whole_image: bool = True,
) -> SegmentationArrays:
    """Synthetic scenes of five scale regimes from the embedded ``mnist5k`` digits (see :func:`make_digit_scenes`).

    11 classes (background + 10 digits); 2,000/200/400 images by default (``num_images``
    overrides, taking a prefix), ``resolution`` the image side (default 64). Train/val/test
    scenes are made from disjoint digit images and are the same for every run seed.
    ``whole_image`` is accepted for symmetry with the real sets (a scene is always whole).
    Per image: ``object_sizes`` (box side of each digit, px) and ``regimes``.
    """
    side = int(resolution or 64)
    if side < 16:
        raise DataError(f"parameter 'resolution' (crop_size) = {side}: digit_scenes needs at least 16 pixels")
    n = int(num_images or DIGIT_SCENE_COUNTS[split])
    images, labels, sizes, regimes = _digit_scene_split(split, side, n)
    return SegmentationArrays(
        images,
        labels,
        classes=["background"] + [str(d) for d in range(10)],
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        augment=(split == "train") if augment is None else augment,
        hflip=False,
        name="digit_scenes",
        object_sizes=sizes,
        regimes=regimes,
    )


# ------------------------------------------------------------------ real datasets on disk
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Whole-image evaluation pads each image to a multiple of this (a network that halves the
# resolution five times needs it for its coarsest scale to line up with the finer ones).
WHOLE_IMAGE_MULTIPLE = 32


class PairedSegmentation(Dataset):
    """Image/label file pairs with the usual segmentation augmentation.

    Train: random rescale in ``scale_range``, random ``crop×crop`` crop (padded with 0 /
    255 when the image is smaller), horizontal flip. Eval with ``whole_image`` (the
    default, as the official evaluation does): the whole image at full resolution, padded
    at the bottom and right to a multiple of :data:`WHOLE_IMAGE_MULTIPLE` (image 0, label
    255, so the padding counts for nothing) — images differ in size, so evaluate them one
    by one. Eval with ``whole_image=False``: the centre ``crop×crop`` crop (padded likewise).
    """

    per_item = ("image_files", "target_files")

    def __init__(
        self,
        images: list[str],
        targets: list[str],
        *,
        classes: list[str],
        crop: int,
        augment: bool,
        label_map: np.ndarray | None = None,
        scale_range=(0.5, 2.0),
        name: str = "",
        whole_image: bool = True,
        val_fraction: float | None = None,
    ):
        self.image_files, self.target_files = list(images), list(targets)
        self.whole_image = bool(whole_image) and not augment
        self.val_fraction = val_fraction  # the held-out part of the official training set (val split)
        self.classes, self.num_classes = list(classes), len(classes)
        self.ignore_index = IGNORE_INDEX
        self.crop, self.augment, self.label_map, self.scale_range = crop, augment, label_map, scale_range
        self.mean = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(-1, 1, 1)
        self.input_shape = (3, crop, crop)
        self.name = name
        self.object_sizes = None

    def __len__(self) -> int:
        return len(self.image_files)

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        image = np.asarray(Image.open(self.image_files[index]).convert("RGB"), dtype=np.uint8)
        target = np.asarray(Image.open(self.target_files[index]), dtype=np.uint8)
        if target.ndim == 3:
            target = target[..., 0]
        if self.label_map is not None:
            target = self.label_map[target]
        return torch.from_numpy(image.copy()).permute(2, 0, 1).float().div_(255), torch.from_numpy(target.copy()).long()

    def __getitem__(self, index: int):
        x, y = self._load(index)
        if self.whole_image:
            m = WHOLE_IMAGE_MULTIPLE
            h, w = y.shape
            x, y = _pad_to(x, y, (-(-h // m) * m, -(-w // m) * m))
            return (x - self.mean) / self.std, y
        crop = self.crop
        if self.augment:
            lo, hi = self.scale_range
            scale = float(torch.empty(()).uniform_(lo, hi))
            h, w = max(1, int(round(y.shape[0] * scale))), max(1, int(round(y.shape[1] * scale)))
            x = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            y = F.interpolate(y[None, None].float(), size=(h, w), mode="nearest")[0, 0].long()
        x, y = _pad_to(x, y, (crop, crop))
        h, w = y.shape
        if self.augment:
            i = int(torch.randint(0, h - crop + 1, ()))
            j = int(torch.randint(0, w - crop + 1, ()))
        else:
            i, j = (h - crop) // 2, (w - crop) // 2
        x, y = x[:, i : i + crop, j : j + crop], y[i : i + crop, j : j + crop]
        if self.augment and torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return (x - self.mean) / self.std, y


def _pad_to(x: torch.Tensor, y: torch.Tensor, size: tuple[int, int]):
    """Pad image (0) and label (255) at the bottom and right to at least ``size``."""
    ph, pw = max(0, size[0] - y.shape[0]), max(0, size[1] - y.shape[1])
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
        y = F.pad(y, (0, pw, 0, ph), value=IGNORE_INDEX)
    return x, y


def _split_files(files: list, targets: list, split: str, val_fraction: float):
    """``test``: the official validation files; ``train``/``val``: a fixed split of the official
    training files, ``val_fraction`` of them held out as ``val``."""
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction = {val_fraction!r}: expected a fraction in [0, 1)")
    if split == "test":
        return files, targets
    idx = split_indices(len(files), (1 - val_fraction, val_fraction, 0.0))[split]
    return [files[i] for i in idx], [targets[i] for i in idx]


VOC_CLASSES = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


@register_dataset("voc")
def voc(
    split: str = "train",
    *,
    data_root=None,
    resolution: int | None = None,
    augment: bool | None = None,
    val_fraction: float = 0.1,
    year: str = "2012",
    scale_range=(0.5, 2.0),
    whole_image: bool = True,
) -> PairedSegmentation:
    """PASCAL VOC segmentation through ``torchvision.datasets.VOCSegmentation`` (21 classes).

    ``train``/``val``: fixed slices of ``ImageSets/Segmentation/train.txt`` (``val_fraction``
    of it held out as ``val``, default 10 %); ``test``: the official ``val.txt``.
    ``resolution`` is the training crop side (default 512); evaluation splits give whole
    images (``whole_image``, see :class:`PairedSegmentation`).
    """
    import torchvision

    layout, how = CATALOG["voc"].layout.replace("VOC2012", f"VOC{year}"), CATALOG["voc"].remedy
    root = Path(data_root).expanduser()  # checked by get_dataset
    try:
        base = torchvision.datasets.VOCSegmentation(
            str(root), year=year, image_set="val" if split == "test" else "train", download=False
        )
    except (RuntimeError, FileNotFoundError, ValueError) as err:
        raise DataError(f"parameter 'data_root' = {str(data_root)!r}: {err}; expected layout: {layout}. {how}") from err
    images, targets = _split_files(base.images, base.targets, split, val_fraction)
    return PairedSegmentation(
        images,
        targets,
        classes=VOC_CLASSES,
        crop=int(resolution or 512),
        augment=(split == "train") if augment is None else augment,
        scale_range=scale_range,
        name="voc",
        whole_image=whole_image,
        val_fraction=val_fraction,
    )


def cityscapes_label_map() -> tuple[np.ndarray, list[str]]:
    """Look-up table Cityscapes ``labelIds`` → the 19 training ids (others → 255)."""
    import torchvision

    lut = np.full(256, IGNORE_INDEX, np.uint8)
    names = {}
    for c in torchvision.datasets.Cityscapes.classes:
        if 0 <= c.id < 256 and 0 <= c.train_id < 255:
            lut[c.id] = c.train_id
            names[c.train_id] = c.name
    return lut, [names[i] for i in sorted(names)]


@register_dataset("cityscapes")
def cityscapes(
    split: str = "train",
    *,
    data_root=None,
    resolution: int | None = None,
    augment: bool | None = None,
    val_fraction: float = 0.1,
    scale_range=(0.5, 2.0),
    whole_image: bool = True,
) -> PairedSegmentation:
    """Cityscapes fine annotations through ``torchvision.datasets.Cityscapes`` (19 classes).

    ``train``/``val``: fixed slices of the official train split (``val_fraction`` of it held
    out as ``val``, default 10 %); ``test``: the official val split. ``resolution`` is the
    training crop side (official 768); evaluation splits give whole 1024×2048 images
    (``whole_image``, as the official evaluation), see :class:`PairedSegmentation`.
    """
    import torchvision

    layout, how = CATALOG["cityscapes"].layout, CATALOG["cityscapes"].remedy
    root = Path(data_root).expanduser()  # checked by get_dataset
    try:
        base = torchvision.datasets.Cityscapes(
            str(root), split="val" if split == "test" else "train", mode="fine", target_type="semantic"
        )
    except (RuntimeError, FileNotFoundError, ValueError) as err:
        raise DataError(f"parameter 'data_root' = {str(data_root)!r}: {err}; expected layout: {layout}. {how}") from err
    if not base.images:
        raise DataError(
            f"parameter 'data_root' = {str(data_root)!r}: no *_leftImg8bit.png images found; "
            f"expected layout: {layout}. {how}"
        )
    targets = [t[0] if isinstance(t, (list, tuple)) else t for t in base.targets]
    images, targets = _split_files(base.images, targets, split, val_fraction)
    lut, classes = cityscapes_label_map()
    return PairedSegmentation(
        images,
        targets,
        classes=classes,
        crop=int(resolution or 768),
        augment=(split == "train") if augment is None else augment,
        label_map=lut,
        scale_range=scale_range,
        name="cityscapes",
        whole_image=whole_image,
        val_fraction=val_fraction,
    )
