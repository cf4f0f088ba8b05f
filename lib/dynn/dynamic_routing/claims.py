"""The paper's claims, decided on one run's test evaluations (see :mod:`dynn.claims`).

:func:`paper_claims` turns the evaluations of the trained networks (by label, as
:func:`dynn.dynamic_routing.evaluate.evaluate` returns them: per-image confusion matrices,
real and expected MACs, gates) and the latency table into rows of the claims table. Every
rule is stated in the row (``rule``) and decided from an interval, never from a point:

- mIoU differences: a paired bootstrap over test images (resample the images, sum their
  confusion matrices, mIoU of both networks on the same resample) — :func:`miou_bootstrap`;
- per-image quantities (cost ratios, correlations): a bootstrap over test images;
- latency ratios: the range over the interleaved timing rounds.

The operating points (the budgets, the static route, the narrow width) are fixed before the
test set is seen: the route and the width come from the validation split.
"""

from __future__ import annotations

import math

import numpy as np

from dynn.claims import CONFIDENCE, claim, interval_claim, verdict
from dynn.dynamic_routing.evaluate import (
    FIX,
    NARROW_FIX,
    RAW,
    STATIC_ROUTE,
    open_cells_of,
    route_diversity,
    scale_activation,
)
from dynn.dynamic_routing.published import CLAIM_SOURCES

RESAMPLES = 1000
NON_INFERIORITY_MARGIN = 1.0  # mIoU points: "Dynamic-Raw ≥ Network-Fix" allows this much noise below
LATENCY_TOLERANCE = 1.3  # latency ratio ÷ MACs ratio: the skipping inference may lose at most 30 % to overheads


def _tails(confidence: float = CONFIDENCE) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    return tail, 100 - tail


def _resample_counts(n: int, *, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``resamples × n`` multiplicities of a bootstrap resample of ``n`` items."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    return np.stack([np.bincount(row, minlength=n) for row in idx])


def _miou(conf: np.ndarray) -> np.ndarray:
    """mIoU (%) of confusion matrices ``... × K × K`` (classes absent from truth and prediction skipped)."""
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    denom = conf.sum(-1) + conf.sum(-2) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)
    return 100 * np.nanmean(iou, -1)


def miou_bootstrap(conf_a: np.ndarray, conf_b: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0):
    """``(difference, low, high)``: mIoU(a) − mIoU(b) on the test set and its paired 95 %
    bootstrap interval (both networks scored on the same resampled images)."""
    n, k = conf_a.shape[0], conf_a.shape[-1]
    counts = _resample_counts(n, resamples=resamples, seed=seed).astype(np.float64)
    a = _miou((counts @ conf_a.reshape(n, k * k)).reshape(-1, k, k))
    b = _miou((counts @ conf_b.reshape(n, k * k)).reshape(-1, k, k))
    diff = float(_miou(conf_a.sum(0)) - _miou(conf_b.sum(0)))
    lo, hi = np.nanpercentile(a - b, _tails())
    return diff, float(lo), float(hi)


def mean_bootstrap(values: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0):
    """``(mean, low, high)`` of per-image ``values`` by the percentile bootstrap."""
    v = np.asarray(values, float)
    counts = _resample_counts(len(v), resamples=resamples, seed=seed)
    lo, hi = np.percentile(counts @ v / len(v), _tails())
    return float(v.mean()), float(lo), float(hi)


def route_scale(nodes, gates) -> np.ndarray:
    """Per image, the gate-weighted mean scale index (0 = 1/4 … 3 = 1/32) of the routing
    layers: higher means the image's computation leans to coarser scales."""
    act = np.nan_to_num(scale_activation(nodes, gates))
    weight = act.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, (act * np.arange(act.shape[1])).sum(1) / weight, np.nan)


def scale_correlation(sizes: np.ndarray, scale: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0):
    """``(rho, low, high)``: Spearman correlation of object size with route scale and its
    bootstrap interval over images; ``(0, 0, 0)`` where the route scale never varies."""
    from scipy import stats

    ok = np.isfinite(sizes) & np.isfinite(scale)
    x, y = sizes[ok], scale[ok]
    if len(x) < 3 or np.ptp(y) == 0 or np.ptp(x) == 0:
        return 0.0, 0.0, 0.0
    rho = float(stats.spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(resamples):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(y[i]) > 0 and np.ptp(x[i]) > 0:
            boot.append(stats.spearmanr(x[i], y[i]).statistic)
    lo, hi = np.percentile(boot, _tails())
    return rho, float(lo), float(hi)


def _latency_range(latency, label: str, path: str, batch: int) -> tuple[float, float, float]:
    """``(median, fastest, slowest)`` round median (ms) of one row of the latency table."""
    rows = latency[(latency["label"] == label) & (latency["path"] == path) & (latency["batch"] == batch)]
    if rows.empty:
        return math.nan, math.nan, math.nan
    row = rows.iloc[0]
    return float(row["median_ms"]), float(row["best_ms"]), float(row["best_ms"] + row["spread_ms"])


def _mu_chain(evals: dict, budgets: dict) -> list[tuple[float, str]]:
    """The budgeted networks ordered by μ, Dynamic-Raw (no budget) last when it exists."""
    chain = sorted((mu, label) for label, mu in budgets.items() if mu is not None and label in evals)
    if RAW in evals:
        chain.append((math.inf, RAW))
    return chain


def paper_claims(
    evals: dict[str, dict],
    *,
    main_label: str,
    budgets: dict[str, float | None],
    nodes,
    object_sizes: np.ndarray,
    latency,
    latency_batch: int,
) -> list[dict]:
    """Every claim of issue 16, from the test evaluations of one run (see the module docstring)."""
    main = evals[main_label]
    claims = []

    # 1. cost falls monotonically as μ falls
    chain = _mu_chain(evals, budgets)
    if len(chain) >= 2:
        steps = []
        for (_, lo), (_, hi) in zip(chain, chain[1:]):
            per_image = (evals[hi]["real_cost"] - evals[lo]["real_cost"]) / evals[hi]["network_fix_cost"]
            steps.append((mean_bootstrap(per_image), lo, hi))
        (value, low, high), lo, hi = min(steps, key=lambda s: s[0][1])
        order = " < ".join(f"{'none' if math.isinf(m) else f'{m:g}'}" for m, _ in chain)
        claims.append(
            interval_claim(
                "cost_monotone_in_mu",
                f"Real cost falls monotonically as the budget μ falls (μ = {order}).",
                (value, low, high),
                paper=CLAIM_SOURCES["cost_monotone_in_mu"],
                rule="for every pair of neighbouring μ (Dynamic-Raw = no budget last), the paired per-image real-MACs "
                f"increase (fraction of Network-Fix) has a 95 % bootstrap interval above 0; shown: the weakest step "
                f"({lo} → {hi})",
                unit="× Network-Fix",
            )
        )
    else:
        claims.append(
            claim(
                "cost_monotone_in_mu",
                "Real cost falls monotonically as the budget μ falls.",
                paper=CLAIM_SOURCES["cost_monotone_in_mu"],
                value=None,
                ci=None,
                holds=None,
                rule="needs at least two budgets (mu_sweep) or a budget and Dynamic-Raw",
            )
        )

    # 2. routes differ per image ...
    div = route_diversity(main["gates"])
    cells = open_cells_of(main["gates"]).astype(np.float64)
    n = len(cells)
    # mean pairwise distance of open cells = 2·Σ_c p_c(1−p_c)·n/(n−1) / cells: bootstrap it from the resampled p_c
    counts = _resample_counts(n)
    p = counts @ cells / n
    boot = (2 * p * (1 - p)).mean(1) * n / max(1, n - 1)
    low, high = np.percentile(boot, _tails())
    claims.append(
        interval_claim(
            "routes_differ_per_image",
            f"Different images take different routes ({div['distinct_routes']} distinct routes over "
            f"{div['images']} test images; {100 * div['modal_share']:.0f} % on the most common one).",
            (div["open_cell_distance"], float(low), float(high)),
            paper=CLAIM_SOURCES["routes_differ_per_image"],
            rule="the mean pairwise distance of the images' sets of open cells (fraction of cells open for one "
            "image and closed for the other) has a 95 % bootstrap interval above 0 (one static route gives exactly 0)",
            unit="of cells",
        )
    )

    # 2b. ... and correlate with object scale
    rho, low, high = scale_correlation(object_sizes, route_scale(nodes, main["gates"]))
    claims.append(
        claim(
            "routes_follow_object_scale",
            "Routes follow the scale of the objects: images with larger objects lean to coarser scales.",
            paper=CLAIM_SOURCES["routes_follow_object_scale"],
            value=rho,
            ci=(low, high),
            holds=False if (low, high) == (0.0, 0.0) else verdict(low, high, 0.0, above=True),
            rule="Spearman correlation of the mean object size with the gate-weighted mean scale of the routing "
            "layers, 95 % bootstrap interval over test images above 0 (a route that never varies fails)",
            unit="Spearman ρ",
            threshold=0.0,
            above=True,
        )
    )

    # 3. dynamic at a budget beats the equal-cost static networks
    for rival in (STATIC_ROUTE, NARROW_FIX):
        if rival not in evals:
            continue
        cost = float(evals[rival]["real_cost"].mean()) / float(main["real_cost"].mean())
        claims.append(
            interval_claim(
                f"dynamic_beats_{rival.lower().replace(' ', '_').replace('(', '').replace(')', '').replace('-', '_')}",
                f"{main_label} beats the equal-cost static network '{rival}' ({cost:.2f}× its real MACs) in mIoU.",
                miou_bootstrap(main["confusions"], evals[rival]["confusions"]),
                paper=CLAIM_SOURCES["dynamic_beats_static"],
                rule="paired bootstrap over test images of mIoU(dynamic) − mIoU(rival): interval above 0; the rival's "
                "route (most common on validation) or width (narrowest Network-Fix costing at least the dynamic "
                "network's validation MACs) was fixed on validation",
                unit="mIoU points",
            )
        )

    # 4. Dynamic-Raw ≥ Network-Fix
    if RAW in evals and FIX in evals:
        claims.append(
            interval_claim(
                "raw_at_least_fix",
                "Dynamic-Raw (gates, no budget) is at least as accurate as Network-Fix (every path, no gates).",
                miou_bootstrap(evals[RAW]["confusions"], evals[FIX]["confusions"]),
                paper=CLAIM_SOURCES["raw_at_least_fix"],
                rule=f"paired bootstrap over test images of mIoU(Raw) − mIoU(Fix): interval above "
                f"−{NON_INFERIORITY_MARGIN:g} point (non-inferiority margin fixed in advance)",
                unit="mIoU points",
                threshold=-NON_INFERIORITY_MARGIN,
            )
        )

    # 5. real cost stays above μ (reported)
    mu = budgets.get(main_label)
    if mu is not None:
        ratio = (main["real_cost"] - (main["network_fix_cost"] - main["full_cost"])) / main["full_cost"]
        claims.append(
            interval_claim(
                "real_cost_above_mu",
                f"The real cost stays above the budget μ = {mu:g} (μ constrains expected, not real, cost).",
                mean_bootstrap(ratio),
                paper=CLAIM_SOURCES["real_cost_above_mu"],
                rule="real MACs of cells, transitions and gates (no stem, no head) over C_full, per test image; 95 % "
                "bootstrap interval above μ (reported: this is a property to know, not a goal)",
                unit="× C_full",
                threshold=mu,
            )
        )

    # 6. per-sample skipping: latency ratio ÷ MACs ratio ≤ 1.3 at batch 1 and the larger batch
    if FIX in evals:
        macs_ratio = float(main["real_cost"].mean()) / float(evals[FIX]["real_cost"].mean())
        for batch in sorted({1, int(latency_batch)}):
            d_med, d_best, d_worst = _latency_range(latency, main_label, "skip", batch)
            f_med, f_best, f_worst = _latency_range(latency, FIX, "dense", batch)
            value = d_med / f_med / macs_ratio
            low, high = d_best / f_worst / macs_ratio, d_worst / f_best / macs_ratio
            claims.append(
                interval_claim(
                    f"skip_latency_tracks_macs_b{batch}",
                    f"At batch {batch}, per-sample skipping turns the MACs saving into a latency saving "
                    f"(latency ratio ÷ MACs ratio ≤ {LATENCY_TOLERANCE:g} against Network-Fix).",
                    (value, low, high),
                    paper=CLAIM_SOURCES["skip_latency_tracks_macs"],
                    rule=f"(skipping latency of {main_label} ÷ Network-Fix latency) ÷ (real MACs ratio), measured "
                    "interleaved in one process; interval from the fastest and slowest timing rounds, below "
                    f"{LATENCY_TOLERANCE:g}",
                    unit="× MACs ratio",
                    threshold=LATENCY_TOLERANCE,
                    above=False,
                )
            )
    return claims


def claims_table(claims: list[dict]):
    """The claims as a table for the notebook."""
    import pandas as pd

    from dynn.claims import mark

    return pd.DataFrame(
        [
            {
                "claim": c["statement"],
                "ours": c["value"],
                "95 % interval": None if c["ci"] is None else tuple(round(v, 4) for v in c["ci"]),
                "holds": mark(c["holds"]),
                "rule": c["rule"],
            }
            for c in claims
        ]
    )
