"""Regenerate the whole report: every notebook's declared runs, then ``notebooks/report.ipynb``.

    python -m dynn.report            # what `make report` runs
    python -m dynn.report --force    # redo every run, even finished ones
    python -m dynn.report --only blockdrop sdpoint --skip-report

The runs of each notebook are declared in ``params/<notebook>/report.yaml`` (a list of
parameter overrides; ``{}`` is the notebook's defaults); a notebook without that file runs
once with its defaults. Each run's directory is ``runs/<notebook>/<hash of its effective
parameters>``, so a run that already finished (its ``results.json`` exists) is reused and a
re-run after a failure only redoes what failed. The defaults run writes the committed
figures (``figures/<notebook>/``); sweep runs keep theirs inside their run directory. A
failing notebook does not stop the others; the command ends with a summary table and a
non-zero exit status if anything failed.
"""
from __future__ import annotations

import argparse
import ast
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from dynn.runs import params_key, repo_root

REPORT_NOTEBOOK = "report"


@dataclass
class Run:
    notebook: str
    overrides: dict
    run_dir: Path
    figures_dir: Path
    status: str = "pending"
    seconds: float = 0.0
    error: str = ""

    @property
    def executed(self) -> Path:
        return self.run_dir / "executed.ipynb"

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.overrides.items()) or "defaults"


def notebook_defaults(path: Path) -> dict:
    """The parameters cell's values (papermill's own parser), as Python values."""
    import papermill

    return {name: ast.literal_eval(info["default"]) for name, info in papermill.inspect_notebook(str(path)).items()}


def declared_runs(notebook: str, root: Path) -> list[dict]:
    path = root / "params" / notebook / "report.yaml"
    if not path.exists():
        return [{}]
    runs = (yaml.safe_load(path.read_text()) or {}).get("runs") or [{}]
    if not all(isinstance(r, dict) for r in runs):
        raise ValueError(f"{path}: 'runs' must be a list of parameter mappings")
    return runs


def plan(root: Path, only: list[str] | None = None) -> list[Run]:
    runs = []
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        name = path.stem
        if name == REPORT_NOTEBOOK or (only and name not in only):
            continue
        defaults = notebook_defaults(path)
        for overrides in declared_runs(name, root):
            unknown = set(overrides) - set(defaults)
            if unknown:
                raise ValueError(f"params/{name}/report.yaml: unknown parameters {sorted(unknown)}")
            effective = {**defaults, **overrides, "run_dir": "", "figures_dir": ""}
            run_dir = root / "runs" / name / params_key(effective)
            figures_dir = root / "figures" / name if not overrides else run_dir / "figures"
            runs.append(Run(name, overrides, run_dir, figures_dir))
    return runs


def execute(run: Run, root: Path, index: int, total: int, force: bool) -> None:
    import papermill

    done = (run.run_dir / "results.json").exists() and run.executed.exists()
    if done and not force:
        run.status = "reused"
        print(f"[{index}/{total}] {run.notebook} ({run.describe()}): reused {run.run_dir.relative_to(root)}", flush=True)
        return
    print(f"[{index}/{total}] {run.notebook} ({run.describe()}): running", flush=True)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(root / "notebooks" / f"{run.notebook}.ipynb"), str(run.executed),
            parameters={**run.overrides, "run_dir": str(run.run_dir), "figures_dir": str(run.figures_dir)},
            cwd=str(root), progress_bar=True, kernel_name="python3")
        run.status = "ok"
    except Exception as err:  # a failing notebook must not stop the others
        run.status = "failed"
        run.error = str(err).strip().splitlines()[-1][:200] if str(err).strip() else type(err).__name__
    run.seconds = time.perf_counter() - started


def summary_table(runs: list[Run], root: Path) -> str:
    import pandas as pd

    table = pd.DataFrame([{
        "notebook": r.notebook, "parameters": r.describe(), "status": r.status,
        "time_s": round(r.seconds, 1), "executed notebook": str(r.executed.relative_to(root)),
        **({"error": r.error} if r.error else {}),
    } for r in runs])
    return table.to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynn.report", description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="redo every run (deletes runs/<notebook>/ first)")
    parser.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="run only these notebooks")
    parser.add_argument("--skip-report", action="store_true", help="do not run notebooks/report.ipynb")
    parser.add_argument("--list", action="store_true", help="print the planned runs and exit")
    parser.add_argument("--root", type=Path, default=None, help="workbook checkout (default: this one)")
    args = parser.parse_args(argv)

    root = (args.root or repo_root()).resolve()
    runs = plan(root, args.only)
    if args.list:
        for r in runs:
            print(f"{r.notebook:18s} {r.describe():40s} {r.run_dir.relative_to(root)}")
        return 0
    if args.force:
        for name in sorted({r.notebook for r in runs}):
            shutil.rmtree(root / "runs" / name, ignore_errors=True)
    started = time.perf_counter()
    total = len(runs) + (0 if args.skip_report else 1)
    for i, run in enumerate(runs, 1):
        execute(run, root, i, total, args.force)
    if not args.skip_report:
        report = Run(REPORT_NOTEBOOK, {}, root / "runs" / REPORT_NOTEBOOK, root / "figures" / REPORT_NOTEBOOK)
        execute(report, root, total, total, force=True)
        runs.append(report)
    print("\n" + summary_table(runs, root))
    failed = [r for r in runs if r.status == "failed"]
    print(f"\ntotal {time.perf_counter() - started:.0f} s; {len(runs) - len(failed)} ok or reused, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
