"""The real-data recipes (params/blockdrop/cifar10.yaml, imagenet.yaml) really run: each preset
is validated against the notebook's parameter rules and its three stages run for one epoch on
tiny fake data written in the real on-disk layout (CIFAR-10 python batches, an ImageFolder of
PNGs), with only the sizes overridden (images, epochs, batch, resolution)."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import dynn.blockdrop as bd
from dynn.params import check, load_param_set

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(
    train_limit=8, val_limit=4, test_limit=4, pretrain_epochs=1, curriculum_epochs=1, finetune_epochs=1,
    batch_size=4, curriculum_batch_size=4, device="cpu",
)  # fmt: skip


def notebook_defaults() -> dict:
    """The parameters cell of notebooks/blockdrop.ipynb as a dict of its literal defaults."""
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "blockdrop.ipynb", 4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    tree = ast.parse(cell.source)
    return {node.target.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.AnnAssign)}


def write_fake_cifar10(root: Path, n_train: int = 20, n_test: int = 10) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(n):
        return {"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, n).tolist()}

    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(n_train // 5)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(n_test)))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))


def write_fake_imagefolder(root: Path, per_class: int = 6) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("n01440764", "n01443537"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d / f"{i}.png")


def run_preset(p: dict, run_dir: Path) -> bd.model.BlockDrop:
    """The notebook's three stage calls with the preset's values (as notebooks/blockdrop.ipynb makes them)."""
    shared = dict(dataset=p["dataset"], data_root=p["data_root"], resolution=p["resolution"],
                  train_limit=p["train_limit"], depth=p["depth"], seed=p["seed"], progress=False)  # fmt: skip
    policy = dict(val_limit=p["val_limit"], policy_depth=p["policy_depth"], policy_downsample=p["policy_downsample"],
                  alpha=p["alpha"])  # fmt: skip
    bd.train.pretrain(run_dir=str(run_dir / "pretrain"), device="cpu", **shared, pretrained=p["pretrained"],
                      epochs=p["pretrain_epochs"], lr=p["lr_pretrain"], batch_size=p["batch_size"])  # fmt: skip
    bd.train.curriculum(run_dir=str(run_dir / "curriculum"), device="cpu", **shared, **policy,
                        main_checkpoint=str(run_dir / "pretrain" / "pretrain.ckpt"),
                        policy_pretrained=p["policy_pretrained"], epochs=p["curriculum_epochs"],
                        blocks_per_epoch=p["curriculum_step"], gamma=p["curriculum_gamma"], beta=p["beta"],
                        lr=p["lr_policy"], lr_step=p["lr_policy_step"], batch_size=p["curriculum_batch_size"])  # fmt: skip
    return bd.train.finetune(run_dir=str(run_dir / "finetune"), device="cpu", **shared, **policy,
                             curriculum_checkpoint=str(run_dir / "curriculum" / "curriculum.ckpt"),
                             epochs=p["finetune_epochs"], gamma=p["gamma"], lr=p["lr_finetune"],
                             lr_policy=p["lr_finetune_policy"], lr_step=p["lr_finetune_step"],
                             batch_size=p["batch_size"])  # fmt: skip


@pytest.mark.slow
def test_cifar10_preset_runs_on_fake_cifar_batches(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    write_fake_cifar10(tmp_path / "data")
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # fake files, real loader
    preset = load_param_set("blockdrop", "cifar10")
    params = check({**notebook_defaults(), **preset, **FAST, "data_root": str(tmp_path / "data")}, bd.parameters.SPEC)
    assert (params["depth"], params["policy_depth"], params["gamma"]) == (110, 8, 10.0)
    model = run_preset(params, tmp_path / "run")
    assert model.num_blocks == 54
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.slow
def test_imagenet_preset_runs_on_a_fake_imagefolder_with_a_pretrained_main_network_and_policy(tmp_path):
    import torchvision

    write_fake_imagefolder(tmp_path / "imagenet")
    preset = load_param_set("blockdrop", "imagenet")
    assert (preset["depth"], preset["policy_depth"], preset["policy_downsample"], preset["gamma"]) == (101, 10, 2, 5.0)
    assert preset["resolution"] == 224 and preset["dataset"] == "imagefolder"
    # Where the user has them: torchvision-format weights of the main ResNet-101 and of ResNet-18.
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet101(num_classes=2).state_dict(), tmp_path / "resnet101.pt")
    resnet18 = torchvision.models.resnet18()
    torch.save(resnet18.state_dict(), tmp_path / "resnet18.pt")
    overrides = {**FAST, "resolution": 32, "data_root": str(tmp_path / "imagenet"),
                 "pretrained": str(tmp_path / "resnet101.pt"), "policy_pretrained": str(tmp_path / "resnet18.pt")}  # fmt: skip
    params = check({**notebook_defaults(), **preset, **overrides}, bd.parameters.SPEC)
    model = run_preset({**params, "curriculum_epochs": 0}, tmp_path / "run")
    # pretrained: the pretrain stage trains nothing, its checkpoint holds the given weights
    main_state = torch.load(tmp_path / "run" / "pretrain" / "pretrain.ckpt", weights_only=False)["model"]
    given = torch.load(tmp_path / "resnet101.pt")
    assert all(torch.equal(main_state[k], given[k]) for k in ("conv1.weight", "layer3.22.conv3.weight", "fc.weight"))
    assert model.num_blocks == 33
    # The policy started from ResNet-18's stem and first blocks (curriculum of 0 epochs keeps them;
    # finetuning for one epoch moved them, so compare the curriculum checkpoint).
    state = torch.load(tmp_path / "run" / "curriculum" / "curriculum.ckpt", weights_only=False)["model"]
    assert torch.equal(state["policy.features.conv1.weight"], resnet18.conv1.weight.detach())
    assert torch.equal(state["policy.features.layer3.0.conv2.weight"], resnet18.layer3[0].conv2.weight.detach())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 2)


def test_policy_weights_copy_matching_tensors_only_and_refuse_a_wrong_file(tmp_path):
    import torchvision

    resnet18 = torchvision.models.resnet18()
    torch.save(resnet18.state_dict(), tmp_path / "r18.pt")
    policy = bd.model.PolicyNetwork(33, depth=10, downsample=2)
    fc_before = policy.features.fc.weight.detach().clone()
    copied = bd.train.load_policy_weights(policy, tmp_path / "r18.pt")
    assert "conv1.weight" in copied and "layer4.0.conv1.weight" in copied
    assert not any(k.startswith(("fc.", "layer1.1")) for k in copied)
    assert torch.equal(policy.features.layer2[0].conv1.weight, resnet18.layer2[0].conv1.weight)
    assert torch.equal(policy.features.fc.weight, fc_before)
    torch.save({"something": torch.zeros(3)}, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="policy_pretrained.*no tensor matches"):
        bd.train.load_policy_weights(policy, tmp_path / "wrong.pt")
