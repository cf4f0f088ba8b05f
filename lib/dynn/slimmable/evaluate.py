"""Evaluating a trained slimmable network: which widths to deploy, their accuracy, MACs and latency.

- **Selection on validation, as the official code does it** (:func:`search_front`): every
  candidate configuration (what the search visited, plus the full and the smallest
  network) gets its BN statistics recalibrated for exactly that configuration
  (:func:`dynn.evaluate.recalibrate_bn`, a true average over fixed training batches:
  Joslim's ``eval_checkpoints.py``, US-Nets' ``bn_calibration_init``) and is then scored on
  the **validation** split; per MACs budget the configuration with the lowest validation
  loss within it (on the validation Pareto front) is deployed and only then evaluated on
  **test**. Joslim's code scores on the test set; we never do.
- **The control** (:func:`posthoc_search`): the same layer-wise search run after training
  on the US-Nets (uniformly trained) weights, with the same number of proposals, then the
  same selection: what the search alone gives without joint training.
- **Accuracy of a configuration** (:func:`evaluate_config`): top-1 / top-5 / per-image
  ``correct`` by :func:`dynn.evaluate.evaluate_classifier` after recalibration — or, the
  ablation, with the statistics training left behind (shared by every width).
- **Cost**: MACs measured by :mod:`dynn.flops`; latency of each deployed configuration
  exported as a plain smaller network (:func:`dynn.slimmable.ops.export_static`), timed
  round by round, interleaved, at batch 1 and a larger batch (:func:`measure_latency`).
- **Results**: every point carries its ``role`` — searched layer-wise widths of the jointly
  trained network are the method; US-Nets' uniform widths and its post-hoc searched widths
  the baselines; uniform widths on the jointly trained weights and every "no BN
  recalibration" row ablations.
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
    "posthoc": "US-Nets (uniform) trained, post-hoc searched widths",
}
ROLES = {
    SERIES["searched"]: "method",
    SERIES["layerwise"]: "ablation",
    SERIES["uniform"]: "baseline",
    SERIES["posthoc"]: "baseline",
}
# the MACs budgets the paper's claims are checked at (ratios to the full network)
CLAIM_TARGETS = (0.25, 0.5, 0.75)
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
@torch.no_grad()
def score_on_validation(
    net: DynModel,
    wms: Sequence,
    val_data: Dataset,
    *,
    calibration: Sequence[torch.Tensor],
    device="cpu",
) -> pd.DataFrame:
    """Validation loss and top-1 of each configuration, each after its own BN recalibration.

    The network's trained statistics and full width are restored afterwards.
    """
    trained_bn = bn_statistics(net)
    rows = []
    for wm in wms:
        r = evaluate_config(net, net.real_ch_of(wm), val_data, calibration=calibration, device=device)
        rows.append({"val_loss": r["loss"], "val_top1": r["top1"]})
    load_bn_statistics(net, trained_bn)
    net.set_real_ch(net.full_real_ch())
    net.eval()
    return pd.DataFrame(rows)


def search_front(
    net: DynModel,
    history: dict,
    val_data: Dataset,
    *,
    cost: CostModel,
    min_width: float,
    calibration: Sequence[torch.Tensor],
    device="cpu",
) -> pd.DataFrame:
    """Every searched configuration (plus full and smallest) re-scored on validation data.

    Each candidate is scored after BN recalibration for its own widths. Columns ``wm``,
    ``macs_ratio``, ``val_loss``, ``val_top1``, ``order`` (proposal order) and ``on_front``
    (the validation Pareto front of MACs ratio vs loss).
    """
    smallest = net.uniform_wm(min_width)
    candidates = [list(x) for x in history["X"]] + [list(net.full_wm()), list(smallest)]
    ratio = [cost.exact(net.real_ch_of(np.asarray(w))) for w in candidates]
    scores = score_on_validation(net, candidates, val_data, calibration=calibration, device=device)
    table = pd.DataFrame({"wm": candidates, "macs_ratio": ratio, "order": range(len(ratio))})
    table = pd.concat([table, scores], axis=1)
    table["on_front"] = False
    table.loc[pareto_indices(ratio, table.val_loss.tolist()), "on_front"] = True
    return table


def posthoc_search(
    net: DynModel,
    val_data: Dataset,
    *,
    cost: CostModel,
    min_width: float,
    num_sampled: int,
    search_budget: int,
    surrogate: bool,
    seed: int,
    batches: int = 2,
    batch_size: int = 64,
    device="cpu",
) -> dict:
    """The control: the layer-wise search of joint training, run after training on fixed weights.

    The same :class:`~dynn.slimmable.search.LayerwiseSampler` (same prior points, cost
    targets, evolution, GP ranking, ``search_budget`` proposals, ``num_sampled`` at a time)
    proposes configurations of ``net``; each is scored as the joint search scores its
    history (loss with batch statistics on ``batches`` validation batches) — once, since
    the weights no longer change. Returns a history like
    :func:`dynn.slimmable.search.load_history`, for :func:`search_front`.
    """
    from dynn.slimmable.train import make_sampler

    sampler = make_sampler(
        "layerwise",
        net,
        min_width=min_width,
        num_sampled=num_sampled,
        resolution=cost.resolution,
        in_channels=cost.in_channels,
        search_budget=search_budget,
        surrogate=surrogate,
    )
    rng = np.random.default_rng(seed)
    while len(sampler.X) < search_budget:
        first = len(sampler.X)
        for _ in range(max(1, min(num_sampled, search_budget - first))):
            sampler.propose(rng)
        new = [np.asarray(x) for x in sampler.X[first:]]
        sampler.loss[first:] = validation_losses(
            net, new, val_data, batches=batches, batch_size=batch_size, device=device
        )
    return {"X": sampler.X, "ratio": sampler.ratio, "loss": sampler.loss, "target": sampler.target}


def cost_targets(lower: float, num_points: int) -> list[float]:
    """``num_points`` MACs ratios from the smallest network to the full one, plus 0.25 / 0.5 / 0.75."""
    return sorted(
        {round(float(t), 3) for t in np.linspace(lower, 1.0, num_points)}
        | {t for t in CLAIM_TARGETS if t > lower}
        | {1.0}
    )


def chosen_per_target(search: pd.DataFrame, targets: Sequence[float]) -> dict[float, int]:
    """For each target, the row of ``search`` deployed for it: the validation front's
    configuration with the lowest validation loss within the target (targets nothing fits
    are left out)."""
    ratio, loss = search.macs_ratio.tolist(), search.val_loss.tolist()
    out = {}
    for t in targets:
        (i,) = select_on_front(ratio, loss, [t]) or [None]
        if i is not None:
            out[float(t)] = int(i)
    return out


def uniform_width_at_least(net: DynModel, cost: CostModel, ratio: float, min_width: float, step: float = 1e-3) -> float:
    """The smallest uniform multiplier whose MACs ratio is ≥ ``ratio`` (a rival "at matched
    MACs": the nearest uniform configuration not cheaper than the method's)."""
    w = uniform_width_for_ratio(net, cost, ratio, min_width)
    while w < 1.0 and cost.exact(net.real_ch_of(net.uniform_wm(w))) < ratio - 1e-9:
        w = min(1.0, w + step)
    return w


def sweep_configs(
    kind: str,
    net: DynModel,
    *,
    cost: CostModel,
    targets: Sequence[float],
    min_width: float,
    search: pd.DataFrame | None = None,
    matched_ratios: Sequence[float] = (),
) -> list[dict]:
    """The configurations to evaluate on test for a network trained by sampler ``kind``.

    For each target the largest **uniform** width within it (``selection = "fixed"``: the
    width follows from the budget alone); for each of ``matched_ratios`` the smallest
    uniform width not cheaper (the rival at matched MACs); with ``search`` (the validation
    table of :func:`search_front`) the configuration chosen on validation for each target.
    Each config carries ``targets`` (the budgets it was chosen for).
    """
    by_width: dict[float, list] = {}
    for t in targets:
        by_width.setdefault(round(uniform_width_for_ratio(net, cost, t, min_width), 4), []).append(float(t))
    for r in matched_ratios:
        w = round(uniform_width_at_least(net, cost, r, min_width), 4)
        same = [v for v in by_width if net.real_ch_of(net.uniform_wm(v)) == net.real_ch_of(net.uniform_wm(w))]
        if not same:  # a width with the same channel counts is already evaluated
            by_width[w] = []
    configs = [
        {
            "label": f"uniform {w:.3f}",
            "series": SERIES[kind],
            "selection": "fixed",
            "wm": net.uniform_wm(w),
            "targets": ts,
        }
        for w, ts in sorted(by_width.items())
    ]
    if search is not None:
        chosen: dict[int, list] = {}
        for t, i in chosen_per_target(search, targets).items():
            chosen.setdefault(i, []).append(t)
        series = SERIES["searched" if kind == "layerwise" else "posthoc"]
        for i, ts in chosen.items():
            row = search.iloc[i]
            configs.append(
                {
                    "label": f"{'searched' if kind == 'layerwise' else 'post-hoc'} {row.macs_ratio:.3f}",
                    "series": series,
                    "selection": "validation",
                    "wm": np.asarray(row.wm),
                    "targets": ts,
                    "val_loss": float(row.val_loss),
                    "val_top1": float(row.val_top1),
                }
            )
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
    MACs come from ``dynn.flops`` (per image, ratio to full width). Other keys of a config
    (``targets``, ``val_loss``...) are kept. The network's trained statistics and full
    width are restored at the end.
    """
    trained_bn = bn_statistics(net)
    full_macs = net.macs_of(net.full_real_ch(), resolution, in_channels)
    rows = []
    for cfg in configs:
        real = net.real_ch_of(cfg["wm"])
        macs = net.macs_of(real, resolution, in_channels)
        base = {
            **{k: v for k, v in cfg.items() if k != "wm"},
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
    rounds: int = 5,
) -> pd.DataFrame:
    """Latency of each row's configuration as an exported plain network, and its ratio to full width.

    ``rows`` carry ``model`` (a key of ``models``) and ``real_ch``; ``inputs`` are the
    batches to time (batch 1 and a larger one). Each round times every configuration, the
    full-width network of each model and every batch once, interleaved, in one
    :func:`dynn.flops.compare_latency` call (``latency_time / rounds`` seconds each), so a
    configuration's latency *ratio* to its full network is measured within each round; the
    rounds give its median and a t-interval. Returns one row per configuration:
    ``latency_ms`` / ``latency_batch`` (batch 1) and ``latency_batched_ms`` /
    ``latency_batched_batch`` (the larger batch that really ran), their spreads, the
    median ratios ``latency_ratio`` / ``latency_ratio_batched`` and, per round,
    ``ratio_rounds`` / ``ratio_rounds_batched``.
    """
    calls, exported = {}, {}
    for kind, net in models.items():
        net.set_real_ch(net.full_real_ch())
        exported[("full", kind)] = export_static(net.eval())
    for i, r in enumerate(rows):
        net = models[r["model"]]
        net.set_real_ch(r["real_ch"])
        exported[i] = export_static(net.eval())
        net.set_real_ch(net.full_real_ch())
    for key, static in exported.items():
        for j, x in enumerate(inputs):
            calls[(key, j)] = (static, (x,))
    per_round: dict = {name: [] for name in calls}
    meta: dict = {}
    for _ in range(rounds):
        for m in dynn.flops.compare_latency(calls, rounds=1, min_run_time=latency_time / rounds):
            per_round[m["name"]].append(m["median_ms"])
            meta[m["name"]] = m
    out = []
    for i, r in enumerate(rows):
        row = {"model": r["model"], "label": r["label"], "series": r["series"]}
        for j, key in enumerate(["latency", "latency_batched"][: len(inputs)]):
            mine, full = np.asarray(per_round[(i, j)]), np.asarray(per_round[(("full", r["model"]), j)])
            suffix = "" if j == 0 else "_batched"
            row.update(
                {
                    f"{key}_ms": float(np.median(mine)),
                    f"{key}_batch": meta[(i, j)]["batch"],
                    f"{key}_spread_ms": float(mine.max() - mine.min()),
                    f"latency_ratio{suffix}": float(np.median(mine / full)),
                    f"ratio_rounds{suffix}": (mine / full).tolist(),
                    "latency_device": meta[(i, j)]["device"],
                    "latency_threads": meta[(i, j)]["threads"],
                }
            )
        out.append(row)
    return pd.DataFrame(out)


def example_batches(data: Dataset, sizes: Sequence[int], *, device="cpu") -> list[torch.Tensor]:
    """The first images of ``data`` as batches of ``sizes`` (at most the whole split) to time."""
    return [torch.stack([data[i][0] for i in range(min(n, len(data)))]).to(device) for n in sizes]


def latency_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """The timed (BN-recalibrated) rows with their latency ratio to the full network.

    :func:`measure_latency` measured the ratios round by round against the full-width
    network of the same model; rows without them fall back to the ratio of medians to the
    fullest timed row.
    """
    recal = table[table.bn_recal & table.latency_ms.notna()]
    if "latency_ratio" in recal and recal.latency_ratio.notna().all():
        return recal
    full = recal[recal.macs_ratio >= 0.999].iloc[0]
    return recal.assign(
        latency_ratio=recal.latency_ms / full.latency_ms,
        latency_ratio_batched=recal.latency_batched_ms / full.latency_batched_ms,
    )


# ====================================================================== results
def chosen_row(rows: list[dict] | pd.DataFrame, series: str, target: float) -> dict | None:
    """The row of ``series`` that a deployment picks for a MACs budget, *without looking at test*.

    Rows chosen on validation for ``target`` (their ``targets`` list) first; otherwise,
    among rows within the budget, the one with the lowest validation loss where rows carry
    one, else the most expensive (a uniform width is fixed by its budget).
    """
    rows = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows
    mine = [r for r in rows if r["series"] == series]
    tagged = [r for r in mine if target in (r.get("targets") or [])]
    if tagged:
        return tagged[0]
    fits = [r for r in mine if r["macs_ratio"] <= target + 1e-9]
    if not fits:
        return None
    with_val = [r for r in fits if not pd.isna(r.get("val_loss", np.nan))]
    if with_val:
        return min(with_val, key=lambda r: r["val_loss"])
    return max(fits, key=lambda r: r["macs_ratio"])


def accuracy_at(rows: list[dict] | pd.DataFrame, series: str, target: float) -> float:
    """Test top-1 of the configuration of ``series`` chosen for ``target`` (:func:`chosen_row`)."""
    row = chosen_row(rows, series, target)
    return float("nan") if row is None else float(row["accuracy"])


def summary_metrics(table: pd.DataFrame, speed: pd.DataFrame) -> dict:
    """Headline numbers: top-1 at 0.25 / 0.5 / 0.75 / 1.0 of the full MACs per curve (the
    configuration chosen without test), the mean gain from BN recalibration, and latency vs
    MACs of the smallest timed configuration."""
    metrics = {}
    recal = table[table.bn_recal]
    for series in recal.series.unique():
        short = series.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        for t in (*CLAIM_TARGETS, 1.0):
            metrics[f"top1@{t}_{short}"] = accuracy_at(table, series, t)
    paired = table.assign(key=table.series.str.replace(NO_RECAL, "", regex=False) + table.label)
    pivot = paired.pivot_table(index="key", columns="bn_recal", values="accuracy")
    if {True, False} <= set(pivot.columns):
        metrics["bn_recal_gain_mean"] = float((pivot[True] - pivot[False]).dropna().mean())
    smallest = speed.loc[speed.macs_ratio.idxmin()]
    metrics.update(
        smallest_macs_ratio=float(smallest.macs_ratio),
        smallest_latency_ratio=float(smallest.latency_ratio),
        smallest_latency_ratio_batched=float(smallest.latency_ratio_batched),
        latency_batched_batch=int(smallest.latency_batched_batch),
    )
    return metrics


def result_points(table: pd.DataFrame, deployed: dict[str, str] | None = None) -> list[dict]:
    """The ``results.json`` points: every evaluated row with its role, series and selection
    (``deployed``: label → the file :meth:`dynn.runs.Run.save_deployed` returned)."""
    deployed = deployed or {}
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
        for key in ("targets", "val_loss", "val_top1"):
            value = r.get(key)
            if isinstance(value, list) or (value is not None and not pd.isna(value)):
                p[key] = value
        if r["bn_recal"] and not pd.isna(r.get("latency_ms")):
            p.update(
                latency_ms=r["latency_ms"],
                latency_batch=int(r["latency_batch"]),
                latency_batched_ms=r["latency_batched_ms"],
                latency_batched_batch=int(r["latency_batched_batch"]),
            )
        if r["bn_recal"] and (r.get("model"), r["label"]) in deployed:
            p["deployed"] = deployed[(r.get("model"), r["label"])]
        points.append(p)
    return points


def sweep(
    models: dict[str, DynModel],
    searches: dict[str, pd.DataFrame],
    test_data: Dataset,
    *,
    calibration: Sequence[torch.Tensor],
    cost: CostModel,
    targets: Sequence[float],
    min_width: float,
    device,
    resolution: int,
    latency_inputs: Sequence[torch.Tensor],
    latency_time: float,
) -> pd.DataFrame:
    """Evaluate every trained network (``{"layerwise": net, "uniform": net}``) on test.

    ``searches`` holds each model's validation table (:func:`search_front`; for
    ``"uniform"`` the post-hoc search). Per model: uniform widths at every target, the
    validation-chosen searched widths per target, and for the US-Nets model also the
    uniform widths matched (not cheaper) to each of the method's chosen configurations.
    Rows without BN recalibration are added for the jointly trained model (the ablation).
    The method's and the US-Nets model's deployed rows are timed as exported networks
    (:func:`measure_latency`); the table gets their latency columns.
    """
    rows = []
    method_ratios: list[float] = []
    for kind in sorted(models, key=lambda k: k != "layerwise"):  # the method first: its ratios are matched
        net = models[kind]
        configs = sweep_configs(
            kind,
            net,
            cost=cost,
            targets=targets,
            min_width=min_width,
            search=searches.get(kind),
            matched_ratios=method_ratios if kind == "uniform" else (),
        )
        evaluated = evaluate_configs(
            net,
            configs,
            test_data,
            calibration=calibration,
            device=device,
            resolution=resolution,
            ablation=kind == "layerwise",
        )
        rows += [{"model": kind, **r} for r in evaluated]
        if kind == "layerwise":
            method_ratios = [r["macs_ratio"] for r in evaluated if r["series"] == SERIES["searched"]]
    table = pd.DataFrame(rows)
    timed = table[table.bn_recal & table.series.isin([SERIES["searched"], SERIES["uniform"]])]
    latency = measure_latency(models, timed.to_dict("records"), latency_inputs, latency_time=latency_time)
    latency.index = timed.index
    return table.join(latency.drop(columns=["model", "label", "series"]))


def deployed_module(net: DynModel, real_ch: list) -> nn.Module:
    """What a deployment of this configuration ships: the plain exported network (eval mode)."""
    net.set_real_ch(real_ch)
    static = export_static(net.eval())
    net.set_real_ch(net.full_real_ch())
    return static


def save_deployed(
    save,
    models: dict[str, DynModel],
    table: pd.DataFrame,
    inputs: torch.Tensor,
    *,
    targets: Sequence[float],
    calibration: Sequence[torch.Tensor],
    device="cpu",
) -> dict:
    """Save the deployed networks through ``save(label, module, inputs)`` (``run.save_deployed``):
    the method's configuration chosen for each target and the US-Nets uniform rival matched
    to it, BN recalibrated (the table's recalibrated rows) and exported as plain networks.
    Returns ``{(model, label): file}`` for :func:`result_points`.

    The recalibrated statistics are re-estimated here exactly as for the test rows, so the
    saved module computes what the reported accuracy measured.
    """
    out = {}
    for target in targets:
        method = chosen_row(table[table.bn_recal], SERIES["searched"], target)
        if method is None:
            continue
        rival = matched_rival(table, method)
        for row in (method, rival):
            if row is None or (row["model"], row["label"]) in out:
                continue
            net = models[row["model"]]
            trained_bn = bn_statistics(net)
            dynn.evaluate.recalibrate_bn(net, calibration, device=device, forward=net.forward_at(row["real_ch"]))
            module = deployed_module(net, row["real_ch"])
            load_bn_statistics(net, trained_bn)
            out[(row["model"], row["label"])] = save(f"slimmable {row['label']}", module, inputs)
    return out


def matched_rival(table: pd.DataFrame, method: dict) -> dict | None:
    """The US-Nets uniform row at matched MACs: the cheapest one not cheaper than ``method``."""
    rivals = table[
        table.bn_recal & (table.series == SERIES["uniform"]) & (table.macs_ratio >= method["macs_ratio"] - 1e-9)
    ]
    return None if rivals.empty else rivals.loc[rivals.macs_ratio.idxmin()].to_dict()
