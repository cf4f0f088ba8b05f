"""SDPoint's training stages, each a function of plain keyword arguments.

- :func:`train`: the SDPoint network. No special loss: in training mode
  :class:`~dynn.sdpoint.model.SDPointNet` samples its own instance in ``forward``, so the
  step (:func:`sdpoint_step`) is plain cross-entropy plus a record of how often the pass
  was downsampled.
- :func:`train_baseline`: the same backbone trained normally (full network every pass),
  same data, epochs, optimiser and schedule: the same-budget baseline.
- :func:`train_agent`: the TwoPipe fork's learned per-layer downsampling, searched on the
  validation split over a trained network (:mod:`dynn.sdpoint.agent`).

A notebook runs each through ``run.stage(fn, ...)``, which keys its directory by the
arguments, reuses a finished stage and resumes an interrupted one; :func:`train` takes
``nprocs`` processes (DDP inside :func:`dynn.train.fit`). Under ``torchrun``:
``python -m dynn.sdpoint.train --stage train --config stage.yaml --run-dir DIR``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dynn.data import get_dataset
from dynn.evaluate import calibration_batches
from dynn.sdpoint.agent import DownsamplingEnv, SearchResult, search
from dynn.sdpoint.evaluate import in_memory
from dynn.sdpoint.model import SDPointNet, create
from dynn.sdpoint.parameters import official_milestones
from dynn.train import (
    Stage,
    classification_step,
    read_checkpoint,
    resolve_device,
    seed_everything,
    stage_main,
    train_classifier,
    unwrap,
    weights_digest,
)


def load_data(*, dataset: str, split: str, data_root: str, resolution: int, limit: int = 0):
    """One split as the SDPoint backbones see it: 3 channels at ``resolution`` pixels."""
    return get_dataset(dataset, split, limit=limit, data_root=data_root, resolution=resolution, channels=3)


def sdpoint_step(model: torch.nn.Module, batch) -> dict:
    """Cross-entropy of the pass (whose instance the model sampled itself), plus
    ``downsampled``: 1 if the pass downsampled anywhere (its epoch mean estimates
    1 − P(no downsampling), which is (N+1)/(N+2) under uniform sampling)."""
    out = classification_step(model, batch)
    out["downsampled"] = float(any(r < 1 for r in unwrap(model).last_config))
    return out


def _fit_network(
    stage: Stage,
    *,
    sampling: str,
    arch: str,
    depth: int,
    base_width: int,
    ratios: list,
    legacy_official: bool,
    dataset: str,
    data_root: str,
    resolution: int,
    train_limit: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
) -> SDPointNet:
    seed_everything(stage.seed)
    data = load_data(dataset=dataset, split="train", data_root=data_root, resolution=resolution, limit=train_limit)
    backbone_kwargs = {"base_width": base_width} if arch == "cifar_resnet" else {}
    model = create(
        arch,
        depth,
        num_classes=data.num_classes,
        ratios=ratios,
        sampling=sampling,
        legacy_official=legacy_official,
        **backbone_kwargs,
    )
    # SGD (momentum 0.9, no Nesterov) with the official step schedule, as in the official main.py;
    # num_classes rides along in the checkpoint so that load_model can rebuild the network
    train_classifier(
        model,
        data,
        stage.recording(sampling=sampling, num_classes=data.num_classes),
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        nesterov=False,
        milestones=official_milestones(epochs),
        step_fn=sdpoint_step,
    )
    return model.eval()


def train(
    *,
    run_dir: str,
    device: str,
    arch: str,
    depth: int,
    base_width: int,
    ratios: list,
    legacy_official: bool,
    multi_point: bool,
    dataset: str,
    data_root: str,
    resolution: int,
    train_limit: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    progress: bool = True,
) -> SDPointNet:
    """Train the SDPoint network: one sampled instance per forward pass (``multi_point``:
    half of the passes a multi-point configuration, for the agent). Returns it in eval mode
    (which runs the full network; instances run inside ``model.fixed(config)``)."""
    stage = Stage.of("train", locals())
    network = {k: v for k, v in stage.params.items() if k not in ("multi_point", "seed")}
    return _fit_network(stage, sampling="multi" if multi_point else "single", **network)


def train_baseline(
    *,
    run_dir: str,
    device: str,
    arch: str,
    depth: int,
    base_width: int,
    dataset: str,
    data_root: str,
    resolution: int,
    train_limit: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    progress: bool = True,
) -> SDPointNet:
    """Train the same backbone normally (full network every pass, same budget). It takes no
    ratios, so every SDPoint variant shares it; score it at an SDPoint model's instances
    with :func:`dynn.sdpoint.model.with_points`."""
    stage = Stage.of("train_baseline", locals())
    network = {k: v for k, v in stage.params.items() if k != "seed"}
    return _fit_network(stage, sampling="none", ratios=[0.5, 0.75], legacy_official=False, **network)


def load_model(checkpoint: str | Path) -> SDPointNet:
    """The network a :func:`train` / :func:`train_baseline` checkpoint holds, rebuilt from
    the stage parameters stored inside it (eval mode, on the CPU)."""
    state = read_checkpoint(checkpoint)
    p = state["params"]
    backbone_kwargs = {"base_width": p["base_width"]} if p["arch"] == "cifar_resnet" else {}
    model = create(
        p["arch"],
        p["depth"],
        num_classes=p["num_classes"],
        ratios=p.get("ratios", (0.5, 0.75)),
        sampling=p["sampling"],
        legacy_official=p.get("legacy_official", False),
        **backbone_kwargs,
    )
    model.load_state_dict(state["model"])
    return model.eval()


def train_agent(
    *,
    run_dir: str,
    device: str,
    sdpoint_checkpoint: str,
    dataset: str,
    data_root: str,
    resolution: int,
    train_limit: int,
    val_limit: int,
    agent: str,
    episodes: int,
    reward: str,
    cost_weight: float,
    bn_batches: int,
    bn_batch_size: int,
    seed: int,
    progress: bool = True,
):
    """Search per-layer downsampling configurations of a trained SDPoint network.

    Each episode's reward is computed on the validation split after recalibrating BN for
    the configuration on ``bn_batches`` training batches (0: none). The result (episode
    history, every configuration evaluated, the final policy's greedy choice) is saved as
    ``train_agent.ckpt`` and reused when the stage is called again with the same arguments.
    Returns a :class:`dynn.sdpoint.agent.SearchResult`.
    """
    arguments = dict(locals())
    model = load_model(sdpoint_checkpoint)
    # the searched network, not just its path
    stage = Stage.of("train_agent", arguments).recording(weights_digest=weights_digest(model))
    saved = stage.finished()
    if saved is not None:
        return SearchResult.from_state_dict(saved["state"]["search"])
    device = resolve_device(device)
    model = model.to(device)
    data = dict(dataset=dataset, data_root=data_root, resolution=resolution)
    val = in_memory(load_data(split="val", limit=val_limit, **data))
    calibration = (
        calibration_batches(
            load_data(split="train", limit=train_limit, **data), batches=bn_batches, batch_size=bn_batch_size, seed=seed
        )
        if bn_batches
        else None
    )
    env = DownsamplingEnv(
        model, val, calibration=calibration, bn_mode="average", reward=reward, cost_weight=cost_weight, device=device
    )
    result = search(env, agent=agent, episodes=episodes, seed=seed, progress=progress)
    stage.save(state={"search": result.state_dict()})
    return result


STAGES = {"train": train, "train_baseline": train_baseline, "train_agent": train_agent}


def main(argv: list[str] | None = None) -> None:
    """``torchrun [--nnodes N] --nproc_per_node G -m dynn.sdpoint.train --stage train --config stage.yaml --run-dir DIR``:
    the foundation's stage command line (:func:`dynn.train.stage_main`). Point the notebook's
    ``run_dir`` at the same place afterwards and it finds the finished checkpoint."""
    stage_main(STAGES, argv, prog="python -m dynn.sdpoint.train")


if __name__ == "__main__":
    main()
