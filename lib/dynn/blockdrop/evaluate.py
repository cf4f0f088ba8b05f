"""What BlockDrop costs and what it gets right: MACs per block, greedy-policy evaluation,
the threshold sweep, the "same blocks for everyone" baselines and the latency table.

Cost: :func:`block_costs` reads one :func:`dynn.flops.macs_by_module` pass of the full main
network into a fixed part (stem, shortcuts, head: paid whatever the policy) and one
residual-branch cost per block; MACs per image = fixed part + Σ kept residual branches (+ the
policy network). The unit tests check this against FlopCounterMode on the real-skip path.
Latency comes from :func:`dynn.flops.compare_latency` (interleaved rounds in one process),
each row recording the batch that really ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

import dynn.flops
from dynn.blockdrop.model import BlockDrop, greedy_policy
from dynn.data import make_loader
from dynn.train import unwrap


# ---------------------------------------------------------------- cost
@dataclass
class BlockCosts:
    """MACs per image measured by FlopCounterMode: fixed part + residual branch of each block."""

    full: int  # the whole main network
    fixed: int  # stem, shortcuts, head: paid whatever the policy
    blocks: np.ndarray  # K residual-branch MACs, saved when the block is dropped
    policy: int  # the policy network

    def macs(self, policy: np.ndarray | torch.Tensor, with_policy: bool = True) -> np.ndarray:
        """MACs per image for each row of an ``N×K`` policy (or one ``K`` policy)."""
        u = np.asarray(policy.detach().cpu() if isinstance(policy, torch.Tensor) else policy, dtype=float)
        return self.fixed + u @ self.blocks + (self.policy if with_policy else 0)

    def table(self, stage_index: Sequence[int] | None = None) -> pd.DataFrame:
        rows = [
            {
                "block": k,
                "stage": (stage_index[k] if stage_index else None),
                "residual_macs": int(m),
                "share_of_full": m / self.full,
            }
            for k, m in enumerate(self.blocks)
        ]
        return pd.DataFrame(rows)


@torch.no_grad()
def block_costs(model: BlockDrop, input_shape: Sequence[int], device: str | torch.device = "cpu") -> BlockCosts:
    """Per-block MACs from one :func:`dynn.flops.macs_by_module` pass of the full main network."""
    main = model.main
    was_training = model.training
    model.eval()
    x = torch.zeros(1, *input_shape, device=device)
    table = dynn.flops.macs_by_module(main.backbone, x)
    blocks = np.array([table.get(b, 0) - table.get(s, 0) for b, s in zip(main.block_names, main.shortcut_names)])
    full = table[""]
    policy = dynn.flops.count_macs(model.policy, x)
    model.train(was_training)
    return BlockCosts(full=int(full), fixed=int(full - blocks.sum()), blocks=blocks, policy=int(policy))


# ---------------------------------------------------------------- evaluation
@dataclass
class PolicyEval:
    """Per-image outcome of greedy BlockDrop inference on a dataset."""

    keep_prob: np.ndarray  # N×K
    policy: np.ndarray  # N×K in {0, 1}
    preds: np.ndarray
    labels: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        return self.preds == self.labels

    @property
    def blocks_used(self) -> np.ndarray:
        return self.policy.sum(1)

    def distinct_policies(self) -> int:
        return len({row.tobytes() for row in self.policy.astype(np.uint8)})

    def summary(self, costs: BlockCosts) -> dict:
        macs = costs.macs(self.policy, with_policy=True)
        main_macs = costs.macs(self.policy, with_policy=False)
        return {
            "accuracy": 100.0 * self.correct.mean(),
            "blocks_mean": float(self.blocks_used.mean()),
            "blocks_std": float(self.blocks_used.std()),
            "macs_mean": float(macs.mean()),
            "macs_std": float(macs.std()),
            "main_macs_mean": float(main_macs.mean()),
            "main_macs_std": float(main_macs.std()),
            "distinct_policies": self.distinct_policies(),
        }


@torch.no_grad()
def evaluate_policy(
    model: BlockDrop,
    data,
    *,
    batch_size: int = 256,
    device="cpu",
    threshold: float = 0.5,
    fixed_policy: torch.Tensor | None = None,
    keep_prob: np.ndarray | None = None,
) -> PolicyEval:
    """Run greedy BlockDrop (real skipping) over ``data``.

    ``threshold`` moves the keep-probability cut-off (the threshold sweep); ``fixed_policy``
    (K,) drops the same blocks for every image (the static baseline); ``keep_prob`` reuses
    already computed probabilities instead of re-running the policy network.
    """
    model.eval()
    probs, policies, preds, labels = [], [], [], []
    offset = 0
    for x, y in make_loader(data, batch_size):
        x = x.to(device)
        if keep_prob is not None:
            s = torch.as_tensor(keep_prob[offset : offset + len(x)], device=device)
        else:
            s = model.keep_prob(x)
        offset += len(x)
        if fixed_policy is not None:
            u = torch.as_tensor(fixed_policy, device=device, dtype=s.dtype).expand(len(x), -1)
        else:
            u = model.force_curriculum(greedy_policy(s, threshold))
        logits = model.main.forward_skip(x, u)
        probs.append(s.cpu())
        policies.append(u.cpu())
        preds.append(logits.argmax(1).cpu())
        labels.append(torch.as_tensor(y))
    cat = lambda ts: torch.cat(ts).numpy()  # noqa: E731
    return PolicyEval(cat(probs), cat(policies).astype(np.int64), cat(preds), cat(labels))


def validation_fn(data, *, batch_size: int = 256, device="cpu") -> Callable[[nn.Module], dict]:
    """``eval_fn`` for :func:`dynn.train.fit`: greedy accuracy and blocks used on ``data``."""

    def eval_fn(model: nn.Module) -> dict:
        ev = evaluate_policy(unwrap(model), data, batch_size=batch_size, device=device)
        return {
            "accuracy": 100.0 * ev.correct.mean(),
            "blocks": float(ev.blocks_used.mean()),
            "distinct_policies": ev.distinct_policies(),
        }

    return eval_fn


def threshold_sweep(
    model: BlockDrop,
    data,
    ev: PolicyEval,
    costs: BlockCosts,
    thresholds: Sequence[float],
    *,
    device="cpu",
    batch_size: int = 256,
) -> pd.DataFrame:
    """Accuracy and MACs of the same policy network cut at other keep-probability thresholds."""
    rows = []
    for t in thresholds:
        e = evaluate_policy(model, data, device=device, batch_size=batch_size, threshold=t, keep_prob=ev.keep_prob)
        rows.append({"threshold": t, **e.summary(costs)})
    return pd.DataFrame(rows)


def static_order(ranking: PolicyEval) -> np.ndarray:
    """Blocks by how often BlockDrop keeps them in ``ranking`` (ties: the higher mean keep-probability)."""
    frequency = ranking.policy.mean(0) + 1e-3 * ranking.keep_prob.mean(0)
    return np.argsort(-frequency, kind="stable")


def static_policy(order: np.ndarray, kept: int) -> np.ndarray:
    """The static policy that keeps the first ``kept`` blocks of ``order``."""
    u = np.zeros(len(order), dtype=np.int64)
    u[order[:kept]] = 1
    return u


def static_drop_baselines(
    model: BlockDrop,
    data,
    ranking: PolicyEval,
    costs: BlockCosts,
    *,
    device="cpu",
    batch_size: int = 256,
    counts: Sequence[int] | None = None,
) -> pd.DataFrame:
    """ "Drop the same blocks for everyone": keep the m blocks BlockDrop keeps most often.

    Ranking by BlockDrop's own keep frequency on ``ranking`` (its greedy policies on the
    *validation* split, so nothing about the baseline is chosen on test) gives the strongest
    static policy we can read off the learned one, at every MACs level. Evaluated on ``data``.
    """
    K = model.num_blocks
    order = static_order(ranking)
    rows = []
    for m in counts if counts is not None else range(1, K + 1):
        u = static_policy(order, m)
        e = evaluate_policy(model, data, device=device, batch_size=batch_size, fixed_policy=torch.as_tensor(u))
        summary = e.summary(costs)
        summary["macs_mean"] = summary["main_macs_mean"]  # a static policy needs no policy network
        rows.append({"kept_blocks": m, "policy": "".join(map(str, u)), **summary})
    return pd.DataFrame(rows)


def gamma_sweep_table(
    models: dict[float, BlockDrop], data, costs: BlockCosts, *, device="cpu", batch_size: int = 256
) -> tuple[pd.DataFrame, dict[float, PolicyEval]]:
    """Greedy BlockDrop of each finetuning penalty γ on ``data``: one summary row per γ (sorted),
    and the per-image evaluations (for paired comparisons between γ values)."""
    evals = {
        float(g): evaluate_policy(m, data, device=device, batch_size=batch_size) for g, m in sorted(models.items())
    }
    table = pd.DataFrame([{"gamma": g, **e.summary(costs)} for g, e in evals.items()])
    return table, evals


# ---------------------------------------------------------------- latency
LATENCY_PATHS = {
    "blockdrop": "BlockDrop: policy + real skip",
    "main": "main network only, real skip",
    "masked": "main network only, masked (official batched path)",
    "full": "full network",
}


def latency_table(
    model: BlockDrop,
    images: torch.Tensor,
    *,
    batch: torch.Tensor,
    costs: BlockCosts,
    min_run_time: float = 0.3,
    rounds: int = 4,
) -> pd.DataFrame:
    """Measured latency of real skipping vs the full network, beside the MACs ratio.

    Two :func:`dynn.flops.compare_latency` calls, ratios taken only within one call:

    - batch 1: for each image of ``images`` (N×C×H×W) the full network, BlockDrop (policy
      network + ``forward_single`` with the image's greedy policy) and the main network alone
      with that policy, timed back to back (a shared machine's load hits all three alike);
      per path the mean over the images of their medians;
    - batch ``len(batch)``: policy + batched real skip, batched real skip alone, the masked
      path (what the official batched code runs: every block any image keeps, on the whole
      batch) and the full network, interleaved over ``rounds`` rounds; per path the fastest
      round's median (on a shared machine the least disturbed one).

    The full network's rows (ratio 1) give the reference latency. Every row carries ``key``
    (full / blockdrop / main / masked), ``batched`` (which of the two calls), at batch 1
    ``per_image_latency_over_macs`` (one ratio per timed image), ``batch`` (what really ran), ``latency_ratio`` (to
    the full network of the same call), ``macs_ratio`` and ``latency_over_macs_ratio`` (1:
    time falls exactly as MACs do).
    """
    model.eval()
    main = model.main
    infer = lambda z: model.infer(z)[0]  # noqa: E731
    with torch.no_grad():
        single_policies = [
            model.force_curriculum(greedy_policy(model.keep_prob(images[i : i + 1])))[0] for i in range(len(images))
        ]
        u = model.force_curriculum(greedy_policy(model.keep_prob(batch)))
    calls_b1 = {}
    for i, ui in enumerate(single_policies):
        x = images[i : i + 1]
        calls_b1[("full", i)] = (main, (x,))
        calls_b1[("blockdrop", i)] = (infer, (x,))
        calls_b1[("main", i)] = (main.forward_single, (x, ui))
    rows_b1 = dynn.flops.compare_latency(
        {f"{p}/{i}": c for (p, i), c in calls_b1.items()}, rounds=1, min_run_time=min_run_time
    )
    rows_bn = dynn.flops.compare_latency(
        {
            "full": (main, (batch,)),
            "blockdrop": (infer, (batch,)),
            "main": (main.forward_skip, (batch, u)),
            "masked": (main.forward_masked, (batch, u)),
        },
        rounds=rounds,
        min_run_time=min_run_time,
    )

    def b1(path: str) -> tuple[float, dict]:
        rows = [r for r in rows_b1 if r["name"].split("/")[0] == path]
        return float(np.mean([r["median_ms"] for r in rows])), rows[0]

    policy_stack = torch.stack(single_policies)
    macs_b1 = {
        "full": float(costs.full),
        "blockdrop": float(costs.macs(policy_stack, True).mean()),
        "main": float(costs.macs(policy_stack, False).mean()),
    }
    macs_bn = {
        "full": float(costs.full),
        "blockdrop": float(costs.macs(u, True).mean()),
        "main": float(costs.macs(u, False).mean()),
        "masked": float(costs.macs(u.amax(0, keepdim=True), False)[0]),
    }  # every block someone keeps
    full_b1, _ = b1("full")
    by_name = {r["name"]: r for r in rows_bn}
    full_bn = by_name["full"]["best_ms"]

    def row(path: str, batched: bool, ms: float, full_ms: float, macs: float, measured: dict) -> dict:
        return {
            "key": path,
            "batched": batched,
            "path": LATENCY_PATHS[path],
            "batch": measured["batch"],
            "latency_ms": ms,
            "full_latency_ms": full_ms,
            "latency_ratio": ms / full_ms,
            "macs_ratio": macs / costs.full,
            "latency_over_macs_ratio": (ms / full_ms) / (macs / costs.full),
            "rounds": measured["rounds"],
            "threads": measured["threads"],
            "device": measured["device"],
        }

    def per_image(path: str) -> list[float]:
        """(latency ratio)/(MACs ratio) of each timed image against the full network on that image."""
        ms = {r["name"]: r["median_ms"] for r in rows_b1}
        with_policy = path == "blockdrop"
        return [
            (ms[f"{path}/{i}"] / ms[f"full/{i}"]) / (float(costs.macs(ui, with_policy)) / costs.full)
            for i, ui in enumerate(single_policies)
        ]

    table = []
    for path in ("full", "blockdrop", "main"):
        ms, measured = b1(path)
        table.append(row(path, False, ms, full_b1, macs_b1[path], measured))
        table[-1]["per_image_latency_over_macs"] = per_image(path) if path != "full" else None
    for path in ("full", "blockdrop", "main", "masked"):
        table.append(row(path, True, by_name[path]["best_ms"], full_bn, macs_bn[path], by_name[path]))
    return pd.DataFrame(table)


# ---------------------------------------------------------------- tables and result points
MAIN_ONLY_SERIES = "BlockDrop, policy MACs not counted"


def full_network_summary(accuracy: float, costs: BlockCosts, num_blocks: int) -> dict:
    """The full main network in the keys of :meth:`PolicyEval.summary` (every block, no policy)."""
    return {
        "accuracy": float(accuracy),
        "blocks_mean": float(num_blocks),
        "blocks_std": 0.0,
        "macs_mean": float(costs.full),
        "macs_std": 0.0,
        "main_macs_mean": float(costs.full),
        "main_macs_std": 0.0,
        "distinct_policies": 1,
    }


def summary_table(summaries: dict[str, dict], costs: BlockCosts, num_blocks: int) -> pd.DataFrame:
    """The paper's report per model: accuracy, blocks used (mean ± std of K), MACs per image with
    and without the policy network, MACs ratio to the full network, distinct policies."""
    return pd.DataFrame(
        [
            {
                "model": name,
                "accuracy (%)": s["accuracy"],
                "blocks used": f"{s['blocks_mean']:.2f} ± {s['blocks_std']:.2f} of {num_blocks}",
                "MACs/image (with policy)": f"{s['macs_mean'] / 1e6:.2f} ± {s['macs_std'] / 1e6:.2f} M",
                "MACs/image (main only)": f"{s['main_macs_mean'] / 1e6:.2f} M",
                "MACs ratio": s["macs_mean"] / costs.full,
                "distinct policies": s["distinct_policies"],
            }
            for name, s in summaries.items()
        ]
    )


def latency_row(latency: pd.DataFrame, key: str, batched: bool) -> pd.Series | None:
    """One row of :func:`latency_table` (``None`` if that path was not measured)."""
    rows = latency[(latency["key"] == key) & (latency["batched"] == batched)]
    return rows.iloc[0] if len(rows) else None


def _latency(latency: pd.DataFrame, key: str, batched: bool) -> dict:
    row = latency_row(latency, key, batched)
    if row is None:
        return {}
    prefix = "batched_" if batched else ""
    return {f"{prefix}latency_ms": float(row["latency_ms"]), f"{prefix}latency_batch": int(row["batch"])}


def result_points(
    *,
    full_accuracy: float,
    summary: dict,
    curriculum_summary: dict,
    sweep: pd.DataFrame,
    static: pd.DataFrame,
    latency: pd.DataFrame,
    costs: BlockCosts,
    depth: int,
    gamma: float,
    seed: int,
    gamma_table: pd.DataFrame | None = None,
    deployed: dict[str, str] | None = None,
) -> list[dict]:
    """The accuracy–MACs points of ``results.json``, each with its role in the comparison.

    - method: BlockDrop's greedy policy (threshold 0.5, ``selection="fixed"``) and the same
      policy network cut at every threshold of the sweep (``"sweep"``);
    - reference: the full (pretrained) main network;
    - baseline: "the same blocks for everyone", every count of kept blocks (``"sweep"``);
    - ablation: the curriculum alone (no joint finetuning) and BlockDrop with the policy
      network's MACs left out (what the main network alone spends).

    - method, ``"sweep"``: BlockDrop finetuned at every other penalty γ of ``gamma_table``.

    ``deployed`` maps ``"full"`` / ``"blockdrop"`` to what :meth:`dynn.runs.Run.save_deployed`
    returned, put in those points' ``deployed`` field for the report's re-timing.
    Latency (when measured for that path) is recorded with the batch that really ran:
    ``latency_ms``/``latency_batch`` at batch 1, ``batched_latency_ms``/``batched_latency_batch``.
    """

    def point(label, series, role, selection, accuracy, macs, **extra):
        return {
            "label": label,
            "series": series,
            "role": role,
            "selection": selection,
            "accuracy": float(accuracy),
            "macs": float(macs),
            "seed": seed,
            **extra,
        }

    points = [
        point(
            f"ResNet-{depth} (full)",
            "full network",
            "reference",
            "fixed",
            full_accuracy,
            costs.full,
            blocks=float(len(costs.blocks)),
            **({"deployed": deployed["full"]} if deployed and "full" in deployed else {}),
            **_latency(latency, "full", False),
            **_latency(latency, "full", True),
        ),
        point(
            f"BlockDrop γ={gamma:g}",
            "BlockDrop",
            "method",
            "fixed",
            summary["accuracy"],
            summary["macs_mean"],
            macs_std=summary["macs_std"],
            main_macs=summary["main_macs_mean"],
            policy_macs=costs.policy,
            blocks=summary["blocks_mean"],
            blocks_std=summary["blocks_std"],
            distinct_policies=summary["distinct_policies"],
            **({"deployed": deployed["blockdrop"]} if deployed and "blockdrop" in deployed else {}),
            **_latency(latency, "blockdrop", False),
            **_latency(latency, "blockdrop", True),
        ),
        point(
            "curriculum only",
            "BlockDrop (curriculum only)",
            "ablation",
            "fixed",
            curriculum_summary["accuracy"],
            curriculum_summary["macs_mean"],
            blocks=curriculum_summary["blocks_mean"],
        ),
        point(
            "main only",
            MAIN_ONLY_SERIES,
            "ablation",
            "fixed",
            summary["accuracy"],
            summary["main_macs_mean"],
            blocks=summary["blocks_mean"],
            **_latency(latency, "main", False),
            **_latency(latency, "main", True),
        ),
    ]
    points += [
        point(
            f"t={r.threshold:g}",
            "BlockDrop threshold sweep",
            "method",
            "sweep",
            r.accuracy,
            r.macs_mean,
            blocks=r.blocks_mean,
            threshold=float(r.threshold),
        )
        for r in sweep.itertuples()
    ]
    points += [
        point(
            f"static {r.kept_blocks}/{len(costs.blocks)}",
            "same blocks for everyone",
            "baseline",
            "sweep",
            r.accuracy,
            r.macs_mean,
            blocks=r.blocks_mean,
            policy=r.policy,
        )
        for r in static.itertuples()
    ]
    if gamma_table is not None:
        points += [
            point(
                f"γ={r.gamma:g}",
                "BlockDrop γ sweep",
                "method",
                "sweep",
                r.accuracy,
                r.macs_mean,
                blocks=r.blocks_mean,
                gamma=float(r.gamma),
                main_macs=r.main_macs_mean,
            )
            for r in gamma_table.itertuples()
            if float(r.gamma) != float(gamma)
        ]
    return points


def run_metrics(
    *,
    full_accuracy: float,
    finetuned_full_accuracy: float,
    summary: dict,
    curriculum_summary: dict,
    costs: BlockCosts,
    latency: pd.DataFrame,
) -> dict:
    """The run's headline numbers for ``results.json`` (latency ratios within one measurement call,
    with the batch that ran)."""

    def lat(key: str, batched: bool, column: str) -> float:
        return float(latency_row(latency, key, batched)[column])

    return {
        "full_accuracy": full_accuracy,
        "accuracy": summary["accuracy"],
        "finetuned_full_accuracy": finetuned_full_accuracy,
        "curriculum_accuracy": curriculum_summary["accuracy"],
        "blocks_mean": summary["blocks_mean"],
        "blocks_std": summary["blocks_std"],
        "num_blocks": len(costs.blocks),
        "curriculum_blocks_mean": curriculum_summary["blocks_mean"],
        "macs_full": costs.full,
        "macs_mean": summary["macs_mean"],
        "macs_std": summary["macs_std"],
        "main_macs_mean": summary["main_macs_mean"],
        "policy_macs": costs.policy,
        "macs_ratio": summary["macs_mean"] / costs.full,
        "main_macs_ratio": summary["main_macs_mean"] / costs.full,
        "distinct_policies": summary["distinct_policies"],
        "latency_ratio_b1": lat("blockdrop", False, "latency_ratio"),
        "macs_ratio_b1": lat("blockdrop", False, "macs_ratio"),
        "latency_over_macs_ratio_b1": lat("blockdrop", False, "latency_over_macs_ratio"),
        "main_latency_ratio_b1": lat("main", False, "latency_ratio"),
        "latency_batch": int(latency_row(latency, "full", True)["batch"]),
        "latency_ratio_batched": lat("blockdrop", True, "latency_ratio"),
        "masked_latency_ratio_batched": lat("masked", True, "latency_ratio"),
    }
