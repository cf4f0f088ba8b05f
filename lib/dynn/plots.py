"""One look for every figure: seaborn style, accuracy–cost plots with Pareto fronts, heatmaps.

Figures are saved as PNG into a notebook's ``figures_dir`` (atomically) so that the report
and the README gallery always show complete files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import matplotlib

if matplotlib.get_backend().lower() == "agg" or not matplotlib.get_backend():
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from dynn.runs import _atomic_write  # noqa: E402


def set_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 120, "figure.autolayout": True})


def pareto_front(cost: Sequence[float], quality: Sequence[float]) -> np.ndarray:
    """Indices of the points no other point beats (lower cost and higher quality), by cost."""
    cost, quality = np.asarray(cost, float), np.asarray(quality, float)
    order = np.lexsort((-quality, cost))
    front, best = [], -np.inf
    for i in order:
        if quality[i] > best:
            front.append(i)
            best = quality[i]
    return np.asarray(front, dtype=int)


def plot_accuracy_vs_cost(
    table: pd.DataFrame,
    *,
    x: str = "macs",
    y: str = "accuracy",
    hue: str = "label",
    ax=None,
    front: bool = True,
    xlabel: str | None = None,
    ylabel: str = "top-1 accuracy (%)",
    title: str | None = None,
    annotate: str | None = None,
    style: str | None = None,
):
    """Scatter of accuracy vs cost per ``hue`` group, each group's Pareto front as a line."""
    set_style()
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5))
    sns.scatterplot(data=table, x=x, y=y, hue=hue, style=style or hue, s=60, ax=ax)
    if front:
        palette = dict(zip(table[hue].unique(), sns.color_palette("colorblind", table[hue].nunique())))
        for key, group in table.groupby(hue, sort=False):
            if len(group) < 2:
                continue
            idx = pareto_front(group[x].to_numpy(), group[y].to_numpy())
            pts = group.iloc[idx]
            ax.plot(pts[x], pts[y], "-", color=palette[key], alpha=0.6, lw=1.5)
    if annotate:
        for _, row in table.iterrows():
            ax.annotate(
                str(row[annotate]), (row[x], row[y]), fontsize=7, alpha=0.7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_xlabel(xlabel or ("MACs per image" if x == "macs" else x))
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return ax


def heatmap(
    matrix,
    *,
    xlabels: Iterable | None = None,
    ylabels: Iterable | None = None,
    ax=None,
    cmap: str = "viridis",
    title: str | None = None,
    numbers: str | None = None,
    cbar_label: str | None = None,
    vmin=None,
    vmax=None,
):
    """Labelled heatmap (policies: samples × blocks; accuracy: point × ratio; routes...).

    ``numbers`` is the format of the value printed in every cell (``".1f"``), or None for
    colour alone (a policy map of hundreds of cells)."""
    set_style()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    sns.heatmap(
        np.asarray(matrix),
        ax=ax,
        cmap=cmap,
        annot=numbers is not None,
        fmt=numbers or ".1f",
        vmin=vmin,
        vmax=vmax,
        xticklabels=list(xlabels) if xlabels is not None else "auto",
        yticklabels=list(ylabels) if ylabels is not None else "auto",
        cbar_kws={"label": cbar_label} if cbar_label else None,
    )
    if title:
        ax.set_title(title)
    return ax


def save_figure(fig, figures_dir: str | Path, name: str) -> Path:
    """Save ``fig`` as ``<figures_dir>/<name>.png`` atomically and return the path."""
    path = Path(figures_dir) / f"{name}.png"
    _atomic_write(path, lambda p: fig.savefig(p, format="png", bbox_inches="tight"))
    return path
