"""Figures of the SDPoint notebook: instance heatmap, agent learning curve, per-layer config."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dynn import plots


def instance_heatmap(table: pd.DataFrame, *, value: str = "top1", ax=None, title: str | None = None):
    """Accuracy over (point × ratio); the no-downsampling instance is its own row."""
    pivot = table.pivot_table(index="point", columns="ratio", values=value)
    order = ["none", "stem"] + sorted((p for p in pivot.index if p not in ("none", "stem")), key=int)
    pivot = pivot.reindex([p for p in order if p in pivot.index])
    labels = [p if p in ("none", "stem") else f"block {p}" for p in pivot.index]
    return plots.heatmap(pivot.to_numpy(), xlabels=[f"{c:g}" for c in pivot.columns], ylabels=labels,
                         ax=ax, annot=True, fmt=".1f", cbar_label="top-1 (%)", title=title)


def learning_curve(history: pd.DataFrame, *, ax=None, window: int = 8, title: str | None = None):
    """Reward per episode (dots) and its moving average, MACs fraction on a twin axis."""
    plots.set_style()
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    for agent, group in history.groupby("agent", sort=False):
        line = ax.plot(group["episode"], group["reward"], ".", alpha=0.35)[0]
        ax.plot(group["episode"], group["reward"].rolling(window, min_periods=1).mean(), "-",
                color=line.get_color(), label=f"{agent}: reward (moving mean)")
    ax.set_xlabel("episode")
    ax.set_ylabel("reward (validation)")
    twin = ax.twinx()
    for agent, group in history.groupby("agent", sort=False):
        twin.plot(group["episode"], group["macs_fraction"].rolling(window, min_periods=1).mean(), "--",
                  alpha=0.6, label=f"{agent}: MACs fraction")
    twin.set_ylabel("MACs / full MACs (dashed)")
    twin.grid(False)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    return ax


def config_picture(point_names: Sequence[str], config: Sequence[float], shapes: Sequence[tuple],
                   *, full_shapes: Sequence[tuple] | None = None, ax=None, title: str | None = None):
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
