"""BlockDrop: the three forward paths agree, costs add up, rewards and the curriculum follow
the official code, the stages resume and reuse, DDP keeps ranks equal, and bad parameters
fail before training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import dynn
import dynn.blockdrop as bd
from dynn.models import cifar_resnet
from dynn.models.residual import shortcut


def _randomise_bn(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics so that a wrong path cannot pass by accident."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def _model(depth=14, policy_depth=8, res=32, downsample=1):
    model = bd.model.make_blockdrop(
        depth=depth, num_classes=10, policy_depth=policy_depth, policy_downsample=downsample
    )
    _randomise_bn(model)
    return model.eval()


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


# ---------------------------------------------------------------- the networks
def test_parameter_depths_are_the_depths_the_models_build():
    from dynn.blockdrop import parameters

    assert parameters.CIFAR_DEPTHS == cifar_resnet.DEPTHS
    assert set(parameters.MAIN_DEPTHS) == set(cifar_resnet.DEPTHS) | set(parameters.TORCHVISION_DEPTHS)
    assert all(f"resnet{d}" in dynn.models.list_models() for d in parameters.TORCHVISION_DEPTHS)
    for depth in (10, 18):
        assert depth in parameters.POLICY_DEPTHS and bd.model.PolicyNetwork(4, depth).num_blocks == 4


@pytest.mark.parametrize("depth,res", [(14, 32), (50, 64)])
def test_masked_skip_and_single_paths_agree(depth, res):
    model = _model(depth, policy_depth=8 if depth < 50 else 10, downsample=1 if depth < 50 else 2)
    main = model.main
    x = torch.randn(7, 3, res, res)
    policies = torch.bernoulli(torch.full((7, main.num_blocks), 0.5))
    policies[0] = 0  # every block dropped
    policies[1] = 1  # every block kept
    with torch.no_grad():
        masked = main.forward_masked(x, policies)
        skip = main.forward_skip(x, policies)
        single = torch.cat([main.forward_single(x[i : i + 1], policies[i]) for i in range(len(x))])
        full = main(x)
    assert torch.allclose(masked, skip, atol=1e-5, rtol=1e-4)
    assert torch.allclose(masked, single, atol=1e-5, rtol=1e-4)
    assert torch.allclose(full[1], skip[1], atol=1e-5, rtol=1e-4)  # all kept = the unmodified backbone
    assert not torch.allclose(full[0], skip[0], atol=1e-3)  # dropping blocks changes the output


def test_a_copied_network_runs_its_own_blocks():
    """The residual view is rebuilt on a copy's modules (a torchvision head is a closure)."""
    import copy

    model = _model(18, policy_depth=8)
    twin = copy.deepcopy(model)
    for p in twin.main.parameters():
        p.data.mul_(0.5)
    x, u = torch.randn(2, 3, 32, 32), torch.ones(2, model.num_blocks)
    with torch.no_grad():
        assert torch.allclose(twin.main.forward_skip(x, u), twin.main(x), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(twin.main.forward_skip(x, u), model.main.forward_skip(x, u), atol=1e-3)


def test_dropped_block_is_shortcut_without_relu():
    block = bd.model.make_main_network(20, 10).backbone.blocks[3]  # first block of stage 2: stride 2, zero-pad
    _randomise_bn(block)
    block.eval()
    x = torch.randn(2, 16, 8, 8)
    out = shortcut(block, x)
    assert out.shape == (2, 32, 4, 4)
    assert (out[:, 16:] == 0).all()  # zero-padded channels
    assert torch.allclose(out[:, :16], nn.functional.avg_pool2d(x, 2))
    assert (out < 0).any()  # no ReLU on a dropped block
    assert torch.allclose(bd.model.kept_block(block, x), block(x))  # kept block = the backbone's block
    # and the main network's dropped block is exactly that shortcut
    main = bd.model.make_main_network(8, 10).eval()
    z = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        h = main.view.stem_and_pool(z)
        expected = main.view.head(shortcut(main.view.blocks[2], main.view.blocks[1](main.view.blocks[0](h))))
        assert torch.allclose(main.forward_single(z, [1, 1, 0]), expected, atol=1e-6)


def test_real_skip_macs_equal_fixed_plus_kept_blocks():
    model = _model(20)
    costs = bd.evaluate.block_costs(model, (3, 32, 32))
    assert costs.full == dynn.flops.count_macs(model.main, torch.zeros(1, 3, 32, 32))
    assert len(costs.blocks) == model.num_blocks == 9 and (costs.blocks > 0).all()
    assert costs.fixed > 0 and costs.fixed + costs.blocks.sum() == costs.full
    assert costs.policy == dynn.flops.count_macs(model.policy, torch.zeros(1, 3, 32, 32))
    x = torch.randn(5, 3, 32, 32)
    u = torch.bernoulli(torch.full((5, 9), 0.5))
    measured = dynn.flops.count_macs(model.main.forward_skip, x, u)
    assert measured == pytest.approx(costs.macs(u, with_policy=False).sum())
    single = dynn.flops.count_macs(model.main.forward_single, x[:1], u[0])
    assert single == pytest.approx(costs.macs(u[:1], with_policy=False)[0])
    # the masked (official) path pays for every block somebody in the batch keeps
    masked = dynn.flops.count_macs(model.main.forward_masked, x, u)
    assert masked > measured


def test_bottleneck_costs_include_downsample_in_fixed_part():
    model = _model(50, policy_depth=10, downsample=2)
    costs = bd.evaluate.block_costs(model, (3, 64, 64))
    assert model.num_blocks == 16
    # the projection shortcut of each stage's first block runs whatever the policy says
    x = torch.randn(1, 3, 64, 64)
    none_kept = dynn.flops.count_macs(model.main.forward_single, x, [0] * 16)
    assert none_kept == costs.fixed
    table = dynn.flops.macs_by_module(model.main.backbone, x)
    downsample = sum(v for k, v in table.items() if k.endswith("downsample"))
    assert downsample > 0 and costs.fixed == table["conv1"] + table["fc"] + downsample


# ---------------------------------------------------------------- reward, curriculum, steps
def test_reward_and_bounded_probs():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    targets = torch.tensor([0, 0, 0])
    policy = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    r = bd.train.reward(logits, targets, policy, gamma=5)
    assert torch.allclose(r, torch.tensor([1 - 0.5**2, -5.0, 1.0]))
    s = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(bd.model.bounded_probs(s, 0.8), torch.tensor([0.2, 0.5, 0.8]))
    assert torch.equal(bd.model.greedy_policy(s), torch.tensor([0.0, 1.0, 1.0]))


def test_curriculum_forces_first_blocks_and_masks_them_out_of_the_loss():
    model = _model(20)
    bd.train.freeze(model.main)
    schedule = bd.train.Curriculum(blocks_per_epoch=2)
    schedule(model)  # epoch 0: the last 2 decisions are learned
    assert int(model.learned_blocks) == 2 and not model.main.training and model.policy.training
    out = model(torch.randn(6, 3, 32, 32), mode="rollout", alpha=0.8)
    assert (out.sampled[:, :7] == 1).all() and (out.greedy[:, :7] == 1).all()
    assert (out.learned[:, :7] == 0).all() and (out.learned[:, 7:] == 1).all()
    for _ in range(10):
        schedule(model)
    assert int(model.learned_blocks) == 9  # capped at K
    assert schedule.state_dict()["epochs_started"] == 11


def test_policy_gradient_reaches_only_the_policy_in_the_curriculum():
    model = _model(14)
    bd.train.freeze(model.main)
    bd.train.Curriculum(10)(model)
    step = bd.train.policy_step_fn(gamma=1, alpha=0.8, beta=0.1, joint=False)
    out = step(model, (torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))))
    out["loss"].backward()
    assert all(p.grad is None for p in model.main.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.policy.parameters())


def test_joint_step_trains_both_networks():
    model = _model(14)
    bd.train.joint_train_mode(model)
    step = bd.train.policy_step_fn(gamma=5, alpha=0.8, beta=0.1, joint=True)
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():  # targets the full network gets right: sampled and greedy rewards differ
        y = model.eval().main(x).argmax(1)
    bd.train.joint_train_mode(model)
    out = step(model, (x, y))
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.main.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.policy.parameters())
    assert out["ce"] > 0


def test_curriculum_resumes_with_its_schedule(tmp_path):
    """A curriculum interrupted after one epoch continues the block schedule (its counter is
    saved in the checkpoint through ``fit(state=...)``) and ends with the same policy as an
    uninterrupted one."""
    data = torch.utils.data.TensorDataset(torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,)))

    def run(epochs, run_dir):
        torch.manual_seed(0)
        model = _model(8)
        bd.train.freeze(model.main)
        opt = torch.optim.Adam(model.policy.parameters(), lr=1e-3)
        schedule = bd.train.Curriculum(1)
        dynn.train.fit(
            model,
            bd.train.policy_step_fn(gamma=1, alpha=0.8, beta=0.1, joint=False),
            data,
            dynn.train.Stage("curriculum", run_dir, progress=False),
            dynn.train.Schedule(opt, epochs=epochs, batch_size=16),
            train_mode=schedule,
            state={"curriculum": schedule},
        )
        return model, schedule

    full, _ = run(3, tmp_path / "a")
    run(1, tmp_path / "b")
    resumed, schedule = run(3, tmp_path / "b")
    assert schedule.epochs_started == 3
    assert int(full.learned_blocks) == int(resumed.learned_blocks) == 3
    for a, b in zip(full.policy.parameters(), resumed.policy.parameters()):
        assert torch.allclose(a, b)


# ---------------------------------------------------------------- stages
TINY = dict(dataset="digits", data_root="", resolution=8, train_limit=64, depth=8, seed=0, progress=True)


def _chain(root, device="cpu"):
    """pretrain → curriculum → finetune on tiny data; returns the three models and checkpoints."""
    pre_dir, cl_dir, ft_dir = (str(root / n) for n in ("pretrain", "curriculum", "finetune"))
    main = bd.train.pretrain(run_dir=pre_dir, device=device, **TINY, epochs=1, lr=0.05, batch_size=32)
    policy_kw = dict(val_limit=32, policy_depth=8, policy_downsample=1, alpha=0.8, batch_size=32)
    cl = bd.train.curriculum(
        run_dir=cl_dir,
        device=device,
        main_checkpoint=f"{pre_dir}/pretrain.ckpt",
        **TINY,
        **policy_kw,
        epochs=2,
        blocks_per_epoch=2,
        gamma=1.0,
        beta=0.1,
        lr=1e-3,
    )
    ft = bd.train.finetune(
        run_dir=ft_dir,
        device=device,
        curriculum_checkpoint=f"{cl_dir}/curriculum.ckpt",
        **TINY,
        **policy_kw,
        epochs=1,
        gamma=5.0,
        lr=1e-4,
        lr_policy=1e-3,
    )
    return (main, cl, ft), (pre_dir, cl_dir, ft_dir)


def test_stages_chain_and_a_second_call_reuses_instead_of_training(tmp_path, monkeypatch, capsys):
    (main, cl, ft), (pre_dir, cl_dir, ft_dir) = _chain(tmp_path)
    assert isinstance(ft, bd.model.BlockDrop) and not ft.training and not ft.main.training
    assert int(cl.learned_blocks) == 3  # 2 curriculum epochs at 2 blocks each, capped at K = 3
    saved = dynn.train.read_checkpoint(f"{cl_dir}/curriculum.ckpt")
    assert saved["state"]["curriculum"]["epochs_started"] == 2  # the schedule's counter is in the checkpoint
    assert saved["params"]["blocks_per_epoch"] == 2 and "run_dir" not in saved["params"]
    # the curriculum trained only the policy: the main network is the pretrained one
    for a, b in zip(main.parameters(), cl.main.backbone.parameters()):
        assert torch.equal(a, b)
    # finetuning moved both networks
    assert any(not torch.equal(a, b) for a, b in zip(cl.main.parameters(), ft.main.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(cl.policy.parameters(), ft.policy.parameters()))
    capsys.readouterr()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage was trained again")

    monkeypatch.setattr(dynn.train, "classification_step", no_training)  # pretrain: train_classifier
    monkeypatch.setattr(bd.train, "policy_step_fn", lambda **kw: no_training)
    (main2, cl2, ft2), _ = _chain(tmp_path)
    printed = capsys.readouterr().out
    assert printed.count("finished earlier") == 3
    for a, b in [(main, main2), (cl, cl2), (ft, ft2)]:
        assert all(torch.equal(x, y) for x, y in zip(_params(a), _params(b)))


def test_stage_with_other_arguments_in_the_same_directory_is_refused(tmp_path):
    bd.train.pretrain(run_dir=str(tmp_path), device="cpu", **TINY, epochs=1, lr=0.05, batch_size=32)
    with pytest.raises(dynn.train.CheckpointError, match="lr"):
        bd.train.pretrain(run_dir=str(tmp_path), device="cpu", **TINY, epochs=1, lr=0.01, batch_size=32)


def test_pretrained_main_network_is_loaded_not_trained(tmp_path, monkeypatch, capsys):
    source = bd.model.make_main_network(8, 10).backbone
    for p in source.parameters():
        p.data.normal_()
    path = tmp_path / "resnet8.pt"
    torch.save(source.state_dict(), path)

    def no_training(*args, **kwargs):
        raise AssertionError("pretrain trained although a pretrained network was given")

    monkeypatch.setattr(dynn.train, "classification_step", no_training)  # pretrain: train_classifier
    for _ in range(2):  # the second call reuses the stage's checkpoint
        main = bd.train.pretrain(
            run_dir=str(tmp_path / "stage"), device="cpu", **TINY, pretrained=str(path), epochs=5, lr=0.1, batch_size=32
        )
        assert all(torch.equal(a, b) for a, b in zip(main.backbone.state_dict().values(), source.state_dict().values()))
    assert "loaded from" in capsys.readouterr().out
    # what later stages chain on holds those weights
    again = bd.model.make_main_network(8, 10)
    dynn.train.load_checkpoint(tmp_path / "stage" / "pretrain.ckpt", again.backbone)
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), source.parameters()))


def test_a_stage_of_zero_epochs_still_leaves_a_checkpoint_to_chain_on(tmp_path):
    """``curriculum_epochs 0`` skips the curriculum: finetuning starts from the untrained policy."""
    pre = bd.train.pretrain(run_dir=str(tmp_path / "p"), device="cpu", **TINY, epochs=0, batch_size=32)
    cl = bd.train.curriculum(
        run_dir=str(tmp_path / "c"),
        device="cpu",
        main_checkpoint=str(tmp_path / "p" / "pretrain.ckpt"),
        **TINY,
        val_limit=16,
        epochs=0,
        batch_size=32,
    )
    assert int(cl.learned_blocks) == cl.num_blocks  # no block forced: the policy decides every block
    assert all(torch.equal(a, b) for a, b in zip(pre.parameters(), cl.main.backbone.parameters()))
    saved = dynn.train.read_checkpoint(tmp_path / "c" / "curriculum.ckpt")
    assert saved["epoch"] == 0 and saved["params"]["epochs"] == 0
    ft = bd.train.finetune(
        run_dir=str(tmp_path / "f"),
        device="cpu",
        curriculum_checkpoint=str(tmp_path / "c" / "curriculum.ckpt"),
        **TINY,
        val_limit=16,
        epochs=0,
        batch_size=32,
    )
    assert all(torch.equal(a, b) for a, b in zip(_params(cl), _params(ft)))


def test_torchrun_entry_runs_a_stage_from_its_stage_yaml(tmp_path):
    import yaml

    kwargs = dict(TINY, epochs=1, lr=0.05, batch_size=32, progress=False)
    (tmp_path / "stage.yaml").write_text(
        yaml.safe_dump({"stage": "dynn.blockdrop.train.pretrain", "arguments": kwargs})
    )
    bd.train.main(
        ["--stage", "pretrain", "--config", str(tmp_path / "stage.yaml"), "--run-dir", str(tmp_path), "--device", "cpu"]
    )
    saved = dynn.train.read_checkpoint(tmp_path / "pretrain.ckpt")
    assert saved["epoch"] == 1 and saved["params"]["lr"] == 0.05


@pytest.mark.slow
def test_ddp_finetune_on_two_cpu_processes_gives_the_same_weights_on_every_rank(tmp_path):
    """The main training stage (joint finetuning) under DistributedDataParallel: 2 gloo ranks."""
    pre_dir, cl_dir = str(tmp_path / "pretrain"), str(tmp_path / "curriculum")
    tiny = dict(TINY, progress=False)
    bd.train.pretrain(run_dir=pre_dir, device="cpu", **tiny, epochs=1, lr=0.05, batch_size=16)
    policy_kw = dict(val_limit=32, policy_depth=8, policy_downsample=1, alpha=0.8, batch_size=16)
    cl = bd.train.curriculum(
        run_dir=cl_dir,
        device="cpu",
        main_checkpoint=f"{pre_dir}/pretrain.ckpt",
        **tiny,
        **policy_kw,
        epochs=1,
        blocks_per_epoch=3,
        gamma=1.0,
        beta=0.1,
        lr=1e-3,
    )
    arguments = dict(
        curriculum_checkpoint=f"{cl_dir}/curriculum.ckpt",
        **tiny,
        **policy_kw,
        epochs=1,
        gamma=5.0,
        lr=1e-3,
        lr_policy=1e-3,
    )
    stage = ("finetune", str(tmp_path / "finetune"), "cpu", arguments)
    models = dynn.train.run_elastic(bd.train.run_stage, 2, *stage)
    assert sorted(models) == [0, 1]
    rank0, rank1 = _params(models[0]), _params(models[1])
    assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(rank0, rank1))
    assert any(not torch.equal(a, b) for a, b in zip(rank0, _params(cl)))  # it did train
    reloaded = bd.train.run_stage(*stage)  # the notebook's call afterwards: reuses the checkpoint rank 0 wrote
    assert all(torch.equal(a, b) for a, b in zip(rank0, _params(reloaded)))
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "finetune" / "metrics.csv")) == 1  # rank 0 only: one row per epoch


# ---------------------------------------------------------------- evaluation
def test_evaluation_summary_and_static_baseline():
    model = _model(14)
    data = torch.utils.data.TensorDataset(torch.randn(20, 3, 32, 32), torch.randint(0, 10, (20,)))
    costs = bd.evaluate.block_costs(model, (3, 32, 32))
    ev = bd.evaluate.evaluate_policy(model, data, batch_size=8)
    assert ev.policy.shape == (20, 6) and set(np.unique(ev.policy)) <= {0, 1}
    s = ev.summary(costs)
    assert s["macs_mean"] - s["main_macs_mean"] == pytest.approx(costs.policy)
    assert 1 <= s["distinct_policies"] <= 20
    # threshold 0 keeps every block: the accuracy of the full network
    all_kept = bd.evaluate.evaluate_policy(model, data, batch_size=8, threshold=0.0, keep_prob=ev.keep_prob)
    full_preds = model.main(torch.stack([d[0] for d in data])).argmax(1).numpy()
    assert (all_kept.policy == 1).all() and (all_kept.preds == full_preds).all()
    static = bd.evaluate.static_drop_baselines(model, data, ev, costs, counts=[2, 6])
    assert list(static["blocks_mean"]) == [2, 6]
    assert static["macs_mean"].iloc[1] == costs.full  # keeping all, no policy network to pay


def test_latency_table_records_the_batch_that_ran():
    model = _model(8)
    costs = bd.evaluate.block_costs(model, (3, 32, 32))
    images = torch.randn(2, 3, 32, 32)
    table = bd.evaluate.latency_table(
        model, images, batch=torch.randn(5, 3, 32, 32), costs=costs, min_run_time=0.01, rounds=2
    )
    assert list(zip(table["key"], table["batch"])) == [
        ("full", 1),
        ("blockdrop", 1),
        ("main", 1),
        ("full", 5),
        ("blockdrop", 5),
        ("main", 5),
        ("masked", 5),
    ]
    full = table[table["key"] == "full"]
    assert (full["latency_ratio"] == 1).all() and (full["macs_ratio"] == 1).all()
    assert (table["latency_ms"] > 0).all()
    blockdrop_b1 = table.iloc[1]
    u = torch.stack([model.infer(images[i : i + 1])[1][0] for i in range(2)])
    assert blockdrop_b1["macs_ratio"] == pytest.approx(costs.macs(u, True).mean() / costs.full)


def test_bad_shapes_and_names_fail_clearly():
    with pytest.raises(ValueError, match="depth"):
        bd.model.make_main_network(21, 10)
    with pytest.raises(ValueError, match="policy_depth"):
        bd.model.PolicyNetwork(9, depth=9)
    main = bd.model.make_main_network(8, 10)
    with pytest.raises(ValueError, match="3 blocks"):
        bd.model.BlockDrop(main, bd.model.PolicyNetwork(5, 8))
    with pytest.raises(ValueError, match="3 decisions"):
        main.forward_single(torch.randn(1, 3, 32, 32), [1, 0])
    with pytest.raises(TypeError, match="pre-activation"):
        bd.model.BlockDropResNet(dynn.models.create("preresnet18", num_classes=10))


# ---------------------------------------------------------------- figures and explorer
def test_explorer_shows_de_normalised_images_of_a_limited_split_and_redraws():
    pytest.importorskip("ipywidgets")
    import matplotlib.pyplot as plt

    data = dynn.data.get_dataset("digits", "test", limit=4, resolution=8, channels=3)
    model = _model(8)
    fig = bd.plots.plot_image_policy(model, data, 2)
    shown = np.asarray(fig.axes[0].images[0].get_array())
    assert np.allclose(shown, data.images[2].permute(1, 2, 0).numpy() / 255, atol=1e-5)  # the raw pixels
    plt.close(fig)
    box = bd.plots.explorer(model, data)
    slider = box.children[0]
    assert slider.max == 3
    before = len(plt.get_fignums())
    slider.value = 3  # re-renders for another image without error
    slider.value = 1
    assert len(plt.get_fignums()) == before  # each redraw closes its figure


def test_figures_draw_for_an_evaluation():
    import matplotlib.pyplot as plt

    data = dynn.data.get_dataset("digits", "test", limit=12, resolution=8, channels=3)
    model = _model(8)
    ev = bd.evaluate.evaluate_policy(model, data)
    for fig in (
        bd.plots.plot_policy_heatmap(ev, stage_index=model.main.stage_index),
        bd.plots.plot_blocks_per_class(ev, data.classes),
        bd.plots.plot_extreme_images(ev, data, n=4, class_names=data.classes),
    ):
        assert fig.axes
        plt.close(fig)


def test_result_points_have_a_role_and_the_latency_batch_that_ran():
    model = _model(8)
    data = torch.utils.data.TensorDataset(torch.randn(12, 3, 32, 32), torch.randint(0, 10, (12,)))
    costs = bd.evaluate.block_costs(model, (3, 32, 32))
    ev = bd.evaluate.evaluate_policy(model, data)
    summary = ev.summary(costs)
    latency = bd.evaluate.latency_table(
        model, torch.randn(1, 3, 32, 32), batch=torch.randn(3, 3, 32, 32), costs=costs, min_run_time=0.01, rounds=1
    )
    points = bd.evaluate.result_points(
        full_accuracy=50.0,
        summary=summary,
        curriculum_summary=summary,
        sweep=bd.evaluate.threshold_sweep(model, data, ev, costs, [0.3, 0.7]),
        static=bd.evaluate.static_drop_baselines(model, data, ev, costs),
        latency=latency,
        costs=costs,
        depth=8,
        gamma=5.0,
        seed=3,
    )
    checked = dynn.runs.check_points(points, "classification")  # every field the report reads
    roles = {(p["series"], p["role"], p["selection"]) for p in checked}
    assert ("BlockDrop", "method", "fixed") in roles and ("full network", "reference", "fixed") in roles
    assert ("BlockDrop threshold sweep", "method", "sweep") in roles
    assert ("same blocks for everyone", "baseline", "sweep") in roles
    assert {p["series"] for p in checked if p["role"] == "ablation"} == {
        "BlockDrop (curriculum only)",
        bd.evaluate.MAIN_ONLY_SERIES,
    }
    blockdrop = next(p for p in checked if p["series"] == "BlockDrop")
    assert blockdrop["latency_batch"] == 1 and blockdrop["batched_latency_batch"] == 3
    assert blockdrop["macs"] - blockdrop["main_macs"] == pytest.approx(costs.policy)
    assert all(p["seed"] == 3 for p in checked)
    metrics = bd.evaluate.run_metrics(
        full_accuracy=50.0,
        finetuned_full_accuracy=50.0,
        summary=summary,
        curriculum_summary=summary,
        costs=costs,
        latency=latency,
    )
    assert metrics["latency_batch"] == 3 and not any("b64" in k for k in metrics)
