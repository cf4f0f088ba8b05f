"""Reading what the notebooks measured: every ``results.json`` under ``runs/`` as tidy tables.

The report notebook never re-trains anything; it only reads these files, so the cross-method
figures are exactly the numbers each paper notebook printed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from dynn.plots import pareto_front

# Notebooks whose points are image classification on the shared embedded setup
# (mnist5k at 32x32, CIFAR-ResNet family), drawable on one accuracy–MACs plot.
CLASSIFICATION = ("resnet_baseline", "blockdrop", "sdpoint", "slimmable")

# Series that are ablations (e.g. evaluated without BatchNorm recalibration): measured and
# kept in the tables, but not what a method would deploy, so left out of cross-method fronts.
ABLATION_MARKERS = ("no recal", "no bn recal")


def is_ablation(series: str | None) -> bool:
    return any(m in str(series).lower() for m in ABLATION_MARKERS)


# Reference curves drawn inside a method's notebook (the full network, plain training,
# the same blocks dropped for everyone, static ResNets): compared against, not the method.
BASELINE_MARKERS = ("baseline", "full network", "same blocks", "static")


def is_baseline(series: str | None) -> bool:
    return any(m in str(series).lower() for m in BASELINE_MARKERS)


def result_files(runs_dir: str | Path) -> list[Path]:
    """``runs/<notebook>/<run>/results.json``, skipping shared stages and the report itself."""
    runs_dir = Path(runs_dir)
    return sorted(p for p in runs_dir.glob("*/*/results.json")
                  if p.parts[-3] != "report" and not p.parts[-2].startswith("_"))


def _load(path: Path) -> dict:
    results = json.loads(path.read_text())
    results["notebook"], results["run"] = path.parts[-3], path.parts[-2]
    return results


def runs_table(runs_dir: str | Path) -> pd.DataFrame:
    """One row per run: notebook, run key, method, dataset, headline metrics (flattened)."""
    rows = []
    for path in result_files(runs_dir):
        r = _load(path)
        rows.append({"notebook": r["notebook"], "run": r["run"], "method": r.get("method"),
                     "dataset": r.get("dataset"), "device": r.get("environment", {}).get("device"),
                     **{f"metric.{k}": v for k, v in (r.get("metrics") or {}).items()
                        if isinstance(v, (int, float, str, bool)) or v is None}})
    return pd.DataFrame(rows)


def points_table(runs_dir: str | Path) -> pd.DataFrame:
    """One row per accuracy–cost point of every run (the tidy table the figures draw)."""
    rows = []
    for path in result_files(runs_dir):
        r = _load(path)
        for p in r.get("points", []):
            rows.append({"notebook": r["notebook"], "run": r["run"], "method": r.get("method"),
                         "dataset": r.get("dataset"), "series": p.get("series", r.get("method")), **p})
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.drop_duplicates(subset=["notebook", "series", "label", "accuracy", "macs"])
    return table


def front(table: pd.DataFrame, x: str = "macs", y: str = "accuracy") -> pd.DataFrame:
    """The Pareto-optimal rows of ``table`` (lower ``x``, higher ``y``), sorted by ``x``."""
    table = table.dropna(subset=[x, y])
    return table.iloc[pareto_front(table[x].to_numpy(), table[y].to_numpy())]


def best_within_budget(points: pd.DataFrame, budget_macs: float,
                       by: tuple[str, ...] = ("notebook", "series")) -> pd.DataFrame:
    """Per group, the most accurate point costing at most ``budget_macs`` (groups with none are left out)."""
    rows = []
    for key, group in points.groupby(list(by)):
        affordable = group[group["macs"] <= budget_macs]
        if affordable.empty:
            continue
        best = affordable.loc[affordable["accuracy"].idxmax()]
        rows.append({**dict(zip(by, key)), "label": best.get("label"), "accuracy": best["accuracy"],
                     "macs": best["macs"], "latency_ms": best.get("latency_ms", np.nan),
                     "baseline": is_baseline(best.get("series"))})
    if not rows:
        return pd.DataFrame(columns=[*by, "label", "accuracy", "macs", "latency_ms", "baseline"])
    return pd.DataFrame(rows).sort_values("accuracy", ascending=False).reset_index(drop=True)
