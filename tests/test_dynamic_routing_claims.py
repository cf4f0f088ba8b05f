"""Dynamic Routing: behaviour the claims rest on, the claim rules, static rivals and the
real-data presets on tiny fake trees in the real layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import yaml

from dynn.data import get_dataset
from dynn.dynamic_routing import claims as dc
from dynn.dynamic_routing import train
from dynn.dynamic_routing.evaluate import (
    FIX,
    NARROW_FIX,
    RAW,
    STATIC_ROUTE,
    evaluate,
    gate_use_by_regime,
    modal_route,
    route_diversity,
    width_at_cost,
)
from dynn.dynamic_routing.model import DynamicRoutingNet, build_model
from dynn.dynamic_routing.parameters import SPEC
from dynn.dynamic_routing.train import RoutingStep, make_optimizer

ROOT = Path(__file__).resolve().parents[1]


def _randomise(model: DynamicRoutingNet, seed: int = 0, spread: float = 3.0) -> DynamicRoutingNet:
    """Random BN statistics and gates that differ between samples (some paths closed)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    for cell in model.cells:
        if cell.gate is not None:
            cell.gate.fc.weight.data = torch.randn(cell.gate.fc.weight.shape, generator=g) * spread
            cell.gate.fc.bias.data = torch.randn(cell.gate.fc.bias.shape, generator=g) * 0.5
    return model.eval()


# ------------------------------------------------------------------ behaviour
def _train_steps(budget_mu, steps: int = 12) -> float:
    """Mean expected cost / C_full on held-out scenes after ``steps`` steps from one init."""
    data = get_dataset("digit_scenes", "train", resolution=32, limit=48, augment=False)
    held_out = torch.stack([get_dataset("digit_scenes", "val", resolution=32, limit=16)[i][0] for i in range(16)])
    torch.manual_seed(0)
    model = build_model(data.num_classes, layers=2, init_channels=8, small_gate=True)
    opt = make_optimizer(model, 0.02, optimizer="adamw")
    step = RoutingStep(steps, budget_mu, budget_lambda=2.0, unupdate_rate=0.0)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(data), (8,), generator=g).tolist()
        batch = (torch.stack([data[i][0] for i in idx]), torch.stack([data[i][1] for i in idx]))
        opt.zero_grad()
        step(model, batch)["loss"].backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return float(model(held_out)["expected_cost"].mean()) / model.cost_table((32, 32)).full_cost


def test_a_tighter_budget_lowers_cost_after_a_few_steps():
    tight, loose, none = _train_steps(0.1), _train_steps(0.9), _train_steps(None)
    assert tight < loose - 0.1 and tight < none - 0.1  # the budget steers the cost, and by a lot
    assert abs(loose - none) < abs(none - tight)  # a loose budget barely moves it


def test_route_diversity_separates_dynamic_routes_from_one_static_route():
    data = get_dataset("digit_scenes", "test", resolution=32, limit=24)
    dynamic = _randomise(DynamicRoutingNet(data.num_classes, layers=3, init_channels=4), seed=3)
    ev = evaluate(dynamic, data, batch_size=8)
    div = route_diversity(ev["gates"])
    # a single static route would give one route, distance 0 and every image on it
    assert div["distinct_routes"] >= 3 and div["open_cell_distance"] > 0.02 and div["modal_share"] < 0.9
    route = modal_route(ev["gates"])
    static = DynamicRoutingNet(data.num_classes, layers=3, init_channels=4, using_gate=False, static_route=route)
    sev = evaluate(static.eval(), data, batch_size=8)
    sdiv = route_diversity(sev["gates"])
    assert sdiv["distinct_routes"] == 1 and sdiv["open_cell_distance"] == 0 and sdiv["modal_share"] == 1
    assert [[int(v > 0) for v in g[0]] for g in sev["gates"]] == route  # it runs exactly the route it was given
    # the claim: holds for the dynamic routes, not for the static one
    kw = dict(budgets={}, nodes=dynamic.nodes, object_sizes=np.arange(24.0), latency=None, latency_batch=1)
    row = {c["id"]: c for c in dc.paper_claims({"d": ev}, main_label="d", **kw)}["routes_differ_per_image"]
    srow = {c["id"]: c for c in dc.paper_claims({"s": sev}, main_label="s", **kw)}
    assert row["holds"] is True and srow["routes_differ_per_image"]["holds"] is not True
    assert srow["routes_follow_object_scale"]["holds"] is False  # a route that never varies follows nothing


def test_static_route_costs_what_it_runs_and_has_no_gates():
    data = get_dataset("digit_scenes", "test", resolution=32, limit=4)
    full = DynamicRoutingNet(data.num_classes, layers=3, init_channels=4, using_gate=False)
    route = [[1] * len(n.paths) for n in full.nodes]
    route[3] = [0] * len(full.nodes[3].paths)  # close one cell
    static = DynamicRoutingNet(data.num_classes, layers=3, init_channels=4, using_gate=False, static_route=route)
    ev = evaluate(static.eval(), data, batch_size=4)
    table = static.cost_table((32, 32))
    assert sum(table.gate) == 0
    assert (ev["real_cost"] < table.network_fix_cost).all() and not ev["open_cells"][:, 3].any()
    with pytest.raises(ValueError, match="paths per cell"):
        DynamicRoutingNet(data.num_classes, layers=3, init_channels=4, using_gate=False, static_route=route[:-1])


def test_narrow_network_fix_is_the_narrowest_at_least_as_costly():
    costs = {
        c: build_model(11, layers=3, init_channels=c, gated=False).cost_table((32, 32)).network_fix_cost
        for c in range(2, 13)
    }
    target = 0.5 * costs[12]
    c = width_at_cost(target, num_classes=11, layers=3, max_channels=12, size=(32, 32))
    assert costs[c] >= target > costs[c - 1]


def test_gate_use_by_regime_groups_images_by_scene_regime():
    data = get_dataset("digit_scenes", "test", resolution=32, limit=10)
    model = _randomise(DynamicRoutingNet(data.num_classes, layers=2, init_channels=4), seed=1)
    table = gate_use_by_regime(data, model.nodes, evaluate(model, data, batch_size=5))
    assert sorted(table["regime"]) == sorted(["crowded", "large", "mixed", "small", "sparse"])
    assert (table["images"] == 2).all()
    large, small = (table.set_index("regime").loc[r, "object_size_px"] for r in ("large", "small"))
    assert large > 2 * small


# ------------------------------------------------------------------ claim rules
def _confusions(correct: np.ndarray, k: int = 3) -> np.ndarray:
    """Per-image confusion matrices: 100 pixels of class i % k, ``correct[i]`` of them right."""
    out = np.zeros((len(correct), k, k))
    for i, c in enumerate(correct):
        t = i % k
        out[i, t, t] = c
        out[i, t, (t + 1) % k] = 100 - c
    return out


def _eval(correct, cost, fix_cost=100.0, full_cost=80.0):
    n = len(correct)
    return {
        "confusions": _confusions(np.asarray(correct)),
        "real_cost": np.full(n, float(cost)) + np.linspace(0, 1, n),
        "network_fix_cost": np.full(n, fix_cost),
        "full_cost": np.full(n, full_cost),
        "gates": [np.ones((n, 1))],
    }


def _latency(rows):
    return pd.DataFrame(
        [
            {"label": label, "path": path, "batch": b, "median_ms": m, "best_ms": m * 0.95, "spread_ms": m * 0.1}
            for label, path, b, m in rows
        ]
    )


def test_claim_rules_decide_from_intervals():
    rng = np.random.default_rng(0)
    n = 60
    good = rng.integers(85, 100, n)
    evals = {
        "Dynamic μ=0.2": _eval(good, 40),
        "Dynamic μ=0.5": _eval(good, 60),
        RAW: _eval(good, 95),
        FIX: _eval(good - 1, 100),  # Raw is 1 point ahead: non-inferior
        STATIC_ROUTE: _eval(good - 20, 40),  # far worse at the same cost: the dynamic network beats it
        NARROW_FIX: _eval(good, 41),  # identical quality: inconclusive, not a win
    }
    latency = _latency(
        [
            ("Dynamic μ=0.2", "skip", 1, 4.0),
            (FIX, "dense", 1, 10.0),
            ("Dynamic μ=0.2", "skip", 16, 9.0),
            (FIX, "dense", 16, 10.0),
        ]
    )
    rows = dc.paper_claims(
        evals,
        main_label="Dynamic μ=0.2",
        budgets={"Dynamic μ=0.2": 0.2, "Dynamic μ=0.5": 0.5},
        nodes=[],
        object_sizes=np.arange(float(n)),
        latency=latency,
        latency_batch=16,
    )
    by = {c["id"]: c for c in rows}
    assert by["cost_monotone_in_mu"]["holds"] is True
    assert by["dynamic_beats_static_route"]["holds"] is True and by["dynamic_beats_static_route"]["value"] > 10
    assert by["dynamic_beats_network_fix_narrow"]["holds"] is None
    assert by["raw_at_least_fix"]["holds"] is True
    assert by["real_cost_above_mu"]["holds"] is True  # (40 − 20) / 80 = 0.25 > 0.2
    assert by["skip_latency_tracks_macs_b1"]["holds"] is True  # 0.4 latency for 0.4 MACs: 1.0 (at most 1.1) ≤ 1.3
    assert by["skip_latency_tracks_macs_b16"]["holds"] is False  # 0.9 latency for 0.4 MACs
    for c in rows:
        assert set(c) >= {"id", "statement", "paper", "value", "ci", "holds", "rule"} and c["paper"]
    # a sweep where a larger μ does not cost more fails the monotonicity claim
    evals["Dynamic μ=0.5"] = _eval(good, 30)
    rows = dc.paper_claims(
        evals,
        main_label="Dynamic μ=0.2",
        budgets={"Dynamic μ=0.2": 0.2, "Dynamic μ=0.5": 0.5},
        nodes=[],
        object_sizes=np.arange(float(n)),
        latency=latency,
        latency_batch=16,
    )
    assert {c["id"]: c for c in rows}["cost_monotone_in_mu"]["holds"] is False


def test_miou_bootstrap_is_paired_and_centred_on_the_difference():
    rng = np.random.default_rng(1)
    a = _confusions(rng.integers(50, 100, 40))
    diff, lo, hi = dc.miou_bootstrap(a, a)
    assert diff == 0 and lo == 0 and hi == 0  # the same network: exactly no difference, every resample
    b = _confusions(rng.integers(50, 100, 40))
    diff, lo, hi = dc.miou_bootstrap(a, b)
    assert lo <= diff <= hi


# ------------------------------------------------------------------ real data presets
def _png(path, array, mode=None):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def _fake_cityscapes(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, city, n in (("train", "aachen", 4), ("val", "frankfurt", 2)):
        for k in range(n):
            stem = f"{city}_000000_00000{k}"
            _png(
                root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                rng.integers(0, 255, (48, 96, 3), dtype=np.uint8),
            )
            label = np.full((48, 96), 7, np.uint8)  # road (train id 0)
            label[:10], label[10:14] = 26, 0  # car (train id 13), unlabeled (ignored)
            _png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label, mode="L")


def _fake_voc(root: Path) -> None:
    base = root / "VOCdevkit" / "VOC2012"
    rng = np.random.default_rng(0)
    for split, items in {"train": ["a", "b", "c", "d"], "val": ["e", "f"]}.items():
        (base / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(items) + "\n")
        for i, n in enumerate(items):
            h, w = 40 + 8 * i, 50  # images of different sizes, as in VOC
            _png(base / "JPEGImages" / f"{n}.jpg", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            label = np.zeros((h, w), np.uint8)
            label[5:20, 5:20], label[20, :] = 15, 255
            _png(base / "SegmentationClass" / f"{n}.png", label, mode="L")


def _notebook_defaults() -> dict:
    """The notebook's parameters cell as a dict (literals only, by the house rules)."""
    import ast

    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "dynamic_routing.ipynb", 4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return {
        node.target.id: ast.literal_eval(node.value)
        for node in ast.parse(cell.source).body
        if isinstance(node, ast.AnnAssign)
    }


STAGE_ARGS = (
    "dataset data_root crop_size train_limit val_limit val_fraction layers init_channels drop_path_prob epochs "
    "batch_size optimizer lr weight_decay warmup_iters grad_clip stem_weights seed"
).split()


@pytest.mark.parametrize("preset, make_tree", [("cityscapes", _fake_cityscapes), ("voc", _fake_voc)])
def test_preset_runs_on_a_tiny_fake_tree_in_the_real_layout(preset, make_tree, tmp_path):
    """The preset's own settings (dataset, optimizer, budget, whole-image evaluation,
    held-out part), shrunk only in size, train and evaluate on the real layout."""
    from dynn.params import check

    make_tree(tmp_path / "data")
    preset_params = yaml.safe_load((ROOT / "params" / "dynamic_routing" / f"{preset}.yaml").read_text())
    assert preset_params["dataset"] == preset and 0 < preset_params["val_fraction"] < 1
    tiny = dict(
        data_root=str(tmp_path / "data"),
        crop_size=64,
        layers=1,
        init_channels=4,
        epochs=1,
        batch_size=3,  # the 3 training images in one batch (BatchNorm needs more than one value)
        warmup_iters=0,
        val_fraction=0.25,  # 1 of the 4 fake training images
        device="cpu",
    )
    params = check({**_notebook_defaults(), **preset_params, **tiny}, SPEC)
    stage = {k: params[k] for k in STAGE_ARGS}
    run_dir = str(tmp_path / "run")
    fix = train.train_fixed(run_dir=run_dir, device="cpu", progress=False, **stage)
    gated = dict(gate_bias=params["gate_bias"], small_gate=params["small_gate"], unupdate_rate=params["unupdate_rate"])
    dyn = train.train_dynamic(
        run_dir=run_dir,
        device="cpu",
        budget_mu=params["budget_mu"],
        budget_lambda=params["budget_lambda"],
        warm_checkpoint="",
        progress=False,
        **gated,
        **stage,
    )
    split = dict(data_root=params["data_root"], crop_size=64, val_fraction=params["val_fraction"])
    assert len(train.load_split(preset, "val", limit=0, **split)) == 1
    assert len(train.load_split(preset, "train", limit=0, **split)) == 3
    test = train.load_split(preset, "test", limit=0, **split)
    assert test.whole_image and len(test) == 2
    sizes = [tuple(test[i][0].shape[-2:]) for i in range(len(test))]
    assert all(h % 32 == 0 and w % 32 == 0 and h >= 40 and w >= 50 for h, w in sizes)  # whole images, padded
    for model in (fix, dyn):
        ev = evaluate(model, test, batch_size=8, device="cpu")
        assert ev["network_fix_cost"].tolist() == [model.cost_table(s).network_fix_cost for s in sizes]
        assert len(ev["confusions"]) == 2 and np.isfinite(ev["miou"])


def test_stem_weights_initialise_the_stem_and_mismatches_fail_clearly(tmp_path):
    source = build_model(11, layers=1, init_channels=8)
    path = tmp_path / "imagenet_stem.pt"
    torch.save({"state_dict": {f"stem.{k}": v for k, v in source.stem.state_dict().items()}}, path)
    target = build_model(11, layers=1, init_channels=8)
    loaded = train.load_stem_weights(target, str(path))
    assert loaded and all(
        torch.equal(a, b) for a, b in zip(source.stem.state_dict().values(), target.stem.state_dict().values())
    )
    with pytest.raises(ValueError, match="stem_weights.*shapes differ"):
        train.load_stem_weights(build_model(11, layers=1, init_channels=16), str(path))
