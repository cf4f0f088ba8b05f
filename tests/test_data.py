"""Datasets: embedded sets, deterministic splits, and real on-disk formats through tiny fakes."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from dynn.data import DataError, get_dataset, make_loader
from dynn.data.registry import split_indices


def test_mnist5k_splits_are_disjoint_deterministic_and_cover_everything():
    sizes = {}
    seen = []
    for split in ("train", "val", "test"):
        ds = get_dataset("mnist5k", split, seed=3)
        sizes[split] = len(ds)
        seen.append(set(split_indices(5000, (0.7, 0.1, 0.2), 3)[split].tolist()))
    assert sizes == {"train": 3500, "val": 500, "test": 1000}
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert len(seen[0] | seen[1] | seen[2]) == 5000
    a = get_dataset("mnist5k", "test", seed=3)
    b = get_dataset("mnist5k", "test", seed=3)
    c = get_dataset("mnist5k", "test", seed=4)
    assert torch.equal(a.targets, b.targets) and not torch.equal(a.targets, c.targets)


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
        return {"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
                "labels": rng.integers(0, 10, n).tolist(), "filenames": ["x"] * n}

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
    with pytest.raises(DataError, match="data_root.*does not exist.*cifar-10-batches-py"):
        get_dataset("cifar10", "train", data_root=str(tmp_path / "nope"))
    with pytest.raises(DataError, match="data_root.*is empty"):
        get_dataset("cifar100", "train", data_root="")
    with pytest.raises(DataError, match="has no cifar-10-batches-py"):
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
    with pytest.raises(DataError, match="has no val/ folder.*train/<class_name>"):
        get_dataset("imagefolder", "test", data_root=str(tmp_path))


def test_loader_order_is_fixed_by_seed():
    ds = get_dataset("digits", "test")
    first = [next(iter(make_loader(ds, 16, shuffle=True, seed=s)))[1] for s in (1, 1, 2)]
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], first[2])
