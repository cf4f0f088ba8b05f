"""BlockDrop's paper claims, decided on one run from intervals (see :mod:`dynn.claims`).

:func:`paper_claims` turns the run's per-image evaluations into the rows of the claims table.
Every comparison of two models is *paired*: both on the same test images, the per-image
difference (correct − correct, in percentage points) bootstrapped over images. The rules:

- ``above_static_front``: BlockDrop (policy MACs counted) against the "same blocks for
  everyone" policy with the nearest MACs *not below* BlockDrop's (the static order is read
  on validation); the paired difference's interval lies above 0.
- ``macs_ratio``: BlockDrop's mean MACs per image (policy counted) over the full network's;
  the bootstrap interval lies below 0.75.
- ``within_1pp``: BlockDrop minus the full pretrained network (the paper's base); the paired
  interval lies above −1 pp.
- ``finetune_recovers``: finetuned BlockDrop minus BlockDrop after the curriculum alone; the
  paired interval lies above 0.
- ``gamma_orders``: over the γ sweep, blocks used rise with γ at every step and the paired
  accuracy difference (largest γ − smallest γ) has its interval above 0; inconclusive
  without a sweep.
- ``instance_specific``: the std of blocks per image has its bootstrap interval above 0 and
  more than one distinct policy is used.
- ``easy_fewer_blocks``: mean blocks of the dataset's ``hard`` images minus its ``easy``
  ones (``difficulty_level``), two-sample bootstrap interval above 0; inconclusive on a
  dataset without difficulty levels.
- ``latency_b1`` / ``latency_batched``: (latency ratio)/(MACs ratio) of BlockDrop (policy +
  real skip) to the full network ≤ 1.2 — at batch 1 the t-interval over the timed images
  lies below 1.2; batched (one interleaved measurement, no interval) the fastest round's
  ratio is ≤ 1.2.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from dynn.blockdrop.evaluate import BlockCosts, PolicyEval, evaluate_policy, latency_row, static_order, static_policy
from dynn.blockdrop.published import cite
from dynn.claims import claim, interval_claim, paired_bootstrap, t_interval, verdict

LATENCY_LIMIT = 1.2
MACS_LIMIT = 0.75
ACCURACY_MARGIN = 1.0  # percentage points


def bootstrap(values: np.ndarray, statistic, *, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """``(statistic, low, high)``: percentile bootstrap (95 %) of ``statistic`` over items."""
    v = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    stats = [statistic(v[rng.integers(0, len(v), len(v))]) for _ in range(resamples)]
    return float(statistic(v)), float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def two_sample_bootstrap(a: np.ndarray, b: np.ndarray, *, resamples: int = 2000, seed: int = 0):
    """``(mean(a) − mean(b), low, high)``, each group resampled on its own (95 %)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    diffs = a[rng.integers(0, len(a), (resamples, len(a)))].mean(1) - b[
        rng.integers(0, len(b), (resamples, len(b)))
    ].mean(1)
    return float(a.mean() - b.mean()), float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def matched_static(static: pd.DataFrame, macs: float) -> pd.Series:
    """The static point with the nearest MACs not below ``macs`` (the most blocks if none is)."""
    above = static[static["macs_mean"] >= macs]
    return above.loc[above["macs_mean"].idxmin()] if len(above) else static.loc[static["macs_mean"].idxmax()]


def _pp(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Paired per-image accuracy difference a − b in percentage points, with its interval."""
    return paired_bootstrap(100.0 * (np.asarray(a, float) - np.asarray(b, float)))


def gamma_claim(gamma_evals: dict[float, PolicyEval] | None) -> dict:
    """``gamma_orders`` from the per-image evaluations of each γ (see the module docstring)."""
    statement = "A larger penalty γ keeps more blocks and more accuracy (γ orders the trade-off)."
    rule = (
        "blocks used rise with γ at every step of the sweep, and the paired accuracy difference "
        "(largest − smallest γ) has its 95 % interval above 0"
    )
    if not gamma_evals or len(gamma_evals) < 2:
        return claim(
            "gamma_orders", statement, paper=cite("gamma"), value=None, ci=None, holds=None,
            rule=rule + " (no γ sweep in this run: set gamma_sweep)", unit="pp",
        )  # fmt: skip
    gammas = sorted(gamma_evals)
    blocks = [float(gamma_evals[g].blocks_used.mean()) for g in gammas]
    rising = all(b1 > b0 for b0, b1 in zip(blocks, blocks[1:]))
    mean, low, high = _pp(gamma_evals[gammas[-1]].correct, gamma_evals[gammas[0]].correct)
    holds = True if rising and low > 0 else False if (not rising or high < 0) else None
    out = claim("gamma_orders", statement, paper=cite("gamma"), value=mean, ci=(low, high), holds=holds, rule=rule,
                unit="pp")  # fmt: skip
    out["blocks_by_gamma"] = dict(zip(map(float, gammas), blocks))
    return out


def paper_claims(
    *,
    model,
    data,
    ranking: PolicyEval,
    ev: PolicyEval,
    ev_curriculum: PolicyEval,
    full_correct: np.ndarray,
    costs: BlockCosts,
    static: pd.DataFrame,
    latency: pd.DataFrame,
    gamma_evals: dict[float, PolicyEval] | None = None,
    device="cpu",
) -> list[dict]:
    """Every claim of the module docstring, on the test split ``data`` (what ``ev`` evaluated).

    ``ranking``: BlockDrop's greedy policies on validation (the static order, as in
    :func:`~dynn.blockdrop.evaluate.static_drop_baselines`); ``full_correct``: per-image
    correctness of the full pretrained network on ``data``.
    """
    claims = []
    macs = costs.macs(ev.policy, with_policy=True)

    # 1. above the static front at matched MACs
    match = matched_static(static, float(macs.mean()))
    u = static_policy(static_order(ranking), int(match["kept_blocks"]))
    ev_static = evaluate_policy(model, data, device=device, fixed_policy=torch.as_tensor(u))
    c = interval_claim(
        "above_static_front",
        "BlockDrop, policy counted, is more accurate than dropping the same blocks for every image at matched MACs.",
        _pp(ev.correct, ev_static.correct),
        paper=cite("static"),
        rule="paired difference (BlockDrop − static policy with the nearest MACs not below BlockDrop's, "
        "its blocks ranked on validation), 95 % bootstrap interval above 0",
        unit="pp",
    )
    c.update(static_kept_blocks=int(match["kept_blocks"]), static_macs=float(match["macs_mean"]))
    claims.append(c)

    # 2. cost and accuracy against the full network
    claims.append(
        interval_claim(
            "macs_ratio",
            f"BlockDrop, policy counted, runs at ≤ {MACS_LIMIT} of the full network's MACs.",
            bootstrap(macs / costs.full, np.mean),
            paper=cite("cifar_finetuned"),
            rule=f"mean MACs per image (policy included) / full network, 95 % bootstrap interval below {MACS_LIMIT}",
            threshold=MACS_LIMIT,
            above=False,
        )
    )
    claims.append(
        interval_claim(
            "within_1pp",
            "BlockDrop's accuracy is within 1 pp of the full network it starts from.",
            _pp(ev.correct, full_correct),
            paper=cite("cifar_finetuned"),
            rule="paired difference (BlockDrop − full pretrained network), 95 % bootstrap interval above −1 pp",
            unit="pp",
            threshold=-ACCURACY_MARGIN,
        )
    )

    # 3. finetuning recovers what the curriculum lost
    c = interval_claim(
        "finetune_recovers",
        "Joint finetuning recovers the accuracy the curriculum lost.",
        _pp(ev.correct, ev_curriculum.correct),
        paper=cite("curriculum"),
        rule="paired difference (finetuned − curriculum-only BlockDrop), 95 % bootstrap interval above 0",
        unit="pp",
    )
    c["curriculum_lost_pp"] = float(100.0 * (np.mean(full_correct) - ev_curriculum.correct.mean()))
    claims.append(c)

    # 4. gamma
    claims.append(gamma_claim(gamma_evals))

    # 5. instance-specific policies
    blocks = ev.blocks_used.astype(float)
    mean, low, high = bootstrap(blocks, np.std)
    distinct = ev.distinct_policies()
    holds = verdict(low, high, 0.0)
    c = claim(
        "instance_specific", "Policies are instance-specific: images run different numbers of blocks.",
        paper=cite("policies"), value=mean, ci=(low, high), holds=holds if distinct > 1 else False,
        rule="std of blocks per image, 95 % bootstrap interval above 0, and more than one distinct policy",
        unit="blocks", threshold=0.0,
    )  # fmt: skip
    c["distinct_policies"] = distinct
    claims.append(c)
    statement = "Easy images use fewer blocks than hard ones."
    rule = "mean blocks (hard − easy images by the dataset's difficulty_level), 95 % two-sample bootstrap above 0"
    levels = getattr(data, "difficulty_level", None)
    if levels is None:
        claims.append(claim("easy_fewer_blocks", statement, paper=cite("qualitative"), value=None, ci=None,
                            holds=None, rule=rule + " (this dataset has no difficulty levels)", unit="blocks"))  # fmt: skip
    else:
        levels = np.asarray(levels)[: len(blocks)]
        c = interval_claim(
            "easy_fewer_blocks",
            statement,
            two_sample_bootstrap(blocks[levels == "hard"], blocks[levels == "easy"]),
            paper=cite("qualitative"),
            rule=rule,
            unit="blocks",
        )
        c["blocks_by_level"] = {lv: float(blocks[levels == lv].mean()) for lv in ("easy", "medium", "hard")
                                if (levels == lv).any()}  # fmt: skip
        claims.append(c)

    # 6. latency follows MACs
    b1 = latency_row(latency, "blockdrop", False)
    per_image = b1.get("per_image_latency_over_macs") if b1 is not None else None
    if per_image is not None and len(per_image) > 1:
        mean, low, high = t_interval(per_image)
    else:
        mean, low, high = (float(b1["latency_over_macs_ratio"]) if b1 is not None else math.nan), math.nan, math.nan
    claims.append(claim(
        "latency_b1", f"Real skipping saves time as MACs fall: (latency ratio)/(MACs ratio) ≤ {LATENCY_LIMIT} at batch 1.",
        paper=cite("speed"), value=mean, ci=None if math.isnan(low) else (low, high),
        holds=verdict(low, high, LATENCY_LIMIT, above=False) if not math.isnan(low) else
        (None if math.isnan(mean) else mean <= LATENCY_LIMIT),
        rule=f"per timed image (BlockDrop latency / full latency) / (MACs ratio), t-interval over images below "
        f"{LATENCY_LIMIT}", threshold=LATENCY_LIMIT, above=False,
    ))  # fmt: skip
    bn = latency_row(latency, "blockdrop", True)
    value = float(bn["latency_over_macs_ratio"]) if bn is not None else math.nan
    batch = int(bn["batch"]) if bn is not None else 0
    claims.append(claim(
        "latency_batched",
        f"Real skipping saves time as MACs fall when batched: (latency ratio)/(MACs ratio) ≤ {LATENCY_LIMIT} "
        f"at batch {batch}.",
        paper=cite("speed"), value=value, ci=None, holds=None if math.isnan(value) else bool(value <= LATENCY_LIMIT),
        rule=f"fastest of interleaved rounds, (BlockDrop / full latency) / MACs ratio ≤ {LATENCY_LIMIT} "
        "(one measurement, no interval; over seeds the t-interval decides)", threshold=LATENCY_LIMIT, above=False,
    ))  # fmt: skip
    return claims
