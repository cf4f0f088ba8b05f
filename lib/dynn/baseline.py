"""Static training of a classifier: the reference point for every dynamic method.

Also the example of how a notebook's training stage scales out: :func:`train_classifier`
is an importable function of plain arguments, so the notebook can call it directly
(one process) or hand it to :func:`dynn.train.run_elastic` (``nprocs`` local processes,
DistributedDataParallel inside :func:`dynn.train.fit`); under ``torchrun`` the same
function runs unchanged on every rank.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from dynn import data, models, train


def build_classifier(config: dict) -> nn.Module:
    return models.create(config["model"], num_classes=config["num_classes"], **config.get("model_kwargs", {}))


def load_train_data(config: dict):
    ds = data.get_dataset(config["dataset"], "train", data_root=config.get("data_root", ""),
                          seed=config["seed"], resolution=config.get("resolution"),
                          channels=config.get("channels"))
    limit = config.get("train_limit", 0)
    return torch.utils.data.Subset(ds, range(min(limit, len(ds)))) if limit else ds


def train_classifier(config: dict, run_dir: str, stage: str) -> float:
    """Train ``config["model"]`` with SGD + cosine decay; returns a digest of the final weights.

    ``config`` holds plain values only (it crosses process boundaries): model, num_classes,
    model_kwargs, dataset, data_root, resolution, channels, train_limit, epochs, batch_size,
    lr, weight_decay, seed, device, progress.
    """
    train.seed_everything(config["seed"])
    device = train.resolve_device(config.get("device", "cpu"))
    model = build_classifier(config)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9,
                                weight_decay=config["weight_decay"], nesterov=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config["epochs"])
    train.fit(model, train.classification_step, load_train_data(config), epochs=config["epochs"],
              optimizer=optimizer, scheduler=scheduler, batch_size=config["batch_size"],
              run_dir=run_dir, stage=stage, device=device, seed=config["seed"], params=config,
              progress=config.get("progress", True))
    return weights_digest(model)


def weights_digest(model: nn.Module) -> float:
    """A number that changes when any learned weight changes (to compare ranks or runs).

    Parameters only: BatchNorm running statistics are per-rank buffers under DDP.
    """
    return float(sum((p.detach().double().cpu() * (i + 1)).sum() for i, p in enumerate(model.parameters())))


def train_stage(config: dict, run_dir: str | Path, stage: str, nprocs: int = 1) -> nn.Module:
    """Run the training stage on ``nprocs`` processes and return the trained model (eval mode)."""
    if nprocs > 1:
        train.run_elastic(train_classifier, nprocs, config, str(run_dir), stage)
    else:
        train_classifier(config, str(run_dir), stage)
    model = build_classifier(config)
    train.load_checkpoint(train.checkpoint_path(run_dir, stage), model)
    return model.to(train.resolve_device(config.get("device", "cpu"))).eval()


def main(argv: list[str] | None = None) -> None:
    """``torchrun [--nnodes N] --nproc_per_node G -m dynn.baseline --config stage.yaml --run-dir DIR --stage NAME``.

    The same stage function the notebook runs, under PyTorch's own launcher, e.g. on
    several nodes; point the notebook's ``run_dir`` at DIR afterwards and it finds the
    finished checkpoint instead of training again.
    """
    import argparse

    import yaml

    parser = argparse.ArgumentParser(prog="python -m dynn.baseline", description=main.__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="YAML with the stage's config (see train_classifier)")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--stage", required=True)
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.config.read_text())
    digest = train_classifier(config, args.run_dir, args.stage)
    if train.is_main_process():
        print(f"stage {args.stage} finished in {args.run_dir}; weights digest {digest:.6f}")


if __name__ == "__main__":
    main()
