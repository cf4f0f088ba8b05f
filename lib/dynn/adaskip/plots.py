"""AR-Net's figures and its interactive explorer.

- :func:`plot_accuracy_vs_macs`: accuracy against measured MACs per video (log axis), by series;
- :func:`plot_timelines`: per-video rows of frames, each titled with the action taken;
- :func:`plot_usage`: a heatmap of action usage per group (frame type, class);
- :func:`explorer`: pick a clip, see each frame's decision (resolution / policy / skip).
"""

from __future__ import annotations

import numpy as np
import torch

from dynn.adaskip.evaluate import EvaluationPass


def frame_thumbnail(frame: torch.Tensor) -> np.ndarray:
    """A normalised ``C×H×W`` frame as an image in [0, 1] (min–max per frame)."""
    x = frame.float()
    x = (x - x.min()) / (x.max() - x.min()).clamp(min=1e-6)
    x = x.permute(1, 2, 0).cpu().numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def plot_timelines(
    frames: torch.Tensor,
    actions: np.ndarray,
    action_names: list[str],
    *,
    labels=None,
    predictions=None,
    frame_types=None,
    type_names=None,
):
    """Per-video timelines: each row a video's sampled frames, titled with the chosen action.

    Frames are ``N×T×C×H×W`` (the largest resolution); the border colour encodes the action
    (skipped frames are drawn faded).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    n, steps = actions.shape
    palette = sns.color_palette("colorblind", len(action_names))
    fig, axes = plt.subplots(n, steps, figsize=(1.15 * steps, 1.35 * n + 0.4), squeeze=False)
    skip_from = len(action_names) - sum(name.startswith("skip") for name in action_names)
    for i in range(n):
        for t in range(steps):
            ax = axes[i, t]
            a = int(actions[i, t])
            img = frame_thumbnail(frames[i, t])
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, alpha=0.35 if a >= skip_from else 1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor(palette[a])
                spine.set_linewidth(3)
            title = action_names[a]
            if frame_types is not None and type_names is not None:
                title += f"\n{type_names[int(frame_types[i, t])]}"
            ax.set_title(title, fontsize=6.5, color=palette[a])
        if labels is not None:
            text = f"label {labels[i]}" + (f"\npred {predictions[i]}" if predictions is not None else "")
            axes[i, 0].set_ylabel(text, fontsize=7)
    fig.tight_layout()
    return fig


def pick_timeline_videos(ev: EvaluationPass, n: int) -> np.ndarray:
    """Up to ``n`` test videos of distinct classes, mostly correct ones plus one mistake."""
    picked, seen = [], set()
    wrong = np.nonzero(ev.predictions != ev.targets)[0]
    for i in range(len(ev.targets)):
        if len(picked) >= n - (1 if len(wrong) else 0):
            break
        if ev.targets[i] not in seen and ev.predictions[i] == ev.targets[i]:
            picked.append(i)
            seen.add(ev.targets[i])
    if len(wrong):
        picked.append(int(wrong[0]))
    for i in range(len(ev.targets)):  # fill up if the classes ran out
        if len(picked) >= n:
            break
        if i not in picked:
            picked.append(i)
    return np.asarray(picked[:n])


def plot_example_timelines(evaluation: EvaluationPass, data, action_names, *, n: int = 6):
    """Timelines of ``n`` test clips (distinct classes, one mistake) with the decisions taken."""
    from dynn.adaskip.evaluate import sampled_frame_types, stack_inputs
    from dynn.data.video import FRAME_TYPES

    show = pick_timeline_videos(evaluation, n)
    frames = stack_inputs(data, show, "cpu")[0]
    types = sampled_frame_types(data)
    return plot_timelines(
        frames,
        evaluation.actions[show],
        list(action_names),
        labels=evaluation.targets[show],
        predictions=evaluation.predictions[show],
        frame_types=None if types is None else types[show],
        type_names=[name.removesuffix(" digit") for name in FRAME_TYPES],
    )


def _log_cost_axis(ax) -> None:
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_accuracy_vs_macs(points: list[dict], *, title: str, annotate: str | None = None):
    """Accuracy against measured MACs per video on a log axis (MMACs at small scale, GMACs at full)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    import dynn.plots

    table = pd.DataFrame(points)
    unit, scale = ("GMACs", 1e9) if table["macs"].max() > 1e9 else ("MMACs", 1e6)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    dynn.plots.plot_accuracy_vs_cost(
        table.assign(cost=table["macs"] / scale),
        x="cost",
        hue="series",
        ax=ax,
        annotate=annotate,
        xlabel=f"{unit} per video (measured)",
        title=title,
    )
    _log_cost_axis(ax)
    return fig


def plot_accuracy_vs_latency(accuracy: dict, rows: list[dict], *, title: str):
    """Accuracy against measured latency per video, one panel per batch size that ran.

    ``accuracy``: label → accuracy (%) of the rows to draw; ``rows``: :func:`dynn.adaskip.evaluate.latency`
    rows (interleaved timings); error bars span the fastest to the slowest round.
    """
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches), 4.5), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        for r in rows:
            if r["batch"] != batch or r["label"] not in accuracy:
                continue
            per_video = r["median_ms"] / batch
            low = r["best_ms"] / batch
            high = (r["best_ms"] + r["spread_ms"]) / batch
            marker = "*" if r["label"].startswith("AR-Net") else "o"
            ax.errorbar(
                per_video,
                accuracy[r["label"]],
                xerr=[[max(0.0, per_video - low)], [max(0.0, high - per_video)]],
                fmt=marker,
                markersize=12 if marker == "*" else 7,
                capsize=3,
                label=r["label"],
            )
        ax.set_xscale("log")
        ax.set_xlabel(f"ms per video (batch {batch}, median over rounds; bars: fastest–slowest round)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"batch {batch}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_usage(usage: np.ndarray, *, action_names, group_names, title: str):
    """Heatmap of the % of frames per action (columns) within each group (rows)."""
    import matplotlib.pyplot as plt

    import dynn.plots

    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.35 * len(group_names) + 1)))
    dynn.plots.heatmap(
        100 * np.asarray(usage),
        xlabels=action_names,
        ylabels=group_names,
        ax=ax,
        numbers=".0f",
        cbar_label="% of frames",
        title=title,
    )
    return fig


# ---------------------------------------------------------------- interactive explorer
def _clip_figure(model, frames, label: int, *, tau: float, decision: str, seed: int, frame_types=None, type_names=None):
    """One clip: run the efficient path, draw its frames titled with the decisions."""
    from dynn.adaskip.evaluate import batch_gumbel_noise
    from dynn.adaskip.model import infer_efficient

    device = next(model.parameters()).device
    inputs = [x[None].to(device) for x in frames]
    noise = (
        batch_gumbel_noise(0, (1, inputs[0].shape[1], model.action_dim), seed, device) if decision == "sample" else None
    )
    out, r_all = infer_efficient(model, inputs, tau=tau, decision=decision, noise=noise)
    actions = r_all.argmax(-1).cpu().numpy()
    prediction = int(out.argmax(1))
    fig = plot_timelines(
        frames[0][None],
        actions,
        model.action_names(),
        labels=[label],
        predictions=[prediction],
        frame_types=None if frame_types is None else frame_types[None],
        type_names=type_names,
    )
    return fig, actions[0], prediction


def explorer(model, data, *, tau: float, decision: str = "sample", seed: int = 0):
    """ipywidgets explorer: pick a test clip and a decision rule, see what AR-Net does per frame.

    Each frame (the full-resolution crop) is titled with the action the policy chose for it
    (its resolution, the policy's own prediction, or a skip; skipped frames are faded) and,
    on ``moving_digits``, the frame's type. Returns the widgets box (``children``: the clip
    slider, the decision buttons, the output).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    from dynn.adaskip.evaluate import sampled_frame_types
    from dynn.data.video import FRAME_TYPES

    model.eval()
    types = sampled_frame_types(data)
    clip = widgets.IntSlider(value=0, min=0, max=len(data) - 1, description="clip")
    rule = widgets.ToggleButtons(options=["sample", "argmax"], value=decision, description="decision")
    out = widgets.Output()

    def show(*_) -> None:
        frames, label = data[clip.value]
        out.clear_output(wait=True)
        with out:
            fig, _, _ = _clip_figure(
                model,
                frames,
                label,
                tau=tau,
                decision=rule.value,
                seed=seed,
                frame_types=None if types is None else types[clip.value],
                type_names=list(FRAME_TYPES),
            )
            plt.show()
            plt.close(fig)

    clip.observe(show, names="value")
    rule.observe(show, names="value")
    show()
    box = widgets.VBox([widgets.HBox([clip, rule]), out])
    display(box)
    return box
