"""The real-data recipes (params/sdpoint/cifar10.yaml, imagenet*.yaml): each is valid, is the
paper's setting, and runs for a few steps on tiny fake data written in the dataset's real
on-disk layout (CIFAR python batches, ImageFolder PNGs), sizes overridden to stay fast."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import dynn.sdpoint as sdp
from dynn.params import from_namespace
from dynn.sdpoint import parameters

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ["cifar10", "imagenet", "imagenet_resnet50"]
# what the paper trains with; the agent and multi-point training are the fork's, not the paper's
PAPER_SETTING = {"ratios": [0.5, 0.75], "legacy_official": False, "agent": "none", "multi_point_training": False}


@pytest.fixture(autouse=True)
def _one_thread():
    """The deep recipe networks on a shared 2-core machine: one thread avoids oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _recipe(name: str) -> dict:
    return yaml.safe_load((ROOT / "params" / "sdpoint" / f"{name}.yaml").read_text())


def _write_fake_cifar10(root: Path, n_train: int = 20, n_test: int = 10) -> None:
    """CIFAR-10's python version: pickled dicts in cifar-10-batches-py/."""
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
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(n_train // 5)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(n_test)))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))


def _write_fake_imagefolder(root: Path, per_class: int = 5) -> None:
    """ImageNet's layout: train/<class>/*.png and val/<class>/*.png."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("n01440764", "n01443537"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d / f"{i}.png")


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_is_valid_and_the_papers_setting(name, tmp_path):
    recipe = _recipe(name)
    assert {k: recipe[k] for k in PAPER_SETTING} == PAPER_SETTING
    assert (recipe["epochs"], recipe["lr"], recipe["weight_decay"]) == (115, 0.1, 0.0001)
    assert parameters.official_milestones(recipe["epochs"]) == [40, 75, 105]
    # the notebook's own validation (DataRoot checks the layout: give it a fake one)
    (_write_fake_cifar10 if recipe["dataset"] == "cifar10" else _write_fake_imagefolder)(tmp_path)
    defaults = {
        "base_width": 16,
        "bn_batches": 1,
        "agent_episodes": 1,
        "reward": "linear",
        "cost_weight": 0.5,
        "agent_bn_batches": 1,
        "agent_test_configs": 1,
        "train_limit": 0,
        "val_limit": 0,
        "test_limit": 0,
        "download": False,
        "nprocs": 1,
        "interactive": False,
        "seed": 0,
        "run_dir": "",
        "figures_dir": "",
    }
    namespace = {**defaults, **recipe, "data_root": str(tmp_path), "device": "cpu"}
    params = parameters.check_depth(from_namespace(namespace, parameters.SPEC))
    assert params["arch"] == recipe["arch"]


def test_imagenet_recipes_are_resnext101_and_resnet50():
    assert (_recipe("imagenet")["arch"], _recipe("imagenet")["depth"]) == ("resnext", 101)
    assert (_recipe("imagenet_resnet50")["arch"], _recipe("imagenet_resnet50")["depth"]) == ("resnet", 50)
    assert parameters.backbone_name("resnext", 101) == "resnext101_32x4d"


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_trains_and_evaluates_on_fake_data_in_the_real_layout(name, tmp_path, monkeypatch):
    recipe = _recipe(name)
    if recipe["dataset"] == "cifar10":
        import torchvision.datasets.cifar as tv_cifar

        _write_fake_cifar10(tmp_path / "data")
        # the fake batches cannot match the published MD5 sums; everything else is the real loader
        monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    else:
        _write_fake_imagefolder(tmp_path / "data")
    data = dict(dataset=recipe["dataset"], data_root=str(tmp_path / "data"), resolution=32)
    # the recipe's network, points, ratios and optimiser; a few steps on tiny inputs
    model = sdp.train.train(
        run_dir=str(tmp_path / "run"),
        device="cpu",
        arch=recipe["arch"],
        depth=recipe["depth"],
        base_width=16,
        ratios=recipe["ratios"],
        legacy_official=recipe["legacy_official"],
        multi_point=recipe["multi_point_training"],
        train_limit=4,
        epochs=1,
        batch_size=2,
        lr=recipe["lr"],
        weight_decay=recipe["weight_decay"],
        seed=0,
        progress=False,
        **data,
    )
    assert model.ratios == (0.5, 0.75) and model.sampling == "single"
    test = sdp.evaluate.in_memory(sdp.train.load_data(split="test", limit=4, **data))
    assert model(test[0][0][None]).shape == (1, 10 if recipe["dataset"] == "cifar10" else 2)
    calibration = [sdp.evaluate.example_batch(test, 4)]  # > 1 value per channel even at 1x1 maps
    last = model.num_blocks - 1
    for config in (model.full_config(), model.instance_config("stem", 0.5), model.instance_config(last, 0.75)):
        acc = sdp.evaluate.configuration_accuracy(model, config, {"test": test}, calibration=calibration)["test"]
        assert len(acc["correct"]) == 4 and 0 <= acc["top1"] <= 100
    shape = tuple(test[0][0].shape)
    assert model.macs(model.instance_config("stem", 0.5), shape) < model.macs(model.full_config(), shape)
