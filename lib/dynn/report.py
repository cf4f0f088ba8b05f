"""Regenerate the whole report: every notebook's declared runs, then ``notebooks/report.ipynb``.

    python -m dynn.report              # what `make report` runs
    python -m dynn.report -j 2         # two notebooks at a time (default: one per core)
    python -m dynn.report --only blockdrop sdpoint --skip-report
    python -m dynn.report --list       # the planned runs

The runs of each notebook are declared in ``params/<notebook>/report.yaml``: ``runs`` (a list
of parameter overrides; ``{}`` is the notebook's defaults) and optionally ``seeds`` (every
run is made once per seed). A notebook without that file runs once with its defaults.

Each run's directory is ``runs/<notebook>/<hash of its effective parameters>``. A run whose
``results.json`` was written by this code version is reused; one written by another code
version (``dynn.CODE_VERSION``) is redone; one written at another git revision is reused but
flagged in the manifest. Every run executes in its own process with a time limit (a hung
kernel fails that run only), ``-j`` at a time, one torch thread each; its elapsed time is
printed as it finishes and a summary table closes the command.

``runs/manifest.json`` lists every planned run (notebook, parameters, run directory, status,
seconds, code version, git revision). The report notebook reads only the runs the manifest
lists as finished, never whatever else lies under ``runs/``. The first declared run of
seed 0 (usually the defaults) writes the committed gallery (``figures/<notebook>/``);
every other run keeps its figures in its run directory.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import yaml

from dynn import CODE_VERSION
from dynn.runs import atomic_write_text, git_sha, params_key, repo_root

REPORT_NOTEBOOK = "report"
MANIFEST = "manifest.json"
DEFAULT_TIMEOUT_S = 1200


@dataclass
class PlannedRun:
    notebook: str
    overrides: dict
    run_dir: Path
    figures_dir: Path
    status: str = "pending"
    seconds: float = 0.0
    error: str = ""
    made_by: str = ""  # git revision recorded in the reused results.json

    @property
    def executed(self) -> Path:
        return self.run_dir / "executed.ipynb"

    @property
    def log(self) -> Path:
        return self.run_dir / "log.txt"

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.overrides.items()) or "defaults"


def notebook_defaults(path: Path) -> dict:
    """The parameters cell's values (papermill's own parser), as Python values."""
    import papermill

    return {name: ast.literal_eval(info["default"]) for name, info in papermill.inspect_notebook(str(path)).items()}


def declared_runs(notebook: str, root: Path) -> list[dict]:
    """``params/<notebook>/report.yaml``'s runs, each repeated for every declared seed."""
    path = root / "params" / notebook / "report.yaml"
    if not path.exists():
        return [{}]
    spec = yaml.safe_load(path.read_text()) or {}
    runs = spec.get("runs") or [{}]
    if not all(isinstance(r, dict) for r in runs):
        raise ValueError(f"{path}: 'runs' must be a list of parameter mappings")
    seeds = spec.get("seeds")
    if seeds is None:
        return runs
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        raise ValueError(f"{path}: 'seeds' must be a list of integers")
    return [{**r, "seed": s} if s != 0 or "seed" in r else dict(r) for r in runs for s in seeds]


def plan(root: Path, only: list[str] | None = None) -> list[PlannedRun]:
    runs = []
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        name = path.stem
        if name == REPORT_NOTEBOOK or (only and name not in only):
            continue
        defaults = notebook_defaults(path)
        gallery_written = False
        for overrides in declared_runs(name, root):
            unknown = set(overrides) - set(defaults)
            if unknown:
                raise ValueError(f"params/{name}/report.yaml: unknown parameters {sorted(unknown)}")
            effective = {**defaults, **overrides, "run_dir": "", "figures_dir": ""}
            run_dir = root / "runs" / name / params_key(effective)
            writes_gallery = not gallery_written and overrides.get("seed", 0) == 0
            gallery_written |= writes_gallery
            figures_dir = root / "figures" / name if writes_gallery else run_dir / "figures"
            runs.append(PlannedRun(name, overrides, run_dir, figures_dir))
    return runs


def _finished_by(run: PlannedRun) -> dict | None:
    """The environment recorded in the run's results.json, if it finished."""
    path = run.run_dir / "results.json"
    if not (path.exists() and run.executed.exists()):
        return None
    try:
        return json.loads(path.read_text()).get("environment", {})
    except (OSError, json.JSONDecodeError):
        return None


def execute(run: PlannedRun, root: Path, *, force: bool, timeout: float, threads: int) -> PlannedRun:
    """Run one notebook in its own process (papermill's CLI) with a time limit."""
    made = None if force else _finished_by(run)
    if made is not None and made.get("code_version") == CODE_VERSION:
        run.status, run.made_by = "reused", made.get("git_sha", "unknown")
        return run
    if made is not None:  # written by another code version: redo it from scratch
        shutil.rmtree(run.run_dir, ignore_errors=True)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    parameters = run.run_dir / "report_parameters.yaml"
    atomic_write_text(
        parameters, yaml.safe_dump({**run.overrides, "run_dir": str(run.run_dir), "figures_dir": str(run.figures_dir)})
    )
    command = [
        sys.executable,
        "-m",
        "papermill",
        str(root / "notebooks" / f"{run.notebook}.ipynb"),
        str(run.executed),
        "-f",
        str(parameters),
        "--cwd",
        str(root),
        "-k",
        "python3",
        "--no-progress-bar",
        "--log-output",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    with open(run.log, "w") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True
        )  # its own process group: the kernel dies with it
        try:
            code = proc.wait(timeout=timeout)
            run.status = "ok" if code == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            run.status, run.error = "timeout", f"no result after {timeout:.0f} s (hung kernel?); log: {run.log}"
    run.seconds = time.perf_counter() - started
    if run.status == "failed":
        run.error = _last_error(run.log)
    run.made_by = git_sha()
    return run


def _last_error(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line[:240]
    return lines[-1][:240] if lines else "failed (empty log)"


def write_manifest(runs: list[PlannedRun], root: Path) -> Path:
    entries = [
        {
            "notebook": r.notebook,
            "parameters": r.overrides,
            "run_dir": str(r.run_dir.relative_to(root)),
            "figures_dir": str(r.figures_dir.relative_to(root)),
            "status": r.status,
            "seconds": round(r.seconds, 1),
            "error": r.error,
            "code_version": CODE_VERSION,
            "git_sha": r.made_by,
            "code_changed": bool(r.made_by and r.made_by not in ("unknown", git_sha())),
        }
        for r in runs
    ]
    return atomic_write_text(
        root / "runs" / MANIFEST,
        json.dumps({"code_version": CODE_VERSION, "git_sha": git_sha(), "runs": entries}, indent=2),
    )


def summary_table(runs: list[PlannedRun], root: Path) -> str:
    import pandas as pd

    table = pd.DataFrame(
        [
            {
                "notebook": r.notebook,
                "parameters": r.describe(),
                "status": r.status,
                "time_s": round(r.seconds, 1),
                "run": str(r.run_dir.relative_to(root)),
                "error": r.error,
            }
            for r in runs
        ]
    )
    return table.to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynn.report", description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="redo every run (deletes runs/<notebook>/ first)")
    parser.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="run only these notebooks")
    parser.add_argument("--skip-report", action="store_true", help="do not run notebooks/report.ipynb")
    parser.add_argument("--list", action="store_true", help="print the planned runs and exit")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="runs at a time (default: cores)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds one run may take")
    parser.add_argument("--root", type=Path, default=None, help="workbook checkout (default: this one)")
    args = parser.parse_args(argv)

    root = (args.root or repo_root()).resolve()
    runs = plan(root, args.only)
    if args.list:
        for r in runs:
            print(f"{r.notebook:18s} {r.describe():50s} {r.run_dir.relative_to(root)}")
        return 0
    if args.force:
        for name in sorted({r.notebook for r in runs}):
            shutil.rmtree(root / "runs" / name, ignore_errors=True)
    started = time.perf_counter()
    threads = max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(
        f"{len(runs)} runs, {args.jobs} at a time, {threads} torch thread(s) each, "
        f"time limit {args.timeout:.0f} s per run",
        flush=True,
    )
    write_manifest(runs, root)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(execute, r, root, force=args.force, timeout=args.timeout, threads=threads) for r in runs]
        for done, future in enumerate(as_completed(futures), 1):
            r = future.result()
            note = f" (made at {r.made_by})" if r.status == "reused" else f" in {r.seconds:.0f} s"
            print(
                f"[{done}/{len(runs)}] {r.notebook} ({r.describe()}): {r.status}{note}"
                + (f": {r.error}" if r.error else ""),
                flush=True,
            )
            write_manifest(runs, root)
    if not args.skip_report:
        report = PlannedRun(REPORT_NOTEBOOK, {}, root / "runs" / REPORT_NOTEBOOK, root / "figures" / REPORT_NOTEBOOK)
        shutil.rmtree(report.run_dir, ignore_errors=True)
        execute(report, root, force=True, timeout=args.timeout, threads=threads)
        print(f"[report] {report.status} in {report.seconds:.0f} s" + (f": {report.error}" if report.error else ""))
        summary = summary_table([*runs, report], root)
    else:
        summary, report = summary_table(runs, root), None
    print("\n" + summary)
    everything = [*runs, *([report] if report else [])]
    failed = [r for r in everything if r.status in ("failed", "timeout")]
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s; {len(everything) - len(failed)} ok or reused, "
        f"{len(failed)} failed"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
