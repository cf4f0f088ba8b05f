"""The slimmable notebook's figures and its interactive explorer.

Each figure function takes the tables :mod:`dynn.slimmable.evaluate` returns and gives back
a matplotlib figure (the notebook saves it with ``run.save_figure``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

import dynn.plots
from dynn.slimmable.model import DynModel


def accuracy_vs_macs(table: pd.DataFrame, *, title: str):
    """Left: BN-recalibrated curves with their fronts; right: with / without recalibration."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    recal = table[table.bn_recal]
    dynn.plots.plot_accuracy_vs_cost(
        recal, x="macs_ratio", hue="series", ax=axes[0], xlabel="MACs ratio to full width", title=title
    )
    dynn.plots.plot_accuracy_vs_cost(
        table,
        x="macs_ratio",
        hue="series",
        style="bn_recal",
        ax=axes[1],
        front=False,
        xlabel="MACs ratio to full width",
        title="with / without BN recalibration",
    )
    return fig


def latency_vs_macs(speed: pd.DataFrame):
    """Latency ratio to the full network (exported configurations) against the MACs ratio."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="latency ∝ MACs")
    ax.scatter(speed.macs_ratio, speed.latency_ratio, label=f"batch {int(speed.latency_batch.iloc[0])}")
    ax.scatter(speed.macs_ratio, speed.latency_ratio_batched, label=f"batch {int(speed.latency_batched_batch.iloc[0])}")
    ax.set_xlabel("MACs ratio")
    ax.set_ylabel("latency ratio to full width")
    ax.legend()
    ax.set_title(f"Measured latency on {speed.latency_device.iloc[0]} (threads: {int(speed.latency_threads.iloc[0])})")
    return fig


def width_profile(net: DynModel, table: pd.DataFrame, *, uniform_series: str, searched_series: str):
    """Per-layer width (fraction of full) of the searched configurations and of uniform ones."""
    recal = table[table.bn_recal].drop_duplicates("label").sort_values("macs_ratio")
    fig, ax = plt.subplots(figsize=(11, 4))
    for _, r in recal.iterrows():
        searched = r.series == searched_series
        if searched or r.series == uniform_series:
            ax.plot(
                net.width_profile(r.real_ch),
                "-o" if searched else ":",
                ms=3,
                label=f"{r.label} ({r.macs_ratio:.2f} MACs)",
                alpha=0.9 if searched else 0.6,
            )
    ax.set_xlabel("layer (decode_ch order: stem, then each block's inner and output width)")
    ax.set_ylabel("fraction of full width")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Per-layer width profile")
    return fig


def search_history(search: pd.DataFrame):
    """Every configuration the search visited: validation loss vs MACs, coloured by proposal order."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sc = ax.scatter(search.macs_ratio, search.val_loss, c=search.order, cmap="viridis", s=25)
    front = search[search.on_front].sort_values("macs_ratio")
    ax.plot(front.macs_ratio, front.val_loss, "r-", lw=1.5, label="validation Pareto front")
    fig.colorbar(sc, ax=ax, label="proposal order")
    ax.set_xlabel("MACs ratio")
    ax.set_ylabel("validation loss")
    ax.legend()
    ax.set_title("Width search history")
    return fig


def best_within(table: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per series, the BN-recalibrated configuration a deployment picks within ``target`` MACs
    ratio, chosen without test data (:func:`dynn.slimmable.evaluate.chosen_row`)."""
    from dynn.slimmable.evaluate import chosen_row

    recal = table[table.bn_recal]
    rows = [chosen_row(recal, series, target) for series in recal.series.unique()]
    return pd.DataFrame([r for r in rows if r is not None])


def budget_text(table: pd.DataFrame, target: float) -> str:
    """What the explorer shows for one budget: per series the best configuration and its widths."""
    best = best_within(table, target)
    if best.empty:
        return "no evaluated configuration fits this budget\n"
    return "".join(
        f"{r.series:45s} {r.label:16s} MACs {r.macs_ratio:.3f}  top-1 {r.accuracy:.2f}%\n    widths: {r.real_ch}\n"
        for _, r in best.iterrows()
    )


def explorer(table: pd.DataFrame, *, lower: float):
    """A slider over the target MACs ratio showing, per series, the best configuration within
    it and its widths (ipywidgets; needs a live kernel to react)."""
    import ipywidgets as widgets

    slider = widgets.FloatSlider(
        min=round(lower, 2), max=1.0, step=0.01, value=0.5, description="MACs ≤", continuous_update=False
    )
    out = widgets.Output()

    def redraw(*_):
        out.outputs = ()
        out.append_stdout(budget_text(table, slider.value))

    slider.observe(redraw, names="value")
    redraw()
    return widgets.VBox([slider, out])
