"""The Dynamic Routing notebook's parameter rules (light: no torch, no data).

The notebook's second cell validates its parameters against :data:`SPEC` before anything
heavy is imported, so a typo fails within a second, naming the parameter.
"""

from __future__ import annotations

from dynn.params import Choice, ExistingPath, Flag, ListOf, Number, data_rules, run_rules

# The network halves the resolution five times (stem ×4, then down to 1/32), so a crop
# side must be a multiple of 32 for the coarsest scale to line up with the finer ones.
CROP_MULTIPLE = 32
OPTIMIZERS = ("sgd", "adamw")


class MultipleOf:
    """Parameter rule: an integer multiple of ``factor`` (and at least ``min``)."""

    def __init__(self, factor: int, min: int | None = None):
        self.factor, self.min = factor, min

    def problem(self, value) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return "expected an integer"
        if value % self.factor or (self.min is not None and value < self.min):
            return f"must be a multiple of {self.factor}" + (f" and ≥ {self.min}" if self.min else "")
        return None


SPEC = {
    **data_rules("segmentation", download=False),
    "crop_size": MultipleOf(CROP_MULTIPLE, min=CROP_MULTIPLE),
    "val_fraction": Number(min=0, max=0.9),
    "stem_weights": ExistingPath(required_if=lambda p: bool(p.get("stem_weights"))),
    "layers": Number(min=1, max=64, integer=True),
    "init_channels": Number(min=2, integer=True),
    "gate_bias": Number(),
    "small_gate": Flag(),
    "budget_mu": Number(min=0, max=1, allow_none=True),
    "budget_lambda": Number(min=0),
    "mu_sweep": ListOf(Number(min=0, max=1), min_len=0),
    "unupdate_rate": Number(min=0, max=1),
    "drop_path_prob": Number(min=0, max=0.99),
    "epochs": Number(min=1, integer=True),
    "batch_size": Number(min=1, integer=True),
    "optimizer": Choice(OPTIMIZERS),
    "lr": Number(min=0),
    "weight_decay": Number(min=0),
    "warmup_iters": Number(min=0, integer=True),
    "grad_clip": Number(min=0),
    "baselines": Flag(),
    "eval_batch": Number(min=1, integer=True),
    "latency_batch": Number(min=1, integer=True),
    "latency_time": Number(min=0.01),
    "route_images": Number(min=1, max=16, integer=True),
    **run_rules(),
}
