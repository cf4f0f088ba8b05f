"""Trainer overhead: images/s of ``dynn.train.fit`` vs a bare PyTorch loop on the same work.

    python benchmarks/trainer_overhead.py [--images 1024] [--epochs 3] [--model cifar_resnet20]

Both loops train the same model from the same initialisation on the same batches (same
loader, optimizer and step); fit adds its per-epoch reseeding, progress bar, metrics and an
atomic checkpoint per epoch. Prints both rates and their ratio (goal ≥ 0.95). A benchmark,
not a test: run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time

import torch

from dynn import data, models, train


def bare_loop(model, dataset, epochs, batch_size, seed):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for epoch in range(epochs):
        for x, y in data.make_loader(dataset, batch_size, shuffle=True, seed=seed + epoch):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def with_fit(model, dataset, epochs, batch_size, seed):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with tempfile.TemporaryDirectory() as run_dir:
        stage = train.Stage("bench", run_dir, seed=seed)
        train.fit(model, train.classification_step, dataset, stage, train.Schedule(optimizer, epochs, batch_size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar_resnet20")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="alternate the two loops this many times")
    args = parser.parse_args()

    full = data.get_dataset("mnist5k", "train", resolution=32, channels=3)
    dataset = torch.utils.data.Subset(full, range(args.images))
    train.seed_everything(0)
    initial = models.create(args.model, num_classes=10)
    rates = {"bare": [], "fit": []}
    work = args.images * args.epochs
    for _ in range(args.repeats):
        for name, loop in (("bare", bare_loop), ("fit", with_fit)):
            model = copy.deepcopy(initial)
            start = time.perf_counter()
            loop(model, dataset, args.epochs, args.batch_size, 0)
            rates[name].append(work / (time.perf_counter() - start))
    bare, fitted = max(rates["bare"]), max(rates["fit"])
    print(f"model {args.model}, {args.images} images x {args.epochs} epochs, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    print(f"bare loop : {bare:8.1f} images/s (best of {args.repeats})")
    print(f"dynn fit  : {fitted:8.1f} images/s (best of {args.repeats})")
    print(f"ratio fit/bare = {fitted / bare:.3f}  (goal >= 0.95)")


if __name__ == "__main__":
    main()
