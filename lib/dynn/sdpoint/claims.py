"""The paper's claims, decided from one run's tables (see :mod:`dynn.claims`).

Every comparison is paired: two models (or two instances, or one instance with and
without BN recalibration) on the same test images, so the interval is a bootstrap over
those images of the per-image difference in correctness (:func:`dynn.claims.paired_bootstrap`).
What is compared:

- ``monotone_front``: one SDPoint model gives a curve whose accuracy rises with MACs;
  Kendall's τ between MACs and test top-1 over all its (recalibrated) instances, the
  interval by resampling the test images;
- ``full_cost_vs_baseline``: the SDPoint network without downsampling (BN recalibrated,
  as the paper evaluates every instance) against the normally trained baseline as trained;
  "within 1 pp" is a non-inferiority rule: the interval of the difference lies above −1 pp;
- ``cheap_instances_beat_baseline``: every instance below half of the full MACs against
  the baseline evaluated at the same instance (both recalibrated); the value is the
  instance with the smallest gain, and the rule needs every interval above 0;
- ``bn_recalibration_matters``: SDPoint with against without recalibration, per image
  averaged over all downsampling instances;
- ``cheap_instances_faster``: latency ratio ÷ MACs ratio of every instance below half of
  the full MACs at batch 1 and at the batched size (the worst of them), from one
  interleaved timing; its range comes from the spread over the timing rounds;
- ``agent_beats_single_point``: the agent's best configuration (highest validation
  reward) against the single-point instance of the same network on the validation front
  with the nearest MACs not below the agent's, both reported on test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dynn.claims import claim, interval_claim, paired_bootstrap, verdict
from dynn.sdpoint.published import CLAIM_FIGURES as PAPER

CHEAP = 0.5  # "cheap" instances: below this fraction of the full MACs
FULL_COST_MARGIN = 1.0  # pp: "within 1 pp of the baseline"
LATENCY_SLACK = 1.3  # latency ratio / MACs ratio allowed for "really faster"


def _rows(instances: pd.DataFrame, model: str, recalibrated: bool) -> pd.DataFrame:
    rows = instances[(instances.model == model) & (instances.recalibrated == recalibrated)]
    return rows.set_index("label")


def _correct(row) -> np.ndarray:
    return np.asarray(row["test_correct"], float)


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's τ-b between ``x`` and ``y`` (ties count for neither side)."""
    from scipy import stats

    tau = stats.kendalltau(x, y).statistic
    return float(tau) if not math.isnan(tau) else 0.0


def monotone_front(sdpoint: pd.DataFrame, *, resamples: int = 1000, seed: int = 0) -> dict:
    correct = np.stack([_correct(r) for _, r in sdpoint.iterrows()])  # instances × images
    macs = sdpoint["macs"].to_numpy(float)
    tau = kendall_tau(macs, correct.mean(1))
    rng = np.random.default_rng(seed)
    n = correct.shape[1]
    taus = [kendall_tau(macs, correct[:, rng.integers(0, n, n)].mean(1)) for _ in range(resamples)]
    low, high = np.percentile(taus, [2.5, 97.5])
    return interval_claim(
        "monotone_front",
        "One trained SDPoint network gives an accuracy-cost curve: its instances' accuracy rises with their MACs.",
        (tau, low, high),
        paper=PAPER["monotone_front"],
        rule="Kendall's tau between MACs and test top-1 over every BN-recalibrated instance; "
        "holds if its 95 % bootstrap interval (test images resampled) lies above 0",
    )


def full_cost_vs_baseline(sdpoint: pd.DataFrame, baseline_plain: pd.DataFrame) -> dict:
    d = 100 * (_correct(sdpoint.loc["full network"]) - _correct(baseline_plain.loc["full network"]))
    return interval_claim(
        "full_cost_vs_baseline",
        "At full cost the SDPoint network is as accurate as the normally trained baseline "
        "(within 1 pp; the paper finds it better).",
        paired_bootstrap(d),
        paper=PAPER["full_cost_vs_baseline"],
        rule="SDPoint without downsampling (BN recalibrated) minus the baseline as trained, test top-1 (pp), "
        "paired bootstrap over test images; holds if the interval lies above -1 pp",
        unit="pp",
        threshold=-FULL_COST_MARGIN,
    )


def cheap_instances_beat_baseline(sdpoint: pd.DataFrame, baseline: pd.DataFrame) -> tuple[dict, list[dict]]:
    """The claim, and one row per cheap instance (label, MACs fraction, gain and interval)."""
    rows = []
    for label, r in sdpoint[sdpoint.macs_fraction < CHEAP].iterrows():
        mean, low, high = paired_bootstrap(100 * (_correct(r) - _correct(baseline.loc[label])))
        rows.append(
            {"label": label, "macs_fraction": float(r["macs_fraction"]), "gain": mean, "low": low, "high": high}
        )
    if not rows:
        holds, value, ci = None, None, None
    else:
        worst = min(rows, key=lambda x: x["gain"])
        verdicts = [verdict(x["low"], x["high"], 0.0, above=True) for x in rows]
        holds = False if False in verdicts else None if None in verdicts else True
        value, ci = worst["gain"], (worst["low"], worst["high"])
    result = claim(
        "cheap_instances_beat_baseline",
        "Every SDPoint instance below half of the full MACs is more accurate than the baseline "
        "run at the same instance (both BN-recalibrated).",
        paper=PAPER["cheap_instances_beat_baseline"],
        value=value,
        ci=ci,
        holds=holds,
        rule="per instance below 0.5 of the full MACs: SDPoint minus baseline test top-1 (pp), paired bootstrap; "
        "holds if every interval lies above 0 (value and interval: the instance with the smallest gain)",
        unit="pp",
        threshold=0.0,
        above=True,
    )
    return result, rows


def bn_recalibration_matters(sdpoint: pd.DataFrame, sdpoint_plain: pd.DataFrame) -> dict:
    labels = [label for label in sdpoint.index if label != "full network"]
    with_recal = np.mean([_correct(sdpoint.loc[label]) for label in labels], axis=0)
    without = np.mean([_correct(sdpoint_plain.loc[label]) for label in labels], axis=0)
    return interval_claim(
        "bn_recalibration_matters",
        "Recomputing BatchNorm statistics for each instance is needed: instances are more accurate with it.",
        paired_bootstrap(100 * (with_recal - without)),
        paper=PAPER["bn_recalibration_matters"],
        rule="test top-1 with minus without BN recalibration (pp), averaged over every downsampling instance, "
        "paired bootstrap over test images; holds if the interval lies above 0",
        unit="pp",
    )


def cheap_instances_faster(sdpoint: pd.DataFrame, *, batch: int) -> tuple[dict, list[dict]]:
    full = sdpoint.loc["full network"]
    rows = []
    for label, r in sdpoint[sdpoint.macs_fraction < CHEAP].iterrows():
        for column, spread, size in (
            ("latency_ms", "latency_spread_ms", 1),
            ("latency_batched_ms", "latency_batched_spread_ms", batch),
        ):
            m, s = float(r[column]), float(r.get(spread, 0.0))
            mf, sf = float(full[column]), float(full.get(spread, 0.0))
            macs = float(r["macs_fraction"])
            rows.append(
                {
                    "label": label,
                    "batch": size,
                    "macs_fraction": macs,
                    "latency_ratio": m / mf,
                    "slowdown": m / mf / macs,
                    "low": (m - s / 2) / (mf + sf / 2) / macs,
                    "high": (m + s / 2) / max(mf - sf / 2, 1e-9) / macs,
                }
            )
    worst = max(rows, key=lambda x: x["slowdown"])
    return interval_claim(
        "cheap_instances_faster",
        "Cheap instances are really faster: their latency falls about as much as their MACs.",
        (worst["slowdown"], worst["low"], worst["high"]),
        paper=PAPER["cheap_instances_faster"],
        rule=f"latency ratio / MACs ratio (both against the full network) of every instance below 0.5 of the "
        f"full MACs, at batch 1 and batch {batch}, timed interleaved in one process; value: the worst; holds "
        f"if its range (median +- half the spread over timing rounds) lies below {LATENCY_SLACK}",
        threshold=LATENCY_SLACK,
        above=False,
    ), rows


def agent_beats_single_point(agent_points: pd.DataFrame, sdpoint: pd.DataFrame) -> tuple[dict, dict]:
    """The agent's best configuration (on validation) against the single-point instance on
    the validation front of the same network with the nearest MACs not below it."""
    from dynn.sdpoint.evaluate import validation_choice

    best = agent_points[agent_points.best].iloc[0]
    singles = sdpoint[sdpoint.point != "none"].reset_index()
    front = validation_choice(singles)
    above = front[front.macs >= best["macs"]]
    rival = (above if len(above) else front).sort_values("macs").iloc[0 if len(above) else -1]
    detail = {
        "agent_config": list(best["config"]),
        "agent_macs_fraction": float(best["macs_fraction"]),
        "agent_test_top1": float(best["test_top1"]),
        "rival": rival["label"],
        "rival_macs_fraction": float(rival["macs_fraction"]),
        "rival_test_top1": float(rival["test_top1"]),
    }
    return interval_claim(
        "agent_beats_single_point",
        "A learned per-layer downsampling policy beats the best single-point instance at matched MACs.",
        paired_bootstrap(100 * (np.asarray(best["test_correct"], float) - _correct(rival))),
        paper=PAPER["agent_beats_single_point"],
        rule="agent's highest-validation-reward configuration minus the single-point instance of the same "
        "network on the validation front with the nearest MACs not below the agent's, test top-1 (pp), "
        "paired bootstrap; holds if the interval lies above 0",
        unit="pp",
    ), detail


def paper_claims(
    instances: pd.DataFrame, *, latency_batch: int, agent_points: pd.DataFrame | None = None
) -> tuple[list[dict], dict]:
    """Every claim of the paper from the notebook's instance table (``test_correct`` per
    row, latency merged in), and the details behind them (per instance) for the notebook.

    ``agent_points`` (the agent's configurations on test, with ``test_correct``) adds the
    agent claim; without it that claim is not evaluated (runs without an agent).
    """
    sdpoint, sdpoint_plain = _rows(instances, "SDPoint", True), _rows(instances, "SDPoint", False)
    baseline, baseline_plain = _rows(instances, "baseline", True), _rows(instances, "baseline", False)
    cheap, cheap_rows = cheap_instances_beat_baseline(sdpoint, baseline)
    faster, latency_rows = cheap_instances_faster(sdpoint, batch=latency_batch)
    claims = [
        monotone_front(sdpoint),
        full_cost_vs_baseline(sdpoint, baseline_plain),
        cheap,
        bn_recalibration_matters(sdpoint, sdpoint_plain),
        faster,
    ]
    details = {"cheap_instances": cheap_rows, "latency": latency_rows}
    if agent_points is not None and len(agent_points):
        agent_claim, details["agent"] = agent_beats_single_point(agent_points, sdpoint)
        claims.append(agent_claim)
    return claims, details
