"""Evaluating a trained slimmable network: which widths to deploy, their accuracy, MACs and latency.

- **Selection on validation** (:func:`search_front`): every configuration the search
  visited, plus the full and the smallest network, is re-scored on validation batches with
  the final weights; the Pareto front of (MACs ratio, validation loss) is what one deploys.
- **Accuracy of a configuration** (:func:`evaluate_config`): top-1 / top-5 by
  :func:`dynn.evaluate.evaluate_classifier` running the network at those widths, after
  BatchNorm recalibration for exactly that configuration (:func:`dynn.evaluate.recalibrate_bn`,
  a true average over fixed training batches: US-Nets' ``bn_calibration_init``, Joslim's
  ``eval_checkpoints.py``) — or, the ablation, with the statistics training left behind
  (shared by every width, so they fit none).
- **Cost**: MACs measured by :mod:`dynn.flops` per configuration; latency of each
  configuration exported as a genuinely smaller network, all timed in one interleaved
  :func:`dynn.flops.compare_latency` call at batch 1 and a larger batch (the batch that ran
  is recorded).
- **Results**: every point carries its ``role`` — searched layer-wise widths are the
  method; uniform widths on the same (jointly trained) weights an ablation (what the search
  adds); US-Nets' uniformly trained network the baseline; every "no BN recalibration" row an
  ablation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

import dynn.evaluate
import dynn.flops
from dynn.data import make_loader
from dynn.slimmable.model import DynModel
from dynn.slimmable.ops import export_static
from dynn.slimmable.search import CostModel, pareto_indices, select_on_front, uniform_width_for_ratio

SERIES = {
    "layerwise": "layer-wise trained, uniform widths",
    "searched": "layer-wise trained, searched widths",
    "uniform": "US-Nets (uniform) trained, uniform widths",
}
ROLES = {SERIES["searched"]: "method", SERIES["layerwise"]: "ablation", SERIES["uniform"]: "baseline"}
NO_RECAL = " (no BN recal)"


# ====================================================================== BN statistics
def bn_statistics(net: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the BatchNorm running statistics (to evaluate or restore what training left)."""
    return {k: v.clone() for k, v in net.state_dict().items() if "running_" in k or "num_batches_tracked" in k}


def load_bn_statistics(net: nn.Module, statistics: dict[str, torch.Tensor]) -> None:
    net.load_state_dict(statistics, strict=False)


# ====================================================================== one configuration
def evaluate_config(
    net: DynModel,
    real_ch: list,
    data: Dataset,
    *,
    calibration: Sequence[torch.Tensor] | None,
    trained_bn: dict | None = None,
    device="cpu",
    batch_size: int = 256,
) -> dict:
    """Top-1/top-5/loss/per-image ``correct`` of one configuration on ``data``.

    With ``calibration`` (fixed training batches) the BN statistics are first re-estimated
    for this configuration; with ``calibration=None`` they are those ``trained_bn`` holds
    (what training left behind: the ablation).
    """
    forward = net.forward_at(real_ch)
    if calibration is not None:
        dynn.evaluate.recalibrate_bn(net, calibration, device=device, forward=forward)
    elif trained_bn is not None:
        load_bn_statistics(net, trained_bn)
    return dynn.evaluate.evaluate_classifier(net, data, batch_size=batch_size, device=device, forward=forward)


@torch.no_grad()
def validation_losses(
    net: DynModel, wms: Sequence, data: Dataset, *, batches: int, batch_size: int = 128, device="cpu"
) -> list[float]:
    """Validation loss of each configuration over ``batches`` batches (batch statistics, as
    during the search); used to pick the deployed configurations from the search history."""
    saved = bn_statistics(net)
    net.train()
    totals = np.zeros(len(wms))
    count = 0
    for i, (x, y) in enumerate(make_loader(data, batch_size)):
        if i >= batches:
            break
        x, y = x.to(device), y.to(device)
        for j, wm in enumerate(wms):
            net.set_wm(wm)
            totals[j] += float(F.cross_entropy(net(x), y, reduction="sum"))
        count += len(y)
    load_bn_statistics(net, saved)
    net.set_real_ch(net.full_real_ch())
    net.eval()
    return list(totals / max(count, 1))


# ====================================================================== which configurations
def search_front(
    net: DynModel,
    history: dict,
    val_data: Dataset,
    *,
    cost: CostModel,
    min_width: float,
    batches: int = 2,
    device="cpu",
) -> pd.DataFrame:
    """Every searched configuration (plus full and smallest) re-scored on validation data.

    Columns ``wm``, ``macs_ratio``, ``val_loss``, ``order`` (proposal order) and
    ``on_front`` (the validation Pareto front of MACs ratio vs loss).
    """
    smallest = net.uniform_wm(min_width)
    candidates = [list(x) for x in history["X"]] + [list(net.full_wm()), list(smallest)]
    val_loss = validation_losses(net, candidates, val_data, batches=batches, device=device)
    ratio = list(history["ratio"]) + [1.0, cost.exact(net.real_ch_of(smallest))]
    table = pd.DataFrame({"wm": candidates, "macs_ratio": ratio, "val_loss": val_loss, "order": range(len(ratio))})
    table["on_front"] = False
    table.loc[pareto_indices(ratio, val_loss), "on_front"] = True
    return table


def cost_targets(lower: float, num_points: int) -> list[float]:
    """``num_points`` MACs ratios from the smallest network to the full one, plus 0.25 and 0.5."""
    return sorted(
        {round(float(t), 3) for t in np.linspace(lower, 1.0, num_points)} | {t for t in (0.25, 0.5) if t > lower}
    )


def sweep_configs(
    kind: str,
    net: DynModel,
    *,
    cost: CostModel,
    targets: Sequence[float],
    min_width: float,
    search: pd.DataFrame | None = None,
) -> list[dict]:
    """The configurations to evaluate for a network trained by sampler ``kind``.

    For each target the largest **uniform** width within it (a sweep); for the layer-wise
    model also the best **searched** configuration within it on the validation front.
    """
    widths = sorted({uniform_width_for_ratio(net, cost, t, min_width) for t in targets})
    series = SERIES[kind]
    configs = [
        {"label": f"uniform {w:.2f}", "series": series, "selection": "sweep", "wm": net.uniform_wm(w)} for w in widths
    ]
    if kind == "layerwise" and search is not None:
        ratio, loss = search.macs_ratio.tolist(), search.val_loss.tolist()
        configs += [
            {
                "label": f"searched {ratio[i]:.2f}",
                "series": SERIES["searched"],
                "selection": "validation",
                "wm": np.asarray(search.wm.iloc[i]),
            }
            for i in select_on_front(ratio, loss, targets)
        ]
    return configs


# ====================================================================== evaluate a sweep
def evaluate_configs(
    net: DynModel,
    configs: list[dict],
    test_data: Dataset,
    *,
    calibration: Sequence[torch.Tensor],
    device,
    resolution: int,
    in_channels: int = 3,
    ablation: bool = True,
) -> list[dict]:
    """Evaluate each ``{"label", "series", "selection", "wm"}`` configuration of ``net`` on ``test_data``.

    Each gets BN recalibration on ``calibration`` first; with ``ablation`` also a row
    evaluated with the statistics training left behind (series suffixed " (no BN recal)").
    MACs come from ``dynn.flops`` (per image, ratio to full width). The network's trained
    statistics and full width are restored at the end.
    """
    trained_bn = bn_statistics(net)
    full_macs = net.macs_of(net.full_real_ch(), resolution, in_channels)
    rows = []
    for cfg in configs:
        real = net.real_ch_of(cfg["wm"])
        macs = net.macs_of(real, resolution, in_channels)
        base = {
            "label": cfg["label"],
            "series": cfg["series"],
            "selection": cfg["selection"],
            "macs": macs,
            "macs_ratio": macs / full_macs,
            "wm": [round(float(w), 4) for w in cfg["wm"]],
            "real_ch": real,
        }
        if ablation:
            stale = evaluate_config(net, real, test_data, calibration=None, trained_bn=trained_bn, device=device)
            rows.append(
                {
                    **base,
                    "series": cfg["series"] + NO_RECAL,
                    "role": "ablation",
                    "bn_recal": False,
                    "accuracy": stale["top1"],
                    "top5": stale["top5"],
                    "loss": stale["loss"],
                    "correct": stale["correct"],
                }
            )
        acc = evaluate_config(net, real, test_data, calibration=calibration, device=device)
        rows.append(
            {
                **base,
                "role": ROLES[cfg["series"]],
                "bn_recal": True,
                "accuracy": acc["top1"],
                "top5": acc["top5"],
                "loss": acc["loss"],
                "correct": acc["correct"],
            }
        )
    load_bn_statistics(net, trained_bn)
    net.set_real_ch(net.full_real_ch())
    net.eval()
    return rows


def measure_latency(
    models: dict[str, DynModel],
    rows: list[dict],
    inputs: Sequence[torch.Tensor],
    *,
    latency_time: float,
    rounds: int = 3,
) -> pd.DataFrame:
    """Latency of each BN-recalibrated row's configuration as an exported smaller network.

    ``rows`` carry ``model`` (a key of ``models``) and ``real_ch``; ``inputs`` are the
    batches to time (batch 1 and a larger one). All configurations and batches are timed
    interleaved in one :func:`dynn.flops.compare_latency` call (``latency_time`` seconds per
    configuration and batch, over ``rounds`` rounds), so their ratios are comparable.
    Returns one row per configuration: ``latency_ms`` / ``latency_batch`` (batch 1) and
    ``latency_batched_ms`` / ``latency_batched_batch`` (the larger batch that really ran).
    """
    calls = {}
    for i, r in enumerate(rows):
        net = models[r["model"]]
        net.set_real_ch(r["real_ch"])
        static = export_static(net.eval()).eval()
        for j, x in enumerate(inputs):
            calls[(i, j)] = (static, (x,))
        net.set_real_ch(net.full_real_ch())
    measured = dynn.flops.compare_latency(calls, rounds=rounds, min_run_time=latency_time / rounds)
    out = {i: {} for i in range(len(rows))}
    for m in measured:
        i, j = m["name"]
        key = "latency" if j == 0 else "latency_batched"
        out[i].update(
            {
                f"{key}_ms": m["median_ms"],
                f"{key}_batch": m["batch"],
                f"{key}_spread_ms": m["spread_ms"],
                "latency_device": m["device"],
                "latency_threads": m["threads"],
            }
        )
    return pd.DataFrame(
        [{"model": r["model"], "label": r["label"], "series": r["series"], **out[i]} for i, r in enumerate(rows)]
    )


def example_batches(data: Dataset, sizes: Sequence[int], *, device="cpu") -> list[torch.Tensor]:
    """The first images of ``data`` as batches of ``sizes`` (at most the whole split) to time."""
    return [torch.stack([data[i][0] for i in range(min(n, len(data)))]).to(device) for n in sizes]


def latency_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Latency of each recalibrated row relative to the full-width network of the same call."""
    recal = table[table.bn_recal]
    full = recal[recal.macs_ratio >= 0.999].iloc[0]
    return recal.assign(
        latency_ratio=recal.latency_ms / full.latency_ms,
        latency_ratio_batched=recal.latency_batched_ms / full.latency_batched_ms,
    )


# ====================================================================== results
def accuracy_at(rows: list[dict] | pd.DataFrame, series: str, target: float, slack: float = 0.02) -> float:
    """Best top-1 of ``series`` among configurations within ``target`` MACs ratio (+slack)."""
    rows = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows
    fits = [r["accuracy"] for r in rows if r["series"] == series and r["macs_ratio"] <= target + slack]
    return max(fits) if fits else float("nan")


def summary_metrics(table: pd.DataFrame, speed: pd.DataFrame) -> dict:
    """Headline numbers: top-1 at 0.25 / 0.5 / 1.0 of the full MACs per curve, the mean gain
    from BN recalibration, and latency vs MACs of the smallest configuration."""
    metrics = {}
    recal = table[table.bn_recal]
    for series in recal.series.unique():
        short = series.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        for t in (0.25, 0.5, 1.0):
            metrics[f"top1@{t}_{short}"] = accuracy_at(table, series, t)
    paired = table.assign(key=table.series.str.replace(NO_RECAL, "", regex=False) + table.label)
    pivot = paired.pivot_table(index="key", columns="bn_recal", values="accuracy")
    if {True, False} <= set(pivot.columns):
        metrics["bn_recal_gain_mean"] = float((pivot[True] - pivot[False]).mean())
    smallest = speed.loc[speed.macs_ratio.idxmin()]
    metrics.update(
        smallest_macs_ratio=float(smallest.macs_ratio),
        smallest_latency_ratio=float(smallest.latency_ratio),
        smallest_latency_ratio_batched=float(smallest.latency_ratio_batched),
        latency_batched_batch=int(smallest.latency_batched_batch),
    )
    return metrics


def result_points(table: pd.DataFrame) -> list[dict]:
    """The ``results.json`` points: every evaluated row with its role, series and selection."""
    points = []
    for r in table.to_dict("records"):
        p = {
            "label": r["label"],
            "series": r["series"],
            "role": r["role"],
            "selection": r["selection"],
            "accuracy": r["accuracy"],
            "top5": r["top5"],
            "macs": int(r["macs"]),
            "macs_ratio": r["macs_ratio"],
            "bn_recal": bool(r["bn_recal"]),
            "widths": r["real_ch"],
        }
        if r["bn_recal"] and not pd.isna(r.get("latency_ms")):
            p.update(
                latency_ms=r["latency_ms"],
                latency_batch=int(r["latency_batch"]),
                latency_batched_ms=r["latency_batched_ms"],
                latency_batched_batch=int(r["latency_batched_batch"]),
            )
        points.append(p)
    return points


def sweep(
    models: dict[str, DynModel],
    test_data: Dataset,
    *,
    calibration: Sequence[torch.Tensor],
    cost: CostModel,
    targets: Sequence[float],
    min_width: float,
    search: pd.DataFrame | None,
    device,
    resolution: int,
    latency_inputs: Sequence[torch.Tensor],
    latency_time: float,
) -> pd.DataFrame:
    """Evaluate every trained network (``{"layerwise": net, "uniform": net}``) at every target.

    One row per configuration and BN treatment (see :func:`evaluate_configs`), with the
    recalibrated rows' latency from one interleaved measurement (:func:`measure_latency`).
    """
    rows = []
    for kind, net in models.items():
        configs = sweep_configs(kind, net, cost=cost, targets=targets, min_width=min_width, search=search)
        rows += [
            {"model": kind, **r}
            for r in evaluate_configs(
                net, configs, test_data, calibration=calibration, device=device, resolution=resolution
            )
        ]
    table = pd.DataFrame(rows)
    recal = table[table.bn_recal]
    latency = measure_latency(models, recal.to_dict("records"), latency_inputs, latency_time=latency_time)
    latency.index = recal.index
    return table.join(latency.drop(columns=["model", "label", "series"]))
