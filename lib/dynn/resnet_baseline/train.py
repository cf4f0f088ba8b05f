"""The static baseline's one training stage, and its ``torchrun`` entry point.

:func:`train_static` is a function of plain keyword arguments, so a notebook calls it
through :meth:`dynn.runs.Run.stage` (one process, or ``nprocs`` local processes through
TorchElastic) and ``torchrun`` runs the same function on several nodes::

    torchrun --nnodes 2 --nproc_per_node 4 -m dynn.resnet_baseline.train \\
        --stage train_static --config stage.yaml --run-dir DIR

Point the notebook's ``run_dir`` at DIR afterwards: the finished stage is loaded, not retrained.
"""

from __future__ import annotations

import torch.nn as nn

from dynn import data, models, train


def train_static(
    *,
    run_dir: str,
    device: str = "cpu",
    model: str,
    base_width: int = 16,
    dataset: str,
    data_root: str = "",
    download: bool = False,
    resolution: int = 32,
    train_limit: int = 0,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    progress: bool = True,
) -> nn.Module:
    """Train ``model`` (a registry name) with SGD (momentum 0.9, Nesterov) and cosine decay.

    Returns the trained model in eval mode on ``device``; a finished stage is loaded.
    """
    stage = train.Stage.of("train_static", locals(), not_params=["download"])
    train.seed_everything(seed)
    train_data = data.get_dataset(
        dataset, "train", data_root=data_root, download=download, resolution=resolution, channels=3, limit=train_limit
    )
    net = models.create(model, num_classes=train_data.num_classes, base_width=base_width)
    train.train_classifier(
        net, train_data, stage, epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size
    )
    return net.to(device).eval()


if __name__ == "__main__":
    train.stage_main({"train_static": train_static}, prog="python -m dynn.resnet_baseline.train")
