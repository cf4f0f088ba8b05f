"""Dynamic Routing figures and the interactive explorer.

- :func:`plot_route`: one route on the layers × scales grid (node colour: the cell's largest
  gate; edge colour and width: the path's gate; hollow grey: a closed, skipped cell);
- :func:`plot_routes`: several test images next to their routes, and the average route;
- :func:`plot_overlays`: ground truth and every network's prediction tinted over the images;
- :func:`plot_miou_vs_cost`, :func:`plot_gate_vs_object_size`, :func:`plot_cost_during_training`;
- :func:`explorer`: pick a test image, see its route, real cost and segmentation (ipywidgets).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

import dynn.plots
from dynn.dynamic_routing.evaluate import confusion_matrix, iou_from_confusion
from dynn.dynamic_routing.model import PATH_SHIFT, SCALE_NAMES, THRESHOLD, DynamicRoutingNet, Node


def plot_route(
    nodes: Sequence[Node], gate_values: Sequence[np.ndarray], ax=None, title: str | None = None, cmap: str = "viridis"
):
    """Layers × scales grid: node colour = max gate of the cell, edge colour/width = path gate.

    ``gate_values`` holds one ``P`` vector per node (one image, or a mean over images).
    Closed cells are drawn as hollow grey circles.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 2.6))
    cm = plt.get_cmap(cmap)
    pos = {n.index: (n.layer, -n.scale) for n in nodes}
    last = max(n.layer for n in nodes)
    segs, colors, widths = [], [], []
    for n, g in zip(nodes, gate_values):
        for p, a in zip(n.paths, np.asarray(g, float)):
            x0, y0 = pos[n.index]
            x1, y1 = (x0 + 1, y0 - PATH_SHIFT[p]) if n.layer < last else (x0 + 0.6, y0)
            segs.append([(x0, y0), (x1, y1)])
            colors.append(cm(float(a)) if a > THRESHOLD else (0.85, 0.85, 0.85, 0.6))
            widths.append(0.5 + 3.0 * float(a))
    ax.add_collection(LineCollection(segs, colors=colors, linewidths=widths, zorder=1))
    for n, g in zip(nodes, gate_values):
        m = float(np.max(g))
        x, y = pos[n.index]
        if m > THRESHOLD:
            ax.scatter([x], [y], s=70, color=cm(m), edgecolor="k", linewidth=0.6, zorder=2)
        else:
            ax.scatter([x], [y], s=70, facecolor="white", edgecolor="0.6", linewidth=0.8, zorder=2)
    ax.set_xticks(range(0, last + 1))
    ax.set_xticklabels(["init"] + [str(i) for i in range(1, last + 1)], fontsize=7)
    ax.set_yticks([0, -1, -2, -3])
    ax.set_yticklabels(["1/4", "1/8", "1/16", "1/32"], fontsize=7)
    ax.set_xlim(-0.5, last + 1)
    ax.set_ylim(-3.5, 0.5)
    ax.set_xlabel("layer", fontsize=8)
    ax.grid(False)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def to_image(x: torch.Tensor, data) -> np.ndarray:
    """Undo the dataset's normalisation for display (H×W×3 in 0…1)."""
    return (x.cpu() * data.std + data.mean).clamp(0, 1).permute(1, 2, 0).numpy()


def overlay(image: np.ndarray, label: np.ndarray, data) -> np.ndarray:
    """Tint each class in its colour; background and ignored pixels stay as the image."""
    import matplotlib.pyplot as plt

    palette = plt.get_cmap("tab20")(np.arange(20))[:, :3]
    tint = palette[label % 20]
    keep = label == data.ignore_index
    if data.classes[0] == "background":
        keep |= label == 0
    out = 0.4 * image + 0.6 * tint
    out[keep] = image[keep]
    return out


def plot_miou_vs_cost(points: pd.DataFrame, *, dataset: str):
    """mIoU against real MACs per image (±1 std across images) and against batched latency."""
    import matplotlib.pyplot as plt

    batch = int(points["batched_latency_batch"].iloc[0])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    dynn.plots.plot_accuracy_vs_cost(
        points,
        hue="series",
        ax=axes[0],
        annotate="label",
        ylabel="mIoU (%)",
        xlabel="real MACs per image",
        title=f"mIoU vs real MACs on {dataset} (small scale)",
    )
    axes[0].errorbar(points["macs"], points["accuracy"], xerr=points["macs_std"], fmt="none", ecolor="0.5", lw=1)
    dynn.plots.plot_accuracy_vs_cost(
        points,
        x="batched_latency_ms",
        hue="series",
        ax=axes[1],
        annotate="label",
        ylabel="mIoU (%)",
        xlabel=f"latency, batch {batch} (ms, really skipping)",
        title="Measured latency",
    )
    return fig


def plot_routes(model: DynamicRoutingNet, ev: dict, data, *, images: int, label: str):
    """The first ``images`` test images beside their routes, and the average route over the set."""
    import matplotlib.pyplot as plt

    n_show = min(images, len(data))
    fix_cost = model.cost_table(data[0][0].shape[-2:]).network_fix_cost
    fig, axes = plt.subplots(
        n_show + 1, 2, figsize=(10, 2.2 * (n_show + 1)), gridspec_kw={"width_ratios": [1, 5]}, squeeze=False
    )
    for row in range(n_show):
        axes[row, 0].imshow(to_image(data[row][0], data))
        axes[row, 0].axis("off")
        real = ev["real_cost"][row] / fix_cost
        plot_route(
            model.nodes,
            [g[row] for g in ev["gates"]],
            ax=axes[row, 1],
            title=f"test image {row}: real cost {real:.2f} of Network-Fix",
        )
    axes[-1, 0].axis("off")
    plot_route(
        model.nodes,
        [g.mean(0) for g in ev["gates"]],
        ax=axes[-1, 1],
        title=f"average route over {len(data)} test images ({label})",
    )
    return fig


@torch.no_grad()
def predict(model: DynamicRoutingNet, x: torch.Tensor) -> dict:
    """Really-skipping inference where the network has gates, the dense pass otherwise."""
    model.eval()
    return model.forward_skip(x) if model.using_gate else model(x)


def plot_overlays(models: dict[str, DynamicRoutingNet], data, *, images: int, device):
    """Image, ground truth and each network's prediction for the first ``images`` test images."""
    import matplotlib.pyplot as plt

    n_show = min(images, len(data))
    xb = torch.stack([data[i][0] for i in range(n_show)]).to(device)
    preds = {name: predict(m, xb)["logits"].argmax(1).cpu().numpy() for name, m in models.items()}
    cols = ["image", "ground truth"] + list(preds)
    fig, axes = plt.subplots(n_show, len(cols), figsize=(2.2 * len(cols), 2.2 * n_show), squeeze=False)
    for row in range(n_show):
        image = to_image(data[row][0], data)
        label = data[row][1].numpy()
        panels = [image, overlay(image, label, data)] + [overlay(image, p[row], data) for p in preds.values()]
        for col, panel in enumerate(panels):
            axes[row, col].imshow(panel)
            axes[row, col].axis("off")
            if row == 0:
                axes[row, col].set_title(cols[col], fontsize=9)
    return fig


def plot_gate_vs_object_size(sizes: np.ndarray, activation: np.ndarray, *, label: str):
    """Per test image, each scale's mean gate activation against its mean object size."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    bins = np.unique(np.round(sizes[np.isfinite(sizes)]))
    for s, name in enumerate(SCALE_NAMES):
        if np.isnan(activation[:, s]).all():
            continue
        ax.scatter(sizes + (s - 1.5) * 0.3, activation[:, s], s=6, alpha=0.25)
        means = [np.nanmean(activation[np.round(sizes) == b, s]) for b in bins]
        ax.plot(bins, means, "-o", ms=4, label=f"scale {name}")
    ax.set_xlabel("mean object size in the image (px)")
    ax.set_ylabel("mean gate activation (max α per cell)")
    ax.set_title(f"Gate activation vs object size ({label})")
    ax.legend(fontsize=8)
    return fig


def training_curves(models: dict[str, DynamicRoutingNet]) -> pd.DataFrame:
    """Every network's per-epoch training history (what its stage returned), one table."""
    frames = [
        pd.DataFrame(m.training_history).assign(model=name)
        for name, m in models.items()
        if getattr(m, "training_history", None)
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plot_cost_during_training(curves: pd.DataFrame, *, budget_mu: float | None, unupdate_rate: float, epochs: int):
    """Expected cost / C_full and real cost / Network-Fix on the training batches, per epoch."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, group in curves.groupby("model", sort=False):
        (line,) = ax.plot(group["epoch"], group["train_expected_ratio"], "-o", ms=3, label=f"{name}: expected / C_full")
        ax.plot(
            group["epoch"], group["train_real_ratio"], "--", color=line.get_color(), label=f"{name}: real / Network-Fix"
        )
    if budget_mu is not None:
        ax.axhline(budget_mu, color="k", lw=0.8, ls=":", label="μ")
    ax.axvline(unupdate_rate * epochs, color="0.5", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost ratio (training batches)")
    ax.legend(fontsize=7)
    return fig


# ------------------------------------------------------------------ interactive explorer
def explorer(model: DynamicRoutingNet, data, *, device="cpu", display: bool = True):
    """ipywidgets explorer: pick a test image, see its segmentation and the route it took.

    Left: the image, the ground truth and the prediction (really-skipping inference);
    right: its route on the layers × scales grid, with its real cost against Network-Fix.
    Returns the slider (set ``.value`` to pick an image).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    model.eval()
    fix_cost = model.cost_table(data[0][0].shape[-2:]).network_fix_cost
    out = widgets.Output()
    slider = widgets.IntSlider(value=0, min=0, max=len(data) - 1, description="test image")

    def show(index: int) -> None:
        x, y = data[index]
        result = predict(model, x[None].to(device))
        pred = result["logits"].argmax(1)[0].cpu()
        _, miou = iou_from_confusion(confusion_matrix(pred, y, data.num_classes))
        pred = pred.numpy()
        gates = [g[0].cpu().numpy() for g in result["gates"]]
        image = to_image(x, data)
        out.clear_output(wait=True)
        with out:
            fig = plt.figure(figsize=(12, 2.8))
            grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 1, 4])
            for col, (panel, title) in enumerate(
                [
                    (image, "image"),
                    (overlay(image, y.numpy(), data), "ground truth"),
                    (overlay(image, pred, data), f"prediction (mIoU {miou:.0f}%)"),
                ]
            ):
                ax = fig.add_subplot(grid[0, col])
                ax.imshow(panel)
                ax.set_title(title, fontsize=9)
                ax.axis("off")
            real = float(result["real_cost"][0]) / fix_cost
            plot_route(
                model.nodes,
                gates,
                ax=fig.add_subplot(grid[0, 3]),
                title=f"route of test image {index}: real cost {real:.2f} of Network-Fix",
            )
            plt.show()
        plt.close(fig)

    slider.observe(lambda change: show(change["new"]), names="value")
    show(0)
    if display:
        from IPython.display import display as show_widget

        show_widget(widgets.VBox([slider, out]))
    return slider
