"""Training and evaluating a slimmable network: sandwich rule, BN recalibration, sweeps.

**Sandwich rule with in-place distillation** (US-Nets, kept by Joslim). Every step trains
the full width on the labels (optionally label-smoothed), the smallest width and
``num_sampled`` configurations from a sampler (:mod:`dynn.slimmable.search`), each of
the latter on the *detached* full-width soft predictions; the gradients of all widths are
summed into one optimizer step. The official codes call ``backward`` once per width; we
run the widths in one forward call of :class:`Sandwich` and back-propagate the summed loss
once — the same gradient, and one forward per step as DistributedDataParallel expects.

**BN recalibration.** The sliced BN layers share their running statistics across all
widths, so after training they describe no particular width. Before evaluating a
configuration, :func:`recalibrate_bn` resets them and re-estimates them as a cumulative
average (``momentum=None``) over ``num_batches`` training batches (US-Nets'
``bn_calibration_init``; Joslim's ``eval_checkpoints.py``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

import dynn.flops
import dynn.train
from dynn.data import make_loader
from dynn.runs import atomic_write_text
from dynn.slimmable.dyn_model import DynModel
from dynn.slimmable.ops import export_static
from dynn.slimmable.search import CostModel, LayerwiseSampler, UniformSampler


# ====================================================================== losses and the step
class Sandwich(nn.Module):
    """Runs several width configurations of one :class:`DynModel` in one forward call."""

    def __init__(self, net: DynModel):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, configs: Sequence[list]) -> list[torch.Tensor]:
        outputs = []
        for real_ch in configs:
            self.net.set_real_ch(real_ch)
            outputs.append(self.net(x))
        return outputs


def soft_cross_entropy(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """In-place distillation loss: cross-entropy to the teacher's softmax (Joslim's ``CrossEntropyLossSoft``)."""
    return torch.sum(-F.softmax(teacher_logits, dim=1) * F.log_softmax(logits, dim=1), dim=1).mean()


def sandwich_loss(outputs: list[torch.Tensor], labels: torch.Tensor, label_smoothing: float = 0.0) -> dict:
    """``outputs[0]`` is the full width (trained on labels), the rest learn from it."""
    full = outputs[0]
    loss_full = F.cross_entropy(full, labels, label_smoothing=label_smoothing)
    teacher = full.detach()
    distill = [soft_cross_entropy(o, teacher) for o in outputs[1:]]
    return {
        "loss": loss_full + sum(distill),
        "loss_full": loss_full.detach(),
        "loss_smallest": distill[-1].detach() if distill else loss_full.detach(),
        "accuracy_full": (full.argmax(1) == labels).float().mean() * 100,
    }


class SandwichStep:
    """``step_fn`` for :func:`dynn.train.fit`: full + sampled + smallest widths per batch.

    ``refresh_data`` (the validation split, never test) is where a layer-wise sampler
    measures the current loss of the configurations it has seen, one batch per refresh.
    """

    def __init__(self, net: DynModel, sampler, min_width: float, label_smoothing: float = 0.0,
                 refresh_data: Dataset | None = None, refresh_batch_size: int = 64):
        self.net, self.sampler, self.min_width = net, sampler, min_width
        self.label_smoothing = label_smoothing
        self.refresh_data, self.refresh_batch_size = refresh_data, refresh_batch_size
        self.refreshes = 0

    def refresh(self, wms: list[np.ndarray]) -> list[float]:
        """Held-out loss of each configuration on one validation batch (batch statistics)."""
        if self.refresh_data is None:
            return [float("nan")] * len(wms)
        n = len(self.refresh_data)
        bs = min(self.refresh_batch_size, n)
        k = (self.sampler.step // max(1, getattr(self.sampler, "tau", 1))) % max(1, n // bs)
        x, y = next(iter(make_loader(Subset(self.refresh_data, range(k * bs, k * bs + bs)), bs)))
        device = next(self.net.parameters()).device
        x, y = x.to(device), y.to(device)
        saved = bn_state(self.net)
        losses = []
        with torch.no_grad():
            for wm in wms:
                self.net.set_wm(wm)
                losses.append(float(F.cross_entropy(self.net(x), y)))
        load_bn_state(self.net, saved)
        self.refreshes += 1
        return losses

    def __call__(self, model: nn.Module, batch) -> dict:
        x, y = batch
        rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))  # numpy is reseeded per epoch by fit
        sampled = self.sampler.configs(rng, self.refresh)
        configs = ([self.net.full_real_ch()] + [self.net.real_ch_of(w) for w in sampled]
                   + [self.net.real_ch_of(self.net.uniform_wm(self.min_width))])
        out = sandwich_loss(model(x, configs), y, self.label_smoothing)
        self.net.set_real_ch(self.net.full_real_ch())
        return out


def warmup_linear_decay(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int):
    """Per-step LR: linear warm-up, then linear decay to 0 (Joslim's ``linear_decay``)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, 1.0 - (step - warmup_steps) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_sampler(kind: str, net: DynModel, *, min_width: float, num_sampled: int, resolution: int,
                 in_channels: int = 3, tau: int = 10, search_budget: int = 40, prior_points: int | None = None,
                 surrogate: bool = True):
    """``uniform`` (US-Nets) or ``layerwise`` (Joslim-style, GP-guided evolutionary search)."""
    if kind == "uniform":
        return UniformSampler(net, min_width, num_sampled)
    if kind == "layerwise":
        prior = prior_points if prior_points is not None else max(2, min(20, search_budget // 4))
        return LayerwiseSampler(net, CostModel(net, resolution, in_channels), min_width, num_sampled,
                                tau=tau, search_budget=search_budget, prior_points=prior, surrogate=surrogate)
    raise ValueError(f"sampler must be 'uniform' or 'layerwise', got {kind!r}")


def train_slimmable(net: DynModel, sampler, train_data: Dataset, *, epochs: int, lr: float, batch_size: int,
                    run_dir: str | Path, stage: str, device, seed: int, min_width: float,
                    label_smoothing: float = 0.0, weight_decay: float = 5e-4, warmup_epochs: float = 0.0,
                    refresh_data: Dataset | None = None, refresh_batch_size: int = 64,
                    params: dict | None = None, progress: bool = True) -> list[dict]:
    """Train ``net`` with the sandwich rule as the resumable stage ``stage`` of ``run_dir``.

    SGD (momentum 0.9, Nesterov), per-step warm-up + linear decay as in Joslim's recipes.
    The sampler's search state is saved next to the checkpoint each epoch and restored
    with it, so an interrupted stage resumes the same search.
    """
    run_dir = Path(run_dir)
    model = Sandwich(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(train_data) / batch_size)
    scheduler = warmup_linear_decay(optimizer, epochs * steps_per_epoch, int(warmup_epochs * steps_per_epoch))
    step = SandwichStep(net, sampler, min_width, label_smoothing, refresh_data, refresh_batch_size)

    state_path = run_dir / f"{stage}.sampler.json"
    ckpt = dynn.train.checkpoint_path(run_dir, stage)
    states = json.loads(state_path.read_text()) if state_path.exists() else {}
    done = torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"] if ckpt.exists() else 0
    if done and str(done) in states:
        sampler.load_state_dict(states[str(done)])
    epoch = [done]

    def after_epoch(_model: nn.Module) -> dict:
        epoch[0] += 1
        if dynn.train.is_main_process():
            states[str(epoch[0])] = sampler.state_dict()
            keep = {k: states[k] for k in sorted(states, key=int)[-2:]}
            atomic_write_text(state_path, json.dumps(keep))
        return {"configs_seen": len(getattr(sampler, "X", []))}

    history = dynn.train.fit(model, step, train_data, epochs=epochs, optimizer=optimizer, scheduler=scheduler,
                             scheduler_per_step=True, batch_size=batch_size, run_dir=run_dir, stage=stage,
                             eval_fn=after_epoch, device=device, seed=seed, params=params, progress=progress)
    net.set_real_ch(net.full_real_ch())
    net.eval()
    return history


# ====================================================================== BN statistics
def _bns(net: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def bn_state(net: nn.Module) -> list[dict]:
    """A copy of every BN layer's running statistics (to undo a recalibration)."""
    return [{k: v.clone() for k, v in m._buffers.items() if v is not None} for m in _bns(net)]


def load_bn_state(net: nn.Module, state: list[dict]) -> None:
    for m, s in zip(_bns(net), state):
        for k, v in s.items():
            m._buffers[k].copy_(v)


@torch.no_grad()
def recalibrate_bn(net: DynModel, real_ch: list, data: Dataset, *, num_batches: int, batch_size: int = 128,
                   device: str | torch.device = "cpu", seed: int = 0) -> None:
    """Re-estimate BN statistics for one configuration: reset, cumulative average over batches.

    Uses ``num_batches`` shuffled batches of ``data`` (the training split), leaves the
    network in eval mode with ``real_ch`` applied and the BN momenta as they were.
    """
    net.set_real_ch(real_ch)
    bns = _bns(net)
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    net.train()
    for i, (x, _) in enumerate(make_loader(data, batch_size, shuffle=True, seed=seed)):
        if i >= num_batches:
            break
        net(x.to(device))
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    net.eval()


# ====================================================================== evaluation
def evaluate_config(net: DynModel, real_ch: list, test_data: Dataset, *, recal_data: Dataset | None,
                    bn_batches: int, device, seed: int = 0, batch_size: int = 256,
                    trained_bn: list[dict] | None = None) -> dict:
    """Top-1/top-5 of one configuration, after BN recalibration (``recal_data`` given) or
    with the running statistics left by training (``trained_bn``, the ablation)."""
    if recal_data is not None:
        recalibrate_bn(net, real_ch, recal_data, num_batches=bn_batches, device=device, seed=seed)
    else:
        if trained_bn is not None:
            load_bn_state(net, trained_bn)
        net.set_real_ch(real_ch)
        net.eval()
    return dynn.train.evaluate_classifier(net, test_data, batch_size=batch_size, device=device)


def latency_of(net: DynModel, real_ch: list, inputs: Sequence[torch.Tensor], min_run_time: float = 0.3) -> list[float]:
    """Median latency (ms) of the configuration as a real smaller network (:func:`export_static`)."""
    net.set_real_ch(real_ch)
    net.eval()
    static = export_static(net).eval()
    return [dynn.flops.measure_latency(static, x, min_run_time=min_run_time).median_ms for x in inputs]


def refresh_losses(net: DynModel, wms: Sequence, data: Dataset, *, batches: int, batch_size: int = 128,
                   device="cpu") -> list[float]:
    """Validation loss of each configuration over ``batches`` batches (batch statistics, as
    during the search); used to pick the deployed configurations from the search history."""
    saved = bn_state(net)
    net.train()
    totals = np.zeros(len(wms))
    count = 0
    with torch.no_grad():
        for i, (x, y) in enumerate(make_loader(data, batch_size)):
            if i >= batches:
                break
            x, y = x.to(device), y.to(device)
            for j, wm in enumerate(wms):
                net.set_wm(wm)
                totals[j] += float(F.cross_entropy(net(x), y, reduction="sum"))
            count += len(y)
    load_bn_state(net, saved)
    net.eval()
    return list(totals / max(count, 1))


# ====================================================================== sweeps
def uniform_width_for_ratio(net: DynModel, cost: CostModel, target: float, min_width: float, iters: int = 20) -> float:
    """The largest uniform multiplier whose MACs ratio is ≤ ``target`` (≥ ``min_width``)."""
    lo, hi = min_width, 1.0
    if cost.ratio_of_wm(net.uniform_wm(hi)) <= target + 1e-9:
        return 1.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost.ratio_of_wm(net.uniform_wm(mid)) <= target + 1e-9 else (lo, mid)
    return lo


def evaluate_configs(net: DynModel, configs: list[dict], test_data: Dataset, *, recal_data: Dataset,
                     bn_batches: int, device, resolution: int, in_channels: int = 3, seed: int = 0,
                     ablation: bool = True, latency_inputs: Sequence[torch.Tensor] = (),
                     latency_time: float = 0.3) -> list[dict]:
    """Evaluate each ``{"label", "series", "wm"}`` configuration of ``net`` on ``test_data``.

    Each gets BN recalibration first; with ``ablation`` also a row evaluated with the
    statistics training left behind (series suffixed " (no BN recal)"). MACs come from
    ``dynn.flops`` (per image, ratio to full width); latency (batch 1 and the batch of
    ``latency_inputs[1]``) from :func:`latency_of` on the exported smaller network.
    """
    trained_bn = bn_state(net)
    full_macs = net.macs_of(net.full_real_ch(), resolution, in_channels)
    rows = []
    for cfg in configs:
        real = net.real_ch_of(cfg["wm"])
        macs = net.macs_of(real, resolution, in_channels)
        base = {"label": cfg["label"], "series": cfg["series"], "macs": macs, "macs_ratio": macs / full_macs,
                "wm": [round(float(w), 4) for w in cfg["wm"]], "real_ch": real}
        if ablation:
            stale = evaluate_config(net, real, test_data, recal_data=None, trained_bn=trained_bn,
                                    bn_batches=bn_batches, device=device)
            rows.append({**base, "series": cfg["series"] + " (no BN recal)", "bn_recal": False,
                         "accuracy": stale["top1"], "top5": stale["top5"]})
        acc = evaluate_config(net, real, test_data, recal_data=recal_data, bn_batches=bn_batches,
                              device=device, seed=seed)
        row = {**base, "bn_recal": True, "accuracy": acc["top1"], "top5": acc["top5"]}
        if latency_inputs:
            lat = latency_of(net, real, latency_inputs, latency_time)
            row["latency_ms"] = lat[0]
            if len(lat) > 1:
                row[f"latency_b{len(latency_inputs[1])}_ms"] = lat[1]
        rows.append(row)
    load_bn_state(net, trained_bn)
    net.set_real_ch(net.full_real_ch())
    return rows


def accuracy_at(rows: list[dict], series: str, target: float, slack: float = 0.02) -> float:
    """Best top-1 of ``series`` among configurations within ``target`` MACs ratio (+slack)."""
    fits = [r["accuracy"] for r in rows if r["series"] == series and r["macs_ratio"] <= target + slack]
    return max(fits) if fits else float("nan")
