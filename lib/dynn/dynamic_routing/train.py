"""Training Dynamic Routing: the budget loss, the step function and one function per stage.

The official schedule (``dynamic4seg.py``) trains with cross-entropy alone for the first
``unupdate_rate`` (0.4) of training and then adds the budget loss. Until then every budget
μ, and Dynamic-Raw, trains identically, so that part is its own stage:

- :func:`warm_up` — the budget-free first ``unupdate_rate`` of training (whole epochs),
  shared by every μ and by Dynamic-Raw;
- :func:`train_dynamic` — the rest of the schedule from the warm-up's checkpoint, with the
  budget loss λ·w·(E[cost]/C_full − μ)² (``budget_mu=None``: Dynamic-Raw, no budget);
- :func:`train_fixed` — Network-Fix: gates off, every path open, the whole schedule.

Each is a function of plain keyword arguments that builds its data, network and optimizer,
trains with :func:`dynn.train.fit` (stage name = function name, so the checkpoint is
``<run_dir>/<function>.ckpt``) and returns the trained network in eval mode; run again
after it finished, it loads instead of retraining. Under ``torchrun`` (or
``run.stage(..., nprocs=N)``) the same functions train with DistributedDataParallel;
``python -m dynn.dynamic_routing.train --stage train_dynamic --config stage.yaml --run-dir DIR``
runs one from the ``stage.yaml`` that a notebook run wrote.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import dynn.train
from dynn.data import get_dataset
from dynn.dynamic_routing.model import IGNORE_INDEX, DynamicRoutingNet, build_model


# ------------------------------------------------------------------ loss and step
def budget_loss(
    expected_cost: torch.Tensor,
    full_cost: float,
    mu: float | None,
    lam: float,
    step_rate: float,
    unupdate_rate: float = 0.4,
    warmup: float = 0.02,
) -> torch.Tensor:
    """λ·w·(E[cost]/C_full − μ)², w = min(1, (progress − unupdate_rate)/warmup) (``dynamic4seg.py``).

    Zero before ``unupdate_rate`` of training, for ``mu=None`` (Dynamic-Raw) and for λ = 0.
    ``expected_cost`` is per image; the batch mean enters the loss, as officially.
    """
    if mu is None or lam == 0 or step_rate < unupdate_rate:
        return expected_cost.new_zeros(())
    w = min(1.0, (step_rate - unupdate_rate) / warmup)
    return lam * w * (expected_cost.mean() / full_cost - mu) ** 2


class RoutingStep:
    """``step_fn`` for :func:`dynn.train.fit`: cross-entropy (ignore 255) + budget loss.

    It counts the training steps, which is the progress (``step_rate``) that the budget
    switch-on, its warm-up and scheduled drop path depend on. The count is method state
    (``state_dict``), saved inside the stage checkpoint by ``fit(state=...)``, so a resumed
    stage — or :func:`train_dynamic` continuing from :func:`warm_up` — goes on where it stopped.
    """

    def __init__(
        self,
        total_steps: int,
        budget_mu: float | None,
        budget_lambda: float,
        unupdate_rate: float = 0.4,
        ignore_index: int = IGNORE_INDEX,
    ):
        self.total_steps = max(1, total_steps)
        self.mu, self.lam, self.unupdate_rate, self.ignore_index = budget_mu, budget_lambda, unupdate_rate, ignore_index
        self.steps = 0

    @property
    def step_rate(self) -> float:
        return self.steps / self.total_steps

    def state_dict(self) -> dict:
        return {"steps": self.steps, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.saved_total_steps = int(state["total_steps"])

    def _check_schedule(self) -> None:
        """Continuing a schedule counted in other steps would misplace the budget switch-on;
        reloading a finished stage (e.g. in the notebook after ``nprocs`` processes) is fine."""
        saved = getattr(self, "saved_total_steps", self.total_steps)
        if saved != self.total_steps:
            raise dynn.train.CheckpointError(
                f"the saved training progress counts {saved} steps in the whole schedule, this stage "
                f"{self.total_steps}: it was trained with another number of processes (nprocs). Continue it with "
                f"the same nprocs, or delete the stage directory to retrain."
            )

    def __call__(self, model: nn.Module, batch) -> dict:
        self._check_schedule()
        net = dynn.train.unwrap(model)
        x, y = batch
        step_rate = self.step_rate
        out = model(x, step_rate=step_rate)
        ce = F.cross_entropy(out["logits"], y, ignore_index=self.ignore_index)
        table = net.cost_table(x.shape[-2:])
        budget = budget_loss(out["expected_cost"], table.full_cost, self.mu, self.lam, step_rate, self.unupdate_rate)
        self.steps += 1
        return {
            "loss": ce + budget,
            "ce": ce.detach(),
            "budget": budget.detach(),
            "expected_ratio": float(out["expected_cost"].detach().mean()) / table.full_cost,
            "real_ratio": float(out["real_cost"].detach().mean()) / table.network_fix_cost,
        }


def poly_lr_lambda(total_steps: int, warmup_iters: int = 0, warmup_factor: float = 0.001, power: float = 0.9):
    """Poly decay (1 − t/T)^0.9 after a linear warm-up from ``warmup_factor`` (official PolyLR)."""

    def factor(step: int) -> float:
        poly = (1 - min(step, total_steps) / total_steps) ** power
        if step < warmup_iters:
            alpha = step / warmup_iters
            return poly * (warmup_factor * (1 - alpha) + alpha)
        return poly

    return factor


def make_optimizer(
    model: nn.Module, lr: float, weight_decay: float = 1e-4, momentum: float = 0.9, optimizer: str = "sgd"
):
    """SGD 0.9 (official) or AdamW; weight decay on convolutions, none on BatchNorm
    (official WEIGHT_DECAY_NORM 0).

    AdamW exists for the CPU-sized runs: with a few hundred steps, SGD on the synthetic
    scenes has not yet left the "everything is background" solution (measured: mIoU 8 %
    after 280 steps vs 19 % with Adam), so nothing about routing could be compared.
    """
    decay, no_decay = [], []
    for module in model.modules():
        for _, p in module.named_parameters(recurse=False):
            (no_decay if isinstance(module, nn.BatchNorm2d) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"parameter 'optimizer' = {optimizer!r}: allowed 'sgd', 'adamw'")


def budget_free_epochs(epochs: int, unupdate_rate: float) -> int:
    """Whole epochs that end before the budget switches on: what :func:`warm_up` trains."""
    return int(unupdate_rate * epochs)


# ------------------------------------------------------------------ data and initial weights
def load_split(dataset: str, split: str, *, limit: int, data_root: str, crop_size: int, val_fraction: float):
    """One split; for the real sets ``val_fraction`` of the official training images is held
    out as ``val`` (the embedded scenes have their own fixed validation scenes)."""
    from dynn.data.catalog import CATALOG

    extra = {} if CATALOG[dataset].embedded else {"val_fraction": val_fraction}
    return get_dataset(dataset, split, limit=limit, data_root=data_root, resolution=crop_size, **extra)


def load_stem_weights(model: DynamicRoutingNet, path: str) -> list[str]:
    """Initialise the stem from a local state dict (e.g. ImageNet-pretrained weights).

    Accepts a state dict (or one under ``"state_dict"``/``"model"``) whose stem entries are
    named ``stem.<name>`` (as :class:`DynamicRoutingNet` names them; other entries are
    ignored) or ``<name>`` directly. Every stem tensor must be there with its shape.
    Returns the names that were loaded.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    own = model.stem.state_dict()
    found = {k[len("stem.") :]: v for k, v in state.items() if k.startswith("stem.")} or {
        k: v for k, v in state.items() if k in own
    }
    missing = sorted(set(own) - set(found))
    wrong = [
        f"{k}: {tuple(found[k].shape)} there, {tuple(own[k].shape)} here"
        for k in own
        if k in found and found[k].shape != own[k].shape
    ]
    if missing or wrong:
        raise ValueError(
            f"parameter 'stem_weights' = {path!r}: "
            + (f"missing stem entries {missing[:4]}{' ...' if len(missing) > 4 else ''}" if missing else "")
            + ("; " if missing and wrong else "")
            + (f"shapes differ ({'; '.join(wrong[:4])})" if wrong else "")
            + f". Expected the names of DynamicRoutingNet.stem ({', '.join(list(own)[:3])}, ...) with prefix 'stem.'"
        )
    model.stem.load_state_dict({k: found[k] for k in own})
    return list(own)


# ------------------------------------------------------------------ the stages
def _train_stage(
    stage: dynn.train.Stage,
    *,
    gated: bool,
    epochs: int,
    train_epochs: int,
    budget_mu: float | None,
    budget_lambda: float,
    unupdate_rate: float,
    warm_checkpoint: str,
    dataset: str,
    data_root: str,
    crop_size: int,
    train_limit: int,
    val_limit: int,
    val_fraction: float,
    layers: int,
    init_channels: int,
    gate_bias: float,
    small_gate: bool,
    drop_path_prob: float,
    batch_size: int,
    optimizer: str,
    lr: float,
    weight_decay: float,
    warmup_iters: int,
    grad_clip: float,
    stem_weights: str,
    static_route: list | None = None,
) -> DynamicRoutingNet:
    """Epochs ``[.., train_epochs)`` of an ``epochs``-long schedule, as resumable stage ``stage``."""
    from dynn.dynamic_routing.evaluate import evaluate

    torch_device = dynn.train.resolve_device(stage.device)
    distributed = dynn.train.init_distributed(torch_device)
    split = dict(data_root=data_root, crop_size=crop_size, val_fraction=val_fraction)
    train_data = load_split(dataset, "train", limit=train_limit, **split)
    val_data = load_split(dataset, "val", limit=val_limit, **split)
    dynn.train.seed_everything(stage.seed)  # the initial weights depend on the seed only
    model = build_model(
        train_data.num_classes,
        layers=layers,
        init_channels=init_channels,
        gated=gated,
        gate_bias=gate_bias,
        small_gate=small_gate,
        drop_path_prob=drop_path_prob,
        static_route=static_route,
    )
    if stem_weights:
        load_stem_weights(model, stem_weights)
    model = model.to(torch_device)
    model.cost_table((crop_size, crop_size))  # measured once here, not inside a DDP forward
    steps_per_epoch = math.ceil(len(train_data) / dynn.train.world_size() / batch_size)  # as fit counts them
    total_steps = epochs * steps_per_epoch
    opt = make_optimizer(model, lr, weight_decay, optimizer=optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, poly_lr_lambda(total_steps, warmup_iters))
    step = RoutingStep(total_steps, budget_mu, budget_lambda, unupdate_rate)
    if warm_checkpoint and not stage.checkpoint.exists():
        if dynn.train.is_main_process():
            _continue_from(warm_checkpoint, stage)
        if distributed:
            torch.distributed.barrier()

    def validate(net: nn.Module) -> dict:
        ev = evaluate(net, val_data, batch_size=batch_size, device=torch_device)
        return {"miou": ev["miou"], "real_ratio": float((ev["real_cost"] / ev["network_fix_cost"]).mean())}

    schedule = dynn.train.Schedule(opt, train_epochs, batch_size, scheduler, per_step=True, grad_clip=grad_clip or None)
    history = dynn.train.fit(model, step, train_data, stage, schedule, eval_fn=validate, state={"routing": step})
    model.training_history = history  # per-epoch rows (also in <run_dir>/metrics.csv)
    # The weights this process ends with (under DDP: this rank's), equal to the checkpoint's.
    return model.eval()


def _continue_from(warm_checkpoint: str, stage: dynn.train.Stage) -> None:
    """Start ``stage`` from the shared warm-up: its checkpoint becomes this stage's first epochs.

    Weights, optimizer, learning-rate schedule and step count carry over, which is exactly
    what one uninterrupted run would have done. The warm-up must have been trained with this
    stage's shared arguments (checked, never assumed).
    """
    if not Path(warm_checkpoint).exists():
        raise FileNotFoundError(
            f"warm-up checkpoint {warm_checkpoint!r} does not exist: run the warm_up stage "
            f"with the same arguments first"
        )
    state = dynn.train.read_checkpoint(warm_checkpoint)
    warm_params, params = state.get("params") or {}, stage.params
    differ = [
        f"{k}: {warm_params[k]!r} there, {params[k]!r} here"
        for k in sorted(set(warm_params) & set(params))
        if warm_params[k] != params[k]
    ]
    if differ:
        raise dynn.train.CheckpointError(
            f"warm-up checkpoint {warm_checkpoint!r} was trained with other arguments (" + "; ".join(differ) + ")"
        )
    state["history"] = [
        {**row, "stage": stage.name, "shared_from": str(warm_checkpoint)} for row in state.get("history", [])
    ]
    state["params"] = params
    from dynn.runs import atomic_torch_save

    atomic_torch_save(state, stage.checkpoint)


def _network_and_schedule(stage: dynn.train.Stage, **overrides) -> dict:
    """What a stage hands on to :func:`_train_stage` as it received it (data, network,
    optimizer, schedule): its recorded arguments less the seed (the stage carries it) and the
    budget (each stage sets its own), with ``overrides``."""
    passed_on = {k: v for k, v in stage.params.items() if k not in ("seed", "budget_mu", "budget_lambda")}
    return {**passed_on, **overrides}


def warm_up(
    *,
    run_dir: str,
    device: str,
    dataset: str,
    data_root: str,
    crop_size: int,
    train_limit: int,
    val_limit: int,
    layers: int,
    init_channels: int,
    gate_bias: float,
    small_gate: bool,
    unupdate_rate: float,
    drop_path_prob: float,
    epochs: int,
    batch_size: int,
    optimizer: str,
    lr: float,
    weight_decay: float,
    warmup_iters: int,
    grad_clip: float,
    seed: int,
    val_fraction: float = 0.1,
    stem_weights: str = "",
    progress: bool = True,
) -> DynamicRoutingNet:
    """The budget-free first ``unupdate_rate`` of an ``epochs``-long schedule (whole epochs).

    Shared by every budget μ and by Dynamic-Raw: :func:`train_dynamic` continues from its
    checkpoint. With fewer than one whole budget-free epoch it trains nothing.
    """
    stage = dynn.train.Stage.of("warm_up", locals())
    return _train_stage(
        stage,
        gated=True,
        train_epochs=budget_free_epochs(epochs, unupdate_rate),
        budget_mu=None,
        budget_lambda=0.0,
        warm_checkpoint="",
        **_network_and_schedule(stage),
    )


def train_dynamic(
    *,
    run_dir: str,
    device: str,
    budget_mu: float | None,
    budget_lambda: float,
    warm_checkpoint: str,
    dataset: str,
    data_root: str,
    crop_size: int,
    train_limit: int,
    val_limit: int,
    layers: int,
    init_channels: int,
    gate_bias: float,
    small_gate: bool,
    unupdate_rate: float,
    drop_path_prob: float,
    epochs: int,
    batch_size: int,
    optimizer: str,
    lr: float,
    weight_decay: float,
    warmup_iters: int,
    grad_clip: float,
    seed: int,
    val_fraction: float = 0.1,
    stem_weights: str = "",
    progress: bool = True,
) -> DynamicRoutingNet:
    """The dynamic network under budget μ (``budget_mu``, λ = ``budget_lambda``) to the end of the schedule.

    Continues from ``warm_checkpoint`` (:func:`warm_up`'s checkpoint; ``""`` or a schedule
    with no budget-free epoch starts from scratch). ``budget_mu=None`` is Dynamic-Raw.
    The budget switches on at ``unupdate_rate`` of training with a 0.02 warm-up.
    """
    # the warm-up's path is left out of what is recorded: its content is checked by _continue_from
    stage = dynn.train.Stage.of("train_dynamic", locals(), not_params=["warm_checkpoint"])
    if budget_free_epochs(epochs, unupdate_rate) == 0:
        warm_checkpoint = ""  # nothing was trained before the budget (warm_up trained no epoch)
    return _train_stage(
        stage,
        gated=True,
        train_epochs=epochs,
        budget_mu=budget_mu,
        budget_lambda=budget_lambda,
        warm_checkpoint=warm_checkpoint,
        **_network_and_schedule(stage),
    )


def train_fixed(
    *,
    run_dir: str,
    device: str,
    dataset: str,
    data_root: str,
    crop_size: int,
    train_limit: int,
    val_limit: int,
    layers: int,
    init_channels: int,
    drop_path_prob: float,
    epochs: int,
    batch_size: int,
    optimizer: str,
    lr: float,
    weight_decay: float,
    warmup_iters: int,
    grad_clip: float,
    seed: int,
    val_fraction: float = 0.1,
    stem_weights: str = "",
    static_route: list | None = None,
    progress: bool = True,
) -> DynamicRoutingNet:
    """Network-Fix: the same routing space with the gates off (every path open), trained from scratch.

    Two static rivals of a dynamic network at its cost are this stage too: ``static_route``
    (0/1 per cell and path, e.g. :func:`dynn.dynamic_routing.evaluate.modal_route` of the
    dynamic network) fixes one route for every image — the learned route, retrained from
    scratch as a static network — and a smaller ``init_channels``
    (:func:`dynn.dynamic_routing.evaluate.width_at_cost`) is a narrower Network-Fix.
    """
    stage = dynn.train.Stage.of("train_fixed", locals())
    return _train_stage(
        stage,
        gated=False,
        train_epochs=epochs,
        budget_mu=None,
        budget_lambda=0.0,
        warm_checkpoint="",
        **_network_and_schedule(stage, unupdate_rate=1.0, gate_bias=0.0, small_gate=False),  # no budget, no gates
    )


STAGES = {"warm_up": warm_up, "train_dynamic": train_dynamic, "train_fixed": train_fixed}


def main(argv: list[str] | None = None) -> None:
    """``torchrun [--nnodes N] --nproc_per_node G -m dynn.dynamic_routing.train --stage NAME --config stage.yaml --run-dir DIR``."""
    dynn.train.stage_main(STAGES, argv, prog="python -m dynn.dynamic_routing.train")


if __name__ == "__main__":
    main()
