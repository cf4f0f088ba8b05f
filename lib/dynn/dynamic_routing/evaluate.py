"""Evaluating Dynamic Routing: mIoU, expected and real MACs per image, routes, latency.

- :func:`evaluate`: mIoU (%), per-class IoU, pixel accuracy, per-image expected and real
  MACs and every cell's gates, with the really-skipping inference by default;
- :func:`check_real_skipping`: the skipping inference equals the masked (dense) network and
  ``dynn.flops`` counts exactly the real cost it reports;
- :func:`route_diversity`, :func:`scale_activation`, :func:`gate_size_correlation`: do
  images take different routes, and do those follow the size of what is in them;
- :func:`forced_routes`: routes set by hand (replayed, finest scale only, every path open);
- :func:`latency_table`: skipping vs dense latency at batch 1 and a larger batch, all
  measured in one interleaved :func:`dynn.flops.compare_latency` call;
- :func:`result_points`: the rows of ``results.json`` (role, series, selection on each).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

import dynn.flops
from dynn.data import make_loader
from dynn.dynamic_routing.model import (
    IGNORE_INDEX,
    SCALE_NAMES,
    THRESHOLD,
    CostTable,
    DynamicRoutingNet,
    Node,
)

RAW, FIX = "Dynamic-Raw", "Network-Fix"
STATIC_ROUTE = "Static route"  # the dynamic network's most common route, fixed for every image, trained from scratch
NARROW_FIX = "Network-Fix (narrow)"  # Network-Fix with the width whose cost matches the dynamic network's
EQUAL_COST_RIVALS = (STATIC_ROUTE, NARROW_FIX)
METHOD_SERIES = "Dynamic Routing"


def dynamic_label(budget_mu: float | None) -> str:
    """The label of the dynamic network trained under budget ``budget_mu`` (None: Dynamic-Raw)."""
    return RAW if budget_mu is None else f"Dynamic μ={budget_mu:g}"


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """``num_classes × num_classes`` counts (rows: ground truth), ignoring ``ignore_index``."""
    valid = target != ignore_index
    t, p = target[valid].long(), pred[valid].long()
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).view(num_classes, num_classes)


def iou_from_confusion(conf: torch.Tensor) -> tuple[np.ndarray, float]:
    """Per-class IoU (%; NaN for a class absent from both prediction and truth) and the mean."""
    conf = conf.double()
    tp = conf.diag()
    denom = conf.sum(0) + conf.sum(1) - tp
    iou = torch.where(denom > 0, tp / denom.clamp(min=1), torch.full_like(tp, float("nan")))
    iou = 100 * iou.cpu().numpy()
    return iou, float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


@torch.no_grad()
def evaluate(
    model: DynamicRoutingNet,
    data,
    *,
    batch_size: int = 32,
    device="cpu",
    skip: bool = True,
    route=None,
    route_mode: str = "mask",
) -> dict:
    """mIoU (%), per-class IoU, pixel accuracy, per-image confusion matrices, expected/real
    MACs and gates.

    Whole real images (``data.whole_image``) are evaluated one by one at their own size.

    ``skip=True`` uses the really-skipping inference; the costs are per image (at the
    image's size). ``gates`` is a list (per node) of ``N×P`` arrays. ``route`` /
    ``route_mode`` force a route (see :class:`DynamicRoutingNet`).
    """
    model.eval()
    num_classes = model.num_classes
    if getattr(data, "whole_image", False) and not hasattr(data, "images"):
        batch_size = 1  # whole real images differ in size: one by one, each at its own size
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    expected, real, full, fix, per_image, gates = [], [], [], [], [], None
    for x, y in make_loader(data, batch_size):
        x, y = x.to(device), y.to(device)
        out = (
            model.forward_skip(x, route=route, route_mode=route_mode)
            if skip
            else model(x, route=route, route_mode=route_mode)
        )
        pred = out["logits"].argmax(1)
        per_image.append(torch.stack([confusion_matrix(p, t, num_classes) for p, t in zip(pred, y)]).cpu())
        conf += per_image[-1].sum(0).to(device)
        expected.append(out["expected_cost"].cpu())
        real.append(out["real_cost"].cpu())
        table = model.cost_table(x.shape[-2:])
        full.append(torch.full((len(x),), float(table.full_cost)))
        fix.append(torch.full((len(x),), float(table.network_fix_cost)))
        g = [a.cpu() for a in out["gates"]]
        gates = [[a] for a in g] if gates is None else [acc + [a] for acc, a in zip(gates, g)]
    iou, miou = iou_from_confusion(conf)
    conf_f = conf.double()
    gates = [torch.cat(a).numpy() for a in gates]
    open_cells = open_cells_of(gates)  # N × nodes
    return {
        "miou": miou,
        "iou": iou,
        "pixel_accuracy": float(100 * conf_f.diag().sum() / conf_f.sum().clamp(min=1)),
        "expected_cost": torch.cat(expected).numpy(),
        "real_cost": torch.cat(real).numpy(),
        # per image, at the image's own size: C_full (the budget's unit) and this
        # architecture's whole network without gates, so ratios hold for whole images too
        "full_cost": torch.cat(full).numpy(),
        "network_fix_cost": torch.cat(fix).numpy(),
        "gates": gates,
        "open_cells": open_cells,
        "closed_fraction": float(1 - open_cells.mean()),
        "confusions": torch.cat(per_image).numpy(),  # N × K × K: the paired bootstrap resamples these
    }


def route_signatures(gates: Sequence[np.ndarray]) -> np.ndarray:
    """Binary route of every image (``N × total paths``): which paths were open."""
    return np.concatenate([g > THRESHOLD for g in gates], 1)


def open_cells_of(gates: Sequence[np.ndarray]) -> np.ndarray:
    """``N × cells`` booleans: which cells each image runs (some path open)."""
    return np.stack([(g > THRESHOLD).any(1) for g in gates], 1)


def _mean_pairwise_distance(rows: np.ndarray, limit: int = 500) -> float:
    """Mean Hamming distance (fraction of entries that differ) over all pairs of rows."""
    sub = rows[:limit].astype(np.float32)
    n = len(sub)
    if n < 2:
        return 0.0
    d = (sub[:, None, :] != sub[None, :, :]).mean(-1)
    return float(d.sum() / (n * (n - 1)))


def route_diversity(gates: Sequence[np.ndarray]) -> dict:
    """How different the images' routes are.

    ``distinct_routes``: how many different binary routes (open paths) the images take;
    ``mean_hamming``: mean pairwise distance of the routes (fraction of paths that differ);
    ``open_cell_distance``: mean pairwise distance of the sets of open cells (fraction of
    cells open for one image and closed for the other); ``modal_share``: the fraction of
    images on the most common route. A single static route gives 1 route, distances 0 and
    share 1.
    """
    sig = route_signatures(gates).astype(np.uint8)
    cells = open_cells_of(gates).astype(np.uint8)
    n = len(sig)
    keys = [row.tobytes() for row in sig]
    counts = {k: keys.count(k) for k in set(keys)} if n else {}
    return {
        "distinct_routes": len(counts),
        "images": n,
        "mean_hamming": _mean_pairwise_distance(sig),
        "open_cell_distance": _mean_pairwise_distance(cells),
        "modal_share": max(counts.values()) / n if n else float("nan"),
        "paths": int(sig.shape[1]),
    }


def modal_route(gates: Sequence[np.ndarray]) -> list[list[int]]:
    """The route most images take (0/1 per node and path) — the dynamic network's route
    frozen for everyone, as plain lists (a stage argument)."""
    sig = route_signatures(gates).astype(np.uint8)
    keys = [row.tobytes() for row in sig]
    best = max(set(keys), key=lambda k: (keys.count(k), k))
    row = sig[keys.index(best)]
    out, start = [], 0
    for g in gates:
        out.append([int(v) for v in row[start : start + g.shape[1]]])
        start += g.shape[1]
    return out


def width_at_cost(target_macs: float, *, num_classes: int, layers: int, max_channels: int, size) -> int:
    """The narrowest ``init_channels`` whose Network-Fix costs at least ``target_macs`` per
    image at input ``size`` (the equal-cost static rival never gets less compute than the
    dynamic network it is compared with); ``max_channels`` if even that is cheaper."""
    from dynn.dynamic_routing.model import build_model

    for channels in range(2, max_channels + 1):
        net = build_model(num_classes, layers=layers, init_channels=channels, gated=False)
        if net.cost_table(tuple(size)).network_fix_cost >= target_macs:
            return channels
    return max_channels


def equal_cost_rivals(model: DynamicRoutingNet, val_data, *, batch_size: int, device, max_channels: int) -> dict:
    """The two static rivals of ``model`` at its cost, fixed on the VALIDATION split.

    ``static_route``: the route most validation images take (:func:`modal_route`), to be
    trained from scratch as a static network; ``init_channels``: the narrowest Network-Fix
    whose cost (at the training crop) is at least the dynamic network's validation cost
    ratio times the full Network-Fix's (:func:`width_at_cost`). Also the numbers they were
    chosen from.
    """
    ev = evaluate(model, val_data, batch_size=batch_size, device=device)
    ratio = float((ev["real_cost"] / ev["network_fix_cost"]).mean())
    size = tuple(val_data[0][0].shape[-2:]) if not getattr(val_data, "whole_image", False) else None
    size = size or (val_data.crop, val_data.crop)
    full = model.cost_table(size).network_fix_cost
    channels = width_at_cost(
        ratio * full, num_classes=model.num_classes, layers=model.layers, max_channels=max_channels, size=size
    )
    return {
        "static_route": modal_route(ev["gates"]),
        "init_channels": channels,
        "val_cost_ratio": ratio,
        "val_route_share": route_diversity(ev["gates"])["modal_share"],
    }


def gate_use_by_regime(data, nodes: Sequence[Node], ev: dict) -> pd.DataFrame | None:
    """Per scene regime (``digit_scenes``): images, mean object size, real cost, open cells
    and each scale's mean gate activation — does the route follow what is in the image?"""
    regimes = getattr(data, "regimes", None)
    if regimes is None:
        return None
    sizes = object_sizes(data)
    act = scale_activation(nodes, ev["gates"])
    frame = pd.DataFrame(
        {
            "regime": list(regimes),
            "object_size_px": sizes,
            "real_macs": ev["real_cost"],
            "open_cells": ev["open_cells"].sum(1),
            **{f"gate {name}": act[:, s] for s, name in enumerate(SCALE_NAMES)},
        }
    )
    table = frame.groupby("regime", sort=False).mean()
    table.insert(0, "images", frame.groupby("regime", sort=False).size())
    return table.reset_index()


def scale_activation(nodes: Sequence[Node], gates: Sequence[np.ndarray]) -> np.ndarray:
    """Per image and scale, the mean over routing layers of the cells' max gate (``N × 4``)."""
    n_img = len(gates[0])
    out = np.full((n_img, 4), np.nan)
    for s in range(4):
        cols = [np.max(g, 1) for n, g in zip(nodes, gates) if n.scale == s and n.layer > 0]
        if cols:
            out[:, s] = np.mean(cols, 0)
    return out


def object_sizes(data) -> np.ndarray:
    """Mean object size (px) per image: the pasted digits' box side for ``digit_scenes``; for
    real sets the square root of the mean labelled area per class present (a proxy)."""
    sizes = []
    for i in range(len(data)):
        if getattr(data, "object_sizes", None) is not None:
            sizes.append(float(np.mean(data.object_sizes[i])))
            continue
        label = data[i][1].numpy()
        counts = np.bincount(label[label != data.ignore_index].ravel(), minlength=data.num_classes)
        sizes.append(float(np.sqrt(counts[counts > 0].mean())) if counts.any() else float("nan"))
    return np.asarray(sizes)


def gate_size_correlation(sizes: np.ndarray, activation: np.ndarray) -> dict[str, float]:
    """Pearson correlation, per scale, of object size with the scale's mean gate activation
    (NaN where a scale never varies, e.g. a scale whose cells are all closed)."""
    out = {}
    for s, name in enumerate(SCALE_NAMES):
        a = activation[:, s]
        ok = np.isfinite(a) & np.isfinite(sizes)
        out[name] = float(np.corrcoef(sizes[ok], a[ok])[0, 1]) if ok.sum() > 1 and np.std(a[ok]) > 0 else float("nan")
    return out


# ------------------------------------------------------------------ costs and checks
def cost_summary(table: CostTable) -> pd.Series:
    """The measured per-image costs that expected and real cost are made of, readable."""
    fmt = dynn.flops.format_macs
    return pd.Series(
        {
            "C_full (cells + transitions, every gate 1)": fmt(table.full_cost),
            "stem": fmt(table.stem),
            "decoder head": fmt(table.head),
            "all gates": fmt(sum(table.gate)),
            "Network-Fix (everything, no gates)": fmt(table.network_fix_cost),
        },
        name="MACs per image",
    )


def example_batch(data, size: int) -> torch.Tensor:
    """The first ``size`` images of ``data`` (fewer if it has fewer) as one batch."""
    return torch.stack([data[i][0] for i in range(min(size, len(data)))])


@torch.no_grad()
def check_real_skipping(model: DynamicRoutingNet, data, *, batch_size: int, device, images: int = 4) -> dict:
    """Does really-skipping inference equal the masked network, and cost what it reports?

    Compares ``forward_skip`` with the dense pass on one batch of test images (logits and
    predicted labels) and counts with ``dynn.flops`` the MACs that ``forward_skip`` runs on
    each of the first ``images`` images. ``equal`` is True when the logits agree within the
    float tolerance (float32 on CPU: summation order only; on GPUs TF32 convolutions may
    pick other kernels per batch size) and every count equals the reported real cost.
    """
    device = torch.device(device)
    model.eval()
    xb = example_batch(data, batch_size).to(device)
    dense, skip = model(xb), model.forward_skip(xb)
    max_diff = float((dense["logits"] - skip["logits"]).abs().max())
    counted = [dynn.flops.count_macs(model.forward_skip, xb[i : i + 1]) for i in range(min(images, len(xb)))]
    reported = [float(skip["real_cost"][i]) for i in range(len(counted))]
    tolerance = 1e-3 if device.type == "cpu" else 2e-2 * (1 + float(dense["logits"].abs().max()))
    agree = float((dense["logits"].argmax(1) == skip["logits"].argmax(1)).float().mean())
    return {
        "max_diff": max_diff,
        "tolerance": tolerance,
        "labels_agree": agree,
        "counted": counted,
        "reported": reported,
        "equal": max_diff < tolerance and all(abs(c - r) <= 1 for c, r in zip(counted, reported)),
    }


# ------------------------------------------------------------------ the comparison
def evaluate_models(models: dict[str, DynamicRoutingNet], data, *, batch_size: int, device) -> dict[str, dict]:
    """:func:`evaluate` (really skipping) for every trained network, by label."""
    return {label: evaluate(model, data, batch_size=batch_size, device=device) for label, model in models.items()}


def latency_table(
    models: dict[str, DynamicRoutingNet], data, *, batch: int, min_run_time: float, device, rounds: int = 4
) -> pd.DataFrame:
    """Latency of every network at batch 1 and at ``batch``: really skipping and dense (masked).

    One :func:`dynn.flops.compare_latency` call, so the rows are interleaved and their
    ratios are comparable; ``batch`` is the batch that really ran (``batch`` or fewer when
    the test set is smaller). Network-Fix has no gates: its one path is dense.
    """
    xs = {1: example_batch(data, 1).to(device), batch: example_batch(data, batch).to(device)}
    calls = {}
    for label, model in models.items():
        model.eval()
        for b, x in xs.items():
            if model.using_gate or model.static_route is not None:  # a static route skips its closed cells
                calls[(label, "skip", b)] = (model.forward_skip, (x,))
            calls[(label, "dense", b)] = (model, (x,))
    rows = dynn.flops.compare_latency(
        {" | ".join(map(str, k)): v for k, v in calls.items()}, rounds=rounds, min_run_time=min_run_time
    )
    table = pd.DataFrame(rows)
    table[["label", "path", "requested_batch"]] = [name.split(" | ") for name in table["name"]]
    return table.drop(columns=["name", "requested_batch"])


def _latency(latency: pd.DataFrame, label: str, path: str, batched: bool) -> tuple[float, int]:
    rows = latency[(latency["label"] == label) & (latency["path"] == path)].sort_values("batch")
    if rows.empty and path == "skip":  # Network-Fix: its dense pass is all it runs
        return _latency(latency, label, "dense", batched)
    row = rows.iloc[-1 if batched else 0]
    return float(row["median_ms"]), int(row["batch"])


def role_of(label: str, *, sweep: bool) -> dict:
    """How the report reads a point: the budgeted networks are the method (every μ of a sweep
    shown, or one μ fixed in advance), Dynamic-Raw is the method without budget (the paper's
    unconstrained model), Network-Fix the static baseline; the equal-cost static rivals are
    baselines whose operating point follows the main dynamic network's cost."""
    if label == FIX:
        return {"role": "baseline", "series": FIX, "selection": "fixed"}
    if label in EQUAL_COST_RIVALS:
        return {"role": "baseline", "series": label, "selection": "validation"}
    if label == RAW:
        return {"role": "method", "series": RAW, "selection": "fixed"}
    return {"role": "method", "series": METHOD_SERIES, "selection": "sweep" if sweep else "fixed"}


def result_points(
    evals: dict[str, dict], latency: pd.DataFrame, *, reference: str, budgets: dict, sweep: bool
) -> pd.DataFrame:
    """One row per network: mIoU (as ``accuracy``, ``metric`` mIoU), real and expected MACs
    per image, cost ratios, closed cells, route diversity, latencies with their batches, and
    the report's ``role`` / ``series`` / ``selection``.

    Ratios are per image (images may differ in size) against the ``reference`` network's
    architecture (the full-width one): ``real_ratio`` over its Network-Fix cost (the whole
    network without gates); ``real_ratio_cfull`` puts the real cost of cells, transitions and
    gates (no stem or head) on μ's scale, over its C_full, next to ``expected_ratio`` (what
    the budget loss sees).
    """
    ref = evals[reference]
    rows = []
    for label, ev in evals.items():
        div = route_diversity(ev["gates"])
        real, expected = ev["real_cost"], ev["expected_cost"]
        stem_and_head = ev["network_fix_cost"] - ev["full_cost"]
        lat1, _ = _latency(latency, label, "skip", False)
        dense1, _ = _latency(latency, label, "dense", False)
        latb, batch = _latency(latency, label, "skip", True)
        denseb, _ = _latency(latency, label, "dense", True)
        rows.append(
            {
                "label": label,
                **role_of(label, sweep=sweep),
                "budget_mu": budgets.get(label),
                "accuracy": ev["miou"],
                "metric": "mIoU",
                "pixel_accuracy": ev["pixel_accuracy"],
                "macs": float(real.mean()),
                "macs_std": float(real.std()),
                "expected_macs": float(expected.mean()),
                "expected_macs_std": float(expected.std()),
                "real_ratio": float((real / ref["network_fix_cost"]).mean()),
                "real_ratio_cfull": float(((real - stem_and_head) / ref["full_cost"]).mean()),
                "expected_ratio": float((expected / ref["full_cost"]).mean()),
                "closed_fraction": ev["closed_fraction"],
                "distinct_routes": div["distinct_routes"],
                "mean_hamming": div["mean_hamming"],
                "open_cell_distance": div["open_cell_distance"],
                "modal_share": div["modal_share"],
                "latency_ms": lat1,
                "dense_latency_ms": dense1,
                "latency_batch": 1,
                "batched_latency_ms": latb,
                "dense_batched_latency_ms": denseb,
                "batched_latency_batch": batch,
            }
        )
    return pd.DataFrame(rows)


def summary_metrics(points: pd.DataFrame, main_label: str, costs: CostTable, **extra) -> dict:
    """``results.json`` metrics: the main network's numbers and its ratios to the references."""
    table = points.set_index("label")
    head = table.loc[main_label]
    metrics = {
        "miou": head["accuracy"],
        "real_macs": head["macs"],
        "real_macs_std": head["macs_std"],
        "expected_macs": head["expected_macs"],
        "expected_macs_std": head["expected_macs_std"],
        "real_ratio": head["real_ratio"],
        "real_ratio_cfull": head["real_ratio_cfull"],
        "expected_ratio": head["expected_ratio"],
        "budget_mu": head["budget_mu"],
        "closed_fraction": head["closed_fraction"],
        "distinct_routes": int(head["distinct_routes"]),
        "mean_hamming": head["mean_hamming"],
        "open_cell_distance": head["open_cell_distance"],
        "latency_ms": head["latency_ms"],
        "dense_latency_ms": head["dense_latency_ms"],
        "latency_ratio_vs_dense": head["latency_ms"] / head["dense_latency_ms"],
        "batched_latency_batch": int(head["batched_latency_batch"]),
        "full_cost_macs": costs.full_cost,
        "network_fix_macs": costs.network_fix_cost,
        **extra,
    }
    for name in (RAW, FIX, *EQUAL_COST_RIVALS):
        if name in table.index and name != main_label:
            key = name.lower().replace("-", "_").replace(" ", "_").replace("(", "").replace(")", "")
            metrics[f"{key}_miou"] = table.loc[name, "accuracy"]
            metrics[f"{key}_macs"] = table.loc[name, "macs"]
            metrics[f"{key}_latency_ms"] = table.loc[name, "latency_ms"]
    if FIX in table.index:
        metrics["latency_ratio_vs_fix"] = head["latency_ms"] / table.loc[FIX, "latency_ms"]
        metrics["batched_latency_ratio_vs_fix"] = head["batched_latency_ms"] / table.loc[FIX, "batched_latency_ms"]
    return metrics


# ------------------------------------------------------------------ routes by hand
def forced_routes(model: DynamicRoutingNet, data, ev: dict, *, batch_size: int, device) -> pd.DataFrame:
    """mIoU and real cost under routes set by hand, next to the gates' own choice.

    ``mask`` multiplies a 0/1 route into the gates (they still choose inside it);
    ``replace`` uses it as α and does not run the gates. Routes: every image replays test
    image 0's route; only the 1/4 scale (no gates); every path open (no gates: the dynamic
    network's weights run as a fixed network).
    """
    nodes = model.nodes
    route_image0 = model.route_from_gates([torch.as_tensor(g[0]) for g in ev["gates"]])
    finest_only = [
        torch.tensor([float(p == "keep") for p in n.paths]) if n.scale == 0 else torch.zeros(len(n.paths))
        for n in nodes
    ]
    forced = {
        "gates (as trained)": (None, "mask"),
        "replay test image 0's route": (route_image0, "mask"),
        "1/4 scale only, no gates": (finest_only, "replace"),
        "every path open, no gates": (model.full_route(), "replace"),
    }
    fix_cost = model.cost_table(data[0][0].shape[-2:]).network_fix_cost
    rows = []
    for name, (route, mode) in forced.items():
        r = None if route is None else [t.to(device) for t in route]
        fe = evaluate(model, data, batch_size=batch_size, device=device, route=r, route_mode=mode)
        rows.append(
            {
                "route": name,
                "mode": mode,
                "miou": fe["miou"],
                "real_macs": float(fe["real_cost"].mean()),
                "real_ratio": float(fe["real_cost"].mean()) / fix_cost,
                "closed_fraction": fe["closed_fraction"],
            }
        )
    return pd.DataFrame(rows)
