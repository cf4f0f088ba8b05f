"""The run contract every notebook follows: one :class:`Run` from validated parameters.

    params = dynn.params.from_namespace(globals(), SPEC)     # cell 2: light, no torch
    run = dynn.runs.start("blockdrop", params)               # cell 3
    net = run.stage(bd.train.pretrain, depth=depth, ...)     # one call per training stage
    run.save_figure(fig, "accuracy_vs_macs")
    run.write_results(metrics=..., points=..., claims=...)

A run directory (default ``runs/<notebook>/<hash of the parameters>`` in the checkout the
notebook runs in) holds ``params.yaml``, ``results.json`` and, for an ad-hoc run, its
``figures/``; only the report runner points ``figures_dir`` at the committed gallery.
Training stages live beside it in ``_stages/<stage>-<hash of the stage's arguments>``: the
key is made from the keyword arguments the stage function really receives, so a sweep over
a later stage's parameter (BlockDrop's gamma) trains the shared earlier stages once, and
two stages that differ in any argument (``data_root`` included) never share a directory.

A run directory that already holds another parameter set is refused with the differing
parameters named (never overwritten); a reused or resumed stage says so. Every file is
written to a temporary name and renamed, so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from dynn.params import ParameterError

# Parameters that say *where* output goes or how it is displayed, not *what* is computed;
# they do not change the run directory's key.
NON_KEY_PARAMS = frozenset({"run_dir", "figures_dir", "device", "interactive", "progress", "nprocs"})
# Stage arguments that do not change what a stage computes.
NON_KEY_STAGE_ARGS = frozenset({"device", "progress", "nprocs"})

ROLES = ("method", "baseline", "ablation", "reference")
TASKS = ("classification", "segmentation", "video")
POINT_FIELDS = ("label", "accuracy", "macs", "role", "series", "selection")


# ---------------------------------------------------------------- atomic writes
_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a result file is as readable as any other
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return _atomic_write(Path(path), lambda p: p.write_text(text))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    import torch

    return _atomic_write(Path(path), lambda p: torch.save(obj, p))


# ---------------------------------------------------------------- keys and places
def params_key(params: dict, ignore: frozenset = NON_KEY_PARAMS) -> str:
    """Short stable hash of the parameters that determine the result."""
    keyed = {k: v for k, v in sorted(params.items()) if k not in ignore}
    blob = json.dumps(_plain(keyed), sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:10]


def _is_checkout(path: Path) -> bool:
    return (path / "pyproject.toml").exists() and (path / "notebooks").is_dir()


def repo_root() -> Path:
    """The workbook checkout the user works in: the current directory or one above it
    (JupyterLab and papermill start kernels in ``notebooks/``); outside any checkout, the
    current directory. Never the checkout the package happens to be installed from."""
    cwd = Path.cwd().resolve()
    for path in (cwd, *cwd.parents):
        if _is_checkout(path):
            return path
    return cwd


def _differences(old: dict, new: dict, ignore: frozenset) -> list[str]:
    names = sorted((set(old) | set(new)) - ignore)
    return [
        f"{n}: {old.get(n, '<absent>')!r} there, {new.get(n, '<absent>')!r} now"
        for n in names
        if _plain(old.get(n)) != _plain(new.get(n))
    ]


# ---------------------------------------------------------------- environment
def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo_root(), capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: Any = "cpu") -> dict:
    import torch

    from dynn import CODE_VERSION

    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name()
        if str(device).startswith("cuda")
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "git_sha": git_sha(),
        "code_version": CODE_VERSION,
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


def check_device(name: str):
    """The torch device for parameter ``device``, or a ParameterError if it is not here."""
    from dynn.train import resolve_device

    try:
        return resolve_device(name)
    except (RuntimeError, ValueError) as err:
        raise ParameterError(f"invalid notebook parameters:\n  - parameter 'device' = {name!r}: {err}") from None


# ---------------------------------------------------------------- results
def check_points(points: list[dict], task: str) -> list[dict]:
    """Fill ``task`` and check every result point has the fields the report reads.

    ``role`` is one of :data:`ROLES` (the report draws methods as lines and baselines,
    ablations and references as such, without guessing from names); ``selection`` says how
    the operating point was chosen (``"validation"``, ``"fixed"``: a setting named before
    seeing any result, ``"sweep"``: every point of a sweep is shown).
    """
    checked = []
    for p in points:
        p = {"task": task, **p}
        missing = [f for f in POINT_FIELDS if f not in p]
        if missing:
            raise ValueError(f"result point {p.get('label', p)!r} lacks {missing}")
        if p["role"] not in ROLES:
            raise ValueError(f"result point {p['label']!r}: role {p['role']!r} is not one of {ROLES}")
        if p["task"] not in TASKS:
            raise ValueError(f"result point {p['label']!r}: task {p['task']!r} is not one of {TASKS}")
        checked.append(p)
    return checked


def write_results(
    run_dir: str | Path,
    *,
    method: str,
    dataset: str,
    metrics: dict,
    points: list[dict],
    params: dict,
    device: Any = "cpu",
    task: str = "classification",
    claims: list[dict] | None = None,
    **extra: Any,
) -> Path:
    """Write ``results.json``: what the report notebook reads, never re-training anything."""
    results = {
        "method": method,
        "task": task,
        "dataset": dataset,
        "metrics": metrics,
        "points": check_points(points, task),
        "claims": list(claims or []),
        "params": params,
        "environment": environment(device),
        **extra,
    }
    return atomic_write_text(Path(run_dir) / "results.json", json.dumps(_plain(results), indent=2))


def read_results(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


# ---------------------------------------------------------------- the run
@dataclass
class Run:
    """One notebook run: where it writes, on which device, and its training stages."""

    notebook: str
    params: dict
    dir: Path
    figures: Path
    device: Any  # torch.device
    task: str = "classification"
    stages: dict[str, Path] = field(default_factory=dict)

    # -- stages
    def _stage_base(self) -> Path:
        # Beside the run directories (runs/<nb>/_stages) so a sweep shares them; inside an
        # explicit run_dir that lives elsewhere.
        base = self.dir.parent if self.dir.parent.name == self.notebook else self.dir
        return base / "_stages"

    def stage_dir(self, fn: Callable, **kwargs: Any) -> Path:
        """The directory ``fn(**kwargs)`` trains in (keyed by the function and its arguments)."""
        keyed = {"stage": f"{fn.__module__}.{fn.__qualname__}", **kwargs}
        return self._stage_base() / f"{fn.__name__}-{params_key(keyed, NON_KEY_STAGE_ARGS)}"

    def stage(self, fn: Callable, *, nprocs: int = 1, **kwargs: Any) -> Any:
        """Run (or reuse) training stage ``fn`` and return what it returns (its model).

        ``fn(*, run_dir, device, **kwargs)`` is a library function of plain keyword
        arguments that trains with :func:`dynn.train.fit` (``stage=fn.__name__``), so a
        finished stage is loaded instead of retrained and an interrupted one resumes. With
        ``nprocs > 1`` it first runs on that many local processes through TorchElastic
        (DistributedDataParallel inside ``fit``), then loads the result here.
        """
        unknown = set(kwargs) - set(inspect.signature(fn).parameters)
        if unknown and not any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values()):
            raise TypeError(f"stage {fn.__name__} takes no arguments {sorted(unknown)}")
        path = self.stage_dir(fn, **kwargs)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            path / "stage.yaml",
            yaml.safe_dump(
                _plain({"stage": f"{fn.__module__}.{fn.__qualname__}", "arguments": kwargs}), sort_keys=True
            ),
        )
        self.stages[fn.__name__] = path
        with _exclusive(path / ".lock"):  # two runs of a sweep that share a stage: one trains, one reuses
            if nprocs > 1:
                from dynn.train import run_elastic

                run_elastic(stage_entry, nprocs, fn, str(path), str(self.device), kwargs)
            return fn(run_dir=str(path), device=str(self.device), **kwargs)

    def checkpoint(self, stage: str) -> str:
        """The checkpoint file of a stage this run has already called (to chain stages)."""
        if stage not in self.stages:
            raise KeyError(f"stage {stage!r} has not run in this notebook; ran: {sorted(self.stages)}")
        return str(self.stages[stage] / f"{stage}.ckpt")

    # -- outputs
    def save_deployed(self, label: str, module: Any, inputs: Any) -> str:
        """Keep what a point deploys so the report can time every method in one process.

        ``module`` is an ``nn.Module`` whose ``forward(images)`` is the real inference path
        (policy included, skips really skipped); ``inputs`` a batch of real test images (its
        content decides a dynamic network's path). Saved under ``<run.dir>/deployed/``;
        returns the file name to put in the point's ``deployed`` field.
        """
        import re

        name = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") + ".pt"
        atomic_torch_save(
            {"label": label, "module": module, "inputs": inputs.detach().cpu()}, self.dir / "deployed" / name
        )
        return f"deployed/{name}"

    def save_figure(self, fig, name: str) -> Path:
        from dynn.plots import save_figure

        return save_figure(fig, self.figures, name)

    def write_results(
        self,
        *,
        metrics: dict,
        points: list[dict],
        claims: list[dict] | None = None,
        dataset: str | None = None,
        **extra: Any,
    ) -> Path:
        return write_results(
            self.dir,
            method=self.notebook,
            dataset=dataset or self.params.get("dataset", ""),
            metrics=metrics,
            points=points,
            params=self.params,
            device=self.device,
            task=self.task,
            claims=claims,
            **extra,
        )


@contextlib.contextmanager
def _exclusive(lock_file: Path):
    """Hold an exclusive lock on ``lock_file`` (released when the process ends, also on a kill)."""
    with open(lock_file, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def stage_entry(fn: Callable, run_dir: str, device: str, kwargs: dict) -> float | None:
    """What each TorchElastic worker runs: the stage function.

    Returns the trained model's :func:`dynn.train.weights_digest` (not the model), which is
    what a test compares across ranks.
    """
    import torch.nn as nn

    from dynn.train import weights_digest

    result = fn(run_dir=run_dir, device=device, **kwargs)
    return weights_digest(result) if isinstance(result, nn.Module) else None


def start(notebook: str, params: dict, *, task: str = "classification") -> Run:
    """Check the device, resolve the run directory and write ``params.yaml``; seed.

    Refuses a ``run_dir`` that holds results of other parameters (naming them) instead of
    mixing two runs in one directory; says so when it reuses one of the same parameters.
    """
    from dynn.train import seed_everything

    if task not in TASKS:
        raise ValueError(f"task {task!r} is not one of {TASKS}")
    device = check_device(params.get("device", "auto"))
    root = repo_root()
    run_dir = Path(params.get("run_dir") or root / "runs" / notebook / params_key(params)).expanduser()
    saved = run_dir / "params.yaml"
    if saved.exists():
        old = yaml.safe_load(saved.read_text()) or {}
        differ = _differences(old, params, NON_KEY_PARAMS)
        if differ:
            raise ParameterError(
                f"parameter 'run_dir' = {str(run_dir)!r} holds a run made with other parameters ("
                + "; ".join(differ)
                + "). Choose another run_dir (or leave it empty for "
                "runs/<notebook>/<hash>), or delete that directory to replace it."
            )
        if (run_dir / "results.json").exists():
            print(
                f"{run_dir} already holds results of these parameters: finished stages are "
                f"reused and the results rewritten (delete the directory to start afresh)"
            )
    figures = Path(params.get("figures_dir") or run_dir / "figures").expanduser()
    run_dir.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, yaml.safe_dump(_plain(params), sort_keys=True))
    seed_everything(int(params.get("seed", 0)))
    print(f"run directory: {run_dir}\nfigures: {figures}\ndevice: {device}")
    return Run(notebook, dict(params), run_dir, figures, device, task)
