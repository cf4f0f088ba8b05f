"""Cost accounting: MACs measured by PyTorch, latency measured by the clock.

One mechanism for every method: :class:`torch.utils.flop_counter.FlopCounterMode` counts
what actually ran (2 FLOPs per multiply-add), and we report MACs = FLOPs / 2, the unit the
papers call "FLOPs". Because the counter only sees executed operators, a masked "skip"
still pays for the whole block — exactly the honesty we want when comparing real skipping
with the official codes' masking.

Latency comes from :mod:`torch.utils.benchmark` (warm-up, repeated blocks, median), with
the thread count and device recorded, because MACs are what papers report but latency is
what users feel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from torch.utils.flop_counter import FlopCounterMode

UNIT = "MACs"  # multiply-accumulates; the papers' "FLOPs"


def _run_counted(fn: Callable[[], Any]) -> FlopCounterMode:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return counter


def _as_callable(model: nn.Module | Callable, inputs: tuple, kwargs: dict) -> Callable[[], Any]:
    return lambda: model(*inputs, **kwargs)


def count_macs(model: nn.Module | Callable, *inputs: Any, **kwargs: Any) -> int:
    """MACs of one call ``model(*inputs, **kwargs)`` as measured by FlopCounterMode.

    The model's train/eval mode is left as it is; gradients are off while counting.
    Divide by the batch size yourself for a per-image number.
    """
    counter = _run_counted(_as_callable(model, inputs, kwargs))
    return counter.get_total_flops() // 2


def macs_by_module(model: nn.Module, *inputs: Any, **kwargs: Any) -> dict[str, int]:
    """MACs per submodule name (as in ``model.named_modules()``; ``""`` is the total).

    Every method builds its cost tables (per block, per path, per op) from this one
    measurement instead of hand formulas. A parent's count includes its children.
    """
    counter = _run_counted(_as_callable(model, inputs, kwargs))
    root = type(model).__name__
    table: dict[str, int] = {}
    for name, ops in counter.get_flop_counts().items():
        if name == "Global":
            continue
        key = "" if name == root else name.removeprefix(root + ".")
        table[key] = sum(ops.values()) // 2
    table.setdefault("", counter.get_total_flops() // 2)
    return table


def format_macs(macs: float) -> str:
    """Human-readable MACs: 253.0 M, 4.09 G."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(macs) >= scale:
            return f"{macs / scale:.3g} {suffix}{UNIT}"
    return f"{macs:.0f} {UNIT}"


@dataclass
class Latency:
    """Median wall-clock time of one call, with what is needed to interpret it."""

    median_ms: float
    iqr_ms: float
    runs: int
    threads: int
    device: str
    batch: int  # the batch size that really ran (first dimension of the first tensor input)

    def as_dict(self) -> dict:
        return asdict(self)


def _device_of(inputs: tuple) -> str:
    for x in inputs:
        if isinstance(x, torch.Tensor):
            return str(x.device)
        if isinstance(x, (list, tuple)):
            found = _device_of(tuple(x))
            if found != "cpu":
                return found
    return "cpu"


def _batch_of(inputs: tuple) -> int:
    for x in inputs:
        if isinstance(x, torch.Tensor):
            return int(x.shape[0]) if x.dim() else 1
        if isinstance(x, (list, tuple)) and x:
            return _batch_of(tuple(x))
    return 1


def measure_latency(
    fn: Callable,
    *inputs: Any,
    min_run_time: float = 0.5,
    warmup: int = 2,
    num_threads: int | None = None,
) -> Latency:
    """Median latency of ``fn(*inputs)`` under ``torch.no_grad`` (ms).

    Uses :class:`torch.utils.benchmark.Timer` (which synchronises CUDA) with
    ``blocked_autorange``: repeated blocks for at least ``min_run_time`` seconds after
    ``warmup`` untimed calls. ``num_threads`` defaults to torch's current setting.
    """
    from torch.utils import benchmark  # imported lazily: it probes for a CUDA toolchain

    threads = num_threads or torch.get_num_threads()

    def call():
        with torch.no_grad():
            return fn(*inputs)

    for _ in range(warmup):
        call()
    timer = benchmark.Timer(stmt="call()", globals={"call": call}, num_threads=threads)
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return Latency(
        median_ms=m.median * 1e3,
        iqr_ms=m.iqr * 1e3,
        runs=len(m.times),
        threads=threads,
        device=_device_of(inputs),
        batch=_batch_of(inputs),
    )


def compare_latency(
    calls: dict[str, tuple[Callable, tuple]], *, rounds: int = 4, min_run_time: float = 0.3, warmup: int = 2
) -> list[dict]:
    """Time several ``name -> (fn, inputs)`` calls interleaved, ``rounds`` times each.

    The one latency helper of the workbook. Timings on a shared machine drift, so the calls
    to compare are measured round-robin in one process (load hits them alike) and each gets
    the median over rounds of its per-round medians, the fastest round, the spread
    (max − min) and every round's median (``rounds_ms``, in call order, so that ratios
    between two calls can be taken round by round); ``batch`` is the batch that really ran. Ratios between rows of one call of
    this function are what a notebook should report.
    """
    per_round: dict[str, list[Latency]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, (fn, inputs) in calls.items():
            per_round[name].append(measure_latency(fn, *inputs, min_run_time=min_run_time, warmup=warmup))
    rows = []
    for name, measured in per_round.items():
        medians = sorted(m.median_ms for m in measured)
        rows.append(
            {
                "name": name,
                "median_ms": float(np.median(medians)),
                "best_ms": medians[0],
                "spread_ms": medians[-1] - medians[0],
                "rounds_ms": [m.median_ms for m in measured],
                "rounds": rounds,
                "batch": measured[0].batch,
                "threads": measured[0].threads,
                "device": measured[0].device,
            }
        )
    return rows
