"""A small trainer: one ``fit`` loop that each method plugs its own step function into.

``fit`` owns what every method needs and nothing method-specific: device placement,
seeding, progress bars, gradient clipping, atomic per-epoch checkpoints with resume, a
metrics history (``metrics.csv``) and DistributedDataParallel when launched by
``torchrun`` or :func:`run_elastic`. The method supplies ``step_fn(model, batch) -> dict``
returning at least a differentiable ``"loss"`` (BlockDrop's reward, AR-Net's Gumbel and
efficiency losses, the sandwich rule... live in the method modules, not behind flags here).
A :class:`Stage` is what a training stage is to its checkpoint (where it lives, the
arguments it was computed from, how it runs) and a :class:`Schedule` how it optimises
(optimizer, epochs, batch size, learning-rate schedule): every method's stage functions build
the two and call ``fit(model, step, data, stage, schedule)``.

Determinism: every epoch starts by reseeding from ``(seed, epoch)`` and shuffles with a
generator seeded the same way, so an interrupted run resumed from its last checkpoint
replays exactly the epochs it missed and ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import random
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Dataset, DistributedSampler
from tqdm.std import tqdm

from dynn import CODE_VERSION
from dynn.data import make_loader
from dynn.runs import _differences, _plain, atomic_torch_save, atomic_write_text

StepFn = Callable[[nn.Module, Any], dict]


# ---------------------------------------------------------------- seeding and devices
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA). DataLoader workers derive from torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def available_devices() -> list[str]:
    """The ``device`` values that work on this machine."""
    found = ["auto", "cpu"]
    found += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return found + (["mps"] if _mps_available() else [])


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda → mps → cpu; under distributed CUDA the local rank's GPU.

    A device that is not present here is a ValueError naming what is (before any work).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"not a device; allowed here: {', '.join(available_devices())}") from None
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    present = {
        "cpu": True,
        "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
        "mps": _mps_available(),
    }.get(device.type, False)
    if not present:
        raise ValueError(f"{name!r} is not available on this machine; allowed here: {', '.join(available_devices())}")
    return device


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


# ---------------------------------------------------------------- distributed
def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    return rank() == 0


def init_distributed(device: torch.device) -> bool:
    """Join the process group that torchrun / elastic_launch describe in the environment."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_elastic(entrypoint: Callable, nprocs: int, *args) -> dict[int, Any]:
    """Run ``entrypoint(*args)`` on ``nprocs`` local processes through TorchElastic.

    This is PyTorch's own launcher (what ``torchrun`` uses), called from Python so that a
    notebook's ``nprocs`` parameter can scale its training stage; ``entrypoint`` must be an
    importable function (a method module's stage function), and ``fit`` inside it joins
    the process group. Returns each rank's return value. Multi-node: run the same stage
    function under ``torchrun --nnodes``.
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nprocs,
        run_id=uuid.uuid4().hex[:8],
        rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{_free_port()}",
        max_restarts=0,
        monitor_interval=0.2,
        start_method="spawn",
    )
    # The elastic agent installs SIGTERM/SIGINT handlers in this process and leaves them;
    # restore ours so a notebook kernel still shuts down quietly afterwards.
    import signal

    names = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
    saved = {n: signal.getsignal(getattr(signal, n)) for n in names if hasattr(signal, n)}
    try:
        return elastic_launch(config, entrypoint)(*args)
    finally:
        for n, handler in saved.items():
            signal.signal(getattr(signal, n), handler)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def weights_digest(model: nn.Module) -> float:
    """A number that changes when any learned weight changes (to compare ranks or runs).

    Parameters only: BatchNorm running statistics are per-rank buffers under DDP.
    """
    return float(sum((p.detach().double().cpu() * (i + 1)).sum() for i, p in enumerate(model.parameters())))


# ---------------------------------------------------------------- checkpoints and history
def checkpoint_path(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / f"{stage}.ckpt"


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, of another model, parameters or code version."""


def read_checkpoint(path: str | Path) -> dict:
    """``torch.load`` of a checkpoint; a truncated or corrupt file names itself and the remedy."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # zip/pickle errors of a truncated file take many forms
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read ({type(err).__name__}: {str(err).splitlines()[0][:120]}); "
            f"it is probably truncated by an interrupted copy or a full disk. Delete that file and run "
            f"again: its stage is retrained from the start."
        ) from None


def check_checkpoint_origin(path: str | Path, state: dict, params: dict | None) -> None:
    """Refuse a checkpoint made by other code or other stage parameters (never reuse silently)."""
    made_by = state.get("code_version", "<before 0.2.0>")
    if made_by != CODE_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written by dynn {made_by}, this is dynn {CODE_VERSION}: what the "
            f"stage computes may differ. Delete {str(Path(path).parent)!r} (or choose another run_dir) to retrain."
        )
    differ = _differences(state.get("params") or {}, params or {}, frozenset({"device", "progress", "nprocs"}))
    if params is not None and differ:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was trained with other parameters ("
            + "; ".join(differ)
            + f"). Delete {str(Path(path).parent)!r} or choose another run_dir."
        )


def load_checkpoint(
    path: str | Path, model: nn.Module, optimizer=None, scheduler=None, state: dict | None = None
) -> dict:
    """Load a checkpoint (or its already-read ``state``) into ``model`` and optimizer/scheduler;
    a mismatch names the file."""
    state = state if state is not None else read_checkpoint(path)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match this model (different parameters?). "
            f"Delete it or choose another run_dir. Details: {str(err).splitlines()[0]}"
        ) from err
    if optimizer is not None and state.get("optimizer"):
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler"):
        scheduler.load_state_dict(state["scheduler"])
    return state


# ---------------------------------------------------------------- a stage's identity
# A stage function's arguments that say where or how it runs, not what it computes: its
# checkpoint neither records nor checks them.
RUN_ARGUMENTS = ("run_dir", "device", "progress")


@dataclass(frozen=True)
class Stage:
    """One training stage as its checkpoint knows it.

    ``<run_dir>/<name>.ckpt`` is its checkpoint; ``params`` are what it computes from
    (recorded in the checkpoint and compared on resume, so a stage never reuses the work of
    other arguments); ``device``, ``seed`` and ``progress`` say how it runs. A stage function
    builds its own from its arguments, as its first line (before any other local name exists)::

        stage = Stage.of("finetune", locals())

    and hands it to :func:`fit`, so every method records, reuses and resumes its stages the
    same way. Stages whose result is not a trained epoch (AR-Net's bundle of TSNs, SDPoint's
    agent search) use :meth:`finished` and :meth:`save` directly.
    """

    name: str
    run_dir: str
    device: str | torch.device = "cpu"
    seed: int = 0
    params: dict = field(default_factory=dict)
    progress: bool = True

    @classmethod
    def of(cls, name: str, arguments: dict, *, not_params: Iterable[str] = ()) -> Stage:
        """The stage of a stage function called with ``arguments`` (its ``locals()``);
        ``not_params`` are further arguments that do not change what it computes."""
        left_out = {*RUN_ARGUMENTS, *not_params}
        return cls(
            name,
            str(arguments["run_dir"]),
            arguments.get("device", "cpu"),
            int(arguments.get("seed", 0)),
            {k: v for k, v in arguments.items() if k not in left_out},
            bool(arguments.get("progress", True)),
        )

    def named(self, name: str) -> Stage:
        """A sub-stage in the same directory (AR-Net trains one TSN per sub-stage)."""
        return replace(self, name=name)

    def recording(self, **extra: Any) -> Stage:
        """The same stage recording ``extra`` in its checkpoint too (what a later stage needs to
        rebuild the network, e.g. SDPoint's ``num_classes``)."""
        return replace(self, params={**self.params, **extra})

    @property
    def checkpoint(self) -> Path:
        return checkpoint_path(self.run_dir, self.name)

    def say(self, message: str) -> None:
        """Print ``message`` when this stage shows progress (on rank 0 only)."""
        if self.progress and is_main_process():
            print(message)

    def finished(self) -> dict | None:
        """What this stage saved when it finished, or None if it has not run. A checkpoint of
        other parameters or code is refused (:class:`CheckpointError`), never reused."""
        if not self.checkpoint.exists():
            return None
        saved = read_checkpoint(self.checkpoint)
        check_checkpoint_origin(self.checkpoint, saved, self.params)
        self.say(f"stage {self.name}: finished earlier, reusing {self.checkpoint}")
        return saved

    def save(self, **contents: Any) -> None:
        """Write this stage's checkpoint (rank 0 only, atomically) holding ``contents`` plus the
        stage's parameters and the code version, which :meth:`finished` checks."""
        if is_main_process():
            atomic_torch_save({**contents, "code_version": CODE_VERSION, "params": self.params}, self.checkpoint)


def write_metrics(run_dir: str | Path, stage: str, history: list[dict]) -> Path:
    """Rewrite ``metrics.csv``: other stages' rows kept, this stage's replaced by ``history``."""
    path = Path(run_dir) / "metrics.csv"
    frames = []
    if path.exists() and path.stat().st_size > 0:
        old = pd.read_csv(path)
        frames.append(old[old["stage"] != stage])
    frames.append(pd.DataFrame(history))
    table = pd.concat(frames, ignore_index=True)
    return atomic_write_text(path, table.to_csv(index=False))


@dataclass
class Schedule:
    """How a stage optimises: ``optimizer`` steps on batches of ``batch_size`` for ``epochs``
    epochs; its learning-rate ``scheduler`` (if any) steps after every epoch, or after every
    optimisation step with ``per_step``; gradients are clipped to norm ``grad_clip`` (if set).
    The optimizer's and scheduler's state is saved in the stage checkpoint and restored on
    resume, so what a stage builds here it must build the same way every time it is called.
    """

    optimizer: torch.optim.Optimizer
    epochs: int
    batch_size: int
    scheduler: Any = None
    per_step: bool = False
    grad_clip: float | None = None


# ---------------------------------------------------------------- the loop
# Each epoch's seed is (seed, epoch) folded into one integer; the prime keeps the epochs of
# one run from colliding with another run's seeds.
EPOCH_SEED_STRIDE = 100_003


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * EPOCH_SEED_STRIDE + epoch


def fit(
    model: nn.Module,
    step_fn: StepFn,
    train_data: Dataset,
    stage: Stage,
    schedule: Schedule,
    *,
    eval_fn: Callable[[nn.Module], dict] | None = None,
    train_mode: Callable[[nn.Module], None] = lambda m: m.train(),
    num_workers: int = 0,
    drop_last: bool = False,
    collate_fn=None,
    state: dict[str, Any] | None = None,
) -> list[dict]:
    """Train ``model`` with ``step_fn`` as ``stage`` by ``schedule``; resume from its checkpoint.

    ``step_fn(model, batch)`` gets the batch already on the device and returns a dict with
    a differentiable ``"loss"`` plus any float metrics (averaged per epoch). Under DDP the
    model it gets is the DDP wrapper: call it (``model(...)``) rather than its submodules so
    that unused-parameter detection works. ``eval_fn(model)`` runs on rank 0 after every
    epoch and adds ``val_*`` columns. ``train_mode`` puts the model in its training mode
    (e.g. BlockDrop's curriculum keeps the frozen main network in eval mode).
    ``state`` maps names to method objects with ``state_dict``/``load_state_dict`` (AR-Net's
    temperature, Slimmable's sampler history, ...): saved inside the same checkpoint and
    restored on resume, so a method keeps no side files; an object with ``end_epoch()`` has
    it called after every epoch (before the checkpoint).
    A checkpoint written by other parameters or code is refused (:class:`CheckpointError`);
    a stage of 0 epochs checkpoints the model as it is, so the next stage can chain on it.
    Progress is plain text on stdout (a bar and one line per epoch), so it shows in
    JupyterLab, in papermill's ``--log-output`` and in a saved notebook alike.
    Returns the per-epoch history (also in ``metrics.csv``).
    """
    optimizer, scheduler, epochs, batch_size = (
        schedule.optimizer,
        schedule.scheduler,
        schedule.epochs,
        schedule.batch_size,
    )
    device = resolve_device(stage.device) if isinstance(stage.device, str) else stage.device
    distributed = init_distributed(device)
    model.to(device)
    ckpt = stage.checkpoint
    history: list[dict] = []
    start_epoch = 0
    state = state or {}
    if ckpt.exists():
        saved = read_checkpoint(ckpt)
        check_checkpoint_origin(ckpt, saved, stage.params)
        load_checkpoint(ckpt, model, optimizer, scheduler, state=saved)
        for name, obj in state.items():
            if name in (saved.get("state") or {}):
                obj.load_state_dict(saved["state"][name])
        start_epoch, history = saved["epoch"], saved.get("history", [])
        if start_epoch >= epochs:
            stage.say(f"stage {stage.name}: finished earlier ({start_epoch} epochs), reusing {ckpt}")
            return history
        stage.say(f"stage {stage.name}: resuming from epoch {start_epoch} of {epochs} ({ckpt})")
    elif epochs == 0:
        stage.save(model=model.state_dict(), optimizer=None, scheduler=None, state={}, epoch=0, history=[])
        return history
    net = (
        nn.parallel.DistributedDataParallel(
            model, find_unused_parameters=True, device_ids=[device] if device.type == "cuda" else None
        )
        if distributed
        else model
    )
    sampler = (
        DistributedSampler(train_data, shuffle=True, seed=stage.seed, drop_last=drop_last) if distributed else None
    )
    steps_per_epoch = (
        (len(train_data) // world_size()) // batch_size
        if drop_last
        else math.ceil(len(train_data) / world_size() / batch_size)
    )
    bar = tqdm(
        total=(epochs - start_epoch) * steps_per_epoch,
        desc=stage.name,
        unit="batch",
        file=sys.stdout,
        mininterval=10,
        ascii=True,
        dynamic_ncols=False,
        ncols=100,
        disable=not (stage.progress and is_main_process()),
        leave=False,
    )
    for epoch in range(start_epoch, epochs):
        seed_everything(epoch_seed(stage.seed, epoch))
        if sampler is not None:
            sampler.set_epoch(epoch)
        loader = make_loader(
            train_data,
            batch_size,
            shuffle=True,
            seed=epoch_seed(stage.seed, epoch),
            num_workers=num_workers,
            drop_last=drop_last,
            sampler=sampler,
        )
        if collate_fn is not None:
            loader.collate_fn = collate_fn
        train_mode(net)
        sums: dict[str, float] = {}
        steps, started = 0, time.perf_counter()
        for batch in loader:
            out = step_fn(net, to_device(batch, device))
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            if schedule.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), schedule.grad_clip)
            optimizer.step()
            if scheduler is not None and schedule.per_step:
                scheduler.step()
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach() if isinstance(v, torch.Tensor) else v)
            steps += 1
            bar.update(1)
            bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{float(out['loss'].detach()):.3f}", refresh=False)
        if scheduler is not None and not schedule.per_step:
            scheduler.step()
        for obj in state.values():  # method state that moves once per epoch (a schedule)
            if hasattr(obj, "end_epoch"):
                obj.end_epoch()
        row = {
            "stage": stage.name,
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            **{f"train_{k}": v / max(steps, 1) for k, v in sums.items()},
            "time_s": time.perf_counter() - started,
        }
        if eval_fn is not None and is_main_process():
            model.eval()
            row.update({f"val_{k}": v for k, v in eval_fn(model).items()})
        history.append(_plain(row))
        if stage.progress and is_main_process():
            shown = ", ".join(
                f"{k} {v:.4g}"
                for k, v in row.items()
                if k.startswith(("train_loss", "val_")) and isinstance(v, (int, float))
            )
            bar.write(f"{stage.name} epoch {epoch + 1}/{epochs}: {shown} ({row['time_s']:.1f} s)", file=sys.stdout)
        stage.save(
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict() if scheduler is not None else None,
            state={name: obj.state_dict() for name, obj in state.items()},
            epoch=epoch + 1,
            history=history,
            rng={"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        )
        if is_main_process():
            write_metrics(stage.run_dir, stage.name, history)
        if distributed:
            dist.barrier()
    bar.close()
    return history


def train_classifier(
    model: nn.Module,
    train_data: Dataset,
    stage: Stage,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    nesterov: bool = True,
    milestones: list[int] | None = None,
    step_fn: Callable | None = None,
) -> list[dict]:
    """The plain way to train a classifier, as the resumable ``stage``: SGD (momentum 0.9,
    ``nesterov`` optional) with cosine decay over ``epochs``, or with the learning rate ÷10
    at each of ``milestones``; ``step_fn`` defaults to :func:`classification_step`. Static
    baselines and the pretraining stages of the methods use it, so "trained the plain way"
    means the same thing in every notebook."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=nesterov)
    if milestones:
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma=0.1)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    schedule = Schedule(optimizer, epochs, batch_size, scheduler)
    return fit(model, step_fn or classification_step, train_data, stage, schedule)


def stage_main(stages: dict[str, Callable], argv: list[str] | None = None, prog: str = "") -> Any:
    """Command line of a method's stage functions, what ``torchrun -m dynn.<method>.train`` runs::

        torchrun --nnodes 2 --nproc_per_node 8 -m dynn.blockdrop.train --stage finetune \\
            --config stage.yaml --run-dir runs/big

    ``stage.yaml`` holds the stage's keyword arguments (those the notebook passes to
    ``run.stage``; the ``stage.yaml`` a notebook's stage directory holds works as it is); point the notebook's ``run_dir`` at the same place afterwards and the
    finished stage is loaded instead of retrained.
    """
    import argparse

    import yaml

    parser = argparse.ArgumentParser(prog=prog or None, description=stage_main.__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True, choices=sorted(stages))
    parser.add_argument("--config", required=True, type=Path, help="YAML with the stage's keyword arguments")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    kwargs = yaml.safe_load(args.config.read_text()) or {}
    kwargs = kwargs.get("arguments", kwargs)  # the stage.yaml that Run.stage writes nests them
    result = stages[args.stage](run_dir=args.run_dir, device=str(resolve_device(args.device)), **kwargs)
    if is_main_process():
        digest = f"; weights digest {weights_digest(result):.6f}" if isinstance(result, nn.Module) else ""
        print(f"stage {args.stage} finished in {args.run_dir}{digest}")
    return result


def classification_step(model: nn.Module, batch) -> dict:
    """Plain supervised step: cross-entropy and batch accuracy (the static baseline)."""
    x, y = batch
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y)
    return {"loss": loss, "accuracy": (logits.argmax(1) == y).float().mean() * 100}
