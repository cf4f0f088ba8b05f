"""The paper's claims, checked on one run: rules, paired intervals, verdicts (``results.json``).

Every accuracy comparison is *paired*: the two configurations were evaluated on the same
test images, so the per-image difference of their ``correct`` flags (in percentage points)
goes through :func:`dynn.claims.paired_bootstrap`. Every compared configuration was chosen
without test data (:func:`dynn.slimmable.evaluate.chosen_row`). Rivals "at matched MACs"
are the US-Nets uniform configuration with the nearest MACs *not below* the method's
(:func:`dynn.slimmable.evaluate.matched_rival`); the post-hoc control is the configuration
its own validation selection deploys for the same budget. The report re-decides each
claim with a threshold over seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dynn.claims import interval_claim, paired_bootstrap, t_interval
from dynn.slimmable.evaluate import CLAIM_TARGETS, NO_RECAL, SERIES, chosen_row, matched_rival
from dynn.slimmable.published import claim_figure

# "collapse" without BN recalibration: a drop of more than this many points (fixed in advance)
COLLAPSE_PP = 10.0
# deployed narrow networks count as "really faster" while latency ratio / MACs ratio stays below
LATENCY_OVER_MACS = 1.5


def _correct(row: dict) -> np.ndarray:
    return np.asarray(row["correct"], dtype=float) * 100.0


def _paired(a: dict, b: dict) -> tuple[float, float, float]:
    return paired_bootstrap(_correct(a) - _correct(b))


def monotone_claim(table: pd.DataFrame) -> dict:
    """Accuracy rises with MACs along the method's deployed points at 0.25 / 0.5 / 0.75 / 1.0."""
    recal = table[table.bn_recal]
    points = [chosen_row(recal, SERIES["searched"], t) for t in (*CLAIM_TARGETS, 1.0)]
    steps = [_paired(b, a) for a, b in zip(points, points[1:]) if a is not None and b is not None]
    return interval_claim(
        "monotone_in_macs",
        "One set of weights gives an accuracy that rises monotonically with MACs from 0.25 to 1.0 of the full network.",
        min(steps, key=lambda s: s[0]) if steps else (math.nan, math.nan, math.nan),
        paper=claim_figure("monotone_in_macs"),
        rule="paired test-accuracy step (pp) between consecutive deployed points of the jointly trained network "
        "at 0.25 → 0.5 → 0.75 → 1.0 MACs; the weakest step is reported; holds if its 95 % interval lies above 0",
        unit="pp",
    )


def layerwise_vs_uniform_claims(table: pd.DataFrame) -> list[dict]:
    """Joslim's searched widths vs US-Nets' uniform widths at matched MACs, per budget."""
    out = []
    for t in CLAIM_TARGETS:
        method = chosen_row(table[table.bn_recal], SERIES["searched"], t)
        rival = matched_rival(table, method) if method is not None else None
        out.append(
            interval_claim(
                f"layerwise_ge_uniform@{t}",
                f"At {t} of the full MACs, layer-wise widths found by joint training and search are at least as "
                "accurate as uniform widths of a US-Nets network.",
                _paired(method, rival) if rival is not None else (math.nan, math.nan, math.nan),
                paper=claim_figure("layerwise_ge_uniform"),
                rule=f"paired test-accuracy difference (pp): the method's configuration chosen on validation for "
                f"≤ {t} MACs minus the US-Nets uniform width with the nearest MACs not below it; holds if the "
                "95 % interval lies above 0, fails if below 0",
                unit="pp",
            )
        )
    return out


def joint_vs_posthoc_claim(table: pd.DataFrame) -> dict:
    """Joint training + search vs the same search run after uniform (US-Nets) training."""
    recal = table[table.bn_recal]
    differences = []
    for t in CLAIM_TARGETS:
        method = chosen_row(recal, SERIES["searched"], t)
        control = chosen_row(recal, SERIES["posthoc"], t)
        if method is not None and control is not None:
            differences.append(_correct(method) - _correct(control))
    if differences:
        value, low, high = paired_bootstrap(np.mean(differences, axis=0))
    else:
        value, low, high = math.nan, math.nan, math.nan
    return interval_claim(
        "joint_ge_posthoc",
        "Optimising widths jointly with the weights beats searching widths after training a US-Net.",
        (value, low, high),
        paper=claim_figure("joint_ge_posthoc"),
        rule="per test image, the mean over the budgets 0.25 / 0.5 / 0.75 MACs of (method correct − post-hoc "
        "control correct), both chosen on validation for the same budget; paired bootstrap; holds if the "
        "95 % interval lies above 0",
        unit="pp",
    )


def recalibration_claim(table: pd.DataFrame, target: float = CLAIM_TARGETS[0]) -> dict:
    """Without BN recalibration a narrow deployed configuration collapses."""
    method = chosen_row(table[table.bn_recal], SERIES["searched"], target)
    stale = None
    if method is not None:
        same = table[(~table.bn_recal) & (table.series == SERIES["searched"] + NO_RECAL)]
        same = same[same.label == method["label"]]
        stale = None if same.empty else same.iloc[0].to_dict()
    return interval_claim(
        "bn_recalibration_needed",
        "Without recalibrating BatchNorm statistics per configuration, narrow configurations collapse.",
        _paired(method, stale) if stale is not None else (math.nan, math.nan, math.nan),
        paper=claim_figure("bn_recalibration_needed"),
        rule=f"paired test-accuracy loss (pp) of the method's configuration for ≤ {target} MACs evaluated with the "
        f"statistics training left instead of recalibrated ones; holds if the 95 % interval lies above "
        f"{COLLAPSE_PP:g} pp (a collapse, fixed in advance)",
        unit="pp",
        threshold=COLLAPSE_PP,
    )


def latency_claim(speed: pd.DataFrame, target: float = CLAIM_TARGETS[0]) -> dict:
    """The exported narrow network's latency ratio ÷ MACs ratio at the larger batch."""
    method = chosen_row(speed, SERIES["searched"], target)
    if method is None or "ratio_rounds_batched" not in method:
        value, low, high = math.nan, math.nan, math.nan
        batch = None
    else:
        per_round = np.asarray(method["ratio_rounds_batched"], float) / method["macs_ratio"]
        value, low, high = t_interval(per_round)
        batch = int(method["latency_batched_batch"])
    return interval_claim(
        "latency_follows_macs",
        "Narrow slimmable configurations deployed as plain networks are really faster, nearly in proportion to MACs.",
        (value, low, high),
        paper=claim_figure("latency_follows_macs"),
        rule=f"latency ratio to the full network ÷ MACs ratio of the method's exported configuration for ≤ {target} "
        f"MACs at batch {batch} (per interleaved timing round; t-interval over rounds); holds if the 95 % "
        f"interval lies below {LATENCY_OVER_MACS:g}",
        unit="×",
        threshold=LATENCY_OVER_MACS,
        above=False,
    )


def paper_claims(table: pd.DataFrame, speed: pd.DataFrame) -> list[dict]:
    """All claims of this notebook, in the order the notebook states their rules."""
    return [
        monotone_claim(table),
        *layerwise_vs_uniform_claims(table),
        joint_vs_posthoc_claim(table),
        recalibration_claim(table),
        latency_claim(speed),
    ]
