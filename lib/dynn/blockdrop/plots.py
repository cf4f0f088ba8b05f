"""BlockDrop's figures and its interactive explorer.

- :func:`plot_policy_heatmap`: keep-probabilities and greedy decisions, images × blocks;
- :func:`plot_blocks_per_class`: how many blocks each class's images run;
- :func:`plot_extreme_images`: the images that run the fewest and the most blocks;
- :func:`plot_accuracy_vs_macs`: the run's result points, by series;
- :func:`plot_image_policy` / :func:`explorer`: one test image, its keep-probabilities and the
  blocks it runs; the explorer puts a slider on it (ipywidgets, JupyterLab).

Images are shown de-normalised with the split's own ``mean`` / ``std`` (a split cut by
``limit`` keeps them), so what is drawn is what the network was given.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

import dynn.plots
from dynn.blockdrop.evaluate import PolicyEval
from dynn.blockdrop.model import BlockDrop


def to_image(x: torch.Tensor, data) -> np.ndarray:
    """Undo ``data``'s normalisation for display (H×W for one channel, else H×W×C in [0, 1])."""
    if not (hasattr(data, "mean") and hasattr(data, "std")):
        raise TypeError(
            f"{type(data).__name__} carries no 'mean' / 'std' to de-normalise with; "
            "pass a split from dynn.data.get_dataset"
        )
    mean, std = torch.as_tensor(data.mean).view(-1, 1, 1), torch.as_tensor(data.std).view(-1, 1, 1)
    img = (x.detach().cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
    return img[..., 0] if img.shape[-1] == 1 else img


def _class_name(class_names: Sequence[str] | None, label: int):
    return class_names[label] if class_names is not None else label


# ---------------------------------------------------------------- figures
def plot_policy_heatmap(ev: PolicyEval, *, n: int = 48, stage_index: Sequence[int] | None = None, seed: int = 0):
    """Keep-probabilities of ``n`` random test images (rows, sorted by blocks used) × blocks,
    with the greedy decisions beside them: instance-specific paths at a glance."""
    dynn.plots.set_style()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(ev.labels), size=min(n, len(ev.labels)), replace=False)
    rows = rows[np.argsort(ev.blocks_used[rows], kind="stable")]
    K = ev.policy.shape[1]
    xlabels = [
        f"{k}" + (f"\ns{stage_index[k]}" if stage_index and (k == 0 or stage_index[k] != stage_index[k - 1]) else "")
        for k in range(K)
    ]
    ylabels = [f"{ev.labels[i]}{'' if ev.correct[i] else ' ✗'} ({ev.blocks_used[i]})" for i in rows]
    fig, axes = plt.subplots(1, 2, figsize=(12, max(4, 0.18 * len(rows))), sharey=True)
    dynn.plots.heatmap(
        ev.keep_prob[rows],
        ax=axes[0],
        xlabels=xlabels,
        ylabels=ylabels,
        vmin=0,
        vmax=1,
        cbar_label="keep-probability s",
        title="policy network output",
    )
    dynn.plots.heatmap(
        ev.policy[rows],
        ax=axes[1],
        xlabels=xlabels,
        ylabels=ylabels,
        vmin=0,
        vmax=1,
        cmap="Greens",
        title="greedy policy (1 = block runs)",
    )
    for ax in axes:
        ax.set_xlabel("block (s = stage start)")
        ax.tick_params(axis="y", labelsize=6)
    axes[0].set_ylabel("test image: label (blocks used), ✗ = misclassified")
    return fig


def plot_blocks_per_class(ev: PolicyEval, class_names: Sequence[str] | None = None):
    """Histogram of blocks used, one panel per class (misclassified images stacked in red)."""
    dynn.plots.set_style()
    classes = np.unique(ev.labels)
    K = ev.policy.shape[1]
    cols = min(5, len(classes))
    rows = int(np.ceil(len(classes) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), sharex=True, sharey=True, squeeze=False)
    bins = np.arange(K + 2) - 0.5
    for ax, c in zip(axes.flat, classes):
        sel = ev.labels == c
        used = ev.blocks_used[sel]
        ax.hist(
            [used[ev.correct[sel]], used[~ev.correct[sel]]],
            bins=bins,
            stacked=True,
            color=["tab:blue", "tab:red"],
            label=["correct", "wrong"],
        )
        ax.set_title(f"class {_class_name(class_names, c)}: {used.mean():.1f}±{used.std():.1f}", fontsize=9)
    for ax in axes.flat[len(classes) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("blocks used")
    axes.flat[0].set_xlim(max(-0.5, ev.blocks_used.min() - 1.5), K + 0.5)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Blocks used per test image (of K = {K}), by class")
    return fig


def plot_extreme_images(ev: PolicyEval, data, *, n: int = 8, class_names: Sequence[str] | None = None):
    """The test images that run the fewest (top row) and the most (bottom row) blocks."""
    # ties in blocks used are broken by the summed keep-probability (how sure the policy is)
    order = np.argsort(ev.blocks_used + 1e-3 * ev.keep_prob.mean(1), kind="stable")
    picks = [("fewest", order[:n]), ("most", order[::-1][:n])]
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 4.0), squeeze=False)
    for r, (name, idx) in enumerate(picks):
        for ax, i in zip(axes[r], idx):
            x, y = data[int(i)]
            ax.imshow(to_image(x, data), cmap="gray", vmin=0, vmax=1)
            ax.set_title(
                f"{_class_name(class_names, y)}→{ev.preds[i]} · {ev.blocks_used[i]} blk",
                fontsize=8,
                color="k" if ev.correct[i] else "tab:red",
            )
            ax.axis("off")
        for ax in axes[r][len(idx) :]:
            ax.axis("off")
        axes[r][0].text(-0.3, 0.5, f"{name}\nblocks", transform=axes[r][0].transAxes, ha="right", va="center")
    fig.suptitle("Images using the fewest / most blocks (label→prediction, red = wrong)")
    return fig


def plot_accuracy_vs_macs(points: list[dict], *, full_macs: float, title: str):
    """Every result point by series (BlockDrop with and without the policy network's MACs, the
    sweep, the static baseline, the full network); right: the same, zoomed on the
    high-accuracy end and labelled. Both panels draw the same series, so colours match."""
    import pandas as pd

    curve = pd.DataFrame(points)
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    dynn.plots.plot_accuracy_vs_cost(curve, hue="series", ax=axes[0], title=title)
    dynn.plots.plot_accuracy_vs_cost(
        curve, hue="series", ax=axes[1], annotate="label", title="zoom on the high-accuracy end"
    )
    not_static = curve[curve["role"] != "baseline"]["accuracy"]
    axes[1].set_ylim(not_static.min() - 3, curve["accuracy"].max() + 0.5)
    for ax in axes:
        ax.axvline(full_macs, color="gray", lw=0.8, ls=":")
    return fig


def plot_gamma_sweep(gamma_table, *, full_accuracy: float, full_macs: float, title: str = ""):
    """The finetuning penalty γ against the trade-off: left, accuracy vs MACs per image (policy
    counted) of each γ with the full network; right, blocks used (mean ± std) per γ."""
    dynn.plots.set_style()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.5))
    ratio = gamma_table["macs_mean"] / full_macs
    ax0.plot(ratio, gamma_table["accuracy"], "o-", color="tab:blue", label="BlockDrop (policy counted)")
    for r, acc, g in zip(ratio, gamma_table["accuracy"], gamma_table["gamma"]):
        ax0.annotate(f"γ={g:g}", (r, acc), textcoords="offset points", xytext=(5, -12))
    ax0.plot([1.0], [full_accuracy], "s", color="k", label="full network")
    ax0.set(xlabel="MACs per image / full network", ylabel="test top-1 (%)", title=title or "accuracy vs MACs by γ")
    ax0.legend()
    ax1.errorbar(gamma_table["gamma"], gamma_table["blocks_mean"], yerr=gamma_table["blocks_std"], fmt="o-")
    ax1.set(xscale="log", xlabel="penalty γ (log scale)", ylabel="blocks used per image", title="blocks kept by γ")
    return fig


# ---------------------------------------------------------------- explorer
def plot_image_policy(model: BlockDrop, data, index: int, *, device="cpu", class_names: Sequence[str] | None = None):
    """One image (de-normalised), its keep-probabilities and the blocks its greedy policy runs."""
    x, y = data[index]
    model.eval()
    with torch.no_grad():
        logits, u, s = model.infer(x[None].to(device))
    s, u = s[0].cpu().numpy(), u[0].cpu().numpy()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3), gridspec_kw={"width_ratios": [1, 3]})
    ax0.imshow(to_image(x, data), cmap="gray", vmin=0, vmax=1)
    ax0.set_title(f"label {_class_name(class_names, y)}, predicted {_class_name(class_names, int(logits.argmax()))}")
    ax0.axis("off")
    ax1.bar(range(len(s)), s, color=["tab:green" if k else "tab:gray" for k in u])
    ax1.axhline(0.5, color="k", lw=0.8, ls="--")
    ax1.set(
        xlabel="block",
        ylabel="keep-probability s",
        title=f"runs {int(u.sum())} of {len(u)} blocks (green)",
        ylim=(0, 1),
    )
    return fig


def explorer(model: BlockDrop, data, *, device="cpu", class_names: Sequence[str] | None = None):
    """ipywidgets explorer: a slider picks a test image, the figure of :func:`plot_image_policy`
    redraws. Returns the widget box (slider, output); in a notebook it is displayed."""
    import ipywidgets as widgets
    from IPython.display import display

    out = widgets.Output()
    slider = widgets.IntSlider(value=0, min=0, max=len(data) - 1, description="image")

    def show(index: int) -> None:
        fig = plot_image_policy(model, data, index, device=device, class_names=class_names)
        out.clear_output(wait=True)
        with out:
            display(fig)
        plt.close(fig)

    slider.observe(lambda change: show(change["new"]), names="value")
    show(0)
    return widgets.VBox([slider, out])
