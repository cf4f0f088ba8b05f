"""Backbones by name and MACs measured by torch.utils.flop_counter against known counts."""

import pytest
import torch

import dynn
from dynn.flops import count_macs, macs_by_module, measure_latency
from dynn import models
from dynn.models import create


def test_torchvision_resnets_match_published_macs():
    x = torch.randn(1, 3, 224, 224)
    assert count_macs(create("resnet50").eval(), x) / 1e9 == pytest.approx(4.089, abs=1e-3)
    assert count_macs(create("resnet18").eval(), x) / 1e9 == pytest.approx(1.814, abs=1e-3)


def test_cifar_resnet110_matches_blockdrop_count():
    # BlockDrop's README: 5.06e8 FLOPs counting 2 per multiply-add.
    macs = count_macs(create("cifar_resnet110").eval(), torch.randn(1, 3, 32, 32))
    assert macs * 2 / 1e8 == pytest.approx(5.06, abs=0.01)


@pytest.mark.parametrize("depth", [8, 14, 20, 32, 56])
def test_cifar_resnet_structure(depth):
    model = create(f"cifar_resnet{depth}", num_classes=7)
    assert len(model.blocks) == 3 * (depth - 2) // 6
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert model.stage_index.count(0) == (depth - 2) // 6


def test_option_a_shortcut_has_no_weights_and_b_has():
    a = create("cifar_resnet20", shortcut="A")
    b = create("cifar_resnet20", shortcut="B")
    assert sum(p.numel() for p in a.blocks[3].shortcut.parameters()) == 0
    assert sum(p.numel() for p in b.blocks[3].shortcut.parameters()) > 0
    with pytest.raises(ValueError, match="6n\\+2"):
        create("cifar_resnet", depth=21)
    with pytest.raises(ValueError, match="unknown model.*cifar_resnet20"):
        create("resnet_20")


@pytest.mark.parametrize("size", [7, 12, 28, 30])
def test_zero_pad_shortcut_works_on_any_input_size(size):
    model = create("cifar_resnet8", shortcut="A").eval()
    assert model(torch.randn(2, 3, size, size)).shape == (2, 10)


def test_block_forward_is_shortcut_plus_residual():
    model = create("cifar_resnet8").eval()
    block = model.blocks[1]
    x = torch.randn(2, 16, 32, 32)
    assert torch.allclose(block(x), torch.relu(block.shortcut(x) + block.residual(x)))


def test_breakdown_sums_to_total_and_counts_only_what_runs():
    model = create("cifar_resnet20").eval()
    x = torch.randn(1, 3, 32, 32)
    table = macs_by_module(model, x)
    parts = table["stem"] + sum(table[f"blocks.{i}"] for i in range(len(model.blocks))) + table["fc"]
    assert parts == table[""] == count_macs(model, x)

    # Running fewer blocks is counted as fewer MACs: the counter sees what executed.
    def half(inp):
        h = model.stem(inp)
        for i, b in enumerate(model.blocks):
            h = b(h) if i % 2 == 0 else b.shortcut(h)
        return model.forward_head(h)

    assert count_macs(half, x) < table[""]


def test_latency_is_measured():
    lat = measure_latency(create("cifar_resnet8").eval(), torch.randn(1, 3, 32, 32), min_run_time=0.05)
    assert lat.median_ms > 0 and lat.runs >= 1 and lat.device == "cpu" and lat.threads >= 1
    assert "M" in dynn.flops.format_macs(2.5e7)


@pytest.mark.parametrize("name", ["cifar_resnet20", "resnet50", "resnext101_32x4d", "preresnet18"])
def test_residual_view_recomposes_the_backbone_exactly(name):
    from dynn.models import residual as R

    model = models.create(name, num_classes=10).eval()
    view = models.residual_view(model)
    x = torch.randn(2, 3, 32, 32)
    h = view.stem_and_pool(x)
    for block in view.blocks:
        if not isinstance(block, R.preresnet.PreActBasicBlock | R.preresnet.PreActBottleneck):
            assert torch.allclose(R.pre_activation(block, h), R.shortcut(block, h) + R.residual(block, h))
        h = R.activation(block)(R.pre_activation(block, h))
    with torch.no_grad():
        assert torch.allclose(view.head(h), model(x), atol=1e-4)
    assert len(view.block_names) == len(view.stage_index) == view.num_blocks
    names = dict(model.named_modules())
    assert all(n in names for n in view.block_names)


def test_residual_view_refuses_other_models():
    with pytest.raises(TypeError, match="residual view needs"):
        models.residual_view(torch.nn.Linear(2, 2))


def test_registry_prefixes_and_duplicates():
    from dynn.models.registry import register_model

    @register_model(prefix="toyfamily")
    def tiny(num_classes=10):
        return torch.nn.Linear(4, num_classes)

    assert models.list_models(prefix="toyfamily") == ["toyfamily.tiny"]
    assert models.create("toyfamily.tiny", num_classes=3).out_features == 3
    with pytest.raises(ValueError, match="registered twice"):
        register_model(tiny, prefix="toyfamily")


def test_light_model_names_are_the_names_the_registry_serves():
    """Parameter checks choose from ``dynn.model_names`` before torch loads: every name there
    must build, and the CIFAR family there must be the whole registered family."""
    from dynn import model_names

    registered = set(models.list_models())
    assert set(model_names.CIFAR_RESNETS + model_names.TORCHVISION_NAMES) <= registered
    cifar_family = {n for n in registered if n.startswith("cifar_resnet") and n != "cifar_resnet"}
    assert cifar_family == set(model_names.CIFAR_RESNETS)
