"""Claims as data: a paper's statement, our number, its interval, and whether it holds.

Every paper notebook ends by writing ``claims`` into ``results.json``: one dict per claim,
built with :func:`claim`, ``holds`` decided by a rule the notebook states in words
(``rule``) from an interval, never from a point estimate alone:

- :func:`t_interval`: mean and 95 % t-interval over seeds (one value per seed);
- :func:`paired_bootstrap`: mean and 95 % bootstrap interval of a per-image paired
  difference (two models on the same test images, one seed);
- :func:`verdict`: ``True`` if the interval lies on the claimed side of a threshold,
  ``False`` if it lies on the other side, ``None`` (inconclusive) if it straddles it.

A claim that does not hold stays in the table; the report gathers all of them in
``figures/report/claims.md``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the mean of ``values`` (Student t); one value gives ``(v, nan, nan)``."""
    v = np.asarray(values, float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, math.nan, math.nan
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def paired_bootstrap(
    differences: Sequence[float], *, resamples: int = 2000, seed: int = 0, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """``(mean, low, high)`` of a per-item paired difference by the percentile bootstrap."""
    d = np.asarray(differences, float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(1)
    tail = (1 - confidence) / 2 * 100
    return float(d.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def verdict(low: float, high: float, threshold: float = 0.0, *, above: bool = True) -> bool | None:
    """Does the interval ``[low, high]`` lie above (or below) ``threshold``? ``None`` if unsure."""
    if math.isnan(low) or math.isnan(high):
        return None
    if above:
        return True if low > threshold else False if high < threshold else None
    return True if high < threshold else False if low > threshold else None


def claim(
    id: str,
    statement: str,
    *,
    paper: str,
    value: float | None,
    ci: Sequence[float] | None,
    holds: bool | None,
    rule: str,
    unit: str = "",
    threshold: float | None = None,
    above: bool = True,
) -> dict:
    """One row of the claims table (what ``results.json`` stores and the report prints).

    ``threshold``/``above``: where the rule is "the interval lies above (below) threshold",
    say so, and the report decides the claim again from the interval over seeds.
    """
    if holds not in (True, False, None):
        raise ValueError(f"claim {id!r}: holds must be True, False or None, got {holds!r}")
    return {
        "id": id,
        "statement": statement,
        "paper": paper,
        "value": None if value is None else float(value),
        "ci": None if ci is None else [float(c) for c in ci],
        "holds": holds,
        "rule": rule,
        "unit": unit,
        "threshold": threshold,
        "above": above,
    }


def interval_claim(
    id: str,
    statement: str,
    interval: Sequence[float],
    *,
    paper: str,
    rule: str,
    unit: str = "",
    threshold: float = 0.0,
    above: bool = True,
) -> dict:
    """A :func:`claim` decided by where ``interval`` = ``(value, low, high)`` lies against
    ``threshold`` (:func:`verdict`): the shape of most paper claims in this workbook."""
    value, low, high = interval
    return claim(
        id,
        statement,
        paper=paper,
        value=value,
        ci=(low, high),
        holds=verdict(low, high, threshold, above=above),
        rule=rule,
        unit=unit,
        threshold=threshold,
        above=above,
    )


def mark(holds: bool | None) -> str:
    return {True: "✓", False: "✗", None: "?"}[holds]


def claims_markdown(table) -> str:
    """The report's claims table (``figures/report/claims.md``): ✓ / ✗ / ? per claim."""
    lines = [
        "| notebook | run | claim | paper | ours | 95 % interval | seeds | holds | rule |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, c in table.iterrows():
        ci = c.get("ci")
        interval = (
            f"[{ci[0]:.3g}, {ci[1]:.3g}]"
            if isinstance(ci, (list, tuple)) and len(ci) == 2 and not any(map(math.isnan, ci))
            else "—"
        )
        value = (
            "—"
            if c.get("value") is None or (isinstance(c["value"], float) and math.isnan(c["value"]))
            else f"{c['value']:.3g}{(' ' + c['unit']) if c.get('unit') else ''}"
        )
        lines.append(
            f"| {c['notebook']} | {c.get('parameters', '')} | {c['statement']} | {c['paper']} | {value} | "
            f"{interval} | {c.get('seeds', 1)} | {mark(c['holds'])} | {c['rule']} |"
        )
    if len(lines) == 2:
        lines.append("| — | — | no notebook has written claims yet | — | — | — | — | ? | — |")
    return "\n".join(lines) + "\n"
