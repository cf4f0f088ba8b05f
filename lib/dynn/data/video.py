"""Video datasets for AR-Net (AdaSkip): clips of T frames, each given at several resolutions.

Every item is ``(frames, label)`` where ``frames`` is a tuple with one float tensor
``T×C×r×r`` per resolution ``r`` in ``reso_list``: the largest is the crop itself, the
others are *nearest*-downsampled from it, as the official data loader does
(``TSNDataSet.rescale_proc``). The default DataLoader collation turns that into a list of
``B×T×C×r×r`` tensors, the ``input_list`` of :class:`dynn.adaskip.AdaSkipNet`.

Two sets:

- ``moving_digits`` (embedded, no download): synthetic clips built deterministically from
  the real ``mnist5k`` digits. A clip shows one digit; its frames differ in how informative
  they are (blank, noise, the digit *small* and moving, the digit *large*), so that an
  adaptive policy has something to learn: skip the blank/noise frames, use a low
  resolution on large digits, the high resolution on small ones.
- ``video_frames``: the official format, a folder of extracted frames per video plus a list
  file ``relative_path num_frames label`` per split, with TSN segment sampling.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dynn.data.catalog import CATALOG
from dynn.data.registry import SPLIT_SEED, DataError, register_dataset

FRAME_TYPES = ("blank", "noise", "small digit", "large digit")
INFORMATIVE = (False, False, True, True)  # does a frame of this type show the digit?
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


# ---------------------------------------------------------------- TSN segment sampling
def tsn_indices(num_frames: int, num_segments: int, *, random_shift: bool, rng=None) -> np.ndarray:
    """0-based frame indices of TSN's segment sampling (``ops/dataset.py``).

    Training (``random_shift``): the video is cut into ``num_segments`` equal segments and
    one frame is drawn at random inside each. Test: the centre frame of each segment.
    Videos shorter than ``num_segments`` repeat their last frame.
    """
    if num_frames <= 0:
        raise ValueError("a video needs at least one frame")
    if random_shift:
        rng = rng if rng is not None else np.random
        average = num_frames // num_segments
        if average > 0:
            return np.arange(num_segments) * average + rng.randint(average, size=num_segments)
        if num_frames > num_segments:
            return np.sort(rng.randint(num_frames, size=num_segments))
    elif num_frames > num_segments:
        tick = num_frames / float(num_segments)
        return np.array([int(tick / 2.0 + tick * x) for x in range(num_segments)])
    return np.array(list(range(num_frames)) + [num_frames - 1] * (num_segments - num_frames))


def multi_resolution(frames: torch.Tensor, reso_list) -> tuple[torch.Tensor, ...]:
    """``T×C×H×W`` crop → one tensor per resolution (nearest downsampling, as official)."""
    out = []
    for r in reso_list:
        if frames.shape[-1] == r and frames.shape[-2] == r:
            out.append(frames)
        else:
            out.append(F.interpolate(frames, size=(r, r), mode="nearest"))
    return tuple(out)


def _check_reso_list(reso_list) -> list[int]:
    reso_list = [int(r) for r in reso_list]
    if not reso_list or any(r <= 0 for r in reso_list):
        raise DataError(f"parameter 'reso_list' = {reso_list!r}: expected positive sizes, largest first")
    if sorted(reso_list, reverse=True) != reso_list:
        raise DataError(
            f"parameter 'reso_list' = {reso_list!r}: sizes must be in decreasing order "
            "(the first is the full crop, the others are downsampled from it)"
        )
    return reso_list


# ---------------------------------------------------------------- moving_digits
def _draw_types(rng, clip_frames: int, probs, persist: float, large_clip_fraction: float) -> np.ndarray:
    """Frame types of one clip: a sticky Markov chain; only some clips ever show the digit large."""
    probs = np.asarray(probs, dtype=float)
    if rng.random() >= large_clip_fraction:  # this clip shows its digit small only
        probs = probs.copy()
        probs[2] += probs[3]
        probs[3] = 0.0
    while True:
        types = [rng.choice(4, p=probs)]
        for _ in range(clip_frames - 1):
            types.append(types[-1] if rng.random() < persist else rng.choice(4, p=probs))
        types = np.array(types)
        if (types >= 2).sum() >= max(1, clip_frames // 4):
            return types


def _scaled(digit: torch.Tensor, side: int) -> torch.Tensor:
    return F.interpolate(
        digit[None, None].float(), size=(side, side), mode="bilinear", antialias=True, align_corners=False
    )[0, 0]


def _render(rng, digit: torch.Tensor, types: np.ndarray, s: int) -> torch.Tensor:
    clip = torch.zeros(len(types), s, s)
    small = max(3, int(round(s * rng.uniform(*SMALL_DIGIT_SIZE))))
    small_digit = _scaled(digit, small)
    pos = rng.uniform(0, s - small, size=2)
    vel = rng.uniform(1, 3, size=2) * rng.choice([-1, 1], size=2) * s / 32
    for t, kind in enumerate(types):
        if kind == 0:  # blank: faint sensor noise
            clip[t] = torch.from_numpy(rng.normal(0, 6, (s, s))).float().clamp(0, 255)
        elif kind == 1:  # noise: bright blobs the size of a stroke
            blobs = torch.from_numpy((rng.random((1, 1, s // 4, s // 4)) > 0.7) * rng.uniform(100, 255)).float()
            clip[t] = (
                F.interpolate(blobs, size=(s, s), mode="bilinear", align_corners=False)[0, 0]
                + torch.from_numpy(rng.normal(0, 20, (s, s))).float()
            )
        elif kind == 2:  # small moving digit
            y, x = (int(round(v)) for v in pos)
            clip[t, y : y + small, x : x + small] = small_digit[: s - y, : s - x]
        else:  # large digit with jitter
            side = max(3, int(round(s * rng.uniform(*LARGE_DIGIT_SIZE))))
            y, x = rng.integers(0, s - side + 1, size=2)
            clip[t, y : y + side, x : x + side] = _scaled(digit, side)
        pos = pos + vel  # the small digit keeps moving even while not shown
        for d in range(2):
            if pos[d] < 0 or pos[d] > s - small:
                vel[d] = -vel[d]
                pos[d] = float(np.clip(pos[d], 0, s - small))
    # numpy for the rounding: torch's threaded elementwise ops stall on a busy machine
    return torch.from_numpy(np.clip(np.rint(clip.numpy()), 0, 255).astype(np.uint8))


@functools.lru_cache(maxsize=1)
def _mnist_all() -> tuple[torch.Tensor, torch.Tensor]:
    from dynn.data.images import _mnist5k_arrays  # the digits behind dynn's mnist5k, parsed once

    x, y = _mnist5k_arrays()
    return torch.from_numpy(x[:, 0].copy()), torch.from_numpy(y.copy()).long()


def _mnist_digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits of ``mnist5k``'s split ``split`` (the same fixed split), parsed once per process."""
    from dynn.data.images import EMBEDDED_FRACTIONS
    from dynn.data.registry import split_indices

    images, labels = _mnist_all()
    idx = torch.from_numpy(split_indices(len(labels), EMBEDDED_FRACTIONS)[split])
    return images[idx], labels[idx]


# Sizes as fractions of the frame. A small digit at 16 px is 5-6 px wide (readable); at 8 px
# it is 2-3 px (a blob): only clips that also show the digit large can be read at low resolution.
SMALL_DIGIT_SIZE = (0.45, 0.55)
LARGE_DIGIT_SIZE = (0.85, 1.0)
TYPE_PROBS = (0.3, 0.1, 0.35, 0.25)  # blank, noise, small digit, large digit (when the clip has large frames)
PERSIST = 0.75  # probability that a frame keeps the previous frame's type: long blank / redundant stretches
LARGE_CLIP_FRACTION = 0.5  # share of clips that ever show their digit large


@functools.lru_cache(maxsize=16)
def generate_clips(
    split: str,
    size: int,
    clip_frames: int,
    num_clips: int,
    type_probs=TYPE_PROBS,
    persist: float = PERSIST,
    large_clip_fraction: float = LARGE_CLIP_FRACTION,
):
    """The ``moving_digits`` generator; returns ``(clips N×T×H×W uint8, frame_types N×T, targets N)``.

    Clip ``i`` depends only on ``(split, i)`` (its own random stream from the fixed
    :data:`~dynn.data.registry.SPLIT_SEED`; no run seed), so a prefix of a
    split is the same clips whatever ``num_clips`` is, and the result is cached per process
    (a notebook evaluating several numbers of frames generates the test clips once).
    """
    digits, labels = _mnist_digits(split)
    split_seed = {"train": 11, "val": 23, "test": 37}[split]
    clips, types, targets = [], [], []
    for i in range(num_clips):
        rng = np.random.default_rng([SPLIT_SEED, split_seed, i])
        d = int(rng.integers(0, len(digits)))
        kinds = _draw_types(rng, clip_frames, type_probs, persist, large_clip_fraction)
        clips.append(_render(rng, digits[d], kinds, size))
        types.append(kinds)
        targets.append(int(labels[d]))
    return torch.stack(clips), np.stack(types), torch.tensor(targets)


class MovingDigits(Dataset):
    """Synthetic clips of one MNIST digit with frames of varying informativeness.

    The generator (:func:`generate_clips`, deterministic in the split and the clip index;
    the same clips for every run seed):

    1. Each clip takes one real digit image of the split (train clips use the ``mnist5k``
       training digits, test clips the test digits) and its class is the label.
    2. Frame types follow a sticky Markov chain over ``FRAME_TYPES``: with probability
       ``PERSIST`` (0.75) a frame keeps the previous frame's type, otherwise a type is drawn
       from ``TYPE_PROBS`` — so long runs of blank frames and of redundant copies exist,
       which skip-2/skip-4 can exploit. Only ``LARGE_CLIP_FRACTION`` (half) of the clips ever
       show their digit large; the others show it small only. Clips with fewer than a
       quarter informative frames are redrawn.
    3. ``blank``: a black frame with faint noise. ``noise``: bright random blobs (clutter the
       size of a digit stroke). ``small digit``: the digit scaled to 45–55 % of the frame,
       moving on a straight line that bounces off the borders — 7–9 px wide at 16 px, 3–4 px
       at 8 px, so it needs a high-resolution backbone. ``large digit``: the digit filling
       85–100 % of the frame with a small jitter — a low resolution suffices.

    Measured with ResNet-8 TSNs (12 epochs, 8 frames, 300 test clips): 73.7 % clip accuracy
    at 16 px against 30.3 % at 8 px, so resolution matters on most clips.

    ``frame_types`` (clips × ``clip_frames``) is kept so a notebook can ask what a policy
    did on each kind of frame (:meth:`sampled_frame_types`).
    """

    per_item = ("clips", "frame_types", "targets")

    def __init__(
        self, split: str, *, num_clips: int, clip_frames: int, num_segments: int, reso_list, channels: int, train: bool
    ):
        self.reso_list = _check_reso_list(reso_list)
        self.size = self.reso_list[0]
        self.clip_frames, self.num_segments = int(clip_frames), int(num_segments)
        self.channels, self.train = int(channels), bool(train)
        self.classes = [str(c) for c in range(10)]
        self.num_classes = 10
        self.input_shape = (self.num_segments, self.channels, self.size, self.size)
        self.clips, self.frame_types, self.targets = generate_clips(split, self.size, self.clip_frames, int(num_clips))
        self.mean, self.std = 0.5, 0.5

    def __len__(self) -> int:
        return len(self.targets)

    def segment_indices(self, index: int) -> np.ndarray:
        """Training: TSN random offsets (torch's RNG, so DataLoader seeding applies); test: centred."""
        if self.train:
            gen = np.random.RandomState(int(torch.randint(0, 2**31 - 1, ()).item()))
            return tsn_indices(self.clip_frames, self.num_segments, random_shift=True, rng=gen)
        return tsn_indices(self.clip_frames, self.num_segments, random_shift=False)

    def sampled_frame_types(self) -> np.ndarray:
        """Frame type (index into ``FRAME_TYPES``) of each test-time sampled frame: clips × T."""
        idx = tsn_indices(self.clip_frames, self.num_segments, random_shift=False)
        return self.frame_types[:, idx]

    def __getitem__(self, index: int):
        frames = self.clips[index][self.segment_indices(index)].float().div_(255)
        frames = ((frames - self.mean) / self.std)[:, None]
        if self.channels != 1:
            frames = frames.expand(-1, self.channels, -1, -1).contiguous()
        return multi_resolution(frames, self.reso_list), int(self.targets[index])


SPLIT_CLIPS = {"train": 600, "val": 100, "test": 300}


@register_dataset("moving_digits", embedded=True)
def moving_digits(
    split: str = "train",
    *,
    reso_list=(32, 24, 16, 12),
    num_segments: int = 8,
    clip_frames: int = 16,
    channels: int | None = 3,
    num_clips: int | None = None,
    augment: bool | None = None,
) -> MovingDigits:
    """Synthetic digit clips (see :class:`MovingDigits`); 600/100/300 clips by default.

    ``reso_list`` gives the resolutions of every item (the first is the frame size),
    ``clip_frames`` the length of a generated clip and ``num_segments`` how many frames TSN
    sampling takes from it (random offsets in training unless ``augment=False``). Digits of
    each split come from the matching (fixed) ``mnist5k`` split; ``num_clips`` takes a prefix.
    """
    if clip_frames < 1 or num_segments < 1:
        raise DataError(f"clip_frames = {clip_frames!r} and num_segments = {num_segments!r} must be ≥ 1")
    n = SPLIT_CLIPS[split] if num_clips is None else int(num_clips)
    train = (split == "train") if augment is None else bool(augment)
    return MovingDigits(
        split,
        num_clips=n,
        clip_frames=clip_frames,
        num_segments=num_segments,
        reso_list=reso_list,
        channels=channels or 3,
        train=train,
    )


# ---------------------------------------------------------------- video_frames
VIDEO_LAYOUT = CATALOG["video_frames"].layout
VIDEO_HOW = CATALOG["video_frames"].remedy


IMAGE_TEMPLATES = ("img_{:05d}.jpg", "image_{:05d}.jpg")  # TSN's, and AR-Net's ActivityNet / FCVID frames


def parse_video_list(list_file: Path) -> list[tuple[str, int, list[int]]]:
    """``(relative_path, num_frames, labels)`` per video of a list file, in either layout:

    - TSN's, space-separated: ``relative_path num_frames label``;
    - AR-Net's ActivityNet / FCVID lists, comma-separated and multi-label:
      ``relative_path,num_frames,label[,label...]``.
    """
    records = []
    for n, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        comma = "," in line
        parts = [p.strip() for p in line.split(",")] if comma else line.split()
        if len(parts) < 3:
            raise DataError(
                f"{list_file}:{n}: expected 'relative_path num_frames label' or "
                f"'relative_path,num_frames,label[,label...]', got {line!r}; expected layout: {VIDEO_LAYOUT}"
            )
        try:
            if comma:
                path, frames, labels = parts[0], int(parts[1]), [int(x) for x in parts[2:] if x]
            else:
                path, frames, labels = " ".join(parts[:-2]), int(parts[-2]), [int(parts[-1])]
        except ValueError as err:
            raise DataError(f"{list_file}:{n}: num_frames and labels must be integers, got {line!r}") from err
        if frames < 1 or not labels:
            raise DataError(f"{list_file}:{n}: needs num_frames ≥ 1 and at least one label, got {line!r}")
        records.append((path, frames, labels))
    if not records:
        raise DataError(f"{list_file} lists no videos; expected layout: {VIDEO_LAYOUT}")
    return records


class VideoFrames(Dataset):
    """The official frame-folder formats: a list file + one folder of frames per video.

    A video's folder is ``<root>/<relative_path>`` or, as in AR-Net's ActivityNet / FCVID
    trees, ``<root>/frames/<relative_path>``; frames are ``img_00001.jpg`` (TSN) or
    ``image_00001.jpg`` (AR-Net), found automatically unless ``image_tmpl`` is given.
    ``num_classes`` comes from the *training* list (every split has the same classes). On a
    multi-label set (a video with several labels) ``multi_label`` is true and ``multi_hot``
    (videos × classes) holds the labels for mAP; an item's label is its first label, which
    is what the cross-entropy of training uses.
    """

    per_item = ("records", "targets", "multi_hot", "frame_dirs", "templates")

    def __init__(
        self,
        root: Path,
        list_file: Path,
        *,
        num_segments: int,
        reso_list,
        train: bool,
        image_tmpl: str | None = None,
        channels: int = 3,
        num_classes: int | None = None,
    ):
        self.root, self.list_file = root, list_file
        self.reso_list = _check_reso_list(reso_list)
        self.num_segments, self.train, self.channels = int(num_segments), bool(train), int(channels)
        self.records = parse_video_list(list_file)
        self.frame_dirs, self.templates = [], []
        for n, (path, _, _) in enumerate(self.records, 1):
            folder, tmpl = self._locate(path, image_tmpl)
            if folder is None:
                raise DataError(
                    f"{list_file}:{n}: frame {root / path}/{(image_tmpl or IMAGE_TEMPLATES[0]).format(1)} does not "
                    f"exist (nor under {root / 'frames' / path}); expected layout: {VIDEO_LAYOUT}"
                )
            self.frame_dirs.append(folder)
            self.templates.append(tmpl)
        labels = [label for r in self.records for label in r[2]]
        self.num_classes = int(num_classes) if num_classes else max(labels) + 1
        if max(labels) >= self.num_classes:
            raise DataError(
                f"{list_file}: label {max(labels)} but the training list has only {self.num_classes} classes"
            )
        self.classes = [str(c) for c in range(self.num_classes)]
        self.targets = torch.tensor([r[2][0] for r in self.records])
        self.multi_label = any(len(r[2]) > 1 for r in self.records)
        self.multi_hot = np.zeros((len(self.records), self.num_classes), dtype=np.float32)
        for i, r in enumerate(self.records):
            self.multi_hot[i, r[2]] = 1
        self.input_shape = (self.num_segments, channels, self.reso_list[0], self.reso_list[0])
        mean, std = IMAGENET_STATS if channels == 3 else ((0.449,), (0.226,))
        self.mean, self.std = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)

    def _locate(self, path: str, image_tmpl: str | None):
        for folder in (self.root / path, self.root / "frames" / path):
            for tmpl in (image_tmpl,) if image_tmpl else IMAGE_TEMPLATES:
                if (folder / tmpl.format(1)).exists():
                    return folder, tmpl
        return None, None

    def __len__(self) -> int:
        return len(self.records)

    def _transform(self, images: list) -> torch.Tensor:
        """Same crop for every frame of a clip: multi-scale random crop + flip in training
        (GroupMultiScaleCrop), resize to 256/224 of the crop + centre crop at test."""
        import torchvision.transforms.functional as TF

        crop = self.reso_list[0]
        scale = crop * 256 // 224
        images = [TF.resize(im, scale) for im in images]
        w, h = images[0].size
        if self.train:
            side = int(min(w, h) * float(np.random.choice([1, 0.875, 0.75, 0.66])))
            top, left = np.random.randint(0, h - side + 1), np.random.randint(0, w - side + 1)
            flip = np.random.rand() < 0.5
            images = [TF.resize(TF.crop(im, top, left, side, side), [crop, crop]) for im in images]
            if flip:
                images = [TF.hflip(im) for im in images]
        else:
            images = [TF.center_crop(im, [crop, crop]) for im in images]
        frames = torch.stack([TF.to_tensor(im) for im in images])
        return (frames - self.mean) / self.std

    def __getitem__(self, index: int):
        from PIL import Image

        _, num_frames, labels = self.records[index]
        folder, tmpl = self.frame_dirs[index], self.templates[index]
        if self.train:
            gen = np.random.RandomState(int(torch.randint(0, 2**31 - 1, ()).item()))
            idx = tsn_indices(num_frames, self.num_segments, random_shift=True, rng=gen)
        else:
            idx = tsn_indices(num_frames, self.num_segments, random_shift=False)
        mode = "RGB" if self.channels == 3 else "L"
        images = []
        for i in idx:  # official templates count from 1
            file = folder / tmpl.format(int(i) + 1)
            if not file.exists():
                file = folder / tmpl.format(1)
            images.append(Image.open(file).convert(mode))
        return multi_resolution(self._transform(images), self.reso_list), labels[0]


@register_dataset("video_frames")
def video_frames(
    split: str = "train",
    *,
    data_root=None,
    reso_list=(224, 168, 112, 84),
    num_segments: int = 16,
    image_tmpl: str | None = None,
    channels: int | None = 3,
    augment: bool | None = None,
) -> VideoFrames:
    """Extracted frames + list files (ActivityNet/FCVID as the official code prepares them).

    ``num_classes`` is read from ``train.txt`` (the largest label + 1) for every split.
    """
    root = Path(data_root).expanduser()  # existence and list files checked by get_dataset
    name = {"train": "train.txt", "val": "val.txt", "test": "test.txt"}[split]
    list_file = root / name
    if split == "test" and not list_file.exists():
        list_file = root / "val.txt"
    if not list_file.exists():
        raise DataError(
            f"parameter 'data_root' = {str(data_root)!r} has no {list_file.name}; expected layout: "
            f"{VIDEO_LAYOUT}. {VIDEO_HOW}"
        )
    train = (split == "train") if augment is None else bool(augment)
    train_list = root / "train.txt"
    num_classes = None
    if train_list.exists():
        num_classes = max(label for r in parse_video_list(train_list) for label in r[2]) + 1
    return VideoFrames(
        root,
        list_file,
        num_segments=num_segments,
        reso_list=reso_list,
        train=train,
        image_tmpl=image_tmpl,
        channels=channels or 3,
        num_classes=num_classes,
    )
