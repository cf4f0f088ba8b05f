"""The static baseline's one training stage, and its ``torchrun`` entry point.

:func:`train_static` is a function of plain keyword arguments, so a notebook calls it
through :meth:`dynn.runs.Run.stage` (one process, or ``nprocs`` local processes through
TorchElastic) and ``torchrun`` runs the same function on several nodes::

    torchrun --nnodes 2 --nproc_per_node 4 -m dynn.resnet_baseline.train \\
        --run-dir DIR --model cifar_resnet20 --dataset cifar10 --data-root /data --epochs 160

Point the notebook's ``run_dir`` at DIR afterwards: the finished stage is loaded, not retrained.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from dynn import data, models, train


def train_static(*, run_dir: str, device: str = "cpu", model: str, base_width: int = 16, dataset: str,
                 data_root: str = "", download: bool = False, resolution: int = 32, train_limit: int = 0,
                 epochs: int, batch_size: int, lr: float, weight_decay: float, seed: int,
                 progress: bool = True) -> nn.Module:
    """Train ``model`` (a registry name) with SGD (momentum 0.9, Nesterov) and cosine decay.

    Returns the trained model in eval mode on ``device``; a finished stage is loaded.
    """
    arguments = dict(model=model, base_width=base_width, dataset=dataset, data_root=data_root,
                     resolution=resolution, train_limit=train_limit, epochs=epochs, batch_size=batch_size,
                     lr=lr, weight_decay=weight_decay, seed=seed)
    train.seed_everything(seed)
    train_data = data.get_dataset(dataset, "train", data_root=data_root, download=download,
                                  resolution=resolution, channels=3, limit=train_limit)
    net = models.create(model, num_classes=train_data.num_classes, base_width=base_width)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    train.fit(net, train.classification_step, train_data, epochs=epochs, optimizer=optimizer, scheduler=scheduler,
              batch_size=batch_size, run_dir=run_dir, stage="train_static", device=device, seed=seed,
              params=arguments, progress=progress)
    return net.to(device).eval()


def main(argv: list[str] | None = None) -> None:
    """Command line of :func:`train_static` (what ``torchrun -m dynn.resnet_baseline.train`` runs)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dynn.resnet_baseline.train", description=main.__doc__)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="cifar_resnet20")
    parser.add_argument("--base-width", type=int, default=16)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--data-root", default="")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = vars(parser.parse_args(argv))
    net = train_static(**args)
    if train.is_main_process():
        print(f"train_static finished in {args['run_dir']}; weights digest {train.weights_digest(net):.6f}")


if __name__ == "__main__":
    main()
