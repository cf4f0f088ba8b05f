"""Reading what the notebooks measured: the runs the manifest lists, as tidy tables.

The report notebook never re-trains anything and never reads whatever happens to lie under
``runs/``: it reads the runs ``runs/manifest.json`` lists as finished (written by
:mod:`dynn.report`), so a stale or hand-made run cannot slip into the figures. Every point
carries its ``role`` (method / baseline / ablation / reference), ``series`` and how its
operating point was chosen (``selection``), so the report draws by role, and a sixth method
needs no edit here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from dynn.claims import t_interval, verdict
from dynn.plots import pareto_front
from dynn.runs import params_key

FINISHED = ("ok", "reused")


def read_manifest(runs_dir: str | Path) -> dict:
    path = Path(runs_dir) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `make report` (python -m dynn.report) first")
    return json.loads(path.read_text())


def finished_runs(runs_dir: str | Path) -> list[dict]:
    """Manifest entries of finished runs whose results.json exists, each with its results loaded."""
    runs_dir = Path(runs_dir)
    root = runs_dir.parent
    entries = []
    for entry in read_manifest(runs_dir)["runs"]:
        path = root / entry["run_dir"] / "results.json"
        if entry["status"] in FINISHED and path.exists():
            entries.append({**entry, "root": str(root), "results": json.loads(path.read_text())})
    return entries


def _group(entry: dict) -> str:
    """Runs that differ only in ``seed`` form one group (their points are averaged)."""
    return params_key({k: v for k, v in entry["parameters"].items() if k != "seed"}, frozenset())


def runs_table(entries: list[dict]) -> pd.DataFrame:
    """One row per run: notebook, parameters, status, seconds, headline metrics (flattened)."""
    rows = []
    for e in entries:
        r = e["results"]
        rows.append(
            {
                "notebook": e["notebook"],
                "run": e["run_dir"],
                "group": _group(e),
                "parameters": ", ".join(f"{k}={v}" for k, v in e["parameters"].items()) or "defaults",
                "seed": r.get("params", {}).get("seed"),
                "status": e["status"],
                "seconds": e["seconds"],
                "code_changed": e.get("code_changed", False),
                "dataset": r.get("dataset"),
                **{
                    f"metric.{k}": v
                    for k, v in (r.get("metrics") or {}).items()
                    if isinstance(v, (int, float, str, bool)) or v is None
                },
            }
        )
    return pd.DataFrame(rows)


def points_table(entries: list[dict]) -> pd.DataFrame:
    """One row per accuracy–cost point of every finished run (the tidy table the figures draw)."""
    rows = []
    for e in entries:
        r = e["results"]
        for p in r.get("points", []):
            rows.append(
                {
                    "notebook": e["notebook"],
                    "run": e["run_dir"],
                    "group": _group(e),
                    "dataset": r.get("dataset"),
                    "seed": r.get("params", {}).get("seed"),
                    **p,
                }
            )
    return pd.DataFrame(rows)


def aggregate_seeds(points: pd.DataFrame, value: str = "accuracy") -> pd.DataFrame:
    """Mean and 95 % t-interval of ``value`` over the seeds of each (group, series, label) point.

    Costs are averaged too; ``seeds`` counts the runs behind each row (1 means no interval).
    """
    keys = ["notebook", "group", "task", "role", "series", "selection", "label"]
    rows = []
    for key, g in points.groupby(keys, dropna=False, sort=False):
        mean, low, high = t_interval(g[value].to_numpy())
        row = dict(zip(keys, key))
        row.update(
            {
                value: mean,
                f"{value}_low": low,
                f"{value}_high": high,
                "seeds": len(g),
                "macs": float(g["macs"].mean()),
                "dataset": g["dataset"].iloc[0],
            }
        )
        if "latency_ms" in g:
            row["latency_ms"] = float(g["latency_ms"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def deployed(points: pd.DataFrame) -> pd.DataFrame:
    """The points a method would ship: role ``method`` chosen on validation or fixed in advance."""
    return points[(points["role"] == "method") & points["selection"].isin(["validation", "fixed"])]


def front(table: pd.DataFrame, x: str = "macs", y: str = "accuracy") -> pd.DataFrame:
    """The Pareto-optimal rows of ``table`` (lower ``x``, higher ``y``), sorted by ``x``."""
    table = table.dropna(subset=[x, y])
    return table.iloc[pareto_front(table[x].to_numpy(), table[y].to_numpy())]


def claims_table(entries: list[dict]) -> pd.DataFrame:
    """Every paper claim of every finished run; over seeds, one row per (notebook, group, claim).

    With several seeds the value is the mean and the interval the t-interval over seeds; a
    claim that states a ``threshold`` is decided again from that interval, others hold only
    if every seed says so (mixed verdicts are inconclusive).
    """
    rows = []
    for e in entries:
        for c in e["results"].get("claims", []) or []:
            rows.append(
                {
                    "notebook": e["notebook"],
                    "group": _group(e),
                    "parameters": ", ".join(f"{k}={v}" for k, v in e["parameters"].items() if k != "seed")
                    or "defaults",
                    **c,
                }
            )
    if not rows:
        return pd.DataFrame(
            columns=["notebook", "parameters", "id", "statement", "paper", "value", "ci", "holds", "rule", "seeds"]
        )
    table = pd.DataFrame(rows)
    out = []
    for _, g in table.groupby(["notebook", "group", "id"], sort=False):
        first = g.iloc[0].to_dict()
        values = [v for v in g["value"] if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if len(g) > 1 and values:
            mean, low, high = t_interval(values)
            first.update(value=mean, ci=[low, high])
            threshold = first.get("threshold")
            if threshold is not None and not np.isnan(low):
                first["holds"] = verdict(low, high, threshold, above=first.get("above", True))
            else:
                verdicts = set(g["holds"])
                first["holds"] = verdicts.pop() if len(verdicts) == 1 else None
        first["seeds"] = len(g)
        out.append(first)
    return pd.DataFrame(out)


def retime_deployed(
    entries: list[dict], *, batch: int = 64, images: int = 8, rounds: int = 4, min_run_time: float = 0.2
) -> pd.DataFrame:
    """Time every deployed point of every run again, here, in one process, interleaved.

    Each notebook times its own points, but notebooks run at different moments on a shared
    machine, so their milliseconds do not compare. The report loads what each point
    deploys (:meth:`dynn.runs.Run.save_deployed`) and times all of them round-robin: at
    batch 1 (``images`` real test images one after another, per image) and at ``batch``
    (per image). Returns one row per point and batch size with median and spread (ms).
    """
    import torch

    from dynn.flops import compare_latency

    loaded = {}
    for e in entries:
        root = Path(e.get("root", "."))
        for p in e["results"].get("points", []):
            if p.get("deployed"):
                saved = torch.load(root / e["run_dir"] / p["deployed"], map_location="cpu", weights_only=False)
                loaded[(e["notebook"], e["run_dir"], p["label"])] = (saved["module"].eval(), saved["inputs"])
    if not loaded:
        return pd.DataFrame(columns=["notebook", "run", "label", "batch", "median_ms", "spread_ms"])

    def one_by_one(module, xs):
        for x in xs:
            module(x[None])

    rows = []
    for size in (1, batch):
        calls = {}
        for key, (module, inputs) in loaded.items():
            if size == 1:
                calls[key] = (one_by_one, (module, inputs[:images]))
            else:
                reps = -(-size // len(inputs))
                calls[key] = (module, (inputs.repeat(reps, *[1] * (inputs.dim() - 1))[:size],))
        per_image = images if size == 1 else size
        timed = compare_latency({str(k): v for k, v in calls.items()}, rounds=rounds, min_run_time=min_run_time)
        for key, row in zip(calls, timed):
            n = min(per_image, len(loaded[key][1])) if size == 1 else per_image
            rows.append(
                {
                    "notebook": key[0],
                    "run": key[1],
                    "label": key[2],
                    "batch": size,
                    "median_ms": row["median_ms"] / n,
                    "spread_ms": row["spread_ms"] / n,
                    "threads": row["threads"],
                }
            )
    return pd.DataFrame(rows)
