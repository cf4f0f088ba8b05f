"""Datasets: embedded sets, deterministic splits, and real on-disk formats through tiny fakes."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dynn.data import DataError, catalog, check_source, dataset_names, get_dataset, is_embedded, make_loader
from dynn.data.registry import SPLIT_SEED, registered_names, split_indices


def test_mnist5k_splits_are_fixed_disjoint_and_cover_everything():
    sizes = {}
    seen = []
    for split in ("train", "val", "test"):
        ds = get_dataset("mnist5k", split)
        sizes[split] = len(ds)
        seen.append(set(split_indices(5000, (0.7, 0.1, 0.2))[split].tolist()))
    assert sizes == {"train": 3500, "val": 500, "test": 1000}
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert len(seen[0] | seen[1] | seen[2]) == 5000
    a = get_dataset("mnist5k", "test")
    b = get_dataset("mnist5k", "test")
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    assert sorted(seen[2]) == sorted(split_indices(5000, (0.7, 0.1, 0.2), SPLIT_SEED)["test"].tolist())


@pytest.mark.parametrize("name", ["mnist5k", "digits", "cluttered_digits", "moving_digits", "digit_scenes"])
def test_builders_take_no_seed(name):
    with pytest.raises(TypeError, match="seed.*fixed per dataset"):
        get_dataset(name, "test", seed=1)


def test_resolution_channels_and_normalisation():
    ds = get_dataset("mnist5k", "test", resolution=32, channels=3)
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and ds.input_shape == (3, 32, 32)
    assert 0 <= y < 10 and ds.num_classes == 10
    batch = torch.stack([ds[i][0] for i in range(256)])
    assert abs(float(batch.mean())) < 0.3 and 0.6 < float(batch.std()) < 1.4  # roughly standardised
    digits = get_dataset("digits", "train")
    assert digits[0][0].shape == (1, 8, 8) and len(digits) == 1258


def test_augmentation_only_on_train_by_default():
    train = get_dataset("digits", "train", resolution=16)
    test = get_dataset("digits", "test", resolution=16)
    assert train.augment and not test.augment
    assert torch.equal(test[0][0], test[0][0])


def test_unknown_dataset_names_the_parameter():
    with pytest.raises(DataError, match="parameter 'dataset'.*allowed"):
        get_dataset("mnist", "train")


def _write_fake_cifar10(root, n_train=20, n_test=10):
    """The python-version layout: pickled dicts (written by Python 2, hence str keys)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(n):
        return {
            "data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, n).tolist(),
            "filenames": ["x"] * n,
        }

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(n_train // 5), f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(n_test), f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)


def test_cifar10_from_the_real_python_batch_format(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    _write_fake_cifar10(tmp_path)
    # The fake files cannot match the published MD5 sums; everything else is the real loader.
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    train = get_dataset("cifar10", "train", data_root=str(tmp_path), val_fraction=0.2)
    val = get_dataset("cifar10", "val", data_root=str(tmp_path), val_fraction=0.2)
    test = get_dataset("cifar10", "test", data_root=str(tmp_path))
    assert (len(train), len(val), len(test)) == (16, 4, 10)
    assert train[0][0].shape == (3, 32, 32) and train.num_classes == 10


def test_cifar_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="'data_root' = .*does not exist.*cifar-10-batches-py.*-p download True"):
        get_dataset("cifar10", "train", data_root=str(tmp_path / "nope"))
    with pytest.raises(DataError, match="'data_root' is empty.*cifar-100-python.*-p download True"):
        get_dataset("cifar100", "train", data_root="")
    with pytest.raises(DataError, match="wrong layout.*no cifar-10-batches-py.*expected layout"):
        get_dataset("cifar10", "train", data_root=str(tmp_path))


def test_imagefolder_layout(tmp_path):
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(5):
                Image.fromarray(np.full((20, 24, 3), 40 * i, np.uint8)).save(d / f"{i}.png")
    train = get_dataset("imagefolder", "train", data_root=str(tmp_path), resolution=16, val_fraction=0.2)
    val = get_dataset("imagefolder", "val", data_root=str(tmp_path), resolution=16, val_fraction=0.2)
    test = get_dataset("imagefolder", "test", data_root=str(tmp_path), resolution=16)
    assert (len(train), len(val), len(test)) == (8, 2, 10)
    x, y = test[0]
    assert x.shape == (3, 16, 16) and test.classes == ["cat", "dog"]
    (tmp_path / "val").rename(tmp_path / "validation")
    with pytest.raises(DataError, match="wrong layout.*no val.*train/<class_name>"):
        get_dataset("imagefolder", "test", data_root=str(tmp_path))


def test_loader_order_is_fixed_by_seed():
    ds = get_dataset("digits", "test")
    first = [next(iter(make_loader(ds, 16, shuffle=True, seed=s)))[1] for s in (1, 1, 2)]
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], first[2])


# ---------------------------------------------------------------- catalog and check_source
def test_catalog_imports_no_torch():
    code = (
        "import sys, dynn.data, dynn.data.catalog; "
        "dynn.data.check_source('mnist5k', ''); dynn.data.dataset_names(); dynn.data.is_embedded('digits'); "
        "heavy = [m for m in ('torch', 'torchvision', 'PIL', 'sklearn', 'mlxtend') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_catalog_covers_the_registry():
    assert registered_names() == dataset_names()
    for name in dataset_names():
        src = catalog.CATALOG[name]
        assert src.task in catalog.TASKS and src.remedy
        assert src.embedded == is_embedded(name)
        assert bool(src.layout) != src.embedded  # on-disk sets say what data_root must hold
    assert {n for n in dataset_names() if catalog.CATALOG[n].downloadable} == {"cifar10", "cifar100"}


def test_dataset_names_filter_by_task():
    classification = dataset_names("classification")
    assert {"mnist5k", "cluttered_digits", "cifar10", "imagefolder"} <= set(classification)
    assert "digit_scenes" not in classification and "moving_digits" not in classification
    assert dataset_names("video") == ["moving_digits", "video_frames"]
    assert dataset_names("segmentation") == ["cityscapes", "digit_scenes", "voc"]
    assert sorted(classification + dataset_names("video") + dataset_names("segmentation")) == dataset_names()
    with pytest.raises(DataError, match="task"):
        dataset_names("detection")


def test_check_source_names_parameter_layout_and_remedy(tmp_path):
    with pytest.raises(DataError, match="parameter 'dataset' = 'mnist'.*allowed: .*cluttered_digits"):
        check_source("mnist", "")
    cases = {"": "'data_root' is empty", str(tmp_path / "nope"): "does not exist", str(tmp_path): "wrong layout"}
    for root, what in cases.items():
        with pytest.raises(DataError) as err:
            check_source("cifar10", root)
        message = str(err.value)
        assert what in message and "parameter 'data_root'" in message and "'cifar10'" in message
        assert "cifar-10-batches-py" in message  # the layout
        assert "-p download True" in message and "cs.toronto.edu" in message  # the remedies
    for root in cases:  # torchvision will download: nothing to check
        check_source("cifar10", root, download=True)
    (tmp_path / "cifar-10-batches-py").mkdir()
    for f in ("data_batch_1", "test_batch"):
        (tmp_path / "cifar-10-batches-py" / f).write_bytes(b"")
    check_source("cifar10", str(tmp_path))
    check_source("mnist5k", "")  # embedded: data_root ignored
    check_source("mnist5k", str(tmp_path / "nope"))


def test_check_source_never_offers_a_download_that_does_not_exist(tmp_path):
    for name in ("imagefolder", "video_frames", "voc", "cityscapes"):
        with pytest.raises(DataError) as err:
            check_source(name, str(tmp_path))
        assert "download True" not in str(err.value) and "download=True" not in str(err.value)
        assert "parameter 'data_root'" in str(err.value) and "expected layout" in str(err.value)
        with pytest.raises(DataError, match="'download' = True.*cannot be downloaded"):
            check_source(name, str(tmp_path), download=True)
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no val"):
        check_source("imagefolder", str(tmp_path))
    (tmp_path / "val").mkdir()
    check_source("imagefolder", str(tmp_path))


def test_cifar_download_flag_reaches_torchvision(tmp_path, monkeypatch):
    import torchvision

    calls = {}

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            calls.update(root=root, train=train, download=download)
            raise RuntimeError("offline")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    with pytest.raises(DataError, match="offline"):
        get_dataset("cifar10", "test", data_root=str(tmp_path / "new"), download=True)
    assert calls == {"root": str(tmp_path / "new"), "train": False, "download": True}
    assert (tmp_path / "new").is_dir()


# ---------------------------------------------------------------- limit
def test_limit_keeps_the_first_items_and_every_attribute():
    full = get_dataset("cluttered_digits", "test", channels=3)
    part = get_dataset("cluttered_digits", "test", channels=3, limit=50)
    assert type(part) is type(full) and len(part) == 50
    for attr in ("classes", "num_classes", "input_shape", "name"):
        assert getattr(part, attr) == getattr(full, attr)
    assert torch.equal(part.mean, full.mean) and torch.equal(part.std, full.std)
    assert torch.equal(part.images, full.images[:50]) and torch.equal(part.targets, full.targets[:50])
    np.testing.assert_array_equal(part.difficulty, full.difficulty[:50])
    assert list(part.difficulty_level) == list(full.difficulty_level[:50])
    assert torch.equal(part[7][0], full[7][0])
    assert len(full) == 2000  # the full split is untouched
    assert len(get_dataset("digits", "test", limit=10_000)) == 359  # a limit above the size keeps all
    clips = get_dataset("moving_digits", "test", reso_list=[16, 8], num_clips=12, limit=5)
    assert len(clips) == 5 and clips.frame_types.shape[0] == 5 and clips.sampled_frame_types().shape[0] == 5
    scenes = get_dataset("digit_scenes", "test", num_images=8, limit=3)
    assert len(scenes) == 3 and len(scenes.object_sizes) == 3 and scenes.num_classes == 11


def test_limit_wraps_datasets_that_cannot_cut_themselves():
    from dynn.data.registry import LimitedDataset, head

    class Plain(torch.utils.data.Dataset):
        classes, num_classes = ["a", "b"], 2

        def __len__(self):
            return 10

        def __getitem__(self, i):
            return torch.tensor([float(i)]), i % 2

    part = head(Plain(), 4)
    assert isinstance(part, LimitedDataset) and len(part) == 4 and part.num_classes == 2
    assert [part[i][1] for i in range(4)] == [0, 1, 0, 1]


# ---------------------------------------------------------------- cluttered_digits
def test_cluttered_digits_splits_are_fixed_disjoint_and_large_enough():
    from dynn.data import cluttered

    sets = {s: get_dataset("cluttered_digits", s, augment=False) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in sets.items()} == {"train": 5000, "val": 1000, "test": 2000}
    assert len(sets["test"]) >= 2000
    again = get_dataset("cluttered_digits", "test", augment=False)
    assert torch.equal(again.images, sets["test"].images)
    # the source digits are split before rendering: no test image shows a training digit
    src = {s: set(split_indices(5000, cluttered.SOURCE_FRACTIONS)[s].tolist()) for s in sets}
    assert not (src["train"] & src["test"]) and not (src["train"] & src["val"]) and not (src["val"] & src["test"])
    train_images = {bytes(x) for x in sets["train"].images.numpy()}
    assert not any(bytes(x) in train_images for x in sets["test"].images.numpy())
    x, y = sets["test"][0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and 0 <= y < 10
    pixels = sets["train"].images.float() / 255  # the fixed normalisation matches the training split
    assert abs(float(pixels.mean()) - cluttered.MEAN) < 0.005 and abs(float(pixels.std()) - cluttered.STD) < 0.005
    for ds in sets.values():  # every class appears in every split
        assert torch.bincount(ds.targets, minlength=10).min() > len(ds) // 20


def test_cluttered_digits_difficulty_varies_and_means_something():
    ds = get_dataset("cluttered_digits", "test", resolution=24, channels=3)
    assert ds[0][0].shape == (3, 24, 24) and ds.input_shape == (3, 24, 24)
    d = ds.difficulty
    assert d.shape == (len(ds),) and d.dtype.kind == "f" and 0 <= d.min() and d.max() <= 1 and d.std() > 0.15
    levels = ds.difficulty_level
    assert set(levels) == {"easy", "medium", "hard"}
    assert all((levels == lvl).mean() > 0.15 for lvl in ("easy", "medium", "hard"))
    easy, hard = levels == "easy", levels == "hard"
    assert ds.digit_side[easy].mean() > ds.digit_side[hard].mean() + 4  # hard: smaller digits,
    assert ds.clutter[hard].mean() > ds.clutter[easy].mean() + 2  # more fragments,
    assert ds.noise[hard].mean() > 2 * ds.noise[easy].mean()  # more noise
    assert d[easy].max() < d[hard].min()
