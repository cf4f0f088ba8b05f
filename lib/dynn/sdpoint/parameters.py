"""What ``notebooks/sdpoint.ipynb`` accepts, and the method's constants (light: no torch).

The notebook's second cell validates its parameters against :data:`SPEC` before anything
heavy is imported, so a typo fails within a second. Constants that the library and the
notebook share (backbone depths, agent names, the official schedule) live here as plain
literals for the same reason; ``tests/test_sdpoint.py`` checks they agree with the models.
"""

from __future__ import annotations

from dynn.model_names import CIFAR_DEPTHS, IMAGENET_RESNET_DEPTHS
from dynn.params import Choice, Flag, ListOf, Number, ParameterError, data_rules, run_rules

# Backbone families and their depths (``resnext`` = the paper's 32×4d variants).
ARCH_DEPTHS = {
    "cifar_resnet": CIFAR_DEPTHS,
    "resnet": IMAGENET_RESNET_DEPTHS,
    "preresnet": (18, 34, 50, 101, 152, 200),
    "resnext": (50, 101, 152),
}
# What a training forward pass does: "none" = plain training of the full network (the
# baseline), "single" = one SDPoint instance per pass (the paper), "multi" = half of the
# passes a multi-point configuration (for the agent of the TwoPipe fork).
SAMPLING = ("none", "single", "multi")
AGENTS = ("none", "reinforce", "dqn", "random")
REWARDS = ("linear", "amc")
# BN recalibration: "average" (reset, then a true average: the paper's intent) or
# "official" (no reset, momentum 0.1, instances chained: what the official code does).
BN_MODES = ("average", "official")
OFFICIAL_EPOCHS = 115
OFFICIAL_MILESTONES = (40, 75, 105)  # lr ÷10 at these of 115 ImageNet epochs

SPEC = {
    **data_rules("classification"),
    "arch": Choice(list(ARCH_DEPTHS)),
    "depth": Choice(sorted({d for depths in ARCH_DEPTHS.values() for d in depths})),
    "base_width": Number(min=1, integer=True),
    "ratios": ListOf(Number(min=0.05, max=0.95)),
    "legacy_official": Flag(),
    "epochs": Number(min=1, integer=True),
    "batch_size": Number(min=2, integer=True),
    "lr": Number(min=0),
    "weight_decay": Number(min=0),
    "bn_batches": Number(min=1, integer=True),
    "bn_batch_size": Number(min=2, integer=True),
    "agent": Choice(AGENTS),
    "agent_episodes": Number(min=1, integer=True),
    "reward": Choice(REWARDS),
    "cost_weight": Number(min=0),
    "multi_point_training": Flag(),
    "agent_bn_batches": Number(min=0, integer=True),
    "agent_test_configs": Number(min=1, integer=True),
    "latency_batch": Number(min=1, integer=True),
    "latency_time": Number(min=0.001),
    "resolution": Number(min=8, max=1024, integer=True),
    **run_rules(),
}


def check_depth(params: dict) -> dict:
    """The depth must exist in the chosen family (a rule over two parameters, checked
    right after :data:`SPEC`, still before any heavy import)."""
    allowed = ARCH_DEPTHS[params["arch"]]
    if params["depth"] not in allowed:
        raise ParameterError(
            f"invalid notebook parameters:\n  - parameter 'depth' = {params['depth']!r}: "
            f"allowed for arch {params['arch']!r}: {', '.join(map(str, allowed))}"
        )
    return params


def backbone_name(arch: str, depth: int) -> str:
    """Registry name of a family + depth (``resnext`` means the paper's 32×4d variants)."""
    if arch not in ARCH_DEPTHS:
        raise ValueError(f"arch {arch!r} is unknown; allowed: {', '.join(ARCH_DEPTHS)}")
    if depth not in ARCH_DEPTHS[arch]:
        raise ValueError(f"depth {depth} is not available for {arch}; allowed: {ARCH_DEPTHS[arch]}")
    return f"resnext{depth}_32x4d" if arch == "resnext" else f"{arch}{depth}"


def official_milestones(epochs: int) -> list[int]:
    """The official ImageNet step schedule (÷10 at 40/75/105 of 115 epochs) scaled to ``epochs``."""
    return sorted({max(1, round(m * epochs / OFFICIAL_EPOCHS)) for m in OFFICIAL_MILESTONES})
