"""AR-Net's evaluation: accuracy, chosen actions, measured MACs, official cost accounting, latency.

- :func:`measure_costs`: per-frame MACs of each backbone and of the policy, measured with
  :mod:`dynn.flops` (no hand formulas); :func:`usage_macs_per_frame` is the official
  accounting from pooled action usage (``get_policy_usage_str``).
- :func:`evaluate`: one inference mode over a dataset (efficient, masked, random policy,
  uniform, all resolutions) with MACs counted around what actually ran.
- :func:`compare`: every mode and baseline the notebook reports, as result points with
  their ``role``; :func:`frames_sweep` the accuracy–MACs curve over the number of frames;
  :func:`usage_per_frame_type` what the policy does on each kind of frame;
  :func:`latency` interleaved timings (``dynn.flops.compare_latency``) at batch 1 and a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from dynn import flops
from dynn.adaskip.model import (
    TSN,
    AdaSkipNet,
    gumbel_noise,
    infer_efficient,
    infer_uniform,
    policy_efficient,
    run_chosen,
    stream_seed,
)


# ---------------------------------------------------------------- costs
@dataclass
class CostTable:
    """Per-frame MACs measured with :mod:`dynn.flops` (no hand formulas).

    ``backbone[k]``: backbone k + its head at ``reso_list[k]``; ``policy_cnn``: the light CNN
    at the policy resolution; ``policy_step``: LSTMCell + action head + ``lite_fc``.
    """

    backbone: list[int]
    policy_cnn: int
    policy_step: int
    action_names: list[str] = field(default_factory=list)

    @property
    def policy(self) -> int:
        return self.policy_cnn + self.policy_step

    def action_costs(self, reso_dim: int, skip_dim: int) -> list[int]:
        """Official ``gflops_vec``: backbone MACs for resolution actions, 0 for lite and skips."""
        return list(self.backbone) + [0] * (reso_dim - len(self.backbone)) + [0] * skip_dim


@torch.no_grad()
def measure_costs(model: AdaSkipNet, channels: int = 3) -> CostTable:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    backbone = []
    for k, (net, fc) in enumerate(zip(model.base_model_list, model.new_fc_list)):
        x = torch.zeros(1, channels, model.reso_list[k], model.reso_list[k], device=device)
        backbone.append(flops.count_macs(lambda x, net=net, fc=fc: fc(net(x)), x))
    r = model.reso_list[model.policy_input_offset]
    x = torch.zeros(1, channels, r, r, device=device)
    policy_cnn = flops.count_macs(model.lite_backbone, x)
    feat = torch.zeros(1, model.policy_feat_dim, device=device)
    h = torch.zeros(1, model.hidden_dim, device=device)
    policy_step = flops.count_macs(lambda f: model.policy_step(f, h, h), feat)
    model.train(was_training)
    return CostTable(backbone, policy_cnn, policy_step, model.action_names())


def skip_time_vector(model: AdaSkipNet) -> list[float]:
    """Official ``t_vec``: policy runs per frame for each action (1, and 1/k for skip-k)."""
    return [1.0] * model.reso_dim + [1.0 if k == 1 else 1.0 / k for k in model.skip_list]


def usage_macs_per_frame(model: AdaSkipNet, costs: CostTable, usage) -> float:
    """Official accounting (``get_policy_usage_str``): Σ_a p_a·c_a + (policy+LSTM)·Σ_a p_a·t_a, in MACs."""
    usage = np.asarray(usage, dtype=float)
    c = np.asarray(costs.action_costs(model.reso_dim, model.skip_dim), dtype=float)
    t = np.asarray(skip_time_vector(model))
    return float((usage * c).sum() + costs.policy * (usage * t).sum())


def loss_costs(model: AdaSkipNet, costs: CostTable, largest_cost: float) -> torch.Tensor:
    """Per-action costs of the efficiency loss: measured MACs, in GMACs (``largest_cost = 0``)
    or rescaled so that the largest backbone costs ``largest_cost``."""
    c = torch.tensor(costs.action_costs(model.reso_dim, model.skip_dim), dtype=torch.float)
    if largest_cost > 0 and c.max() > 0:
        return c / c.max() * largest_cost
    return c / 1e9


# ---------------------------------------------------------------- one evaluation
@dataclass
class EvaluationPass:
    """Outputs of one evaluation pass over a dataset."""

    accuracy: float
    predictions: np.ndarray  # N
    targets: np.ndarray  # N
    actions: np.ndarray  # N×T chosen action per frame
    usage: np.ndarray  # A, fraction of frames per action
    macs_per_video: float  # measured with dynn.flops on what actually ran
    backbone_frames: list[int]
    policy_frames: int
    scores: np.ndarray | None = None  # N×K softmax of the video logits (for mAP)

    @property
    def correct(self) -> np.ndarray:
        """Per-video correctness (top-1), for paired comparisons on the same test videos."""
        return (self.predictions == self.targets).astype(float)


def batch_gumbel_noise(batch_index: int, shape, seed: int, device) -> torch.Tensor:
    """Gumbel noise of test batch ``batch_index``: every mode that samples sees the same draws."""
    gen = torch.Generator().manual_seed(stream_seed(seed, "test_gumbel_noise", batch_index))
    return gumbel_noise(shape, device=device, generator=gen)


@torch.no_grad()
def evaluate(
    model: AdaSkipNet,
    data,
    *,
    mode: str = "efficient",
    decision: str = "argmax",
    tau: float = 1.0,
    batch_size: int = 64,
    device="cpu",
    seed: int = 0,
    action_sampler=None,
    resolution: int = 0,
    count_macs: bool = True,
) -> EvaluationPass:
    """Accuracy, chosen actions and *measured* MACs per video of one inference mode.

    ``mode``: ``efficient`` (:func:`infer_efficient`), ``masked`` (official forward, every
    backbone on every frame), ``random`` (decisions drawn by ``action_sampler(B, T,
    generator)`` instead of the policy, executed efficiently), ``uniform`` (action
    ``resolution`` on every frame with AR-Net's own networks: every frame through one
    backbone, or the LSTM's prediction on every frame) or ``all`` (every resolution on
    every frame, averaged: the official ``all_policy``). MACs come from FlopCounterMode
    around the actual calls, divided by the number of videos.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from dynn.data import make_loader

    model.eval()
    if not model.online_policy and mode in ("efficient", "masked", "random"):
        mode = "all"  # without an online policy every resolution runs on every frame
    preds, targets, acts, scores = [], [], [], []
    total_macs, backbone_frames, policy_frames = 0, [0] * model.num_backbones, 0
    for i, (inputs, y) in enumerate(make_loader(data, batch_size)):
        inputs = [x.to(device) for x in inputs]
        b, steps = inputs[0].shape[:2]
        noise = (
            batch_gumbel_noise(i, (b, steps, model.action_dim), seed, inputs[0].device)
            if decision == "sample"
            else None
        )
        counter = FlopCounterMode(display=False) if count_macs else None
        if counter is not None:
            counter.__enter__()
        try:
            if mode == "efficient":
                lite_j, r_all, pf = policy_efficient(model, inputs, tau=tau, decision=decision, noise=noise)
                out, bf = run_chosen(model, inputs, r_all, lite_j)
            elif mode == "random":
                gen = torch.Generator().manual_seed(stream_seed(seed, "random_policy", i))
                actions = action_sampler(b, steps, gen).to(inputs[0].device)
                lite_j, r_all, pf = policy_efficient(model, inputs, tau=tau, actions=actions)
                out, bf = run_chosen(model, inputs, r_all, lite_j)
            elif mode == "uniform":
                r_all = F.one_hot(
                    torch.full((b, steps), int(resolution), device=inputs[0].device), model.action_dim
                ).to(inputs[0].dtype)
                lite_j, pf = None, 0
                if resolution == model.lite_action:  # the policy's own prediction on every frame (LSTM)
                    lite, _ = model.get_lite_j_and_r(inputs, False, tau)
                    lite_j, pf = torch.stack(lite, 1), b * steps
                out, bf = run_chosen(model, inputs, r_all, lite_j)
            elif mode in ("masked", "all"):
                if mode == "all":
                    lite, _ = model.get_lite_j_and_r(inputs, False, tau)
                    _, outs, _ = model.get_feat_and_pred(inputs, None)
                    if model.policy_also_backbone:
                        outs.append(torch.stack(lite, 1))
                    r_all = inputs[0].new_ones(b, steps, model.action_dim)
                    out = model.combine_logits(r_all, outs)
                else:
                    out, r_all, _, _ = model(input=inputs, tau=tau, decision=decision, noise=noise)
                bf, pf = [b * steps] * model.num_backbones, b * steps
            else:
                raise ValueError(f"mode = {mode!r}: allowed efficient, masked, random, uniform, all")
        finally:
            if counter is not None:
                counter.__exit__(None, None, None)
                total_macs += counter.get_total_flops() // 2
        preds.append(out.argmax(1).cpu())
        scores.append(F.softmax(out, 1).cpu())
        targets.append(y)
        acts.append(r_all.argmax(-1).cpu() if mode != "all" else torch.full((b, steps), -1))
        backbone_frames = [a + c for a, c in zip(backbone_frames, bf)]
        policy_frames += pf
    preds, targets, acts = torch.cat(preds).numpy(), torch.cat(targets).numpy(), torch.cat(acts).numpy()
    usage = np.bincount(acts[acts >= 0].ravel(), minlength=model.action_dim) / max(1, (acts >= 0).sum())
    scores = torch.cat(scores).numpy()
    return EvaluationPass(
        accuracy=task_metric(data, scores, preds, targets),
        predictions=preds,
        targets=targets,
        actions=acts,
        usage=usage,
        macs_per_video=total_macs / len(targets),
        backbone_frames=backbone_frames,
        policy_frames=policy_frames,
        scores=scores,
    )


@torch.no_grad()
def evaluate_uniform(tsn: TSN, data, resolution_index: int, *, batch_size: int = 64, device="cpu") -> dict:
    """Uniform baseline: every frame through one backbone; accuracy (mAP on multi-label
    sets), per-video correctness and measured MACs per video."""
    from torch.utils.flop_counter import FlopCounterMode

    from dynn.data import make_loader

    tsn.eval()
    macs, preds, targets, scores = 0, [], [], []
    for inputs, y in make_loader(data, batch_size):
        x = inputs[resolution_index].to(device)
        counter = FlopCounterMode(display=False)
        with counter:
            logits = tsn(x)
        macs += counter.get_total_flops() // 2
        preds.append(logits.argmax(1).cpu())
        scores.append(F.softmax(logits, 1).cpu())
        targets.append(y)
    preds, targets, scores = torch.cat(preds).numpy(), torch.cat(targets).numpy(), torch.cat(scores).numpy()
    return {
        "accuracy": task_metric(data, scores, preds, targets),
        "correct": (preds == targets).astype(float),
        "macs_per_video": macs / len(targets),
    }


def mean_average_precision(scores: np.ndarray, multi_hot: np.ndarray) -> float:
    """mAP in % (ActivityNet / FCVID): average precision per class over the videos, averaged
    over the classes that have at least one positive video."""
    aps = []
    for k in range(multi_hot.shape[1]):
        positives = multi_hot[:, k] > 0
        if not positives.any():
            continue
        order = np.argsort(-scores[:, k], kind="stable")
        hits = positives[order]
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        aps.append(float((precision * hits).sum() / hits.sum()))
    return 100.0 * float(np.mean(aps)) if aps else float("nan")


def task_metric(data, scores: np.ndarray, predictions: np.ndarray, targets: np.ndarray) -> float:
    """The set's metric in %: mAP for multi-label sets (``data.multi_hot``), top-1 otherwise."""
    multi_hot = getattr(data, "multi_hot", None)
    if multi_hot is not None and getattr(data, "multi_label", False):
        return mean_average_precision(scores, np.asarray(multi_hot))
    return float((predictions == targets).mean() * 100)


def matched_action_sampler(model: AdaSkipNet, usage) -> callable:
    """Random policy at matched usage: i.i.d. decisions whose *frame* usage matches ``usage``.

    A skip-k decision covers k frames, so decisions are drawn with probability ∝ p_a / k_a
    (k = 1 for resolution actions); the fraction of frames per action then matches the
    learned policy's (up to clip-boundary effects).
    """
    cover = np.array([1.0] * model.reso_dim + [float(k) for k in model.skip_list])
    q = np.asarray(usage, dtype=float) / cover
    if q.sum() <= 0:
        q = np.ones_like(q)
    q = torch.tensor(q / q.sum(), dtype=torch.float)

    def sample(b: int, steps: int, generator: torch.Generator) -> torch.Tensor:
        return torch.multinomial(q, b * steps, replacement=True, generator=generator).view(b, steps)

    return sample


# ---------------------------------------------------------------- analysis and figures
def usage_by_group(actions: np.ndarray, groups: np.ndarray, action_dim: int, num_groups: int) -> np.ndarray:
    """Fraction of frames per action within each group (class, frame type): groups × actions."""
    out = np.zeros((num_groups, action_dim))
    for g in range(num_groups):
        sel = actions[groups == g]
        sel = sel[sel >= 0]
        if len(sel):
            out[g] = np.bincount(sel, minlength=action_dim) / len(sel)
    return out


def sampled_frame_types(data) -> np.ndarray | None:
    """Frame type of every test-time sampled frame (videos × T), where the dataset knows it
    (``moving_digits``); ``None`` for real videos."""
    return data.sampled_frame_types() if hasattr(data, "sampled_frame_types") else None


def stack_inputs(data, videos, device) -> list[torch.Tensor]:
    """A batch of videos as the model's ``input_list``: the first ``videos`` or those indices."""
    idx = range(min(videos, len(data))) if isinstance(videos, int) else [int(i) for i in videos]
    items = [data[i][0] for i in idx]
    return [torch.stack([it[k] for it in items]).to(device) for k in range(len(items[0]))]


# ---------------------------------------------------------------- what the notebook reports
@dataclass
class Comparison:
    """AR-Net, its ablations and its baselines on one test set, as result points."""

    evaluations: dict[str, EvaluationPass]  # by point label (AR-Net's own modes and the uniform ones)
    points: list[dict]  # label, series, role, selection, accuracy, macs (per video), ...
    method: str  # label of the headline AR-Net point
    official_macs: float  # the official accounting of the headline point's usage, per video
    random_usage: np.ndarray  # the frame usage the random policy matches (AR-Net's on validation clips)
    action_names: list[str] = field(default_factory=list)
    validation: EvaluationPass | None = None  # the headline mode on the validation clips (operating points)
    uniform_correct: dict = field(default_factory=dict)  # label -> (MACs per video, per-video correctness)

    def table(self):
        import pandas as pd

        table = pd.DataFrame(self.points)
        return table.assign(**{"GMACs/video": table["macs"] / 1e9})

    def usage_table(self):
        """% of frames per action: AR-Net on test, on validation (what the random policy matches), random."""
        import pandas as pd

        return pd.DataFrame(
            {
                "action": self.action_names,
                "AR-Net (%)": 100 * self.evaluations[self.method].usage,
                "AR-Net on validation (%)": 100 * np.asarray(self.random_usage),
                "random policy (%)": 100 * self.evaluations["random policy (matched usage)"].usage,
            }
        )


def compare(
    model: AdaSkipNet,
    tsns,
    test_data,
    val_data,
    *,
    costs: CostTable,
    test_decision: str,
    tau: float,
    batch_size: int = 64,
    device="cpu",
    seed: int = 0,
    w_eff: float | None = None,
    uniform=None,
) -> Comparison:
    """Every inference mode and baseline of the notebook, with its ``role`` in the results.

    - method: AR-Net with the ``test_decision`` inference (the efficient path; measured MACs);
    - ablations: the other decision rule, and the official masked computation (same
      decisions, every backbone on every frame);
    - baselines: a random policy whose frame usage matches AR-Net's on the *validation*
      clips, all resolutions on every frame (official ``all_policy``), one action on every
      frame with AR-Net's own networks (``uniform``), and the stage-1 TSNs;
    - reference: the full-resolution uniform TSN trained as long as AR-Net's backbones
      (``uniform``, from :func:`dynn.adaskip.train.uniform_baselines`; the others at lower
      resolutions are baselines); the stage-1 TSNs (fewer epochs) are ablations.
    ``tsns`` are stage 1's :class:`~dynn.adaskip.model.PretrainedTSNs`. The per-video
    correctness of the equally trained uniform TSNs is kept in ``uniform_correct``.
    """
    names = model.action_names()
    other = "argmax" if test_decision == "sample" else "sample"
    ev = dict(batch_size=batch_size, device=device, seed=seed, tau=tau)
    evaluations, points = {}, []

    def add(label, series, role, selection, e: EvaluationPass, **extra):
        evaluations[label] = e
        points.append(
            {
                "label": label,
                "series": series,
                "role": role,
                "selection": selection,
                "accuracy": e.accuracy,
                "macs": e.macs_per_video,
                **extra,
            }
        )

    method_extra = {"decision": test_decision, **({"w_eff": w_eff} if w_eff is not None else {})}
    method = f"AR-Net ({test_decision})"
    arnet = evaluate(model, test_data, mode="efficient", decision=test_decision, **ev)
    add(method, "AR-Net", "method", "fixed", arnet, **method_extra)
    add(
        f"AR-Net ({other})",
        f"AR-Net ({other} decisions)",
        "ablation",
        "fixed",
        evaluate(model, test_data, mode="efficient", decision=other, **ev),
        decision=other,
    )
    add(
        "AR-Net, masked (official compute)",
        "AR-Net masked",
        "ablation",
        "fixed",
        evaluate(model, test_data, mode="masked", decision=test_decision, **ev),
        decision=test_decision,
    )
    on_val = evaluate(model, val_data, mode="efficient", decision=test_decision, **ev)
    sampler = matched_action_sampler(model, on_val.usage)
    add(
        "random policy (matched usage)",
        "random policy",
        "baseline",
        "validation",
        evaluate(model, test_data, mode="random", action_sampler=sampler, **ev),
    )
    add("all resolutions", "all resolutions", "baseline", "fixed", evaluate(model, test_data, mode="all", **ev))
    for k in range(model.reso_dim):  # AR-Net's own networks, one action on every frame
        add(
            f"uniform {names[k]}",
            "uniform",
            "baseline",
            "fixed",
            evaluate(model, test_data, mode="uniform", resolution=k, **ev),
        )
    for k, tsn in enumerate(tsns.backbones):  # the stage-1 TSNs (fewer epochs than AR-Net's backbones)
        u = evaluate_uniform(tsn, test_data, k, batch_size=batch_size, device=device)
        points.append(
            {
                "label": f"TSN {model.reso_list[k]}px (stage 1)",
                "series": "TSN (stage 1, fewer epochs)",
                "role": "ablation",
                "selection": "fixed",
                "accuracy": u["accuracy"],
                "macs": u["macs_per_video"],
            }
        )
    uniform_correct = {}
    for tsn in uniform if uniform is not None else []:  # equally trained uniform TSNs
        k = tsn.resolution_index
        u = evaluate_uniform(tsn, test_data, k, batch_size=batch_size, device=device)
        label = uniform_label(model.reso_list[k], arnet.actions.shape[1])
        uniform_correct[label] = (u["macs_per_video"], u["correct"])
        points.append(
            {
                "label": label,
                "series": "uniform TSN (equal epochs)",
                "role": "reference" if k == 0 else "baseline",
                "selection": "fixed",
                "accuracy": u["accuracy"],
                "macs": u["macs_per_video"],
                "frames": int(arnet.actions.shape[1]),
            }
        )
    steps = arnet.actions.shape[1]
    return Comparison(
        evaluations,
        points,
        method,
        usage_macs_per_frame(model, costs, arnet.usage) * steps,
        on_val.usage,
        names,
        validation=on_val,
        uniform_correct=uniform_correct,
    )


def clip_macs(model: AdaSkipNet, costs: CostTable, actions: np.ndarray) -> np.ndarray:
    """MACs of each video from its chosen actions, as the efficient path spends them: the
    chosen backbone per frame, plus the policy on every frame (``cx_quirk``) or on the
    frames where it decides (without it)."""
    c = np.asarray(costs.action_costs(model.reso_dim, model.skip_dim), dtype=float)
    per_frame = c[actions].sum(1)
    if model.cx_quirk:
        return per_frame + costs.policy * actions.shape[1]
    t = np.asarray(skip_time_vector(model))
    return per_frame + costs.policy * t[actions].sum(1)


def uniform_label(size: int, frames: int) -> str:
    """Label of an equally trained uniform TSN point (the latency rows use the same)."""
    return f"uniform TSN {size}px, {frames} frames"


def usage_per_frame_type(model: AdaSkipNet, evaluation: EvaluationPass, data):
    """What the policy does on each kind of frame (only for sets that know their frame types).

    Returns ``(table, fractions)``: the % of frames per action for each frame type (plus
    the grouped columns skipped / policy prediction / highest / lower resolutions), and
    each group's share of the uninformative and the informative frames; ``None`` when the
    dataset has no frame types.
    """
    import pandas as pd

    from dynn.data.video import FRAME_TYPES, INFORMATIVE

    frame_types = sampled_frame_types(data)
    if frame_types is None:
        return None
    names = model.action_names()
    groups = {
        "skipped": [a for a, n in enumerate(names) if n.startswith("skip")],
        "policy prediction": [model.lite_action] if model.lite_action is not None else [],
        "highest resolution": [0] if model.num_backbones else [],
        "lower resolutions": list(range(1, model.num_backbones)),
    }
    by_type = usage_by_group(evaluation.actions, frame_types, model.action_dim, len(FRAME_TYPES))
    table = pd.DataFrame(100 * by_type, index=list(FRAME_TYPES), columns=names)
    for g, acts in groups.items():
        table[f"= {g}"] = table.iloc[:, acts].sum(1) if acts else 0.0
    informative = np.isin(frame_types, [t for t, yes in enumerate(INFORMATIVE) if yes])
    fractions = {
        f"{g} (% of {kind} frames)": 100 * float(np.isin(evaluation.actions[mask], acts).mean())
        for g, acts in groups.items()
        for kind, mask in (("uninformative", ~informative), ("informative", informative))
    }
    return table, fractions


def frames_sweep(
    model: AdaSkipNet,
    *,
    eval_frames,
    dataset: str,
    data_root: str = "",
    reso_list,
    clip_frames: int,
    test_limit: int = 0,
    test_decision: str,
    random_usage,
    tau: float,
    batch_size: int = 64,
    device="cpu",
    seed: int = 0,
    uniform=None,
) -> tuple[list[dict], dict]:
    """Accuracy and MACs with 4/8/16... frames per video at inference (the paper's curves).

    AR-Net (the policy trained with ``num_segments`` frames), the random policy at
    ``random_usage`` and AR-Net's backbones uniformly; generated clips allow at most
    ``clip_frames`` frames, and the equally trained ``uniform`` TSNs. Every point has
    ``selection = "sweep"`` and its ``frames``. Returns ``(points, uniform_correct)``:
    ``uniform_correct[label] = (macs per video, per-video correctness)`` of every uniform TSN
    point (the rivals of the matched-MACs claim).
    """
    from dynn.adaskip.train import video_set
    from dynn.data import is_embedded

    names = model.action_names()
    sampler = matched_action_sampler(model, random_usage)
    runs = {
        "AR-Net (frames)": ("method", dict(mode="efficient", decision=test_decision)),
        "random policy (frames)": ("baseline", dict(mode="random", action_sampler=sampler)),
    }
    runs.update(
        {
            f"uniform {names[k]} (frames)": ("baseline", dict(mode="uniform", resolution=k))
            for k in range(model.num_backbones)
        }
    )
    points, uniform_correct = [], {}
    for frames in eval_frames:
        if is_embedded(dataset) and frames > clip_frames:
            continue
        data = video_set(
            dataset,
            "test",
            reso_list=reso_list,
            num_segments=frames,
            data_root=data_root,
            clip_frames=clip_frames,
            limit=test_limit,
        )
        for series, (role, kw) in runs.items():
            e = evaluate(model, data, **kw, tau=tau, batch_size=batch_size, device=device, seed=seed)
            points.append(
                {
                    "label": f"{series.removesuffix(' (frames)')}, {frames} frames",
                    "series": series,
                    "role": role,
                    "selection": "sweep",
                    "frames": int(frames),
                    "accuracy": e.accuracy,
                    "macs": e.macs_per_video,
                }
            )
        for tsn in uniform if uniform is not None else []:
            k = tsn.resolution_index
            u = evaluate_uniform(tsn, data, k, batch_size=batch_size, device=device)
            label = uniform_label(reso_list[k], frames)
            uniform_correct[label] = (u["macs_per_video"], u["correct"])
            points.append(
                {
                    "label": label,
                    "series": f"uniform TSN {reso_list[k]}px (frames)",
                    "role": "baseline",
                    "selection": "sweep",
                    "frames": int(frames),
                    "accuracy": u["accuracy"],
                    "macs": u["macs_per_video"],
                }
            )
    return points, uniform_correct


def latency(
    model: AdaSkipNet,
    data,
    *,
    tau: float,
    decision: str,
    batch: int,
    min_run_time: float = 0.3,
    rounds: int = 4,
    device="cpu",
    uniform=None,
) -> list[dict]:
    """Wall-clock time of the efficient path, the masked path and each uniform backbone.

    Measured by ``dynn.flops.compare_latency`` (interleaved rounds in one process, so load
    hits every row alike) at batch 1 and at a batch of ``batch`` videos (or as many as
    ``data`` has; every row records the batch that really ran). Row names are the
    :func:`compare` labels.
    """
    inputs = stack_inputs(data, batch, device)
    names = model.action_names()
    calls = {
        f"AR-Net ({decision})": lambda i: infer_efficient(model, i, tau=tau, decision=decision),
        "AR-Net, masked (official compute)": lambda i: model(input=i, tau=tau, decision=decision),
    }
    other = "argmax" if decision == "sample" else "sample"
    calls[f"AR-Net ({other})"] = lambda i: infer_efficient(model, i, tau=tau, decision=other)
    for k in range(model.num_backbones):
        calls[f"uniform {names[k]}"] = lambda i, k=k: infer_uniform(model, i, k)
    frames = inputs[0].shape[1]
    for tsn in uniform if uniform is not None else []:
        k = tsn.resolution_index
        calls[uniform_label(model.reso_list[k], frames)] = lambda i, tsn=tsn, k=k: tsn(i[k])
    calls["policy alone"] = lambda i: policy_efficient(model, i, tau=tau, decision=decision)
    rows = []
    for batch_inputs in ([x[:1] for x in inputs], inputs):
        with torch.no_grad():
            measured = flops.compare_latency(
                {name: (fn, (batch_inputs,)) for name, fn in calls.items()}, rounds=rounds, min_run_time=min_run_time
            )
        rows += [{"label": r.pop("name"), **r} for r in measured]
    return rows


def usage_per_class(evaluation: EvaluationPass, action_dim: int, num_classes: int) -> np.ndarray:
    """Fraction of frames per action within the videos of each class: classes × actions."""
    per_frame_class = np.repeat(evaluation.targets[:, None], evaluation.actions.shape[1], 1)
    return usage_by_group(evaluation.actions, per_frame_class, action_dim, num_classes)


def attach_latency(points: list[dict], rows: list[dict], *, batch: int = 1) -> list[dict]:
    """Put each point's latency at ``batch`` (from :func:`latency` rows of the same label) on it."""
    by_label = {r["label"]: r for r in rows if r["batch"] == batch}
    for p in points:
        if p["label"] in by_label:
            r = by_label[p["label"]]
            p.update(latency_ms=r["median_ms"], latency_spread_ms=r["spread_ms"], latency_batch=r["batch"])
    return points


def latency_ratio(rows: list[dict], numerator: str, denominator: str, *, batch: int) -> float:
    """Ratio of two rows' median latency measured in the same interleaved call at ``batch``."""
    ms = {r["label"]: r["median_ms"] for r in rows if r["batch"] == batch}
    return ms[numerator] / ms[denominator]
