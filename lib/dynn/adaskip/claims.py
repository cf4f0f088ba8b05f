"""AR-Net's claims, computed from one run (see :mod:`dynn.claims`; the notebook states the rules).

:func:`paper_claims` turns the notebook's evaluations into the rows of ``results.json``'s
``claims``. Every value is a difference or a ratio measured on the *test* clips; the
operating points it compares are chosen without them (the rival uniform network by
AR-Net's MACs on the validation clips, the random policy's usage on the validation clips).
Intervals: a paired bootstrap over test videos (two models on the same videos), a
bootstrap over videos for frame-type rates, the range over interleaved timing rounds for
latency.
"""

from __future__ import annotations

import math

import numpy as np

from dynn.adaskip.published import CLAIM_FIGURES
from dynn.claims import interval_claim, paired_bootstrap


def matched_rival(rivals: dict, macs: float) -> str:
    """The rival with the fewest MACs not below ``macs`` (the most expensive one if all are cheaper)."""
    above = {k: m for k, (m, _) in rivals.items() if m >= macs}
    if above:
        return min(above, key=above.get)
    return max(rivals, key=lambda k: rivals[k][0])


def video_bootstrap(statistic, num_videos: int, *, resamples: int = 2000, seed: int = 0):
    """``(value, low, high)``: ``statistic(video_indices)`` on all videos and its 95 % percentile
    bootstrap interval over resampled videos."""
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, num_videos, num_videos)) for _ in range(resamples)]
    values = [v for v in values if not math.isnan(v)]
    value = statistic(np.arange(num_videos))
    if not values:
        return value, math.nan, math.nan
    return value, float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def action_rate(actions: np.ndarray, frame_types: np.ndarray, videos, frame_type: int, chosen) -> float:
    """% of the frames of type ``frame_type`` (within ``videos``) whose action is in ``chosen``."""
    a, t = actions[videos], frame_types[videos]
    sel = t == frame_type
    return 100.0 * float(np.isin(a[sel], chosen).mean()) if sel.any() else math.nan


def rate_difference(actions, frame_types, type_a: int, type_b: int, chosen, *, seed: int = 0):
    """Rate of ``chosen`` actions on frames of ``type_a`` minus on ``type_b`` (pp), bootstrap over videos."""

    def stat(videos):
        return action_rate(actions, frame_types, videos, type_a, chosen) - action_rate(
            actions, frame_types, videos, type_b, chosen
        )

    return video_bootstrap(stat, len(actions), seed=seed)


def latency_over_macs(rows: list[dict], method: str, reference: str, macs_ratio: float, *, batch: int = 1):
    """(AR-Net latency / reference latency) ÷ (AR-Net MACs / reference MACs) at ``batch``, and its
    range over the timing rounds (best round of one against the slowest of the other)."""
    by = {r["label"]: r for r in rows if r["batch"] == batch}
    m, r = by[method], by[reference]
    value = m["median_ms"] / r["median_ms"] / macs_ratio
    low = m["best_ms"] / (r["best_ms"] + r["spread_ms"]) / macs_ratio
    high = (m["best_ms"] + m["spread_ms"]) / r["best_ms"] / macs_ratio
    return value, low, high


def paper_claims(
    *,
    arnet,
    arnet_validation_macs: float,
    random_policy,
    rivals: dict,
    frame_types: np.ndarray | None,
    action_names: list[str],
    latency_rows: list[dict] | None = None,
    method_label: str = "",
    reference_label: str = "",
    reference_macs: float | None = None,
    cost_default: np.ndarray | None = None,
    cost_larger_w_eff: np.ndarray | None = None,
    w_eff_values: tuple[float, float] | None = None,
    latency_threshold: float = 1.5,
    seed: int = 0,
) -> list[dict]:
    """The claims of issue 15, each decided by the rule written in its ``rule`` field.

    ``arnet`` / ``random_policy``: :class:`~dynn.adaskip.evaluate.EvaluationPass` on the test clips;
    ``rivals``: label → (MACs per video, per-video correctness) of the equally trained uniform
    TSNs (all resolutions and frame counts); ``frame_types``: videos × T (``moving_digits``
    only); ``cost_default`` / ``cost_larger_w_eff``: per-video MACs of AR-Net trained with the
    two ``w_eff_values`` (same epochs, same test videos).
    """
    out = []
    # 1. at least as accurate as equally trained uniform processing at matched MACs
    rival = matched_rival(rivals, arnet_validation_macs)
    out.append(
        interval_claim(
            "beats_uniform_at_matched_macs",
            "AR-Net is at least as accurate as uniform processing (TSN) at no more cost.",
            paired_bootstrap(100 * (arnet.correct - rivals[rival][1]), seed=seed),
            paper=CLAIM_FIGURES["uniform"],
            rule=f"paired bootstrap over test videos of AR-Net − {rival} (the equally trained uniform TSN with the "
            "fewest MACs not below AR-Net's, chosen by AR-Net's MACs on the validation clips): holds if the 95 % "
            "interval lies above 0, fails if below 0, inconclusive otherwise",
            unit="pp",
        )
    )
    # 2. beats the random policy at matched usage
    out.append(
        interval_claim(
            "beats_random_policy",
            "A learned policy beats a random policy that uses the actions as often.",
            paired_bootstrap(100 * (arnet.correct - random_policy.correct), seed=seed),
            paper=CLAIM_FIGURES["random"],
            rule="paired bootstrap over test videos of AR-Net − random policy (usage matched to AR-Net's on the "
            "validation clips): holds if the 95 % interval lies above 0",
            unit="pp",
        )
    )
    # 3. small digits get the high resolution more often than blank frames; blank frames are skipped more
    if frame_types is not None:
        from dynn.data.video import FRAME_TYPES

        blank, small = FRAME_TYPES.index("blank"), FRAME_TYPES.index("small digit")
        skips = [a for a, n in enumerate(action_names) if n.startswith("skip")]
        for cid, statement, chosen, a, b in (
            (
                "small_digits_get_high_resolution",
                "The policy gives the highest resolution to frames that need detail (small digits) more often "
                "than to blank frames.",
                [0],
                small,
                blank,
            ),
            (
                "blank_frames_skipped",
                "The policy skips uninformative (blank) frames more often than informative (small-digit) ones.",
                skips,
                blank,
                small,
            ),
        ):
            out.append(
                interval_claim(
                    cid,
                    statement,
                    rate_difference(arnet.actions, frame_types, a, b, chosen, seed=seed),
                    paper=CLAIM_FIGURES["frame_types"],
                    rule=f"% of {FRAME_TYPES[a]} frames minus % of {FRAME_TYPES[b]} frames given "
                    f"{'/'.join(action_names[c] for c in chosen)} (test clips, bootstrap over videos): holds if the "
                    "95 % interval lies above 0",
                    unit="pp",
                )
            )
    # 4. a larger efficiency weight lowers the cost
    if cost_default is not None and cost_larger_w_eff is not None:
        d = 100 * (cost_default - cost_larger_w_eff) / cost_default.mean()
        mean, low, high = paired_bootstrap(d, seed=seed)
        lo_w, hi_w = w_eff_values or (math.nan, math.nan)
        out.append(
            interval_claim(
                "larger_w_eff_lowers_cost",
                "A larger efficiency weight in the loss gives a cheaper policy.",
                (mean, low, high),
                paper=CLAIM_FIGURES["w_eff"],
                rule=f"per-video MACs saved by training with w_eff = {hi_w:g} instead of {lo_w:g} (same epochs, "
                "same test videos), in % of the default's mean cost, paired bootstrap: holds if the 95 % interval "
                "lies above 0",
                unit="% of MACs",
            )
        )
    # 5. latency follows MACs
    if latency_rows and reference_macs:
        macs_ratio = arnet.macs_per_video / reference_macs
        out.append(
            interval_claim(
                "latency_follows_macs",
                "AR-Net's savings in MACs are savings in time (batch 1, against the full-resolution uniform network).",
                latency_over_macs(latency_rows, method_label, reference_label, macs_ratio),
                paper=CLAIM_FIGURES["latency"],
                rule=f"(AR-Net latency / {reference_label} latency) ÷ (their MACs ratio) at batch 1, interval = "
                f"the range over interleaved timing rounds: holds if it lies below {latency_threshold:g}",
                unit="×",
                threshold=latency_threshold,
                above=False,
            )
        )
    return out
