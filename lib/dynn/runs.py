"""The run contract every notebook follows: run directory, params, results, atomic writes.

A run directory (default ``runs/<notebook>/<hash of the parameters>``) holds
``params.yaml``, ``metrics.csv`` (written by the trainer), checkpoints and ``results.json``.
Keying the directory by the parameters makes re-running a notebook with the same
parameters resume (or reuse) what is already there, and different parameters never
overwrite each other. Every file is written to a temporary name and renamed, so an
interrupted run never leaves a half-written file behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

# Parameters that say *where* output goes or how it is displayed, not *what* is computed;
# they do not change the run directory's key.
NON_KEY_PARAMS = frozenset({"run_dir", "figures_dir", "device", "interactive", "progress", "nprocs"})


def _atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return _atomic_write(Path(path), lambda p: p.write_text(text))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    return _atomic_write(Path(path), lambda p: torch.save(obj, p))


def params_key(params: dict) -> str:
    """Short stable hash of the parameters that determine the result."""
    keyed = {k: v for k, v in sorted(params.items()) if k not in NON_KEY_PARAMS}
    blob = json.dumps(keyed, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:10]


def repo_root() -> Path:
    """The workbook checkout (where ``runs/`` and ``figures/`` live)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "notebooks").is_dir():
            return parent
    return Path.cwd()


def resolve_run_dir(notebook: str, params: dict, run_dir: str = "") -> Path:
    """``run_dir`` if given, else ``runs/<notebook>/<params_key>`` under the checkout."""
    path = Path(run_dir) if run_dir else repo_root() / "runs" / notebook / params_key(params)
    path.mkdir(parents=True, exist_ok=True)
    return path


def stage_dir(run_dir: str | Path, notebook: str, stage: str, stage_params: dict) -> Path:
    """Directory for a stage that several runs can share (e.g. a pretrained backbone).

    Keyed only by the parameters the stage depends on, so a sweep over a later stage's
    parameter (BlockDrop's gamma, a budget mu, ...) trains the shared stage once. It lives
    beside the run directories: ``<runs>/<notebook>/_shared/<stage>-<key>``; when the
    user gave an explicit ``run_dir``, inside it.
    """
    run_dir = Path(run_dir)
    base = run_dir.parent if run_dir.parent.name == notebook else run_dir
    path = base / "_shared" / f"{stage}-{params_key(stage_params)}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_figures_dir(notebook: str, figures_dir: str = "") -> Path:
    path = Path(figures_dir) if figures_dir else repo_root() / "figures" / notebook
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_run(notebook: str, params: dict) -> tuple[Path, Path]:
    """Resolve and create the run and figures directories and write ``params.yaml``."""
    run_dir = resolve_run_dir(notebook, params, params.get("run_dir", ""))
    figures_dir = resolve_figures_dir(notebook, params.get("figures_dir", ""))
    atomic_write_text(run_dir / "params.yaml", yaml.safe_dump(_plain(params), sort_keys=True))
    return run_dir, figures_dir


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo_root(),
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: str | torch.device = "cpu") -> dict:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name() if str(device).startswith("cuda") else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "git_sha": git_sha(),
    }


def _plain(obj: Any) -> Any:
    """Convert numpy/torch scalars, tuples and paths into JSON/YAML-safe values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def write_results(
    run_dir: str | Path, *, method: str, dataset: str, metrics: dict, points: list[dict],
    params: dict, device: str | torch.device = "cpu", **extra: Any,
) -> Path:
    """Write ``results.json``: what the report notebook reads, never re-training anything.

    ``metrics`` are the headline numbers; ``points`` the accuracy–cost points, each a dict
    with at least ``label``, ``accuracy`` and ``macs`` (optionally ``latency_ms``).
    """
    for p in points:
        missing = {"label", "accuracy", "macs"} - set(p)
        if missing:
            raise ValueError(f"result point {p} lacks {sorted(missing)}")
    results = {
        "method": method, "dataset": dataset, "metrics": metrics, "points": points,
        "params": params, "environment": environment(device), **extra,
    }
    return atomic_write_text(Path(run_dir) / "results.json", json.dumps(_plain(results), indent=2))


def read_results(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
