"""Figures of the SDPoint notebook and its explorer.

- :func:`accuracy_vs_cost`: test top-1 of every instance against MACs and measured latency,
  for both models with and without BN recalibration;
- :func:`instance_heatmap`: accuracy over (point × ratio);
- :func:`learning_curve`, :func:`config_picture`: the agent's search and its chosen
  per-layer configuration;
- :func:`explorer`: pick an instance, see its accuracy, cost and predictions (ipywidgets).
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from dynn import plots
from dynn.sdpoint.evaluate import bn_state, recalibrate, restore_bn_state

SERIES = {
    ("SDPoint", True): "SDPoint (BN recalibrated)",
    ("SDPoint", False): "SDPoint (no recalibration)",
    ("baseline", True): "baseline (BN recalibrated)",
    ("baseline", False): "baseline (no recalibration)",
}


def accuracy_vs_cost(instances: pd.DataFrame, *, title: str, latency_batch: int):
    """Two panels: test top-1 vs MACs and vs latency at ``latency_batch``, one series per
    (model, recalibrated) in the same colours in both panels."""
    curve = instances.assign(series=[SERIES[(m, bool(r))] for m, r in zip(instances.model, instances.recalibrated)])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    plots.plot_accuracy_vs_cost(curve, x="macs", y="test_top1", hue="series", ax=axes[0], title=title)
    plots.plot_accuracy_vs_cost(
        curve,
        x="latency_batched_ms",
        y="test_top1",
        hue="series",
        ax=axes[1],
        xlabel=f"latency, batch {latency_batch} (ms)",
        title="Measured latency",
    )
    return fig


def instance_heatmap(table: pd.DataFrame, *, value: str = "test_top1", ax=None, title: str | None = None):
    """Accuracy over (point × ratio); the no-downsampling instance is its own row."""
    pivot = table.pivot_table(index="point", columns="ratio", values=value)
    order = ["none", "stem"] + sorted((p for p in pivot.index if p not in ("none", "stem")), key=int)
    pivot = pivot.reindex([p for p in order if p in pivot.index])
    labels = [p if p in ("none", "stem") else f"block {p}" for p in pivot.index]
    return plots.heatmap(
        pivot.to_numpy(),
        xlabels=[f"{c:g}" for c in pivot.columns],
        ylabels=labels,
        ax=ax,
        numbers=".1f",
        cbar_label="top-1 (%)",
        title=title,
    )


def instance_heatmaps(table: pd.DataFrame, *, num_points: int):
    """The SDPoint model's heatmap with recalibrated and with trained BN statistics."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * num_points + 2.5))
    instance_heatmap(table[table.recalibrated], ax=axes[0], title="SDPoint, BN recalibrated: test top-1 (%)")
    instance_heatmap(table[~table.recalibrated], ax=axes[1], title="SDPoint, trained BN statistics: test top-1 (%)")
    return fig


def learning_curve(history: pd.DataFrame, *, ax=None, window: int = 8, title: str | None = None):
    """Reward per episode (dots) and its moving average, MACs fraction on a twin axis."""
    plots.set_style()
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    for agent, group in history.groupby("agent", sort=False):
        line = ax.plot(group["episode"], group["reward"], ".", alpha=0.35)[0]
        ax.plot(
            group["episode"],
            group["reward"].rolling(window, min_periods=1).mean(),
            "-",
            color=line.get_color(),
            label=f"{agent}: reward (moving mean)",
        )
    ax.set_xlabel("episode")
    ax.set_ylabel("reward (validation)")
    twin = ax.twinx()
    for agent, group in history.groupby("agent", sort=False):
        twin.plot(
            group["episode"],
            group["macs_fraction"].rolling(window, min_periods=1).mean(),
            "--",
            alpha=0.6,
            label=f"{agent}: MACs fraction",
        )
    twin.set_ylabel("MACs / full MACs (dashed)")
    twin.grid(False)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    return ax


def config_picture(
    point_names: Sequence[str],
    config: Sequence[float],
    shapes: Sequence[tuple],
    *,
    full_shapes: Sequence[tuple] | None = None,
    ax=None,
    title: str | None = None,
):
    """Per-point ratio (bars) and the resulting feature-map side (line) of one configuration."""
    plots.set_style()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.8))
    x = np.arange(len(point_names))
    colors = ["tab:orange" if r < 1 else "tab:gray" for r in config]
    ax.bar(x, config, color=colors, alpha=0.8)
    for i, r in enumerate(config):
        if r < 1:
            ax.annotate(f"{r:g}", (i, r), ha="center", xytext=(0, 3), textcoords="offset points", fontsize=8)
    ax.set_xticks(x, point_names, rotation=60, fontsize=8)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("downsampling ratio (1 is none)")
    twin = ax.twinx()
    twin.plot(x, [s[1] for s in shapes], "o-", color="tab:blue", label="feature side (this config)")
    if full_shapes is not None:
        twin.plot(x, [s[1] for s in full_shapes], "s--", color="tab:blue", alpha=0.4, label="full network")
    twin.set_ylabel("feature map side after the point (px)")
    twin.grid(False)
    twin.legend(fontsize=8, loc="upper right")
    if title:
        ax.set_title(title)
    return ax


def agent_figure(
    model,
    search_history: pd.DataFrame,
    explored: pd.DataFrame,
    agent_table: pd.DataFrame,
    instances: pd.DataFrame,
    *,
    agent: str,
    input_shape: Sequence[int],
):
    """Four panels, never two splits on one axis: (1) validation top-1 of every explored
    configuration, of the single-point instances and of the agent's candidates (what the
    choice saw); (2) test top-1 of the single-point instances and of those candidates (what
    gets reported); (3) the agent's learning curve; (4) its best configuration."""
    fig, axes = plt.subplots(1, 4, figsize=(23, 4.5))
    axes[0].scatter(explored["macs"], explored["accuracy"], s=12, alpha=0.3, color="gray", label="explored")
    for ax, split in ((axes[0], "val"), (axes[1], "test")):
        both = pd.concat(
            [
                instances.assign(series="single-point instances")[["macs", f"{split}_top1", "series"]],
                agent_table.assign(series=f"agent ({agent}) candidates")[["macs", f"{split}_top1", "series"]],
            ]
        )
        plots.plot_accuracy_vs_cost(
            both,
            x="macs",
            y=f"{split}_top1",
            hue="series",
            ax=ax,
            ylabel=f"{'validation' if split == 'val' else 'test'} top-1 (%)",
            title="Validation: what the choice saw" if split == "val" else "Test: what is reported",
        )
    learning_curve(search_history, ax=axes[2], title="Agent learning curve (validation reward)")
    best = agent_table[agent_table.best].iloc[0]
    config_picture(
        model.point_names,
        best["config"],
        [s for _, s in model.trace_shapes(best["config"], input_shape)],
        full_shapes=[s for _, s in model.trace_shapes(model.full_config(), input_shape)],
        ax=axes[3],
        title=f"Best configuration: {best['macs_fraction']:.0%} MACs, {best['test_top1']:.1f}% test top-1",
    )
    return fig


# ---------------------------------------------------------------- explorer
@torch.no_grad()
def instance_predictions(
    model,
    config: Sequence[float],
    images: torch.Tensor,
    *,
    calibration: Sequence[torch.Tensor] | None,
    bn_mode: str = "average",
    device="cpu",
) -> torch.Tensor:
    """Predicted classes of ``images`` under ``config`` (BN recalibrated for it when
    ``calibration`` is given; the trained statistics are restored afterwards)."""
    saved = bn_state(model)
    try:
        if calibration is not None:
            recalibrate(model, config, calibration, mode=bn_mode, device=device)
        model.eval()
        return model.run(images.to(device), tuple(config)).argmax(1).cpu()
    finally:
        restore_bn_state(model, saved)


def _show(image: torch.Tensor, mean, std) -> np.ndarray:
    x = image.detach().cpu().float()
    if mean is not None and std is not None:
        x = x * torch.as_tensor(std).view(-1, 1, 1) + torch.as_tensor(mean).view(-1, 1, 1)
    x = x.clamp(0, 1).permute(1, 2, 0).numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def instance_view(
    model,
    table: pd.DataFrame,
    point: str,
    ratio: float,
    images: torch.Tensor,
    labels: Sequence[int],
    predictions: Sequence[int],
    *,
    class_names=None,
    mean=None,
    std=None,
):
    """One instance: where it sits on the accuracy–MACs curve and its predictions."""
    plots.set_style()
    row = table[(table.point == point) & (table.ratio == (1.0 if point == "none" else ratio))].iloc[0]
    cols = max(1, min(len(images), 4))
    rows = int(np.ceil(len(images) / cols))
    fig = plt.figure(figsize=(11, max(3.2, 1.7 * rows)))
    grid = fig.add_gridspec(rows, cols + 3)
    ax = fig.add_subplot(grid[:, :3])
    ax.plot(table["macs_fraction"], table["test_top1"], "o", color="tab:gray", alpha=0.5, label="all instances")
    ax.plot([row["macs_fraction"]], [row["test_top1"]], "o", color="tab:red", ms=10, label="this instance")
    ax.set_xlabel("MACs / full MACs")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(
        f"{'full network' if point == 'none' else f'{point} r={ratio:g}'}: {row['test_top1']:.1f}% top-1, "
        f"{row['macs_fraction']:.0%} MACs",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="lower right")
    names = class_names or [str(i) for i in range(int(max(max(labels), max(predictions))) + 1)]
    for i, (image, label, pred) in enumerate(zip(images, labels, predictions)):
        sub = fig.add_subplot(grid[i // cols, 3 + i % cols])
        sub.imshow(_show(image, mean, std), cmap="gray")
        sub.set_title(
            f"{names[int(pred)]} ({names[int(label)]})",
            fontsize=8,
            color="tab:green" if int(pred) == int(label) else "tab:red",
        )
        sub.axis("off")
    return fig


def explorer(
    model,
    table: pd.DataFrame,
    test_data,
    *,
    calibration: Sequence[torch.Tensor] | None,
    bn_mode: str = "average",
    device="cpu",
    samples: int = 8,
    class_names=None,
):
    """ipywidgets explorer: pick an instance (point, ratio) and see its test accuracy and
    cost from ``table`` (the SDPoint model's recalibrated rows) and its predictions on the
    first ``samples`` test images (titles: predicted (true), green when right).

    Returns the widget box; ``box.redraw()`` redraws and ``box.last`` holds what the last
    redraw showed (for tests and for reading the predictions in code).
    """
    import ipywidgets as widgets
    from IPython.display import display

    images = torch.stack([test_data[i][0] for i in range(min(samples, len(test_data)))])
    labels = [int(test_data[i][1]) for i in range(len(images))]
    mean, std = getattr(test_data, "mean", None), getattr(test_data, "std", None)
    names = class_names or getattr(test_data, "classes", None)
    points = [("none (full network)", "none"), ("stem", "stem")] + [
        (f"block {i}", str(i)) for i in range(model.num_blocks)
    ]
    point = widgets.Dropdown(options=points, value="stem", description="point")
    ratio = widgets.Dropdown(options=list(model.ratios), value=model.ratios[0], description="ratio")
    out = widgets.Output()
    box = widgets.VBox([widgets.HBox([point, ratio]), out])
    box.last = {}

    def redraw(*_):
        p = point.value
        config = model.instance_config(None if p == "none" else ("stem" if p == "stem" else int(p)), ratio.value)
        predictions = instance_predictions(
            model, config, images, calibration=calibration, bn_mode=bn_mode, device=device
        )
        ratio.disabled = p == "none"
        fig = instance_view(
            model, table, p, ratio.value, images, labels, predictions.tolist(), class_names=names, mean=mean, std=std
        )
        box.last = {
            "point": p,
            "ratio": ratio.value,
            "config": config,
            "predictions": predictions.tolist(),
            "figure": fig,
        }
        with out:
            out.clear_output(wait=True)
            display(fig)
        plt.close(fig)

    point.observe(redraw, "value")
    ratio.observe(redraw, "value")
    box.redraw = redraw
    redraw()
    return box
